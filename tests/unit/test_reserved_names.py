"""One definition per special name: the reserved column and category names
(``detectors/reserved_names.py``) and the special incidents (``policies/incident_model.py``)
are spelled out in the module that defines them and nowhere else in our code; every other
module imports them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from watchkeeper.detectors import reserved_names
from watchkeeper.policies import incident_model

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("daemon", "detectors", "policies", "alerts", "errors")

RESERVED = {
    reserved_names.PREDICTION: "detectors/reserved_names.py",
    reserved_names.PREDICTION_CLASS: "detectors/reserved_names.py",
    reserved_names.LABEL: "detectors/reserved_names.py",
    reserved_names.OTHER: "detectors/reserved_names.py",
    reserved_names.UNSEEN: "detectors/reserved_names.py",
    incident_model.NO_DATA: "policies/incident_model.py",
    incident_model.ERROR: "policies/incident_model.py",
}
CANDIDATE_PREFIX = "__candidate__"  # the prefix of candidate_incident(), spelled once


def spellings() -> list[tuple[str, str, int]]:
    """Every string constant of our code (docstrings and prose aside: exact values only)
    that is a special name, or starts with the candidates' prefix: (value, file, line)."""
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
                    continue
                if node.value in RESERVED or node.value.startswith(CANDIDATE_PREFIX):
                    found.append((node.value, str(path.relative_to(ROOT)), node.lineno))
    return found


def test_the_walk_sees_the_definitions() -> None:
    where = {(value, path) for value, path, _ in spellings()}
    assert set(RESERVED.items()) <= where
    assert any(v.startswith(CANDIDATE_PREFIX) for v, _ in where)


@pytest.mark.parametrize("value", [*RESERVED, CANDIDATE_PREFIX])
def test_each_special_name_is_spelled_in_its_defining_module_only(value: str) -> None:
    home = RESERVED.get(value, "policies/incident_model.py")
    elsewhere = [
        (path, line)
        for v, path, line in spellings()
        if (v == value or (value == CANDIDATE_PREFIX and v.startswith(value))) and path != home
    ]
    assert not elsewhere, f"{value!r} spelled outside {home}: {elsewhere}; import it instead"
