"""When the label join's rows make a commit due (daemon/ingest/join_flush.py): a buffer
holding both roles commits at the end of a poll, one role waits for the other while it can
still give something, and the cap and the time bound hold whatever the streams do."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from watchkeeper.daemon.ingest.join_flush import JoinFlushRule


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def rule(clock: Clock, rows: int = 10, cap: int = 30, wait_s: float = 2.0) -> JoinFlushRule:
    return JoinFlushRule(rows=rows, cap=cap, wait_s=wait_s, clock=clock)


def test_below_the_row_bound_nothing_is_due_and_nothing_waits() -> None:
    r = rule(Clock())
    assert not r.due(9, 0, partner_idle=True, end_of_poll=True)
    assert not r.due(5, 4, partner_idle=True, end_of_poll=True)
    assert r.waited == 0 and not r.reasons


def test_a_buffer_of_both_roles_is_due_at_the_end_of_a_poll_only() -> None:
    r = rule(Clock())
    # between the slices of the poll that brought the labels: the rest of it may be labels
    assert not r.due(10, 2, partner_idle=False, end_of_poll=False)
    assert r.due(10, 8, partner_idle=False, end_of_poll=True)
    assert r.reasons == {"both": 1}


def test_one_role_waits_while_the_other_can_still_give() -> None:
    clock = Clock()
    r = rule(clock)
    assert r.missing(12, 0) == "labels" and r.missing(0, 12) == "predictions"
    assert r.missing(3, 3) is None and r.missing(0, 0) is None
    for _ in range(3):
        assert not r.due(12, 0, partner_idle=False, end_of_poll=True)
        clock.now += 0.5
    assert r.waited == 3 and not r.reasons
    # the labels partitions caught up (or paused, or none assigned): due, between slices too
    assert r.due(12, 0, partner_idle=True, end_of_poll=False)
    assert r.reasons == {"partner_idle": 1}


def test_the_cap_holds_whatever_the_streams_do() -> None:
    r = rule(Clock())
    assert not r.due(29, 0, partner_idle=False, end_of_poll=False)
    assert r.due(30, 0, partner_idle=False, end_of_poll=False)
    assert r.due(0, 31, partner_idle=False, end_of_poll=False)
    assert r.reasons == {"cap": 2}


def test_a_stalled_partner_holds_the_rows_no_longer_than_the_wait() -> None:
    """A labels partition neither caught up nor paused (its broker unreachable): the
    predictions wait ``wait_s`` from when the bound was reached, then commit (and wait for
    their labels in the store, counted as before)."""
    clock = Clock()
    r = rule(clock, wait_s=2.0)
    assert not r.due(10, 0, partner_idle=False, end_of_poll=True)  # reached at 100.0
    clock.now = 101.9
    assert not r.due(15, 0, partner_idle=False, end_of_poll=False)
    clock.now = 102.0
    assert r.due(15, 0, partner_idle=False, end_of_poll=False)
    assert r.reasons == {"wait": 1} and r.waited == 2
    # a commit (for whatever reason) starts the wait afresh
    r.committed()
    clock.now = 110.0
    assert not r.due(10, 0, partner_idle=False, end_of_poll=True)
    clock.now = 111.0
    assert not r.due(10, 0, partner_idle=False, end_of_poll=True)
    clock.now = 112.0
    assert r.due(10, 0, partner_idle=False, end_of_poll=True)
    assert r.reasons == {"wait": 2}


def test_bounds_are_checked() -> None:
    with pytest.raises(ValueError, match="rows"):
        JoinFlushRule(rows=0, cap=10)
    with pytest.raises(ValueError, match="cap"):
        JoinFlushRule(rows=20, cap=10)


@given(
    st.lists(
        st.tuples(
            st.integers(0, 40),  # predictions
            st.integers(0, 40),  # labels
            st.booleans(),  # partner idle
            st.booleans(),  # end of poll
            st.floats(0, 1.5),  # seconds since the previous check
            st.booleans(),  # committed after this check (when due)
        ),
        max_size=40,
    )
)
def test_what_is_due_follows_the_bounds(
    checks: list[tuple[int, int, bool, bool, float, bool]],
) -> None:
    """Never due below ``rows``; always due at ``cap`` or ``wait_s`` after ``rows`` was
    first reached since the last commit; otherwise due exactly when both roles are in at
    the end of a poll or the missing one is idle. Every due check is counted once."""
    clock = Clock()
    r = rule(clock, rows=10, cap=50, wait_s=2.0)
    reached: float | None = None
    due_count = 0
    for p, lab, idle, end, dt, commit in checks:
        clock.now += dt
        due = r.due(p, lab, partner_idle=idle, end_of_poll=end)
        total = p + lab
        if total < 10:
            assert not due
        else:
            if reached is None:
                reached = clock.now
            expected = (
                total >= 50
                or clock.now - reached >= 2.0
                or (p > 0 and lab > 0 and end)
                or ((p == 0 or lab == 0) and idle)
            )
            assert due == expected
        due_count += due
        if due and commit:
            r.committed()
            reached = None
    assert sum(r.reasons.values()) == due_count
