"""Every store read and write fails the same way when the database cannot be reached:
:class:`StoreUnavailableError`, retriable, naming the operation — never a raw SQLAlchemy
error (the outbox and the incident reads let those through before)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine
from sqlalchemy.pool import NullPool
from watchkeeper.daemon.errors import StoreUnavailableError
from watchkeeper.daemon.notify.incidents import IncidentStore
from watchkeeper.daemon.notify.outbox import Outbox
from watchkeeper.daemon.notify.silences import Silences
from watchkeeper.daemon.shadow.store import ShadowStore


@pytest.fixture
def unreachable(tmp_path: Path) -> Iterator[Engine]:
    # a SQLite file under a directory that does not exist: every connect fails
    engine = create_engine(f"sqlite:///{tmp_path / 'absent' / 'store.db'}", poolclass=NullPool)
    yield engine
    engine.dispose()


CALLS: dict[str, Callable[[Engine], Any]] = {
    "outbox.add": lambda e: Outbox(e).add([], 0),
    "outbox.due": lambda e: Outbox(e).due(0, group_wait_ms=0, group_interval_ms=0),
    "outbox.mark_sent": lambda e: Outbox(e).mark_sent(1, 0, 1),
    "outbox.mark_retry": lambda e: Outbox(e).mark_retry(1, 1, 0, "x"),
    "outbox.mark_failed": lambda e: Outbox(e).mark_failed(1, 1, "x"),
    "outbox.depth": lambda e: Outbox(e).depth(),
    "outbox.rows": lambda e: Outbox(e).rows(),
    "outbox.channel_state": lambda e: Outbox(e).channel_state("c", "f"),
    "outbox.set_channel_state": lambda e: Outbox(e).set_channel_state("c", "f", {}),
    "incidents.incidents": lambda e: IncidentStore(e).incidents(),
    "incidents.evaluations": lambda e: IncidentStore(e).evaluations(),
    "incidents.cursor": lambda e: IncidentStore(e).cursor("p"),
    "incidents.state": lambda e: IncidentStore(e).state("p"),
    "silences.active": lambda e: Silences(e).active(),
    "silences.expire": lambda e: Silences(e).expire(1),
    "shadow.candidates": lambda e: ShadowStore(e).candidates(),
    "shadow.offsets": lambda e: ShadowStore(e).offsets("g"),
    "shadow.decisions": lambda e: ShadowStore(e).decisions(),
}


@pytest.mark.parametrize("call", sorted(CALLS))
def test_an_unreachable_store_is_one_retriable_error(call: str, unreachable: Engine) -> None:
    with pytest.raises(StoreUnavailableError) as caught:
        CALLS[call](unreachable)
    assert caught.value.retriable
    assert str(caught.value).startswith("store unavailable during ")
