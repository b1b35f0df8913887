"""README's "Offline check" section says what ``watchkeeper drift`` does today: its usage
block names every option the command has, and no option is promised for later (the
section said "`--policy FILE` joins when policy files land" beside the --policy text)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from watchkeeper.daemon.cli.main import build_parser

README = Path(__file__).resolve().parents[2] / "README.md"


def section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("### Offline check and reports")
    return text[start : text.index("\n## ", start)]


def drift_options() -> set[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    drift = sub.choices["drift"]
    return {
        s for a in drift._actions for s in a.option_strings if s.startswith("--") and s != "--help"
    }


def test_the_usage_block_names_every_drift_option() -> None:
    usage = section().split("```sh", 1)[1].split("```", 1)[0]
    assert "watchkeeper drift" in usage
    named = set(re.findall(r"--[a-z][a-z-]*", usage))
    assert named == drift_options()


def test_nothing_is_promised_for_later() -> None:
    text = " ".join(section().split())
    assert "joins when" not in text
    assert "With `--policy FILE` the batch is judged by that policy file's" in text
