"""The late-events log line: every late event counted is logged, at most once a minute per
stream, with the oldest event's time (trial finding 16: 7 counted, 6 logged)."""

from __future__ import annotations

import itertools
import logging
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from watchkeeper.daemon.ingest.late_log import LateLog

MINUTE = 60_000


def logged(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str, int, str]]:
    """(model, role, count, oldest) of each late line."""
    out = []
    for record in caplog.records:
        m = re.match(
            r"(\S+): (\d+) late (\S+) event\(s\) dropped since the last report "
            r"\(the oldest at (\S+);",
            record.getMessage(),
        )
        if m:
            out.append((m[1], m[3], int(m[2]), m[4]))
    return out


def test_the_carried_events_are_logged_once_their_minute_has_passed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    late = LateLog(lambda: now[0], lateness_s=120.0)
    with caplog.at_level(logging.WARNING, "watchkeeper.daemon.ingest.loop"):
        late.add("m", "predictions", 6, oldest_ms=5 * MINUTE, watermark_ms=9 * MINUTE)
        now[0] = 1.0
        late.add("m", "predictions", 1, oldest_ms=2 * MINUTE, watermark_ms=10 * MINUTE)
        late.report()  # within the minute: still carried
        assert logged(caplog) == [("m", "predictions", 6, "1970-01-01T00:05:00Z")]
        now[0] = 60.0
        late.report()  # no later late event came: the flush reports the carried one
    assert logged(caplog)[1:] == [("m", "predictions", 1, "1970-01-01T00:02:00Z")]
    assert "the predictions watermark is 1970-01-01T00:10:00Z" in caplog.records[1].getMessage()
    assert late.carried() == {}


def test_close_reports_what_is_carried_and_streams_are_apart(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    late = LateLog(lambda: now[0])
    with caplog.at_level(logging.WARNING, "watchkeeper.daemon.ingest.loop"):
        late.add("m", "predictions", 2, oldest_ms=MINUTE, watermark_ms=None)
        late.add("m", "labels", 3, oldest_ms=MINUTE, watermark_ms=None)  # its own minute
        late.add("m", "predictions", 4, oldest_ms=3 * MINUTE, watermark_ms=None)
        late.add("m", "predictions", 5, oldest_ms=2 * MINUTE, watermark_ms=None)
        assert late.carried() == {("m", "predictions"): 9}
        late.report(force=True)
    assert logged(caplog) == [
        ("m", "predictions", 2, "1970-01-01T00:01:00Z"),
        ("m", "labels", 3, "1970-01-01T00:01:00Z"),
        ("m", "predictions", 9, "1970-01-01T00:02:00Z"),  # the oldest of the two carried
    ]


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b"]),
            st.sampled_from(["predictions", "labels"]),
            st.integers(1, 50),
            st.floats(0, 90),  # seconds since the previous batch
            st.booleans(),  # a flush after the batch
        ),
        max_size=40,
    )
)
def test_every_late_event_counted_is_logged_and_no_stream_twice_a_minute(
    batches: list[tuple[str, str, int, float, bool]],
) -> None:
    now = [0.0]
    late = LateLog(lambda: now[0])
    lines: list[tuple[float, str, str, int]] = []
    closing = [False]

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            model, rest = record.getMessage().split(": ", 1)
            count, _, role = rest.split(" ")[:3]
            if not closing[0]:
                lines.append((now[0], model, role, int(count)))
            else:
                closed.append((model, role, int(count)))

    closed: list[tuple[str, str, int]] = []
    handler = Catch()
    logger = logging.getLogger("watchkeeper.daemon.ingest.loop")
    logger.addHandler(handler)
    try:
        counted: dict[tuple[str, str], int] = {}
        for model, role, count, gap, flush in batches:
            now[0] += gap
            late.add(model, role, count, oldest_ms=0, watermark_ms=None)
            counted[model, role] = counted.get((model, role), 0) + count
            if flush:
                late.report()
        closing[0] = True
        late.report(force=True)  # close
    finally:
        logger.removeHandler(handler)
    total: dict[tuple[str, str], int] = {}
    for model, role, count in [(m, r, c) for _, m, r, c in lines] + closed:
        total[model, role] = total.get((model, role), 0) + count
    assert total == counted
    for stream in counted:
        times = [at for at, model, role, _ in lines if (model, role) == stream]  # not close's
        assert all(b - a >= 60.0 for a, b in itertools.pairwise(times))


def test_a_clock_stepped_back_does_not_silence_the_line(caplog: pytest.LogCaptureFixture) -> None:
    now = [10_000.0]
    late = LateLog(lambda: now[0])
    with caplog.at_level(logging.WARNING, "watchkeeper.daemon.ingest.loop"):
        late.add("m", "predictions", 1, oldest_ms=0, watermark_ms=None)
        now[0] -= 3_600.0  # NTP steps the wall clock an hour back
        late.add("m", "predictions", 2, oldest_ms=0, watermark_ms=None)
    assert [count for _, _, count, _ in logged(caplog)] == [1, 2]


def test_a_model_name_from_events_cannot_forge_a_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    late = LateLog(lambda: 0.0)
    with caplog.at_level(logging.WARNING, "watchkeeper.daemon.ingest.loop"):
        late.add("evil\nINFO forged \x1b[31m", "predictions", 1, oldest_ms=0, watermark_ms=None)
    (line,) = [r.getMessage() for r in caplog.records]
    assert "\n" not in line and "\x1b" not in line
    assert line.startswith("evil\\nINFO forged \\x1b[31m: 1 late predictions")
