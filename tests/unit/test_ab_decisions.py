"""A/B promotion verdicts (reject once an interval condition can no longer hold, pending
before, promote when all hold), recorded and announced once per change through the
outbox, and the decision message every channel renders (Slack, console, webhook)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from watchkeeper.alerts.console import render
from watchkeeper.alerts.notification import Notification, comparison_lines, side_by_side_lines
from watchkeeper.alerts.slack import blocks, headline
from watchkeeper.alerts.webhook import payload
from watchkeeper.daemon.checks.ab_checks import ABChecks
from watchkeeper.daemon.checks.ab_promotion import verdict
from watchkeeper.daemon.notify.outbox import Outbox
from watchkeeper.daemon.store.store import Store
from watchkeeper.policies.compare import ABPromotion
from watchkeeper.policies.schema import Policy

from tests.unit.test_ab_checks import SIZE, T0, commit, window


def promotion(*when: str) -> ABPromotion:
    return ABPromotion.model_validate({"when": list(when), "on_promote": ["oncall"]})


def look(low: float, high: float, ratio: float | None = 1.0) -> dict[str, Any]:
    values: dict[str, Any] = {
        "ab_accuracy_delta": {
            "value": (low + high) / 2,
            "estimate": (low + high) / 2,
            "low": low,
            "high": high,
            "decision": "worse" if high < 0 else "better" if low > 0 else "no_evidence",
        }
    }
    if ratio is not None:
        values["ab_latency_p99_ratio"] = {"value": ratio}
    return {"values": values}


def test_an_interval_condition_waits_until_it_holds_and_rejects_once_it_cannot() -> None:
    p = promotion("ab_accuracy_delta.low > -0.005", "ab_latency_p99_ratio <= 1.2")
    assert verdict(p, look(-0.02, 0.01))["decision"] == "pending"  # may still hold
    assert verdict(p, look(-0.004, 0.01))["decision"] == "promote"
    lost = verdict(p, look(-0.03, -0.005))  # high ≤ −0.005: low can never pass it
    assert lost["decision"] == "reject"
    assert lost["reasons"] == ["ab_accuracy_delta.low > -0.005 is false (-0.03)"]
    slow = verdict(p, look(-0.004, 0.01, ratio=1.4))  # point conditions judged once …
    assert slow["decision"] == "reject"  # … the interval ones hold
    assert verdict(p, look(-0.004, 0.01, ratio=None))["decision"] == "pending"
    decided = promotion("ab_accuracy_delta.decision == better")
    assert verdict(decided, look(-0.02, 0.01))["decision"] == "pending"
    assert verdict(decided, look(-0.02, -0.01))["decision"] == "reject"  # worse stays worse
    assert verdict(decided, look(0.01, 0.02))["decision"] == "promote"


def test_a_verdict_is_recorded_and_announced_once_per_change(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 's.db'}")
    planned: list[tuple[Notification, tuple[str, ...]]] = []

    def plan(note: Notification, targets: Any) -> list[tuple[str, Notification]]:
        planned.append((note, tuple(targets)))
        return [(t, note) for t in targets]

    checks = ABChecks(store, SIZE, 0, plan, "http://wk")
    policy = Policy.model_validate(
        {
            "model": "fraud",
            "window": "5m",
            "compare": {
                "baseline": "3",
                "candidate": "4",
                "promotion": {
                    "when": ["ab_accuracy_delta.low > 0"],  # better, at 95 %
                    "on_promote": ["oncall"],
                    "on_reject": ["oncall"],
                },
            },
            "rules": [{"metric": "psi", "critical": 0.2}],  # no ab rule: the look runs anyway
        }
    )
    rng = np.random.default_rng(1)
    for i in range(30):
        start = T0 + i * SIZE
        commit(
            store,
            [
                window("3", start, 400, 0.8, int(rng.integers(1 << 30))),
                window("4", start, 400, 0.9, int(rng.integers(1 << 30))),  # 10 points better
            ],
        )
        assert checks.findings(policy, start, start + SIZE) == {}
    (note, targets), *more = planned
    assert not more and targets == ("oncall",)  # promote once, never again
    assert note.kind == "promote" and note.details["comparison"] == "ab"
    assert note.summary == "fraud: version 4 meets the promotion bar against 3"
    assert note.links == {"comparison": "http://wk/models/fraud"}
    assert [r["channel"] for r in Outbox(store.engine).rows()] == ["oncall"]
    (row,) = checks.db.looks("fraud")
    assert row["decision"]["decision"] == "promote"
    # every channel renders it: a heading of its own, what each value says
    lines = comparison_lines(note)
    assert lines[0].startswith("ab_accuracy_delta.low > 0") and lines[0].endswith("ok")
    assert any(line.startswith("version 4 is ") and "more accurate" in line for line in lines)
    assert any("A/B comparison" in str(b) for b in blocks(note))
    assert headline(note).startswith(":rocket: PROMOTE: fraud: version 4")
    assert "version 4 is" in render(note)
    body = payload(note)
    assert body["type"] == "ab.promote" and body["decision"]["candidate"] == "4"
    # Slack and the console show both versions' columns, merged since the start
    side = note.details["side_by_side"]
    slack = str(blocks(note))
    assert "Side by side" in slack
    rows = {line.split()[0]: line.split()[1:] for line in side_by_side_lines(note)}
    assert rows["version"] == ["3", "4"]
    for name in ("events", "latency_p99_ms", "score_p50", "labelled_rows", "accuracy", "recall"):
        assert rows[name] == [f"{side[r][name]:.4g}" for r in ("baseline", "candidate")], name
        assert name in slack
    assert f"{side['candidate']['accuracy']:.4g}" in render(note)
    store.close()


def test_versions_from_events_are_escaped_in_slack(tmp_path: Path) -> None:
    note = Notification(
        kind="reject",
        fingerprint="f",
        severity="info",
        summary="fraud: version <!channel> *4* rejected against 3",
        model="fraud",
        policy="fraud",
        rule="ab-promotion",
        metric="",
        feature="<!channel> vs 3",
        members={},
        at_ms=T0,
        opened_ms=T0,
        details={
            "comparison": "ab",
            "checks": [{"condition": "ab_accuracy_delta.low > 0", "value": -0.1, "holds": False}],
            "table": {"ab_accuracy_delta": -0.1},
            "texts": {"ab_accuracy_delta": "version <!channel> is 10.0 points less accurate"},
        },
    )
    text = str(blocks(note))
    assert "<!channel>" not in text and "&lt;!channel&gt;" in text


def test_a_shadow_decision_shows_production_attribution_shift() -> None:
    note = Notification(
        kind="promote",
        fingerprint="f",
        severity="info",
        summary="fraud: candidate int8 meets the promotion bar",
        model="fraud",
        policy="fraud",
        rule="promotion",
        metric="",
        feature="int8",
        members={},
        at_ms=T0,
        opened_ms=T0,
        details={
            "checks": [],
            "table": {"shadow_attribution_rank_corr": 0.95},
            "attribution_shift": {"value": 0.83, "rows": 150},
        },
    )
    lines = comparison_lines(note)
    assert lines[-1].startswith("attribution_shift (production)") and "0.83" in lines[-1]
    assert any("Shadow comparison" in str(b) for b in blocks(note))


def test_a_version_with_backticks_cannot_close_slacks_code_block() -> None:
    hostile = "4```*bold* <https://evil.example|click>"
    note = Notification(
        kind="reject",
        fingerprint="f",
        severity="info",
        summary=f"fraud: version {hostile} rejected against 3",
        model="fraud",
        policy="fraud",
        rule="ab-promotion",
        metric="",
        feature=f"{hostile} vs 3",
        members={},
        at_ms=T0,
        opened_ms=T0,
        details={
            "comparison": "ab",
            "checks": [{"condition": "ab_accuracy_delta.low > 0", "value": -0.1, "holds": False}],
            "table": {"ab_accuracy_delta": -0.1},
            "texts": {"ab_accuracy_delta": f"version {hostile} is 10.0 points less accurate"},
        },
    )
    (section,) = [b for b in blocks(note) if "A/B comparison" in str(b)]
    text = section["text"]["text"]
    body = text.split("\n", 1)[1]
    assert body.startswith("```") and body.endswith("```")
    assert body[3:-3].count("`") == 0  # the only fences are ours
    assert (
        "<https://evil.example|click>" not in text and "&lt;https://evil.example|click&gt;" in text
    )


def test_the_side_by_side_table_clips_versions_and_values_from_events() -> None:
    long = "v" * 80
    note = Notification(
        kind="reject",
        fingerprint="f",
        severity="info",
        summary="fraud: rejected",
        model="fraud",
        policy="fraud",
        rule="ab-promotion",
        metric="",
        feature="x",
        members={},
        at_ms=T0,
        opened_ms=T0,
        details={
            "comparison": "ab",
            "baseline": "3",
            "candidate": long,
            "side_by_side": {
                "baseline": {"events": 10, "top_class": "<!channel>" * 20},
                "candidate": {"events": 12, "accuracy": 0.5},
            },
        },
    )
    lines = side_by_side_lines(note)
    assert all(len(line) <= 80 for line in lines)
    assert lines[0].split()[2] == "v" * 8 + "…" + "v" * 8  # the tail kept: versions end apart
    assert [line.split()[0] for line in lines] == ["version", "events", "top_class", "accuracy"]
    assert lines[3].split()[1:] == ["—", "0.5"]
    assert "<!channel>" not in str(blocks(note))
    # a shadow decision or an incident has none
    plain = Notification(**{**note.to_dict(), "details": {"checks": []}})
    assert side_by_side_lines(plain) == []
