"""Structured fuzzing of the config and policy loaders: the shipped documents, mutated
(keys dropped, added, values replaced by values of any shape), either load or are rejected
with located reasons — never another exception, which in the daemon would be a crash of
a reload instead of "the last good version stays in force"."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from watchkeeper.daemon.config import Config, validation_context
from watchkeeper.daemon.ingest.sources import option_checks
from watchkeeper.policies.errors import InvalidDocumentError
from watchkeeper.policies.schema import Policy
from watchkeeper.policies.yamlsource import parse_yaml, validate_document

ROOT = Path(__file__).resolve().parents[2]
CONFIG = yaml.safe_load((ROOT / "deploy" / "watchkeeper.yaml").read_text())
POLICY = yaml.safe_load((ROOT / "policies" / "examples" / "fraud.yaml").read_text())
SHADOW_POLICY = POLICY | {
    "shadow": {
        "task": "classification",
        "inputs": {"features": ["amount", "age"], "encodings": {"age": {"x": 1}}},
        "outputs": {"label": "label", "probabilities": "probabilities"},
        "candidates": [{"name": "int8", "onnx": "m.onnx"}],
        "promotion": {"when": ["shadow_agreement >= 0.99"], "min_rows": 100},
    }
}

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(10**9), 10**9)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["5m", "0s", "-1h", "all", "psi", "console", "1e400", "~", ""])
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            out += paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += paths(value, (*prefix, i))
    return out


def mutate(doc: dict[str, Any], data: st.DataObject) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    for _ in range(data.draw(st.integers(1, 3))):
        where = data.draw(st.sampled_from(paths(doc)))
        parent: Any = doc
        for step in where[:-1]:
            parent = parent[step]
        last = where[-1]
        action = data.draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            parent[last] = data.draw(values)
        elif action == "delete":
            del parent[last]
        elif isinstance(parent, dict):
            parent[data.draw(st.text(min_size=1, max_size=10))] = data.draw(values)
        else:
            parent.append(data.draw(values))
        if not doc:
            break
    return doc


def check(model: type, doc: dict[str, Any], context: dict[str, Any] | None = None) -> None:
    text = yaml.safe_dump(doc, allow_unicode=True)
    errors: list[Any] = []
    try:
        validate_document(model, parse_yaml(text, "fuzz.yaml"), context=context)
    except InvalidDocumentError as exc:
        errors = list(exc.errors) or [None]  # an empty list of reasons fails below
    for error in errors:
        assert error is not None, "a rejection must carry at least one reason"
        assert error.file == "fuzz.yaml" and error.message


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.data())
def test_mutated_configs_load_or_are_rejected_with_reasons(data: st.DataObject) -> None:
    check(
        Config, mutate(CONFIG, data), validation_context(option_checks(), {"SLACK_BOT_TOKEN": "x"})
    )


@FUZZ
@given(st.data())
def test_mutated_policies_load_or_are_rejected_with_reasons(data: st.DataObject) -> None:
    check(Policy, mutate(POLICY, data))


@FUZZ
@given(st.data())
def test_mutated_shadow_sections_load_or_are_rejected_with_reasons(data: st.DataObject) -> None:
    check(Policy, mutate(SHADOW_POLICY, data))
