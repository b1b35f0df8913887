"""Windows left out of reads because a stored base row or part is corrupt: counted, logged
once, shown.

A corrupt stored part (:class:`~watchkeeper.detectors.errors.CorruptStateError`, never what
a release writes: a damaged or hand-edited row) makes every read of its window skip the
window, so the same part is met again by every check, page and API call that reads it.
What is counted, and why:

* ``reads``: every read that skipped a window, per model — what the corrupt part costs
  (each one is a window a check or a page did not see). Monotonic per process.
* ``parts``: distinct corrupt (window, part) met by a read or a fold, per model — how
  many things an operator has to look at. Counted, and logged at ERROR, the first time
  this process meets each one; later reads of it are counted in ``reads`` only (a check
  every minute over a corrupt window would otherwise log it every minute).

Memory is bounded: at most :data:`MAX_PARTS` parts are remembered (the most recently met;
one met again after it was forgotten is logged and counted in ``parts`` again, so
``parts`` is exact while fewer than that many are corrupt), counts are kept for at most
:data:`MAX_MODELS` models (the rest under :data:`OTHER`), and every string kept from the
store is cut to :data:`MAX_TEXT` characters. The status document shows the
:data:`RECENT` most recently met parts; ``/metrics`` shows the counts through
:class:`SkippedWindowsCollector`, labelled only by configured model names.

The windows met are also what housekeeping sets aside next (:meth:`SkippedWindows.pending`,
:mod:`~watchkeeper.daemon.checks.set_aside`): once moved, reads stop meeting them, and
their parts stay listed, marked ``set_aside``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, replace
from typing import Any

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector
from watchkeeper.detectors.errors import CorruptStateError

log = logging.getLogger(__name__)

StoredKey = tuple[str, str, int, int]
"""(model, version, window size, window start)."""

MAX_PARTS = 1024
"""Distinct corrupt parts remembered (for logging once and for the status list)."""
MAX_MODELS = 200
"""Models counted by name (``ingest.max_models``' default); further ones count as OTHER."""
MAX_TEXT = 200
"""Longest string kept from a stored row or an error (the store's name columns hold 200)."""
RECENT = 20
"""Parts the status document lists, the most recently met first."""
OTHER = "(other)"
"""The model label of counts whose model is not a configured one (a policy of a model
literally named ``(other)`` would share its series)."""


def bounded(text: str, limit: int = MAX_TEXT) -> str:
    """``text`` cut to ``limit`` characters (an ellipsis marks the cut).

    >>> bounded("abcdef", 4)
    'abc…'
    """
    return text if len(text) <= limit else text[: limit - 1] + "…"


def printable(text: str) -> str:
    """``text`` with its control characters written as escapes: a stored string in a log
    line never forges another line or colours a terminal.

    >>> printable("a\\nb\\x1b")
    'a\\\\nb\\\\x1b'
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class CorruptPartError(CorruptStateError):
    """A stored base row or part of a window that does not load, with the window and the
    part it is (``part`` None: the base row)."""

    def __init__(self, cause: CorruptStateError, key: StoredKey, part: int | None) -> None:
        super().__init__(cause.what, cause.problem, place(key, part))
        self.key, self.part = key, part


def window_name(key: StoredKey) -> str:
    """The window, for a log line (model and version quoted: control characters escaped)."""
    return f"model {key[0]!r} version {key[1]!r}, window {key[3]} of {key[2]} ms"


def place(key: StoredKey, part: int | None) -> str:
    where = "its base row" if part is None else f"part {part}"
    return f"{window_name(key)}, {where}"


@dataclass(frozen=True)
class SkippedPart:
    """One corrupt stored part as the status document lists it (strings bounded)."""

    model: str
    version: str
    window_size_ms: int
    window_start_ms: int
    part: int | None
    """The ``window_parts`` row id; None: the window's base row (``windows``)."""
    what: str
    problem: str
    first_seen_ms: int
    last_seen_ms: int
    reads: int
    """Reads that skipped its window since this process first met it."""
    set_aside: bool = False
    """Housekeeping moved its window to ``set_aside_windows`` (or found it repaired)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SkippedWindows:
    """Window reads skipped because a stored base or part is corrupt (see the module
    docstring); the store's readers (checks, the API, the console, ingest) share one, from
    several threads: every method holds one lock."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._reads: Counter[str] = Counter()
        self._parts: Counter[str] = Counter()
        self._named: set[str] = set()  # the models counted by name (at most MAX_MODELS)
        self._seen: OrderedDict[tuple[StoredKey, int | None], SkippedPart] = OrderedDict()

    def _model(self, model: str) -> str:
        """The name ``model`` is counted under: itself (cut) while fewer than MAX_MODELS
        are named, else OTHER (the caller holds the lock)."""
        name = bounded(model)
        if name in self._named or len(self._named) < MAX_MODELS:
            self._named.add(name)
            return name
        return OTHER

    def record(self, error: CorruptPartError, read: bool = True) -> bool:
        """Count a read that skipped ``error``'s window (``read`` False: a fold met it, no
        read was skipped); log it if this process has not met that part yet (returns
        whether it logged)."""
        key, part = error.key, error.part
        now_ms = int(self._clock() * 1000)
        with self._lock:
            model = self._model(key[0])
            if read:
                self._reads[model] += 1
            seen = self._seen.pop((key, part), None)
            # new: never met, or met before its window was set aside (written again since)
            new = seen is None or seen.set_aside
            if seen is None or seen.set_aside:
                self._parts[model] += 1
                seen = SkippedPart(
                    model=bounded(key[0]),
                    version=bounded(key[1]),
                    window_size_ms=key[2],
                    window_start_ms=key[3],
                    part=part,
                    what=bounded(error.what),
                    problem=bounded(error.problem),
                    first_seen_ms=now_ms,
                    last_seen_ms=now_ms,
                    reads=1,
                )
                if len(self._seen) >= MAX_PARTS:
                    self._seen.popitem(last=False)  # the least recently met
            else:
                seen = replace(seen, last_seen_ms=now_ms, reads=seen.reads + 1)
            self._seen[(key, part)] = seen  # the most recently met last
        if new:  # outside the lock: a slow log handler never holds a reader up
            log.error(
                "%s: %s (logged once per part; counted on every read)",
                "window skipped by reads" if read else "window not folded",
                printable(bounded(str(error), 2 * MAX_TEXT + 100)),
            )
        return new

    def pending(self, limit: int) -> list[StoredKey]:
        """Up to ``limit`` windows with a corrupt part met and not yet set aside, the
        least recently met first (what housekeeping moves next)."""
        out: list[StoredKey] = []
        with self._lock:
            for (key, _), part in self._seen.items():
                if len(out) >= limit:
                    break
                if not part.set_aside and key not in out:
                    out.append(key)
        return out

    def settled(self, key: StoredKey) -> None:
        """Housekeeping set the window aside (or found it repaired): not pending any more;
        still listed and counted. A part of it met again later is met anew."""
        with self._lock:
            mine = [(k, part_id) for k, part_id in self._seen if k == key]
            for entry in mine:
                self._seen[entry] = replace(self._seen[entry], set_aside=True)

    def counts(self) -> dict[str, int]:
        """Skipped reads per model since the process started."""
        with self._lock:
            return dict(self._reads)

    def part_counts(self) -> dict[str, int]:
        """Distinct corrupt parts met per model since the process started."""
        with self._lock:
            return dict(self._parts)

    def recent(self, limit: int = RECENT) -> list[SkippedPart]:
        """The ``limit`` most recently met corrupt parts, the most recent first."""
        with self._lock:
            newest: Iterator[SkippedPart] = reversed(self._seen.values())
            return [p for _, p in zip(range(limit), newest, strict=False)]

    def document(self, limit: int = RECENT) -> dict[str, Any]:
        """The status document's section (JSON-able)."""
        with self._lock:
            reads, parts = dict(self._reads), dict(self._parts)
        return {
            "reads": reads,
            "parts": parts,
            "recent": [p.to_dict() for p in self.recent(limit)],
        }


class SkippedWindowsCollector(Collector):
    """``watchkeeper_window_reads_skipped_total`` and
    ``watchkeeper_corrupt_window_parts_total`` per model, read from a
    :class:`SkippedWindows` at each scrape.

    The ``model`` label is a configured model name (``models()``: the loaded policies'
    models) or :data:`OTHER`: a model name read from a damaged row never becomes a label
    value, so the series stay as many as the policies' models plus one."""

    def __init__(self, skipped: SkippedWindows, models: Callable[[], Iterable[str]]) -> None:
        self.skipped = skipped
        self.models = models

    def collect(self) -> Iterator[CounterMetricFamily]:
        known = set(self.models())
        for name, doc, counts in (
            (
                "watchkeeper_window_reads_skipped",
                "Window reads that left a window out because a stored part of it is corrupt "
                "(every read counts; the window's numbers are missing from that check or "
                "page).",
                self.skipped.counts(),
            ),
            (
                "watchkeeper_corrupt_window_parts",
                "Distinct corrupt stored window parts (or base rows) met by reads or folds, "
                "each logged once (status: skipped_windows).",
                self.skipped.part_counts(),
            ),
        ):
            family = CounterMetricFamily(name, doc, labels=["model"])
            by_label: Counter[str] = Counter()
            for model, n in counts.items():
                by_label[model if model in known else OTHER] += n
            for label, n in sorted(by_label.items()):
                family.add_metric([label], n)
            yield family
