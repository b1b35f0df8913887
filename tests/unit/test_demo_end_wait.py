"""The demo's way out waits for the daemon to read the traffic sent only after a timeline
that ran to its end (or ``--duration``): Ctrl-C or SIGTERM stops at once (the README
promises Ctrl-C always stops cleanly), a failed start has nothing to add up, and a daemon
that died is said to have, not waited for in silence."""

from __future__ import annotations

import itertools

import pytest
from watchkeeper.daemon.demo.run import end_wait


@pytest.mark.parametrize(
    ("played", "interrupted", "alive"), list(itertools.product([True, False], repeat=3))
)
def test_only_a_played_timeline_waits_for_a_live_daemon(
    played: bool, interrupted: bool, alive: bool
) -> None:
    why = end_wait(played, interrupted, alive)
    assert (why is None) == (played and not interrupted and alive)
    if interrupted:
        assert why is not None and why.startswith("interrupted")
    elif not alive:
        assert why is not None and "daemon has stopped" in why


def test_a_failed_start_skips_the_wait_without_a_word() -> None:
    assert end_wait(played=False, interrupted=False, daemon_alive=True) == ""
