"""`watchkeeper policy check | test | backtest` and `status`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from watchkeeper.daemon.cli.main import main
from watchkeeper.daemon.eventtime.windows import WindowState
from watchkeeper.daemon.store.store import Store
from watchkeeper.detectors.column_batch import Column, ColumnBatch
from watchkeeper.detectors.profile import (
    ReferenceProfile,
    bin_counts,
    numeric_profile,
    quantile_edges,
)
from watchkeeper.detectors.reservoir import record_keys
from watchkeeper.detectors.sketches import NumericSketch

from tests.support import store_config

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "policies" / "examples"
HOUR = 3_600_000


def test_check_passes_the_shipped_examples_and_prints_derived_thresholds(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert (
        main(["policy", "check", str(EXAMPLES), "-c", str(ROOT / "deploy" / "watchkeeper.yaml")])
        == 0
    )
    out = capsys.readouterr().out
    assert "fraud.yaml: ok — fraud: 8 rule(s), window 1h, every 5m" in out
    assert "estimated-rmse-budget: estimated_rmse auto" in out
    assert "drift-budget: psi auto (one false alarm per 30d" in out and "n=5,000:" in out


def test_check_prints_every_error_and_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a.yaml").write_text("model: a\nrules:\n  - {metric: psii, critical: 1}\n")
    (tmp_path / "b.yaml").write_text("model: b\nwindow: soon\nrules: []\n")
    assert main(["policy", "check", str(tmp_path), str(tmp_path / "missing.yaml")]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path / 'a.yaml'}:3:14: rules[0].metric: metric 'psii' is not known" in err
    assert f"{tmp_path / 'b.yaml'}:2:9: window: 'soon' is not a duration" in err
    assert "rules: List should have at least 1 item" in err
    assert "missing.yaml: no such file or directory" in err
    assert "4 error(s) in 3 file(s)" in err


def test_policy_unit_tests_pass_and_fail_loudly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["policy", "test", str(EXAMPLES)]) == 0
    assert "4 passed, 0 failed" in capsys.readouterr().out
    (tmp_path / "p.yaml").write_text(
        "model: m\nrules:\n  - {name: d, metric: psi, critical: 0.25, for: 2}\n"
    )
    (tmp_path / "p.test.yaml").write_text(
        "policy: p.yaml\ntests:\n  - name: fires at once\n    evaluations:\n"
        "      - {d: {x: 0.3}}\n      - {d: {x: 0.3}}\n    expect:\n"
        "      - {at: 0, kind: opened, rule: d}\n"
    )
    assert main(["policy", "test", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "expected but not produced: {'at': 0" in out
    assert "produced but not expected: at=1 kind=opened rule=d" in out


def _history(url: str) -> int:
    """Six hours of windows; hours 2 and 3 drifted. Returns the first window's start."""
    rng = np.random.default_rng(2)
    start = 1_795_255_200_000 - 1_795_255_200_000 % HOUR
    x = rng.normal(size=20_000)
    sketch = NumericSketch(2000)
    sketch.update(x)
    edges = quantile_edges(sketch, 10)
    with Store.open(url) as store:
        store.save_reference(
            ReferenceProfile(
                "fraud", {"amount": numeric_profile(sketch, edges, bin_counts(x, edges))}, 20_000
            )
        )
        state = WindowState(300, 10 * HOUR)
        n = 3000
        for hour in range(6):
            values = rng.normal(1.0 if hour in (2, 3) else 0.0, 1, n)
            ts = start + hour * HOUR + np.sort(rng.integers(0, HOUR, n))
            zeros = np.zeros(n, bool)
            state.add(
                ColumnBatch(
                    model="fraud",
                    role="predictions",
                    ts_ms=ts.astype(np.int64),
                    versions=np.array(["1"] * n, dtype=object),
                    keys=record_keys(0, hour, np.arange(n)),
                    features={"amount": Column("numeric", values, zeros, zeros)},
                )
            )
        store.commit("g", state.drain(), {("p", 0): 6 * n})
    return start


def test_backtest_replays_stored_history(
    tmp_path: Path, store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    start = _history(store_url)
    (tmp_path / "policies").mkdir()
    policy = tmp_path / "policies" / "fraud.yaml"
    policy.write_text(
        "model: fraud\nwindow: 1h\nschedule: {every: 1h}\nrules:\n"
        "  - {name: drift, metric: psi, critical: 0.25}\n"
    )
    config = store_config(tmp_path, store_url)
    assert (
        main(
            [
                "policy",
                "backtest",
                str(policy),
                "-c",
                str(config),
                "--since",
                "5h",
                "--until",
                _iso(start + 6 * HOUR),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "fraud: 6 tick(s), 6 evaluation(s); 1 incident(s) would have opened" in out
    opened = next(line for line in out.splitlines() if " opened " in line)
    resolved = next(line for line in out.splitlines() if " resolved " in line)
    # ticks on the hour read the hour before them: the one at +3h sees the drifted hour
    # 2 and opens; the one at +5h sees normal hour 4 and resolves
    assert _iso(start + 3 * HOUR)[:16].replace("T", " ") in opened
    assert _iso(start + 5 * HOUR)[:16].replace("T", " ") in resolved
    assert "no data" not in out
    # every evaluation's value, threshold and decision, per rule and feature
    rows = [line for line in out.splitlines() if " drift " in line and " amount " in line]
    assert len(rows) == 6 and sum(" breach " in r for r in rows) == 2
    assert all("0.25" in r for r in rows)
    args = ["policy", "backtest", str(policy), "-c", str(config), "--since", "6h"]
    assert main([*args, "--until", _iso(start + 6 * HOUR), "--format", "json"]) == 0
    (doc,) = json.loads(capsys.readouterr().out)["policies"]
    # 6h asked, but the tick at `start` reads the hour before the first stored window: the
    # daemon never runs it (it starts at the first full window), nor does the backtest
    assert doc["ticks"] == 6 and doc["no_data"] == [] and doc["history_from"] == start + HOUR
    breaches = [e for e in doc["evaluations"] if e["decision"] == "breach"]
    assert [e["at_ms"] for e in breaches] == [start + 3 * HOUR, start + 4 * HOUR]
    assert all(e["value"] > 0.25 and e["critical"] == 0.25 for e in breaches)
    kinds = [(t["at_ms"], t["kind"], t["feature"]) for t in doc["transitions"]]
    assert (start + 3 * HOUR, "opened", "*") in kinds  # the rule's digest incident
    assert main(["status", "-c", str(config)]) == 0
    out = capsys.readouterr().out
    assert "open incidents" in out and "models: stored, late" in out


def test_backtest_starts_where_the_daemon_starts_a_new_policy(
    tmp_path: Path, store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A span reaching before the stored history replays no tick the daemon would not run:
    no "no data" incident before the data began, no tick on a partial first window (trial
    on the Palmer penguins: data from 21:11, --since 3h replayed from 20:20, and opened a
    no-data incident and a drift incident ten minutes before the daemon did)."""
    start = _history(store_url)
    policy = tmp_path / "fraud.yaml"
    policy.write_text(
        "model: fraud\nwindow: 2h\nschedule: {every: 30m}\nrules:\n"
        "  - {name: drift, metric: psi, critical: 0.25}\n"
    )
    config = store_config(tmp_path, store_url)
    args = ["policy", "backtest", str(policy), "-c", str(config), "--since", "10h"]
    assert main([*args, "--until", _iso(start + 6 * HOUR), "--format", "json"]) == 0
    (doc,) = json.loads(capsys.readouterr().out)["policies"]
    # the first tick reading a full 2h of stored history is start + 2h; then every 30m
    assert doc["first_tick"] == doc["history_from"] == start + 2 * HOUR
    assert doc["ticks"] == 9 and doc["no_data"] == []
    assert all(t["kind"] != "opened" or t["rule"] == "drift" for t in doc["transitions"])
    assert main([*args, "--until", _iso(start + 6 * HOUR)]) == 0
    out = capsys.readouterr().out
    first = _iso(start + 2 * HOUR)[:16].replace("T", " ")
    assert f"fraud: from {first} UTC, the first tick that reads a full window" in out


def _iso(ms: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")


def test_check_derives_auto_thresholds_from_the_stored_reference(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    x = np.random.default_rng(4).normal(size=5000)
    sketch = NumericSketch(2000)
    sketch.update(x)
    column = numeric_profile(
        sketch, quantile_edges(sketch, 10), bin_counts(x, quantile_edges(sketch, 10))
    )
    with Store.open(url) as store:
        store.save_reference(
            ReferenceProfile("churn", {"a": column, "b": column, "c": column}, 5000)
        )
    config = store_config(tmp_path, url)
    policy = tmp_path / "churn.yaml"
    policy.write_text(
        "model: churn\nrules:\n  - {metric: psi, threshold: auto, false_alarm_every: 30d}\n"
    )
    assert main(["policy", "check", str(policy), "-c", str(config)]) == 0
    out = capsys.readouterr().out
    assert "over 3 feature(s)" in out and "n=500:" in out


def _two_versions(
    url: str, accuracy: dict[str, float], first_hour: dict[str, int] | None = None
) -> int:
    """Six hours of 5-minute windows of versions 3 and 4 of ``fraud``, labelled, at the
    given true accuracies (each version from its ``first_hour``, default 0). Returns the
    first window's start."""
    from watchkeeper.daemon.eventtime.windows import Delta, WindowKey
    from watchkeeper.detectors.category_counts import CategoryCounts
    from watchkeeper.detectors.performance import PerformanceSketch
    from watchkeeper.detectors.window import WindowSummary

    size = 300_000
    start = 1_795_255_200_000 - 1_795_255_200_000 % HOUR
    rng = np.random.default_rng(7)
    windows = {}
    for i in range(6 * HOUR // size):
        for version, rate in accuracy.items():
            if i * size < (first_hour or {}).get(version, 0) * HOUR:
                continue
            n = 400
            w = WindowSummary("fraud", version, start + i * size, size)
            labels = rng.integers(0, 2, n).astype(str)
            predicted = np.where(rng.random(n) < rate, labels, np.where(labels == "1", "0", "1"))
            w.events = {"predictions": n}
            w.first_ts_ms, w.last_ts_ms = w.start_ms, w.start_ms + size - 1
            w.performance = PerformanceSketch("classification")
            w.performance.update_classification(labels.tolist(), predicted.tolist())
            w.prediction = NumericSketch()
            w.prediction.update(rng.beta(2, 5, n))
            w.prediction_class = CategoryCounts()
            w.prediction_class.update(predicted.tolist())
            w.latency.update(rng.lognormal(2.0, 0.5, n))
            windows[WindowKey("fraud", version, w.start_ms)] = w
    with Store.open(url) as store:
        store.commit("g", Delta(size, windows), {})
    return start


@pytest.mark.parametrize("gap", [True, False], ids=["gap", "same"])
def test_backtest_evaluates_ab_rules_as_the_daemon_does(
    tmp_path: Path, store_url: str, capsys: pytest.CaptureFixture[str], gap: bool
) -> None:
    from watchkeeper.daemon.checks.ab_checks import ABChecks
    from watchkeeper.daemon.checks.checker import Checker
    from watchkeeper.daemon.notify.incidents import IncidentStore
    from watchkeeper.policies.loader import load_all

    start = _two_versions(store_url, {"3": 0.90, "4": 0.86 if gap else 0.90})
    policy = tmp_path / "fraud.yaml"
    policy.write_text(
        "model: fraud\nwindow: 1h\nschedule: {every: 1h}\nmin_samples: 100\n"
        'compare: {baseline: "3", candidate: "4"}\nrules:\n'
        "  - {name: worse, metric: ab_accuracy_delta, critical: -0.01}\n"
        "  - {name: scores, metric: ab_score_js_distance, critical: 0.2}\n"
    )
    # windows fold into the running roll-up
    config = store_config(tmp_path, store_url, ingest={"label_ttl": "30m"})
    args = ["policy", "backtest", str(policy), "-c", str(config), "--since", "5h"]
    assert main([*args, "--until", _iso(start + 6 * HOUR), "--format", "json"]) == 0
    (doc,) = json.loads(capsys.readouterr().out)["policies"]
    worse = [e for e in doc["evaluations"] if e["rule"] == "worse"]
    assert [e["at_ms"] for e in worse] == [start + h * HOUR for h in range(1, 7)]
    assert all(e["feature"] == "4 vs 3" and e["value"] is not None for e in worse)
    opened = [t for t in doc["transitions"] if t["kind"] == "opened" and t["rule"] == "worse"]
    if gap:  # a 4-point gap: the interval's bound falls below −1 point within the run
        breaches = [e["at_ms"] for e in worse if e["decision"] == "breach"]
        assert breaches and breaches == [e["at_ms"] for e in worse][-len(breaches) :]
        assert len(opened) == 1 and "less accurate than 3" in opened[0]["summary"]
    else:
        assert all(e["decision"] == "ok" for e in worse) and not opened
    assert all(e["decision"] == "ok" for e in doc["evaluations"] if e["rule"] == "scores")
    with Store.open(store_url) as store:  # the replay recorded nothing
        from sqlalchemy import func, select
        from watchkeeper.daemon.checks.ab_store import ABStore
        from watchkeeper.daemon.store import tables

        assert ABStore(store.engine).looks() == []
        with store.engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(tables.ab_versions)).scalar() == 0
        # the daemon's checker, built as app.py builds it, on the same store and ticks
        checker = Checker(
            store,
            IncidentStore(store.engine),
            300,
            label_ttl_s=1800,
            ab=ABChecks(store, 300_000, 1800, lateness_s=600),
        )
        (loaded,) = load_all([str(policy)], set(), 300).policies
        daemon = [
            (e.at_ms, e.rule, e.value, e.decision)
            for h in range(7)
            for e in checker.run(loaded, start + h * HOUR).evaluations
        ]
    replayed = [(e["at_ms"], e["rule"], e["value"], e["decision"]) for e in doc["evaluations"]]
    # accuracy comes from exact confusion counts: equal values, not close ones; the score
    # distance reads KLL sketches, whose merges flip coins (detectors/sketches.py): the
    # same decisions, its value moving within its noise floor (~0.03 here) from run to run
    assert [d for d in daemon if d[1] == "worse"] == [r for r in replayed if r[1] == "worse"]
    scores = [(d, r) for d, r in zip(daemon, replayed, strict=True) if d[1] == "scores"]
    assert len(scores) == 6 and all(d[3] == r[3] == "ok" for d, r in scores)
    # the table names the A/B rule's pair and what would have opened
    assert main([*args, "--until", _iso(start + 6 * HOUR)]) == 0
    out = capsys.readouterr().out
    assert " worse " in out and "4 vs 3" in out
    assert f"{1 if gap else 0} incident(s) would have opened" in out


def test_backtest_sees_only_the_versions_seen_by_each_tick(
    tmp_path: Path, store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Version 4 arrives three hours in: a replayed tick before then says what the daemon
    said at that tick ("not seen yet"), not what the whole stored history knows."""
    start = _two_versions(store_url, {"3": 0.90, "4": 0.86}, first_hour={"4": 3})
    policy = tmp_path / "fraud.yaml"
    policy.write_text(
        "model: fraud\nwindow: 1h\nschedule: {every: 1h}\nmin_samples: 100\n"
        'compare: {baseline: "3", candidate: "4"}\nrules:\n'
        "  - {name: worse, metric: ab_accuracy_delta, critical: -0.01}\n"
    )
    config = store_config(tmp_path, store_url, ingest={"label_ttl": "30m"})
    args = ["policy", "backtest", str(policy), "-c", str(config), "--since", "5h"]
    assert main([*args, "--until", _iso(start + 6 * HOUR), "--format", "json"]) == 0
    (doc,) = json.loads(capsys.readouterr().out)["policies"]
    worse = {e["at_ms"]: e for e in doc["evaluations"] if e["rule"] == "worse"}
    for h in (1, 2, 3):
        assert worse[start + h * HOUR]["value"] is None
        assert "version 4 of fraud not seen yet" in worse[start + h * HOUR]["reason"]
    assert all(worse[start + h * HOUR]["value"] is not None for h in (5, 6))
