"""The loader's cross-checks on a policy file that failed its schema.

``load_policy`` cross-checks a valid policy (channels, window, files); a file with
schema errors used to be cross-checked only once they were fixed, so ``policy check``
revealed its errors in rounds (an unknown metric, then an undefined channel). These
read the same facts from the raw document, wherever it still has their shape, so one
run reports them all; a part the schema refused is left to the schema's error.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from watchkeeper.policies.durations import parse_duration

Where = tuple[str | int, ...]
SEVERITY_KEYS = ("warn", "critical")


def off_grid(window_size_s: float) -> str:
    """The message of a policy window that is not a multiple of the daemon's windows."""
    return f"must be a multiple of the daemon's windows.size ({window_size_s:g}s)"


def undefined_channel(name: str, channels: set[str]) -> str:
    """The message of a channel name ``alerts.channels`` does not define."""
    known = ", ".join(sorted(channels)) or "none are configured"
    return f"channel '{name}' is not defined in alerts.channels ({known})"


def missing_reference(path: Path) -> str:
    """The message of a reference profile file that is not there."""
    return f"no reference profile file at {path}"


def _names(value: Any, path: Where) -> Iterator[tuple[Where, str]]:
    if isinstance(value, list):
        for j, name in enumerate(value):
            if isinstance(name, str):
                yield (*path, j), name


def channel_names(data: Mapping[str, Any]) -> Iterator[tuple[Where, str]]:
    """Every channel a raw policy document names, with where.

    >>> doc = {"rules": [{"actions": {"critical": ["consol"]}}, "x"],
    ...        "compare": {"promotion": {"on_reject": ["pager"]}}}
    >>> list(channel_names(doc))
    [(('rules', 0, 'actions', 'critical', 0), 'consol'), (('compare', 'promotion', 'on_reject', 0), 'pager')]
    """  # noqa: E501
    rules = data.get("rules")
    for i, rule in enumerate(rules if isinstance(rules, list) else []):
        actions = rule.get("actions") if isinstance(rule, Mapping) else None
        if isinstance(actions, Mapping):
            for severity in SEVERITY_KEYS:
                yield from _names(actions.get(severity), ("rules", i, "actions", severity))
    for section in ("shadow", "compare"):
        part = data.get(section)
        promotion = part.get("promotion") if isinstance(part, Mapping) else None
        if isinstance(promotion, Mapping):
            for key in ("on_promote", "on_reject"):
                yield from _names(promotion.get(key), (section, "promotion", key))


def raw_problems(
    data: Any, directory: Path, channels: set[str] | None, window_size_s: float | None
) -> list[tuple[Where, str]]:
    """Undefined channels, a window off the daemon's grid and a missing reference file,
    read from the raw document (see the module docstring)."""
    if not isinstance(data, Mapping):
        return []
    out: list[tuple[Where, str]] = []
    if window_size_s and "window" in data:
        try:
            window = parse_duration(data["window"])
        except ValueError:
            window = None  # the schema says so
        if window and window % window_size_s:
            out.append((("window",), off_grid(window_size_s)))
    if channels is not None:
        for where, name in channel_names(data):
            if name not in channels:
                out.append((where, undefined_channel(name, channels)))
    ref = data.get("reference")
    if isinstance(ref, str) and ref and not ref.startswith("store:") and ":" not in ref[:8]:
        path = Path(ref) if Path(ref).is_absolute() else directory / ref
        if not path.is_file():
            out.append((("reference",), missing_reference(path)))
    return out
