"""What the promotion conditions of a ``shadow`` section (:mod:`.shadow`) and of a
``compare`` section (:mod:`.compare`) share: their comparison operators, and the reading
of a ``when:`` list, whose strings each section's own condition class parses.

>>> import pydantic
>>> from typing import Annotated
>>> class C(pydantic.BaseModel):
...     when: Annotated[tuple[int, ...], pydantic.BeforeValidator(parsed_each(len, "n > 1"))]
>>> C(when=["ab", "abc"]).when
(2, 3)
>>> before = parsed_each(len, "n > 1")
>>> for wrong in ("ab", ["ab", 5]):
...     try:
...         before(wrong)
...     except ValueError as exc:
...         print(exc)
`when` must be a list of conditions, e.g. ["n > 1"], not a single string ('ab')
`when` item 2 is 5, not a condition: write each as a string, e.g. "n > 1"
>>> OPS[">="](1.0, 1.0), OPS["<"](1.0, 1.0)
(True, False)
"""

from __future__ import annotations

import operator
from collections.abc import Callable

import pydantic

OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
}


def parsed_each(parse: Callable[[str], object], example: str) -> Callable[[object], object]:
    """A ``when:`` list's validator (before the field's own): each string parsed by
    ``parse`` (which raises ``ValueError`` with the file's message), conditions already
    built (or written as mappings of their fields) kept. Anything else is one error that
    says what a ``when`` is, with ``example`` — not pydantic's "Input should be a valid
    tuple", or a wrong item's error plus a second one about the list's length."""
    shape = f'e.g. ["{example}"]'

    def before(value: object) -> object:
        if isinstance(value, str):
            raise ValueError(
                f"`when` must be a list of conditions, {shape}, not a single string "
                f"('{value[:200]}')"
            )
        if not isinstance(value, list | tuple):
            raise ValueError(f"`when` must be a list of conditions, {shape}")
        if not value:
            raise ValueError(f"`when` needs at least one condition, {shape}")
        out = []
        for i, item in enumerate(value, 1):
            if isinstance(item, str):
                out.append(parse(item))
            elif isinstance(item, dict | pydantic.BaseModel):
                out.append(item)
            else:
                raise ValueError(
                    f"`when` item {i} is {str(item)[:200]}, not a condition: write each as a "
                    f'string, e.g. "{example}"'
                )
        return tuple(out)

    return before
