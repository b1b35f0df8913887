"""Policy-file mistakes a new user makes, each one error that says what is expected,
located by file, line and field: a ``when`` that is not a list of conditions, a condition
too long to echo whole, a ``reference`` written as a URL."""

from __future__ import annotations

from pathlib import Path

import pytest
from watchkeeper.policies.errors import InvalidDocumentError
from watchkeeper.policies.loader import load_policy

SHADOW = """\
model: fraud
rules:
  - {metric: shadow_agreement, critical: 0.98, candidates: [int8]}
shadow:
  task: classification
  inputs: {features: [a]}
  outputs: {label: label}
  candidates: [{name: int8, onnx: m.onnx}]
  promotion:
    when: WHEN
"""
COMPARE = """\
model: fraud
rules:
  - {metric: ab_accuracy_delta, critical: -0.01}
compare:
  versions: latest
  promotion:
    when: WHEN
"""
EXAMPLES = {SHADOW: '"shadow_agreement >= 0.99"', COMPARE: '"ab_accuracy_delta.low > -0.005"'}


def errors(tmp_path: Path, text: str) -> list[str]:
    (tmp_path / "m.onnx").write_bytes(b"")
    path = tmp_path / "fraud.yaml"
    path.write_text(text)
    with pytest.raises(InvalidDocumentError) as info:
        load_policy(path, None, 300.0)
    return [str(e) for e in info.value.errors]


@pytest.mark.parametrize("base", [SHADOW, COMPARE], ids=["shadow", "compare"])
@pytest.mark.parametrize(
    ("when", "says"),
    [
        ('"a > 1"', "`when` must be a list of conditions, e.g. [EXAMPLE], not a single string"),
        ("[5]", "`when` item 1 is 5, not a condition: write each as a string, e.g. EXAMPLE"),
        ("[]", "`when` needs at least one condition, e.g. [EXAMPLE]"),
        ("{a: 1}", "`when` must be a list of conditions, e.g. [EXAMPLE]"),
    ],
)
def test_a_when_that_is_not_a_list_of_conditions_is_one_clear_error(
    tmp_path: Path, base: str, when: str, says: str
) -> None:
    (error,) = errors(tmp_path, base.replace("WHEN", when))
    line = base.splitlines().index("    when: WHEN") + 1
    assert error.startswith(f"{tmp_path / 'fraud.yaml'}:{line}:")
    assert says.replace("EXAMPLE", EXAMPLES[base]) in error
    assert "tuple" not in error.lower()


@pytest.mark.parametrize("base", [SHADOW, COMPARE], ids=["shadow", "compare"])
def test_a_long_condition_is_echoed_cut_at_200_characters(tmp_path: Path, base: str) -> None:
    text = "x" * 180 + " => " + "9" * 300  # "=>": no operator
    (error,) = errors(tmp_path, base.replace("WHEN", f'["{text}"]'))
    assert f"'{text[:200]}'" in error and text[:201] not in error
    # a metric name too long to be one is cut as well
    long_name = "shadow_" + "y" * 400
    (error,) = errors(tmp_path, base.replace("WHEN", f'["{long_name} >= 1"]'))
    assert long_name[:201] not in error and f"{long_name[:200]}' is not a" in error


@pytest.mark.parametrize("reference", ["file:/x.json", "file:///x.json", "https://h/x.json"])
def test_a_reference_url_is_refused_saying_what_a_reference_is(
    tmp_path: Path, reference: str
) -> None:
    text = f"model: fraud\nreference: {reference}\nrules:\n  - {{metric: psi, critical: 0.2}}\n"
    (error,) = errors(tmp_path, text)
    assert f"{tmp_path / 'fraud.yaml'}:2:" in error and "reference:" in error
    assert f"'{reference}' looks like a URL" in error
    assert "relative to the policy file" in error and "store:NAME" in error


def test_a_reference_path_or_stored_name_still_loads(tmp_path: Path) -> None:
    (tmp_path / "ref.json").write_text("{}")
    for reference in ("store:v2", "ref.json", str(tmp_path / "ref.json")):
        path = tmp_path / "fraud.yaml"
        path.write_text(
            f"model: fraud\nreference: {reference}\nrules:\n  - {{metric: psi, critical: 0.2}}\n"
        )
        assert load_policy(path, None, 300.0, cross_check=False).policy.reference == reference
