"""Counting, logging once and bounding of the windows reads skip for a corrupt stored part
(daemon/store/skipped_windows.py), from several threads, and their /metrics collector."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from watchkeeper.daemon.store import skipped_windows as sw
from watchkeeper.daemon.store.connection import create_store_engine
from watchkeeper.daemon.store.skipped_windows import (
    OTHER,
    CorruptPartError,
    SkippedWindows,
    SkippedWindowsCollector,
)
from watchkeeper.daemon.store.store import Store
from watchkeeper.detectors.errors import CorruptStateError

LOGGER = "watchkeeper.daemon.store.skipped_windows"
HOUR = 3_600_000


def corrupt(model: str = "fraud", start: int = 0, part: int | None = 7) -> CorruptPartError:
    cause = CorruptStateError("window rows", "'keys' does not hold 2 values")
    return CorruptPartError(cause, (model, "3", HOUR, start), part)


def test_a_part_is_logged_once_and_counted_on_every_read(
    caplog: pytest.LogCaptureFixture,
) -> None:
    times = iter([100.0, 160.0, 220.0, 300.0])
    skipped = SkippedWindows(clock=lambda: next(times))
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        assert skipped.record(corrupt()) is True
        assert skipped.record(corrupt()) is False  # the same part again: counted only
        assert skipped.record(corrupt()) is False
        assert skipped.record(corrupt(part=None)) is True  # the base row: another one
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert f"model 'fraud' version '3', window 0 of {HOUR} ms, part 7" in messages[0]
    assert "'keys' does not hold 2 values" in messages[0]
    assert "its base row" in messages[1]
    assert skipped.counts() == {"fraud": 4}
    assert skipped.part_counts() == {"fraud": 2}
    base, part = skipped.recent()  # the most recently met first
    assert (base.part, base.reads, base.first_seen_ms) == (None, 1, 300_000)
    assert (part.part, part.reads) == (7, 3)
    assert (part.first_seen_ms, part.last_seen_ms) == (100_000, 220_000)
    assert (part.model, part.version, part.window_size_ms, part.window_start_ms) == (
        "fraud",
        "3",
        HOUR,
        0,
    )
    assert (part.what, part.problem) == ("window rows", "'keys' does not hold 2 values")


def test_memory_is_bounded_and_a_forgotten_part_is_logged_again(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(sw, "MAX_PARTS", 3)
    skipped = SkippedWindows()
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        for start in range(5):
            skipped.record(corrupt(start=start * HOUR))
        assert [p.window_start_ms for p in skipped.recent()] == [4 * HOUR, 3 * HOUR, 2 * HOUR]
        skipped.record(corrupt(start=3 * HOUR))  # remembered: moves to the front, no log
        assert len(caplog.records) == 5
        skipped.record(corrupt(start=0))  # forgotten (evicted first): logged, counted again
        assert len(caplog.records) == 6
    assert [p.window_start_ms for p in skipped.recent()] == [0, 3 * HOUR, 4 * HOUR]
    assert skipped.counts() == {"fraud": 7} and skipped.part_counts() == {"fraud": 6}
    assert len(skipped.recent(limit=100)) == 3
    assert len(skipped.recent(limit=2)) == 2


def test_models_beyond_the_cap_count_as_other(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sw, "MAX_MODELS", 2)
    skipped = SkippedWindows()
    for model in ("a", "b", "c", "d", "a"):
        skipped.record(corrupt(model=model))
    assert skipped.counts() == {"a": 2, "b": 1, OTHER: 2}
    assert skipped.part_counts() == {"a": 1, "b": 1, OTHER: 2}
    folds = SkippedWindows()  # parts met by folds only (no read) are bounded the same way
    for model in ("a", "b", "c", "d"):
        folds.record(corrupt(model=model), read=False)
    assert folds.part_counts() == {"a": 1, "b": 1, OTHER: 2} and folds.counts() == {}


def test_the_log_line_escapes_control_characters(caplog: pytest.LogCaptureFixture) -> None:
    cause = CorruptStateError("window rows", "bad\nERROR forged line\x1b[31m")
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        SkippedWindows().record(CorruptPartError(cause, ("fraud", "3", HOUR, 0), 1))
    (record,) = caplog.records
    message = record.getMessage()
    assert "\n" not in message and "\x1b" not in message
    assert "bad\\nERROR forged line\\x1b[31m" in message


def test_strings_from_the_store_are_cut() -> None:
    skipped = SkippedWindows()
    long_model = "m" * 5000
    cause = CorruptStateError("window rows", "x" * 5000)
    skipped.record(CorruptPartError(cause, (long_model, "v" * 900, HOUR, 0), 1))
    (part,) = skipped.recent()
    assert len(part.model) == len(part.version) == len(part.problem) == sw.MAX_TEXT
    assert part.model.endswith("…") and part.problem.startswith("xxx")
    assert set(skipped.counts()) == {part.model}  # the count's key is the cut name too


def test_counts_from_many_threads_are_exact(caplog: pytest.LogCaptureFixture) -> None:
    skipped = SkippedWindows()
    threads, rounds, parts = 8, 500, 10
    go = threading.Barrier(threads)

    def reader(i: int) -> None:
        go.wait()  # all at once
        for r in range(rounds):
            skipped.record(corrupt(model=f"m{i % 2}", start=(r % parts) * HOUR))

    with caplog.at_level(logging.ERROR, logger=LOGGER):
        pool = [threading.Thread(target=reader, args=(i,)) for i in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
    # an independent count: each thread records `rounds` reads of model m{i % 2}
    assert skipped.counts() == {"m0": threads // 2 * rounds, "m1": threads // 2 * rounds}
    # every distinct part counted and logged exactly once, whichever thread met it first
    assert skipped.part_counts() == {"m0": parts, "m1": parts}
    assert len(caplog.records) == 2 * parts
    assert sum(p.reads for p in skipped.recent(limit=100)) == threads * rounds


def test_the_store_makes_its_counter_before_any_reader(tmp_path: Path) -> None:
    engine = create_store_engine(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        store = Store(engine)
        # an instance attribute built in __init__ (no lazy property two threads could race)
        assert isinstance(vars(store)["skipped_windows"], SkippedWindows)
        assert store.skipped_windows is store.skipped_windows
    finally:
        engine.dispose()


def test_the_collector_labels_configured_models_only() -> None:
    skipped = SkippedWindows()
    for model in ("fraud", "fraud", "<script>x</script>", "churn"):
        skipped.record(corrupt(model=model, start=len(model) * HOUR))
    skipped.record(corrupt(model="fraud", start=99 * HOUR))
    models = {"fraud"}
    registry = CollectorRegistry()
    registry.register(SkippedWindowsCollector(skipped, lambda: models))
    value = registry.get_sample_value
    reads = "watchkeeper_window_reads_skipped_total"
    parts = "watchkeeper_corrupt_window_parts_total"
    assert value(reads, {"model": "fraud"}) == 3
    assert value(parts, {"model": "fraud"}) == 2
    assert value(reads, {"model": OTHER}) == 2 and value(parts, {"model": OTHER}) == 2
    labels = {s.labels["model"] for m in registry.collect() for s in m.samples}
    assert labels == {"fraud", OTHER}
    models.add("churn")  # read at each scrape: a policy's model gets its own series
    assert value(reads, {"model": "churn"}) == 1 and value(reads, {"model": OTHER}) == 1


def test_no_skipped_window_means_empty_families() -> None:
    registry = CollectorRegistry()
    registry.register(SkippedWindowsCollector(SkippedWindows(), lambda: {"fraud"}))
    families = {m.name: m.samples for m in registry.collect()}
    assert families == {
        "watchkeeper_window_reads_skipped": [],
        "watchkeeper_corrupt_window_parts": [],
    }


def test_the_status_command_prints_stored_names_as_text() -> None:
    from rich.console import Console
    from watchkeeper.daemon.cli.skipped import print_skipped

    skipped = SkippedWindows(clock=lambda: 1.0)
    cause = CorruptStateError("window rows", "[red]bad\x1b[31m")
    skipped.record(CorruptPartError(cause, ("[bold]fraud[/bold]", "3", HOUR, HOUR), None))
    section = skipped.document()
    for part in section["recent"]:
        part["window_start"] = "1970-01-01T01:00:00Z"
    console = Console(record=True, width=300)
    print_skipped(console, {"skipped_windows": section})
    text = console.export_text()
    assert "[bold]fraud[/bold]" in text and "[red]bad" in text  # shown, not interpreted
    assert "\x1b" not in text and "base row" in text and "3,600s" in text
    assert "1 read(s)" in text
    empty = Console(record=True)
    print_skipped(empty, {"skipped_windows": SkippedWindows().document()})
    assert empty.export_text() == ""  # nothing skipped: no table


def test_pending_windows_until_set_aside_then_a_new_corruption_is_met_anew(
    caplog: pytest.LogCaptureFixture,
) -> None:
    skipped = SkippedWindows()
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        skipped.record(corrupt(start=0, part=1))
        skipped.record(corrupt(start=0, part=None))  # the same window's base
        skipped.record(corrupt(start=HOUR, part=2))
        skipped.record(corrupt(start=0, part=1))
    window0, window1 = ("fraud", "3", HOUR, 0), ("fraud", "3", HOUR, HOUR)
    assert skipped.pending(10) == [window0, window1]  # one entry per window
    assert skipped.pending(1) == [window0]
    skipped.settled(window0)
    assert skipped.pending(10) == [window1]
    assert {(p.part, p.set_aside) for p in skipped.recent()} == {
        (1, True),
        (None, True),
        (2, False),
    }
    assert len(caplog.records) == 3
    # the window written again since and corrupt again: met (logged, counted) anew
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        assert skipped.record(corrupt(start=0, part=None)) is True
    assert len(caplog.records) == 4
    assert skipped.part_counts() == {"fraud": 4} and skipped.counts() == {"fraud": 5}
    assert skipped.pending(10) == [window1, window0]
