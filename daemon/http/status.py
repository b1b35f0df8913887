"""What ``watchkeeper status`` and ``GET /api/status`` show: per model what was stored and
what was not (late events, expired joins), how far each stream's event time got, where
each partition's consumer stands, where each policy is in its ticks, and which stored
windows this process's reads skipped because a part of them is corrupt
(``skipped_windows``: :mod:`~watchkeeper.daemon.store.skipped_windows`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from watchkeeper.daemon.checks.performance_rows import PerformanceRowCache, performance_rows
from watchkeeper.daemon.checks.stepping import (
    Progress,
    StepSettings,
    read_policy_clock,
    step_settings,
)
from watchkeeper.daemon.checks.ticks import Ticks
from watchkeeper.daemon.config import Config
from watchkeeper.daemon.eventtime.watermarks import PartitionClock, stream_time
from watchkeeper.daemon.store.store import Store
from watchkeeper.detectors.profile import ReferenceProfile
from watchkeeper.policies.schema import Policy


def iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


NO_JOINS = {
    "joined": 0,
    "expired_predictions": 0,
    "expired_labels": 0,
    "pending_predictions": 0,
    "pending_labels": 0,
}
"""A model's join counts before any label met any prediction."""


def status(
    store: Store,
    config: Config,
    policies: Mapping[str, Policy],
    now_ms: int,
    progress: Mapping[str, Progress] | None = None,
    reference_of: Callable[[str], ReferenceProfile | None] | None = None,
    performance_windows: int = 6,
    rows_cache: PerformanceRowCache | None = None,
) -> dict[str, Any]:
    """The status document (JSON-able); ``progress`` is the running daemon's, if any.

    With ``reference_of`` (model → the reference its policies score against), a model
    whose reference has an estimation also gets ``performance``: its last
    ``performance_windows`` windows, estimated beside realised (``rows_cache``, kept by
    the daemon across requests, parses a stored window only when it changed)."""
    settings = step_settings(config)
    clocks = store.partition_clocks(settings.group_id, settings.clocks, now_ms)
    models = store.model_totals()
    joins = store.join_counts()
    out_models: dict[str, Any] = {}
    for model in sorted(set(models) | set(joins)):
        entry: dict[str, Any] = dict(models.get(model, {"events": 0, "late_events": 0}))
        entry.update(joins.get(model, {}) or NO_JOINS)
        entry["streams"] = _streams(model, clocks.values(), settings, now_ms)
        reference = reference_of(model) if reference_of is not None else None
        if reference is not None and reference.estimation is not None:
            entry["performance"] = _performance(
                store, reference, model, now_ms, settings.size_ms, performance_windows, rows_cache
            )
        out_models[model] = entry
    return {
        "now": iso(now_ms),
        "totals": store.totals(),
        "models": out_models,
        "partitions": _partitions(store, settings.group_id),
        "policies": _policies(store, settings, policies, now_ms, progress or {}),
        "skipped_windows": _skipped(store),
    }


def _skipped(store: Store) -> dict[str, Any]:
    """Reads this process skipped (per model), distinct corrupt parts met (per model), the
    most recently met parts (bounded: ``RECENT``, strings cut at ``MAX_TEXT``), and per
    model the windows housekeeping set aside (from the store: every replica's)."""
    doc = store.skipped_windows.document()
    doc["set_aside"] = store.set_aside_counts()
    for part in doc["recent"]:
        part["window_start"] = iso(part["window_start_ms"])
        part["first_seen"] = iso(part.pop("first_seen_ms"))
        part["last_seen"] = iso(part.pop("last_seen_ms"))
    return doc


def _streams(
    model: str, clocks: Iterable[PartitionClock], settings: StepSettings, now_ms: int
) -> dict[str, Any]:
    """How far each of the model's streams got in event time."""
    clocks = list(clocks)
    streams = {}
    for role in sorted(set(settings.clocks.roles.values())):
        t = stream_time(clocks, model, role, now_ms, settings.clocks.idle_ms)
        if t.newest_ms is None:
            continue
        streams[role] = {
            "watermark": iso(t.watermark_ms),
            "newest": iso(t.newest_ms),
            "held": t.held,
            "idle": t.idle,
            "caught_up": t.caught_up,
        }
    return streams


def _performance(
    store: Store,
    reference: ReferenceProfile,
    model: str,
    now_ms: int,
    size_ms: int,
    windows: int,
    rows_cache: PerformanceRowCache | None,
) -> list[dict[str, Any]]:
    """The model's last ``windows`` windows, estimated beside realised (``rows_cache``:
    the daemon's, kept across requests)."""
    return [
        {
            "window_start": iso(row.pop("window_start_ms")),
            "window_end": iso(row.pop("window_end_ms")),
            **row,
        }
        for row in performance_rows(store, reference, model, now_ms, size_ms, windows, rows_cache)
    ]


def _partitions(store: Store, group_id: str) -> list[dict[str, Any]]:
    """Where each partition's consumer stands, and which replica owns it."""
    return [
        {
            "topic": topic,
            "partition": part,
            "role": state.role,
            "position": state.position,
            "end_offset": state.end_offset,
            "lag": state.lag,
            "owner": owner,
            "updated": iso(updated),
        }
        for (topic, part), (state, owner, updated) in sorted(
            store.partition_statuses(group_id).items()
        )
    ]


def _policies(
    store: Store,
    settings: StepSettings,
    policies: Mapping[str, Policy],
    now_ms: int,
    progress: Mapping[str, Progress],
) -> dict[str, Any]:
    """Where each policy is in its ticks: the last one, how far behind, how many are due
    (the running daemon's count when it has one) and what it waits for."""
    ticks = store.policy_ticks()
    out: dict[str, Any] = {}
    for key, policy in sorted(policies.items()):
        tick = ticks.get(key)
        clock = read_policy_clock(store, settings, policy, now_ms)
        until = clock.ready_until(settings.size_ms, now_ms)
        period_ms = int(policy.schedule.period_s() * 1000)
        grid = Ticks.of(policy.schedule)
        due = 0 if tick is None or until is None else grid.count_between(tick, until, period_ms)
        running = progress.get(key)
        due = running.due if running is not None else due
        # the running daemon's own view when it has one: only it knows since when a
        # stream with none of the model's events has been empty (EmptyStreams)
        mode, reason = (
            (clock.mode, clock.reason) if running is None else (running.mode, running.reason)
        )
        out[key] = {
            "model": policy.model,
            "tick": iso(tick),
            "tick_ms": tick,
            "behind_s": None if tick is None else max(0, now_ms - tick) / 1000,
            "mode": mode,
            "waiting_for": (reason or None) if due == 0 else None,
            "ticks_due": due,
        }
    return out
