"""The ``shadow`` section of the daemon config: how candidate models run on this machine.

What to evaluate (candidates, inputs, promotion criteria) lives in policy files; this is
about the host: threads, execution providers, where model files may come from, and how
much of the machine shadow evaluation may take from ingestion.
"""

from __future__ import annotations

from typing import Annotated

import pydantic
from pydantic import ConfigDict, Field
from watchkeeper.policies.durations import Duration


class ShadowConfig(pydantic.BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    """ONNX Runtime execution providers in order of preference (e.g. CUDAExecutionProvider)."""
    intra_op_threads: Annotated[int, Field(ge=1, le=256)] = 1
    inter_op_threads: Annotated[int, Field(ge=1, le=256)] = 1
    model_dirs: tuple[str, ...] = ()
    """Directories model files may be loaded from, besides each policy file's own."""
    max_model_bytes: Annotated[int, Field(gt=0)] = 512 * 1024 * 1024
    queue_batches: Annotated[int, Field(ge=1, le=100_000)] = 64
    """Sampled batches waiting for inference; beyond this, rows are dropped and counted."""
    max_cpu_share: Annotated[float, Field(gt=0, le=1)] = 0.25
    """Share of one core inference may use (duty cycle): the rest stays with ingestion."""
    attribution_cpu_share: Annotated[float, Field(gt=0, le=1)] = 0.5
    """Share of that budget feature attributions may take; rows chosen for attribution
    beyond it are skipped and counted, so candidates' own evaluation keeps its time."""
    flush_interval: Duration = Field(default=10.0, gt=0)
    """How often comparison summaries are committed to the store."""
    max_pending_labels: Annotated[int, Field(ge=0)] = 200_000
    """Sampled rows kept waiting for their label (oldest dropped first)."""
