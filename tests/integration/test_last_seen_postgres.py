"""LastSeen on PostgreSQL (the unit tests run on SQLite): a key set aside under the window
last seen, retention, a fold under the traffic read and the review's random histories,
each answer compared with the whole walk (the tests are the unit module's, on a fresh
database here)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from watchkeeper.daemon.store.store import Store

from tests.unit.test_last_seen import (
    test_a_fold_under_the_traffic_read_is_not_remembered,
    test_a_key_set_aside_and_as_many_labels_landing_read_the_start_again,
    test_random_histories_of_seeds_answer_as_the_whole_walk,
    test_the_last_seen_window_losing_its_traffic_reads_back_past_it,
    test_windows_retention_deleted_and_stored_again_are_read_again,
)

__all__ = [
    "test_a_fold_under_the_traffic_read_is_not_remembered",
    "test_a_key_set_aside_and_as_many_labels_landing_read_the_start_again",
    "test_random_histories_of_seeds_answer_as_the_whole_walk",
    "test_the_last_seen_window_losing_its_traffic_reads_back_past_it",
    "test_windows_retention_deleted_and_stored_again_are_read_again",
]


@pytest.fixture
def store(pg_database: str) -> Iterator[Store]:
    with Store.open(pg_database) as s:
        yield s
