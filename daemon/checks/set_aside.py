"""The housekeeping step that moves corrupt stored windows aside.

A window whose base row or a part does not load is skipped by every read, and would be
re-read and re-skipped forever (each check over it, each page). The reads record it
(:class:`~watchkeeper.daemon.store.skipped_windows.SkippedWindows`); this step, run by
the housekeeper each round (leader only), moves each such window's rows, as they were
stored, to ``set_aside_windows`` (:func:`~watchkeeper.daemon.store.window_parts.set_aside`:
the corrupt row marked, the error as the reason) in one transaction per window, so reads
stop paying for it. Nothing is deleted: the rows stay for an operator, status counts them
per model (``skipped_windows.set_aside``), and every move is logged.

The whole window goes, not only its corrupt row: a window without one of its parts would
read as a smaller window with nothing to say so, while reads already left it out whole.
A window met only by another replica's reads is moved once this one's reads (its checks)
meet it, or once that replica leads; a crowded one is moved by whichever replica's commit
folds it (:func:`~watchkeeper.daemon.store.window_parts.fold`). That fold takes the part
its own commit just wrote with the window: those events are in the set-aside counts, not
in reads. Events that arrive for the window afterwards are stored as a new window at the
same key; reads do not flag it as partial (the status page's set-aside counts name the
model, version and window whose other rows are aside).
"""

from __future__ import annotations

import logging

from sqlalchemy.exc import SQLAlchemyError
from watchkeeper.daemon.store import window_parts
from watchkeeper.daemon.store.connection import writing
from watchkeeper.daemon.store.skipped_windows import window_name
from watchkeeper.daemon.store.store import Store
from watchkeeper.errors import WatchkeeperError

log = logging.getLogger(__name__)

PER_ROUND = 16
"""Windows moved per housekeeping round at most: a round's cost stays bounded."""


class SetAside:
    """Moves the windows ``store``'s reads found corrupt aside; returns the rows moved."""

    def __init__(self, store: Store, per_round: int = PER_ROUND) -> None:
        self.store = store
        self.per_round = per_round

    def __call__(self) -> int:
        skipped = self.store.skipped_windows
        moved = 0
        for key in skipped.pending(self.per_round):
            try:
                with writing(self.store.engine, "set a corrupt window aside") as conn:
                    n = window_parts.set_aside(conn, self.store.dialect, key)
            except (WatchkeeperError, SQLAlchemyError, TypeError, ValueError):
                # one window that cannot be moved must not hold up the others behind it
                log.exception("window not set aside, tried again next round: %s", window_name(key))
                continue
            skipped.settled(key)  # after the commit: a failed one is tried next round
            if not n:  # a move is logged by set_aside
                log.info("window not set aside (it loads now, or is gone): %s", window_name(key))
            moved += n
        return moved
