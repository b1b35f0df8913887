"""The A/B side-by-side table: versions that differ print differently, column names fit
their column, and the section shows whenever there are columns."""

from __future__ import annotations

from typing import Any

from watchkeeper.alerts.console import render
from watchkeeper.alerts.notification import Notification, side_by_side_lines
from watchkeeper.alerts.slack import blocks

COLUMNS = {
    "estimated_accuracy": 0.91,
    "estimated_precision": 0.8,
    "estimated_specificity": 0.7,
    "estimated_roc_auc": 0.5,
    "a_column_name_longer_than_its_column": 1.0,
}


def decision(baseline: str, candidate: str, **details: Any) -> Notification:
    return Notification(
        "promote",
        "fp",
        "warn",
        "s",
        "fraud",
        "p",
        "r",
        "ab_accuracy",
        None,
        {},
        0,
        0,
        details={
            "comparison": "ab",
            "baseline": baseline,
            "candidate": candidate,
            "side_by_side": {"baseline": COLUMNS, "candidate": COLUMNS},
        }
        | details,
    )


def header(n: Notification) -> list[str]:
    return side_by_side_lines(n)[0].split()[1:]


def test_versions_sharing_a_long_prefix_print_differently() -> None:
    n = decision("fraud-model-v2.3.1", "fraud-model-v2.3.2", table={"ab_accuracy": 0.1})
    shown = header(n)
    assert shown[0] != shown[1] and shown[0].endswith("v2.3.1") and shown[1].endswith("v2.3.2")
    assert all(len(v) <= 17 for v in shown)
    # the repro's: the same 3-character head and a long run, different at the very end
    shown = header(decision("v1-" + "a" * 21, "v1-" + "a" * 20 + "b"))
    assert shown[0] != shown[1] and shown[1].endswith("ab")
    # different only in the middle: the difference is shown, still bounded
    a, b = "m-" + "x" * 30 + "1" + "y" * 30, "m-" + "x" * 30 + "2" + "y" * 30
    shown = header(decision(a, b))
    assert shown[0] != shown[1] and "1" in shown[0] and "2" in shown[1]
    assert all(len(v) <= 17 for v in shown)
    assert all(len(line) <= 80 for line in side_by_side_lines(decision(a, b)))


def test_column_names_shorter_than_their_column_are_not_clipped() -> None:
    names = [line.split()[0] for line in side_by_side_lines(decision("3", "4"))[1:]]
    assert names[:4] == list(COLUMNS)[:4]
    assert names[4] == "a_column_name_longer_th…" and len(names[4]) == 24


def test_the_section_shows_whenever_there_are_columns() -> None:
    n = decision("3", "4")  # no checks, table or texts in the details
    slack = str(blocks(n))
    assert "Side by side" in slack and "estimated_specificity" in slack
    assert "estimated_specificity" in render(n)
