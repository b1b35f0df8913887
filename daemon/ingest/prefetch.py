"""Running the parse stage of decoding one slice ahead, on a worker thread.

The loop decodes a poll in slices, in order. Arrow's JSON parse of a slice
(:meth:`~watchkeeper.daemon.ingest.decode.Decoder.prepare`) touches no shared state and
releases the GIL, so a worker parses slice i + 1 while the loop's thread decodes,
admits and summarises slice i. Everything else — admission, the kind registry, window
state, offsets — stays on the loop's thread in the order the records came, so what is
committed, and when, is exactly what it was without the worker: one partition's
batches in order, offsets only with the state that includes them. A parse that fails
unexpectedly is simply not handed on; the decoder then parses the slice itself (and
quarantines as it always did).

>>> with Prefetch() as ahead:
...     [(item, parsed) for item, parsed in ahead.run([1, 2, 3], lambda i: i * 10)]
[(1, 10), (2, 20), (3, 30)]
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")


class Prefetch(Generic[Item, Result]):
    """A one-thread pool running a stage one item ahead of its consumer."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="watchkeeper-parse")

    def run(
        self, items: Sequence[Item], stage: Callable[[Item], Result]
    ) -> Generator[tuple[Item, Result | None], None, None]:
        """Each item with ``stage(item)``, computed while the previous one is consumed;
        None where the stage raised. Leaving early waits for the one in flight."""
        if not items:
            return
        future: Future[Result] = self._pool.submit(stage, items[0])
        try:
            for i, item in enumerate(items):
                current = future
                if i + 1 < len(items):
                    future = self._pool.submit(stage, items[i + 1])
                yield item, _outcome(current)
        finally:
            if not future.cancel():  # never leave a parse running behind
                _outcome(future)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Prefetch[Item, Result]:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _outcome(future: Future[Result]) -> Result | None:
    try:
        return future.result()
    except Exception as exc:  # the consumer redoes the stage itself, and reports it there
        log.debug("prefetched stage failed: %s", exc)
        return None
