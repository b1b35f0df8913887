"""The ``compare`` section of a policy: what it accepts, and errors located by file, line
and field naming the allowed values."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st
from watchkeeper.policies.compare import ABCondition, Compare
from watchkeeper.policies.errors import InvalidDocumentError
from watchkeeper.policies.loader import load_policy
from watchkeeper.policies.schema import Policy

RULE = {"metric": "ab_accuracy_delta", "critical": -0.01}


def policy(compare: object, **rule: object) -> Policy:
    return Policy.model_validate({"model": "fraud", "compare": compare, "rules": [RULE | rule]})


def errors(tmp_path: Path, text: str, channels: set[str] | None = None) -> list[str]:
    path = tmp_path / "fraud.yaml"
    path.write_text(text)
    with pytest.raises(InvalidDocumentError) as info:
        load_policy(path, channels, 300.0)
    return [str(e) for e in info.value.errors]


def test_a_named_pair_with_its_options() -> None:
    p = policy(
        {
            "baseline": 3,  # YAML reads it as a number
            "candidate": "4",
            "alpha": 0.01,
            "tuned_rows": 50_000,
            "min_rows": 500,
            "margin": {"ab_accuracy_delta": 0.005},
            "since": "2026-01-05T00:00:00Z",
        }
    )
    c = p.compare
    assert c is not None
    assert (c.baseline, c.candidate, c.versions) == ("3", "4", None)
    assert c.margins() == {
        "ab_accuracy_delta": 0.005,
        "ab_mae_delta": 0.0,
        "ab_score_mean_delta": 0.0,
    }
    assert c.since == dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
    assert c.since_ms() == int(dt.datetime(2026, 1, 5, tzinfo=dt.UTC).timestamp() * 1000)
    assert c.settings() == {"alpha": 0.01, "tuned_rows": 50_000, "min_rows": 500}
    with pytest.raises(pydantic.ValidationError):
        c.alpha = 0.1  # type: ignore[misc]  # frozen


def test_latest_as_a_word_or_a_key_and_a_margin_for_every_metric() -> None:
    assert policy("latest").compare == Compare(versions="latest")
    c = policy({"versions": "latest", "margin": 0.01}).compare
    assert c is not None and set(c.margins().values()) == {0.01}


@pytest.mark.parametrize(
    ("compare", "message"),
    [
        ({"baseline": "3"}, "give both baseline and candidate"),
        ({"baseline": "3", "candidate": "3"}, "baseline and candidate are both version '3'"),
        ({"baseline": "3", "candidate": 4.0}, "write the version 4.0 as a quoted string"),
        ({"baseline": True, "candidate": "4"}, "not a boolean"),
        ({"baseline": "", "candidate": "4"}, "1 to 200 characters without control"),
        ({"baseline": "ab\n", "candidate": "4"}, "1 to 200 characters without control"),
        ({"baseline": "v" * 201, "candidate": "4"}, "1 to 200 characters without control"),
        ({"versions": "latest", "baseline": "3"}, "either versions: latest or baseline"),
        ({"versions": "newest"}, "'latest'"),
        ("newest", "compare is `latest` or a mapping"),
        ({"baseline": "3", "candidate": "4", "colour": "red"}, "Extra inputs"),
        ({"baseline": "3", "candidate": "4", "alpha": 0.7}, "less than 0.5"),
        ({"baseline": "3", "candidate": "4", "margin": {"ab_latency_p99_ratio": 1}}, "margin"),
        ({"baseline": "3", "candidate": "4", "margin": -0.1}, "greater than or equal to 0"),
        ({"baseline": "3", "candidate": "4", "since": "2026-01-05T00:00:00"}, "time zone"),
        *(
            (
                {
                    "baseline": "3",
                    "candidate": "4",
                    "promotion": {"when": [f"ab_accuracy_delta > {b}"]},
                },
                f"'{b}' in 'ab_accuracy_delta > {b}' is not a finite number",
            )
            for b in ("nan", "inf", "-Infinity", "1e999")
        ),
    ],
)
def test_bad_sections_are_refused_with_the_reason(compare: object, message: str) -> None:
    with pytest.raises(pydantic.ValidationError, match="compare") as info:
        policy(compare)
    assert message in str(info.value)


@given(
    st.text(st.characters(codec="utf-8", exclude_categories=["Cc", "Cs"]), min_size=1, max_size=200)
)
def test_any_printable_version_is_kept_as_written(version: str) -> None:
    c = Compare(baseline=version, candidate=version + "x" if len(version) < 200 else "x")
    assert c.baseline == version


@given(st.integers(min_value=0, max_value=10**12))
def test_numeric_versions_become_their_string(number: int) -> None:
    assert Compare(baseline=number, candidate="v").baseline == str(number)  # type: ignore[arg-type]


def test_rules_on_ab_metrics_need_the_section_and_take_only_their_options(
    tmp_path: Path,
) -> None:
    (missing,) = errors(
        tmp_path, "model: fraud\nrules:\n  - metric: ab_accuracy_delta\n    critical: -0.01\n"
    )
    assert missing.startswith(f"{tmp_path / 'fraud.yaml'}:3:13: rules[0].metric:")
    assert "the policy has no compare section" in missing
    (bad,) = errors(
        tmp_path,
        "model: fraud\ncompare: latest\nrules:\n  - metric: ab_accuracy_delta\n"
        "    critical: -0.01\n    options: {value: median}\n",
    )
    assert "rules[0].options: options.value is one of bound, estimate, low, high" in bad
    (no_interval,) = errors(
        tmp_path,
        "model: fraud\ncompare: latest\nrules:\n  - metric: ab_latency_p99_ratio\n"
        "    critical: 1.5\n    options: {value: low}\n",
    )
    assert "ab_latency_p99_ratio carries no interval, so no low" in no_interval
    (located,) = errors(
        tmp_path,
        "model: fraud\ncompare:\n  baseline: '3'\n  candidat: '4'\nrules:\n"
        "  - {metric: ab_accuracy_delta, critical: -0.01}\n",
    )
    assert ":4:" in located and "compare.candidat" in located


def test_the_two_sided_score_mean_is_bad_above() -> None:
    p = policy("latest", metric="ab_score_mean_delta", critical=0.05)
    assert p.rules[0].bad_side() == "above"
    assert policy("latest").rules[0].bad_side() == "below"  # accuracy delta: lower is worse


def test_promotion_conditions_read_a_bound_a_value_or_a_decision(tmp_path: Path) -> None:
    c = policy(
        {
            "versions": "latest",
            "promotion": {
                "when": [
                    "ab_accuracy_delta.low > -0.005",
                    "ab_latency_p99_ratio <= 1.2",
                    "ab_score_mean_delta.decision == no_evidence",
                ],
                "on_promote": ["oncall"],
            },
        }
    ).compare
    assert c is not None and c.promotion is not None
    low, ratio, decision = c.promotion.when
    assert (low.metric, low.stat, low.op, low.bound) == ("ab_accuracy_delta", "low", ">", -0.005)
    assert low.holds(-0.004) and not low.holds(-0.005)
    assert (ratio.stat, str(ratio)) == ("value", "ab_latency_p99_ratio <= 1.2")
    assert decision.holds("no_evidence") and not decision.holds("changed")
    for text, message in (
        ("ab_latency_p99_ratio.low < 1.2", "carries no interval"),
        ("ab_accuracy.low > 0", "not an A/B metric"),
        ("ab_accuracy_delta.decision == great", "D one of worse, better"),
        ("ab_accuracy_delta.low == 0.1", "== compares a decision"),
        ("ab_accuracy_delta.low > x", "'x' in"),
        ("accuracy drops", "is not a condition"),
    ):
        with pytest.raises(ValueError, match=re.escape(message)):
            ABCondition.parse(text)
    (channel,) = errors(
        tmp_path,
        "model: fraud\ncompare:\n  versions: latest\n  promotion:\n"
        "    when: [ab_accuracy_delta.low > -0.005]\n    on_reject: [pager]\n"
        "rules:\n  - {metric: psi, critical: 0.2}\n",
        channels={"oncall"},
    )
    assert "compare.promotion.on_reject[0]: channel 'pager' is not defined" in channel
