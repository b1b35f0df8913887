"""An open incident shows its members' latest values, not only those of its last change."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from watchkeeper.alerts.notification import Notification, worst_members
from watchkeeper.daemon.cli.policy import _print_incidents
from watchkeeper.daemon.http.console import Console as Pages
from watchkeeper.daemon.http.console import ConsoleSources
from watchkeeper.daemon.http.console_queries import ConsoleQueries
from watchkeeper.daemon.http.routes import Request
from watchkeeper.daemon.notify.incidents import IncidentStore
from watchkeeper.daemon.store.store import Store
from watchkeeper.detectors.base import Finding
from watchkeeper.policies.engine import PolicyEngine
from watchkeeper.policies.schema import Policy

POLICY = Policy.model_validate(
    {
        "model": "credit",
        "rules": [{"name": "drift", "metric": "psi", "features": ["income"], "critical": 0.25}],
    }
)


def step(engine: PolicyEngine, incidents: IncidentStore, value: float, at_ms: int) -> int:
    found = {"drift": [Finding("credit", "psi", "income", value, "ok", 0, 1, 1000, 1000)]}
    evaluations, events = engine.step(found, at_ms)
    incidents.record(POLICY.key, at_ms, evaluations, events, engine.state_dict())
    return len(events)


def test_the_latest_value_is_shown_beside_the_transitions(tmp_path: Path) -> None:
    with Store.open(f"sqlite:///{tmp_path / 's.db'}") as store:
        incidents, engine = IncidentStore(store.engine), PolicyEngine(POLICY)
        assert step(engine, incidents, 0.2974, 300_000) == 1  # opened (critical)
        (row,) = incidents.incidents("open")
        assert row["current"] == {"at_ms": 300_000, "values": {"income": 0.2974}}
        assert step(engine, incidents, 0.9566, 600_000) == 0  # no transition: summary kept
        (row,) = incidents.incidents("open")
        assert "0.2974" in row["summary"] and row["members"] == {"income": 0.2974}
        assert row["current"] == {"at_ms": 600_000, "values": {"income": 0.9566}}
        q = ConsoleQueries(store, lambda: {POLICY.key: POLICY})
        (listed,) = q.open_incidents()
        assert listed["now"] == "now (tick 1970-01-01 00:10 UTC): income 0.9566"
        page = q.incident(row["fingerprint"])
        assert page is not None and page["now"] == listed["now"]
        out = io.StringIO()
        _print_incidents(Console(file=out, width=200), incidents, 0, {POLICY.key: POLICY})
        assert "now (tick 1970-01-01 00:10 UTC): income 0.9566" in out.getvalue()


def sources(queries: ConsoleQueries, status: dict[str, Any] | None = None) -> ConsoleSources:
    return ConsoleSources(
        queries=queries,
        policies=lambda: {POLICY.key: POLICY},
        reference_of=lambda _key: None,
        status=lambda: status or STATUS,
        shadow=dict,
        silences=list,
        add_silence=lambda m, d, by, note: 0,
        window_size_ms=300_000,
        csrf_key=b"k" * 32,
        token_required=False,
        clock=lambda: 700.0,
    )


STATUS: dict[str, Any] = {
    "models": {},
    "totals": {"events": 0, "late_events": 0, "quarantined": 0},
    "partitions": [],
    "policies": {},
}


def get(path: str) -> Request:
    return Request("GET", path, {}, {})


def test_the_pages_show_the_latest_value(tmp_path: Path) -> None:
    with Store.open(f"sqlite:///{tmp_path / 's.db'}") as store:
        incidents, engine = IncidentStore(store.engine), PolicyEngine(POLICY)
        step(engine, incidents, 0.2974, 300_000)
        step(engine, incidents, 0.9566, 600_000)
        (row,) = incidents.incidents("open")
        console = Pages(sources(ConsoleQueries(store, lambda: {POLICY.key: POLICY})))
        overview = console.overview(get("/")).body.decode()
        assert "now (tick 1970-01-01 00:10 UTC): income 0.9566" in overview
        page = console.incident(get(f"/incidents/{row['fingerprint']}")).body.decode()
        assert 'id="incident-now">now (tick 1970-01-01 00:10 UTC): income 0.9566' in page
        assert "<td>income</td><td>0.2974</td><td>0.9566</td>" in page


def test_an_idle_stream_without_a_watermark_reads_as_the_cli_says() -> None:
    stream = {"newest": "2026-12-04T02:02:12Z", "held": False, "caught_up": True}
    streams = {
        "labels": {**stream, "watermark": None, "idle": True},
        "predictions": {**stream, "watermark": "2026-12-04T01:58:00Z", "idle": True},
    }
    status = {**STATUS, "models": {"credit": {"events": 5, "streams": streams}}}
    with Store.open("sqlite://") as store:
        page = (
            Pages(sources(ConsoleQueries(store, lambda: {POLICY.key: POLICY}), status))
            .overview(get("/"))
            .body.decode()
        )
    assert "None (idle)" not in page and "labels: None" not in page
    assert "labels: idle (newest 2026-12-04 02:02)" in page
    assert "predictions: 2026-12-04 01:58 (idle)" in page


def test_the_queries_are_given_the_policies(tmp_path: Path) -> None:
    """No default: a caller that left the policies out would order every rule's members
    highest first, whatever its bad side (the next test's rule is low-is-bad)."""
    with (
        Store.open(f"sqlite:///{tmp_path / 's.db'}") as store,
        pytest.raises(TypeError, match="policies"),
    ):
        ConsoleQueries(store)  # type: ignore[call-arg]


LOW_IS_BAD = Policy.model_validate(
    {
        "model": "credit",
        "rules": [
            {
                "name": "low",
                "metric": "psi",
                "features": "all",
                "comparison": "below",
                "critical": 0.25,
            }
        ],
    }
)


def test_the_now_line_lists_members_worst_first_on_the_rules_bad_side(tmp_path: Path) -> None:
    """A rule whose bad side is below: its "now" line names the lowest value first, as
    the summary and every channel (``worst_members``) do, not the highest."""
    rule = LOW_IS_BAD.rules[0]
    engine = PolicyEngine(LOW_IS_BAD)

    def tick(values: dict[str, float], at_ms: int) -> None:
        found = [Finding("credit", "psi", f, v, "ok", 0, 1, 1000, 1000) for f, v in values.items()]
        evaluations, events = engine.step({rule.key: found}, at_ms)
        incidents.record(LOW_IS_BAD.key, at_ms, evaluations, events, engine.state_dict())

    with Store.open(f"sqlite:///{tmp_path / 's.db'}") as store:
        incidents = IncidentStore(store.engine)
        tick({"age": 0.1, "income": 0.05}, 300_000)
        tick({"age": 0.02, "income": 0.2}, 600_000)  # still both firing: no transition
        (row,) = incidents.incidents("open")
        assert row["summary"].index("income") < row["summary"].index("age")  # 0.05 first
        expected = "now (tick 1970-01-01 00:10 UTC): age 0.02, income 0.2"
        q = ConsoleQueries(store, lambda: {LOW_IS_BAD.key: LOW_IS_BAD})
        (listed,) = q.open_incidents()
        assert listed["now"] == expected
        page = q.incident(row["fingerprint"])
        assert page is not None and page["now"] == expected
        out = io.StringIO()
        _print_incidents(Console(file=out, width=200), incidents, 0, {LOW_IS_BAD.key: LOW_IS_BAD})
        assert expected in out.getvalue()
        # the channels' order of the same values
        now = Notification(
            "updated",
            row["fingerprint"],
            "critical",
            "",
            "credit",
            LOW_IS_BAD.key,
            rule.key,
            "psi",
            None,
            row["current"]["values"],
            600_000,
            300_000,
            bad_side=rule.bad_side(),
        )
        assert [k for k, _ in worst_members(now)] == ["age", "income"]
