"""Leadership by a PostgreSQL advisory lock: one leader per group, handed over when the
leader closes or loses its store; a SQLite store's only daemon always leads."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import create_engine, make_url
from watchkeeper.daemon.checks.leadership import Leadership, lock_key

from tests.support import TcpProxy, wait_until

pytestmark = pytest.mark.postgres


def test_lock_keys_are_stable_signed_64_bit_and_differ_by_group() -> None:
    assert lock_key("watchkeeper") == lock_key("watchkeeper")
    assert lock_key("a") != lock_key("b")
    assert -(2**63) <= lock_key("watchkeeper") < 2**63


def test_a_sqlite_store_has_one_daemon_and_it_leads(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 's.db'}")
    try:
        leadership = Leadership(engine, "g", CollectorRegistry()).start()
        assert leadership.is_leader()
        leadership.close()
        assert not leadership.is_leader()
    finally:
        engine.dispose()


def test_one_leader_per_group_handed_over_on_close(pg_database: str) -> None:
    engine = create_engine(pg_database)
    changes: list[tuple[str, bool]] = []
    try:
        first = Leadership(
            engine, "g", CollectorRegistry(), 0.2, lambda v: changes.append(("first", v))
        ).start()
        second = Leadership(
            engine, "g", CollectorRegistry(), 0.2, lambda v: changes.append(("second", v))
        ).start()
        other_group = Leadership(engine, "h", CollectorRegistry(), 0.2).start()
        try:
            assert first.is_leader() and not second.is_leader()
            assert other_group.is_leader()  # a different group has its own leader
            first.close()
            wait_until(second.is_leader, timeout=5)
            assert changes == [("first", True), ("first", False), ("second", True)]
        finally:
            for leadership in (first, second, other_group):
                leadership.close()
    finally:
        engine.dispose()


def test_a_leader_that_loses_its_store_steps_down_and_the_other_takes_over(
    pg_database: str,
) -> None:
    url = make_url(pg_database)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432).start()
    through_proxy = create_engine(url.set(host="127.0.0.1", port=proxy.port))
    direct = create_engine(url)
    try:
        cut_off = Leadership(through_proxy, "g", CollectorRegistry(), 0.2).start()
        standby = Leadership(direct, "g", CollectorRegistry(), 0.2).start()
        try:
            assert cut_off.is_leader() and not standby.is_leader()
            proxy.stop()  # the network between the leader and PostgreSQL fails
            wait_until(lambda: not cut_off.is_leader(), timeout=5)
            # the server saw the session end with the cut: its lock is free
            wait_until(standby.is_leader, timeout=5)
            assert not cut_off.is_leader()
        finally:
            cut_off.close()
            standby.close()
    finally:
        proxy.stop()
        through_proxy.dispose()
        direct.dispose()
