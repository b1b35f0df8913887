"""The ``shadow`` section of a policy file: candidate models and when to promote one.

::

    shadow:
      task: classification            # or regression
      inputs:                         # how a feature row becomes the model's input tensor
        name: X                       # the ONNX input (default: the model's only input)
        features: [amount, age, country]
        dtype: float32
        encodings: {country: {DE: 0, FR: 1, US: 2}}   # categorical → number (else `unknown`)
      outputs: {label: label, probabilities: probabilities}   # or {score: variable}
      baseline: fraud-fp32.onnx       # optional: production's model, run beside for latency
      sample_rate: 0.1                # share of rows run through each candidate
      protected: [age]                # features whose share of attribution must not move
      attributions:                   # explanation consistency (needs `baseline`)
        sample_rate: 0.01             # share of each candidate's shadow rows attributed
        max_rows_per_window: 200
      candidates:
        - {name: int8-dynamic, onnx: fraud-int8.onnx}
        - {name: fp16, onnx: fraud-fp16.onnx, sample_rate: 0.02}
      promotion:
        when:
          - shadow_agreement >= 0.99
          - shadow_accuracy_delta >= -0.005
          - shadow_latency_p99_ratio <= 0.7
          - shadow_attribution_rank_corr >= 0.9
          - shadow_protected_attribution_delta <= 0.02
        min_rows: 10000               # no decision before this many shadow rows
        over: 24h                     # the rows the decision looks at
        on_promote: [oncall-slack, promote]
        on_reject: [oncall-slack]

Paths are relative to the policy file. A decision is a recommendation sent to channels,
never a switch: ``promote`` when every condition holds over at least ``min_rows`` rows,
``reject`` (with the failing conditions as the reason) when one does not.

Attributions: on a sampled subset of the shadow rows, production's model (``baseline``)
and each candidate are explained with interventional Shapley values
(:mod:`watchkeeper.detectors.shapley`) against a background sample of the reference, and
compared per window (:mod:`watchkeeper.detectors.attribution`): the metrics
``shadow_attribution_rank_corr``, ``shadow_attribution_topk_overlap`` and
``shadow_protected_attribution_delta`` (the largest change in share of attribution of a
``protected`` feature).

Without candidates (``candidates: []`` or omitted) a section with ``baseline`` and
attributions on explains production alone: its rows are sampled at
``attributions.sample_rate`` for ``attribution_shift``; ``promotion`` then has nothing to
decide and is an error, as is a section with neither candidates nor those attributions.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Literal

import pydantic
from pydantic import ConfigDict, Field
from pydantic_core import InitErrorDetails, PydanticCustomError, ValidationError
from watchkeeper.detectors.attribution import AttributionComparison
from watchkeeper.detectors.registry import METRICS
from watchkeeper.policies.conditions import OPS, parsed_each
from watchkeeper.policies.durations import Duration

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
_CONDITION = re.compile(r"^\s*([a-z0-9_]+)\s*(>=|<=|>|<)\s*(-?\d+(?:\.\d*)?(?:[eE]-?\d+)?)\s*$")


class _Strict(pydantic.BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Inputs(_Strict):
    name: str | None = None
    """The ONNX input the row goes to; default: the model's only input."""
    features: Annotated[tuple[str, ...], Field(min_length=1)]
    """Features in the order the model expects them (one input column each)."""
    dtype: Literal["float32", "float64", "int64"] = "float32"
    encodings: dict[str, dict[str, float]] = {}
    """Numeric codes of a categorical feature's values, as the model was trained with."""
    unknown: float = -1.0
    """Code of a category the encoding does not list."""
    missing: float | None = None
    """Value given for a null or absent feature (default NaN; int64 inputs need one)."""

    @pydantic.model_validator(mode="after")
    def _check(self) -> Inputs:
        stray = sorted(set(self.encodings) - set(self.features))
        if stray:
            raise ValueError(f"encodings name features not in inputs.features: {stray}")
        if self.dtype == "int64" and self.missing is None:
            raise ValueError("an int64 input needs `missing`: the value for absent features")
        return self


class Outputs(_Strict):
    label: str | None = None
    """Output holding the predicted class (classification)."""
    probabilities: str | None = None
    """Output holding class probabilities, shape [n, classes] (or a ZipMap sequence)."""
    score: str | None = None
    """Output holding a score or regression value, shape [n] or [n, 1]."""
    positive_class: Annotated[int, Field(ge=0)] = 1
    """Column of ``probabilities`` that is the score of a binary classifier."""

    @pydantic.model_validator(mode="after")
    def _one(self) -> Outputs:
        if self.label is None and self.probabilities is None and self.score is None:
            raise ValueError("name at least one output: label, probabilities or score")
        return self


class Candidate(_Strict):
    name: Annotated[str, Field(pattern=NAME)]
    onnx: Annotated[str, Field(min_length=1)]
    inputs: Inputs | None = None
    outputs: Outputs | None = None
    sample_rate: Annotated[float, Field(gt=0, le=1)] | None = None
    batch_size: Annotated[int, Field(ge=1, le=65536)] | None = None


class Condition(_Strict):
    """One promotion criterion, written ``metric op number`` (``shadow_agreement >= 0.99``)."""

    metric: str
    op: Literal[">=", "<=", ">", "<"]
    bound: float

    @classmethod
    def parse(cls, text: str) -> Condition:
        m = _CONDITION.match(text)
        if m is None:
            raise ValueError(
                f"'{text[:200]}' is not a condition: write it as `metric op number`, op one of "
                ">=, <=, >, < (e.g. `shadow_agreement >= 0.99`)"
            )
        metric, op, bound = m.groups()
        if not metric.startswith("shadow_") or metric not in METRICS:
            import difflib

            names = sorted(n for n in METRICS if n.startswith("shadow_"))
            close = difflib.get_close_matches(metric, names, n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ValueError(
                f"'{metric[:200]}' is not a shadow metric{hint} (known: {', '.join(names)})"
            )
        if not math.isfinite(float(bound)):  # 1e999 reads as inf: always true or never
            raise ValueError(f"'{bound}' in '{text[:200]}' is not a finite number")
        return cls(metric=metric, op=op, bound=float(bound))  # type: ignore[arg-type]

    def holds(self, value: float) -> bool:
        return OPS[self.op](value, self.bound)

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.bound:g}"


class Promotion(_Strict):
    when: Annotated[
        tuple[Condition, ...],
        Field(min_length=1),
        pydantic.BeforeValidator(parsed_each(Condition.parse, "shadow_agreement >= 0.99")),
    ]
    min_rows: Annotated[int, Field(ge=1)] = 10_000
    min_labelled_rows: Annotated[int, Field(ge=1)] = 500
    """Rows with labels a decision needs when a condition is label-based (``*_delta``)."""
    over: Duration = Field(default=86_400.0, gt=0)
    on_promote: tuple[str, ...] = ()
    on_reject: tuple[str, ...] = ()


class Attributions(_Strict):
    """How shadow rows are explained (see the module docstring); defaults are cheap."""

    enabled: bool = True
    """Attributions run when production's model file (``shadow.baseline``) is given."""
    sample_rate: Annotated[float, Field(gt=0, le=1)] = 0.01
    """Share of each candidate's shadow rows attributed (by record key: a subset of them);
    without candidates, the share of production's rows sampled and attributed."""
    max_rows_per_window: Annotated[int, Field(ge=1, le=100_000)] = 200
    """Attributed rows per window and candidate (or of production alone, without
    candidates), at most; further ones are not sampled."""
    background_rows: Annotated[int, Field(ge=1, le=1000)] = 50
    """Reference rows the absent features are taken from (cost grows linearly with it)."""
    permutations: Annotated[int, Field(ge=2, le=1000, multiple_of=2)] = 10
    """Feature orderings per row when Shapley values are sampled (even: antithetic pairs)."""
    top_k: Annotated[int, Field(ge=1, le=1000)] = 5
    """Size of the top-feature sets ``shadow_attribution_topk_overlap`` compares."""
    min_rows: Annotated[int, Field(ge=1)] = 30
    """Attributed rows the attribution metrics need before they have a value."""
    reference_rows: Annotated[int, Field(ge=1, le=10_000)] = 200
    """Rows of the reference's sample (apart from the background) production is explained
    on once per reference, the baseline ``attribution_shift`` compares windows with."""


class Shadow(_Strict):
    task: Literal["classification", "regression"]
    inputs: Inputs
    outputs: Outputs
    baseline: str | None = None
    """Production's own ONNX file, run on the same rows so latency compares like with like."""
    sample_rate: Annotated[float, Field(gt=0, le=1)] = 0.1
    batch_size: Annotated[int, Field(ge=1, le=65536)] = 256
    candidates: tuple[Candidate, ...] = ()
    """Models run beside production; none: production's attributions only (its
    ``attribution_shift``), which needs ``baseline`` with attributions on."""
    promotion: Promotion | None = None
    protected: tuple[str, ...] = ()
    """Input features whose share of attribution must not move (``inputs.features``)."""
    attributions: Attributions = Attributions()

    @pydantic.model_validator(mode="after")
    def _check(self) -> Shadow:
        if not self.candidates:
            self._check_production_only()
        unknown = [(i, p) for i, p in enumerate(self.protected) if p not in self.inputs.features]
        if unknown:
            # raised located at shadow.protected[i], so the message names that line
            known = ", ".join(self.inputs.features)
            raise ValidationError.from_exception_data(
                "Shadow",
                [
                    InitErrorDetails(
                        type=PydanticCustomError(
                            "value_error",
                            "'{name}' is not an input feature (inputs.features: {known})",
                            {"name": name, "known": known},
                        ),
                        loc=("protected", i),
                        input=name,
                    )
                    for i, name in unknown
                ],
            )
        names = [c.name for c in self.candidates]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"candidate names must be distinct; repeated: {twice}")
        outputs = [self.outputs, *(c.outputs for c in self.candidates if c.outputs)]
        if self.task == "classification":
            for o in outputs:
                if o.label is None and o.probabilities is None:
                    raise ValueError("a classifier needs outputs.label or outputs.probabilities")
        else:
            for o in outputs:
                if o.score is None:
                    raise ValueError("a regressor needs outputs.score")
        return self

    def _check_production_only(self) -> None:
        """Without candidates the section only explains production: it needs its model
        file and attributions on, and has nothing to promote (errors located at the field)."""
        problems: list[tuple[tuple[str, ...], str]] = []
        if self.baseline is None or not self.attributions.enabled:
            problems.append(
                (
                    ("candidates",),
                    "a shadow section needs candidates or attributions of production "
                    "(`baseline` with `attributions` enabled); it has neither",
                )
            )
        if self.promotion is not None:
            problems.append(
                (("promotion",), "promotion decides between candidates: the section has none")
            )
        if problems:
            raise ValidationError.from_exception_data(
                "Shadow",
                [
                    InitErrorDetails(
                        type=PydanticCustomError("value_error", message),
                        loc=loc,
                        input=[],
                    )
                    for loc, message in problems
                ],
            )

    def production_only(self) -> bool:
        """No candidates: the shadow worker samples production's rows at
        ``attributions.sample_rate`` and explains them for ``attribution_shift`` only."""
        return not self.candidates

    def inputs_of(self, candidate: Candidate) -> Inputs:
        return candidate.inputs or self.inputs

    def outputs_of(self, candidate: Candidate) -> Outputs:
        return candidate.outputs or self.outputs

    def rate_of(self, candidate: Candidate) -> float:
        return candidate.sample_rate or self.sample_rate

    def batch_of(self, candidate: Candidate) -> int:
        return candidate.batch_size or self.batch_size

    def explained(self) -> bool:
        """Whether shadow rows are attributed: enabled, with production's model file."""
        return self.attributions.enabled and self.baseline is not None

    def attribution_comparison(self) -> AttributionComparison:
        """How this policy compares a candidate's attributions with production's."""
        a = self.attributions
        return AttributionComparison(top_k=a.top_k, protected=self.protected, min_rows=a.min_rows)
