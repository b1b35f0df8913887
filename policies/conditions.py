"""What the promotion conditions of a ``shadow`` section (:mod:`.shadow`) and of a
``compare`` section (:mod:`.compare`) share: their comparison operators, and the reading
of a ``when:`` list, whose strings each section's own condition class parses.

>>> import pydantic
>>> from typing import Annotated
>>> class C(pydantic.BaseModel):
...     when: Annotated[tuple[int, ...], pydantic.BeforeValidator(parsed_each(len))]
>>> C(when=["ab", "abc", 7]).when
(2, 3, 7)
>>> OPS[">="](1.0, 1.0), OPS["<"](1.0, 1.0)
(True, False)
"""

from __future__ import annotations

import operator
from collections.abc import Callable

OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
}


def parsed_each(parse: Callable[[str], object]) -> Callable[[object], object]:
    """A ``when:`` list's validator (before the field's own): each string parsed by
    ``parse`` (which raises ``ValueError`` with the file's message), conditions already
    built kept, anything else left to the field's type to reject."""

    def before(value: object) -> object:
        if isinstance(value, list | tuple):
            return tuple(parse(v) if isinstance(v, str) else v for v in value)
        return value

    return before
