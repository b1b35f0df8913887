"""A typo in a rule's ``features`` or in ``segments`` is reported, never a silent no-op."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from watchkeeper.detectors.profile import (
    ReferenceProfile,
    bin_counts,
    numeric_profile,
    quantile_edges,
)
from watchkeeper.detectors.sketches import NumericSketch
from watchkeeper.detectors.window import WindowSummary
from watchkeeper.policies.errors import InvalidDocumentError
from watchkeeper.policies.feature_names import unknown_names
from watchkeeper.policies.loader import load_all, load_policy
from watchkeeper.policies.schema import Policy

POLICY = (
    "model: credit\nreference: ref.json\nsegments: [country, chanel]\nrules:\n"
    "  - {name: drift, metric: psi, critical: 0.25}\n"
    "  - name: unseen\n    metric: psi\n    critical: 0.25\n    features: [countryy, 'inc*']\n"
)


def profile() -> ReferenceProfile:
    rng = np.random.default_rng(3)
    features = {}
    for name in ("income", "country", "channel"):
        x = rng.normal(size=1000)
        sketch = NumericSketch(200)
        sketch.update(x)
        edges = quantile_edges(sketch, 10)
        features[name] = numeric_profile(sketch, edges, bin_counts(x, edges))
    return ReferenceProfile("credit", features, 1000)


def test_unknown_features_and_segments_of_a_profile_file_are_located_errors(
    tmp_path: Path,
) -> None:
    profile().save(tmp_path / "ref.json")
    path = tmp_path / "credit.yaml"
    path.write_text(POLICY)
    with pytest.raises(InvalidDocumentError) as info:
        load_policy(path)
    found = [str(e) for e in info.value.errors]
    assert len(found) == 2, found
    assert found[0].startswith(f"{path}:3:21: segments[1]: 'chanel' is not a feature of the ")
    assert (
        "reference ref.json; did you mean 'channel'? (known: channel, country, income)"
        in (found[0])
    )
    assert found[1].startswith(f"{path}:9:16: rules[1].features[0]: 'countryy' is not a feature")
    assert "did you mean 'country'?" in found[1]
    # the glob matches income: not an error; the daemon's load rejects the file alike
    assert list(load_all([path]).errors) == [str(path)]
    path.write_text(POLICY.replace("chanel", "channel").replace("countryy", "country"))
    assert load_policy(path).policy.segments == ("country", "channel")


def test_a_glob_that_matches_nothing_is_an_error(tmp_path: Path) -> None:
    profile().save(tmp_path / "ref.json")
    path = tmp_path / "credit.yaml"
    path.write_text(
        "model: credit\nreference: ref.json\nrules:\n"
        "  - {metric: psi, critical: 0.25, features: 'amount*'}\n"
    )
    with pytest.raises(InvalidDocumentError) as info:
        load_policy(path)
    (error,) = [str(e) for e in info.value.errors]
    assert "rules[0].features: 'amount*' matches no feature of the reference ref.json" in error


def test_a_stored_reference_without_the_feature_records_an_evaluation_naming_it() -> None:
    from watchkeeper.daemon.checks.rule_findings import findings_for
    from watchkeeper.policies.engine import PolicyEngine

    policy = Policy.model_validate(
        {
            "model": "credit",
            "min_samples": 1,
            "rules": [
                {"name": "unseen", "metric": "psi", "critical": 0.25, "features": ["countryy"]}
            ],
        }
    )
    window = WindowSummary("credit", "1", 0, 1000)
    sketch = NumericSketch(200)
    sketch.update(np.arange(50.0))
    window.features["country"] = sketch
    found = findings_for(policy, profile(), window, 1.0, ())
    (finding,) = found["unseen"]
    assert finding.feature == "countryy" and finding.status == "insufficient_data"
    assert (
        "'countryy' is not a feature of the reference in force; did you mean 'country'?"
        in (finding.details["reason"])
    )
    (evaluation,) = PolicyEngine(policy).step(found, 1000)[0]
    assert evaluation.decision == "insufficient_data"
    assert "countryy" in evaluation.reason


def test_check_reports_schema_and_cross_check_errors_in_one_run(tmp_path: Path) -> None:
    """F6: an undefined channel, a window off the grid and a missing reference file are
    reported with the schema's errors, not in a later run once those are fixed."""
    path = tmp_path / "credit.yaml"
    path.write_text(
        "model: credit\nwindow: 7m\nreference: nowhere.json\nrules:\n"
        "  - {metric: psii, critical: 0.25}\n"
        "  - {metric: psi, critical: 0.25, colour: red}\n"
        "  - {metric: ks, critical: 0.2, actions: {critical: [consol]}}\n"
    )
    with pytest.raises(InvalidDocumentError) as info:
        load_policy(path, {"console"}, 300.0)
    found = [str(e) for e in info.value.errors]
    assert len(found) == 5, found
    assert "rules[0].metric: metric 'psii' is not known" in found[0]
    assert "rules[1].colour: unknown key 'colour'" in found[1]
    assert found[2].endswith(":2:9: window: must be a multiple of the daemon's windows.size (300s)")
    assert found[3].endswith(
        ":7:54: rules[2].actions.critical[0]: channel 'consol' is not defined in "
        "alerts.channels (console)"
    )
    assert "reference: no reference profile file at" in found[4]
    # a part the schema refused is its error alone
    path.write_text("model: credit\nrules:\n  - {metric: psi, critical: 0.2, actions: [x]}\n")
    with pytest.raises(InvalidDocumentError) as info:
        load_policy(path, {"console"}, 300.0)
    assert [e.field for e in info.value.errors] == ["rules[0].actions"]


def test_the_daemon_logs_a_missing_feature_once_and_lists_it_on_api_policies(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from watchkeeper.daemon.checks.checker import Checker
    from watchkeeper.daemon.checks.rule_findings import reference_gaps
    from watchkeeper.daemon.checks.scheduler import PolicyStatus, describe
    from watchkeeper.daemon.notify.incidents import IncidentStore
    from watchkeeper.daemon.store.store import Store
    from watchkeeper.policies.loader import LoadedPolicy

    policy = Policy.model_validate(
        {
            "model": "credit",
            "segments": ["chanel"],
            "rules": [
                {"name": "unseen", "metric": "psi", "critical": 0.25, "features": ["countryy"]}
            ],
        }
    )
    with Store.open(f"sqlite:///{tmp_path / 's.db'}") as store:
        checker = Checker(store, IncidentStore(store.engine), 300.0)
        with caplog.at_level("WARNING"):
            checker._warn_unknown_names(policy, reference_gaps(policy, profile()))
            checker._warn_unknown_names(policy, reference_gaps(policy, profile()))  # not again
        logged = [r.getMessage() for r in caplog.records]
        assert len(logged) == 2, logged
        assert "policy credit: segments/0: 'chanel' is not a feature" in logged[0]
        status = PolicyStatus(policies={"credit": LoadedPolicy(policy, "p.yaml", "d")})
        body = describe(status, warnings=lambda key: checker.name_warnings.get(key, []))
        (entry,) = body["policies"]
        assert [w.split(":")[0] for w in entry["warnings"]] == ["segments/0", "rules/0/features/0"]
        fixed = policy.model_copy(update={"segments": ("channel",)})
        checker._warn_unknown_names(fixed, reference_gaps(fixed, profile()))
        assert len(checker.name_warnings["credit"]) == 1


def test_a_tick_finds_what_the_reference_lacks_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The tick's evaluations and the checker's warnings read the same one computation
    (it ran twice a tick: findings_for, then Checker._warn_unknown_names)."""
    from watchkeeper.daemon.checks import rule_findings
    from watchkeeper.daemon.checks.checker import Checker
    from watchkeeper.daemon.eventtime.windows import WindowState
    from watchkeeper.daemon.notify.incidents import IncidentStore
    from watchkeeper.daemon.store.store import Store
    from watchkeeper.detectors.column_batch import Column, ColumnBatch
    from watchkeeper.detectors.reservoir import record_keys
    from watchkeeper.policies.loader import LoadedPolicy

    calls = []

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[0].key)
        return unknown_names(*args, **kwargs)

    monkeypatch.setattr(rule_findings, "unknown_names", counted)
    profile().save(tmp_path / "ref.json")
    policy = Policy.model_validate(
        {
            "model": "credit",
            "reference": "ref.json",
            "window": "5m",
            "min_samples": 1,
            "rules": [
                {"name": "unseen", "metric": "psi", "critical": 0.25, "features": ["countryy"]}
            ],
        }
    )
    loaded = LoadedPolicy(policy, str(tmp_path / "p.yaml"), "d")
    n = 50
    flags = np.zeros(n, dtype=bool)
    state = WindowState(300, 600)
    state.add(
        ColumnBatch(
            "credit",
            "predictions",
            np.full(n, 1_000, dtype=np.int64),
            np.array(["1"] * n, dtype=object),
            record_keys(0, 0, np.arange(n)),
            features={"country": Column("numeric", np.arange(n, dtype=np.float64), flags, flags)},
        )
    )
    delta = state.drain()
    delta.now_ms = 300_000
    with Store.open(f"sqlite:///{tmp_path / 's.db'}") as store:
        store.commit("g", delta, {})
        checker = Checker(store, IncidentStore(store.engine), 300.0)
        with caplog.at_level("WARNING"):
            first = checker.run(loaded, 300_000)
        assert calls == ["credit"]
        (evaluation,) = first.evaluations
        assert evaluation.feature == "countryy" and evaluation.decision == "insufficient_data"
        assert [w.split(":")[0] for w in checker.name_warnings["credit"]] == ["rules/0/features/0"]
        logged = [r.getMessage() for r in caplog.records if "countryy" in r.getMessage()]
        assert len(logged) == 1, logged
