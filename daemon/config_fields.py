"""Field types and the section base the daemon config's modules share."""

from __future__ import annotations

from typing import Annotated

import pydantic
from pydantic import ConfigDict, Field

NonEmpty = Annotated[str, Field(min_length=1)]
PositiveInt = Annotated[int, Field(gt=0)]


class StrictSection(pydantic.BaseModel):
    """A config section: unknown keys are errors, loaded values frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)
