"""Query parameters of the API, checked: a bad one is a 400 naming it and what is allowed,
never a 500 (``limit=abc``), an unbounded query (``limit=-1``) or a silent empty answer
(``state=bogus``)."""

from __future__ import annotations

from collections.abc import Iterable

from watchkeeper.daemon.http.routes import Request
from watchkeeper.errors import WatchkeeperError

INCIDENT_STATES = ("open", "resolved", "all")
MAX_PARAM_CHARS = 200


class ParamError(WatchkeeperError, ValueError):
    """A query parameter the API does not accept; the message says why (a 400)."""

    retriable = False


def query_params(request: Request, allowed: Iterable[str]) -> dict[str, str]:
    """One value per known parameter; unknown or repeated parameters are errors."""
    known = set(allowed)
    out: dict[str, str] = {}
    for name, values in request.query.items():
        if name not in known:
            shown = name[:40].encode("unicode_escape").decode()
            raise ParamError(f"unknown parameter '{shown}' (allowed: {', '.join(sorted(known))})")
        if len(values) != 1:
            raise ParamError(f"{name}: give it once")
        if len(values[0]) > MAX_PARAM_CHARS:
            raise ParamError(f"{name}: longer than {MAX_PARAM_CHARS} characters")
        out[name] = values[0]
    return out


def bounded_int(params: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    """An integer parameter in ``[low, high]``."""
    text = params.get(name)
    if text is None:
        return default
    if not text.isascii() or not text.lstrip("-").isdigit() or len(text) > 12:
        raise ParamError(f"{name}: expected an integer from {low} to {high}")
    value = int(text)
    if not low <= value <= high:
        raise ParamError(f"{name}: expected an integer from {low} to {high}, got {value}")
    return value


def choice(params: dict[str, str], name: str, allowed: Iterable[str], default: str) -> str:
    """A parameter that takes one of ``allowed``."""
    options = tuple(allowed)
    value = params.get(name, default)
    if value not in options:
        raise ParamError(f"{name}: expected one of {', '.join(options)}")
    return value
