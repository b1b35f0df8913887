"""What the console pages read from the store, each read bounded.

Every query here has a row limit or a time range fixed by the daemon (never by the
request): a page costs a few indexed reads however long the daemon has run. Values are
returned as plain JSON-able data; escaping is the templates' job (Jinja2 autoescape) and
chart data goes through ``tojson``, which escapes ``<``, ``>``, ``&`` and quotes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, select
from watchkeeper.daemon.store import tables as t
from watchkeeper.daemon.store.connection import reader
from watchkeeper.daemon.store.incident_queries import evaluation_rows, incident_rows
from watchkeeper.daemon.store.incident_values import current_line, current_values, rule_bad_side
from watchkeeper.daemon.store.store import Store
from watchkeeper.detectors.binning import binned
from watchkeeper.detectors.errors import InsufficientDataError
from watchkeeper.detectors.profile import ReferenceProfile
from watchkeeper.detectors.registry import METRICS
from watchkeeper.detectors.reserved_names import OTHER, UNSEEN
from watchkeeper.policies.schema import Policy
from watchkeeper.policies.segments import segment_view

DAY_MS = 86_400_000
MAX_TIMELINE = 2_000
"""Evaluations drawn on one incident's timeline (a day of 1-minute ticks is 1,440)."""
MAX_NOTIFICATIONS = 200
MAX_HISTORY = 50
MAX_MODEL_EVALUATIONS = 5_000
MAX_LATENCY_WINDOWS = 120
"""Windows whose latency sketch the model page reads (each summary holds every feature's
sketch: this bounds what one page view parses)."""
MAX_SHOWN_CHARS = 2_000
RAW_PREFIX = 512
LATENCY_RANKS = (0.5, 0.95, 0.99)
"""The percentiles the model page plots: those a policy can name (``latency_p50_ms``,
``latency_p95_ms``, ``latency_p99_ms``), so the plot and the rules read the same numbers."""
LATENCY_NAMES = tuple(f"p{round(r * 100)}" for r in LATENCY_RANKS)


def finite(value: Any) -> float | None:
    """A float for JSON (NaN and infinities become None: JSON has no word for them)."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def shown(text: Any, limit: int = MAX_SHOWN_CHARS) -> str:
    """A stored string cut to what a page shows (escaped later, by the template)."""
    value = "" if text is None else str(text)
    return value if len(value) <= limit else value[:limit] + "…"


@dataclass(frozen=True)
class Distribution:
    feature: str
    kind: str
    labels: list[str]
    reference: list[float]
    current: list[float]
    n_reference: int
    n_current: int
    unseen: list[tuple[str, int]]
    rank_error: float


class ConsoleQueries:
    """Bounded reads for the pages (module docstring)."""

    def __init__(self, store: Store, policies: Callable[[], Mapping[str, Policy]]) -> None:
        self.store = store
        self.engine: Engine = store.engine
        self.policies = policies
        """The loaded policies: an incident's "now" line lists its members worst first
        on its rule's bad side (``rule_bad_side``). Required: a default of none loaded
        would list every rule's members highest first, its bad side or not."""

    # -- incidents --------------------------------------------------------------------
    def incident(self, fingerprint: str) -> dict[str, Any] | None:
        """The latest incident with this fingerprint (the one a link names)."""
        c = t.incidents.c
        query = (
            select(t.incidents).where(c.fingerprint == fingerprint).order_by(c.id.desc()).limit(1)
        )
        with reader(self.engine) as conn:
            row = conn.execute(query).first()
            if row is None:
                return None
            out = dict(row._mapping)
            out["members"] = json.loads(out["members"])
            out["current"] = current_values(conn, out)
        out["now"] = current_line(out, rule_bad_side(self.policies(), out))
        return out

    def history(self, fingerprint: str) -> list[dict[str, Any]]:
        """Earlier and current incidents of this fingerprint, newest first."""
        c = t.incidents.c
        query = (
            select(c.id, c.state, c.severity, c.opened_ms, c.updated_ms, c.resolved_ms, c.note)
            .where(c.fingerprint == fingerprint)
            .order_by(c.id.desc())
            .limit(MAX_HISTORY)
        )
        with reader(self.engine) as conn:
            return [dict(r._mapping) for r in conn.execute(query).all()]

    def open_incidents(self, limit: int = 500) -> list[dict[str, Any]]:
        rows = incident_rows(self.engine, "open", limit)
        policies = self.policies()
        for row in rows:
            row["now"] = current_line(row, rule_bad_side(policies, row))
        return rows

    def timeline(
        self, policy: str, rule: str, features: list[str] | None, since_ms: int
    ) -> list[dict[str, Any]]:
        """The rule's evaluations since ``since_ms``, oldest first (``features``: those)."""
        c = t.evaluations.c
        query = select(
            c.at_ms,
            c.feature,
            c.value,
            c.warn,
            c.critical,
            c.resolve,
            c.decision,
            c.severity,
            c.state,
            c.n_current,
            c.reason,
        ).where((c.policy == policy) & (c.rule == rule) & (c.at_ms >= since_ms))
        if features:
            query = query.where(c.feature.in_(features))
        query = query.order_by(c.at_ms.desc(), c.id.desc()).limit(MAX_TIMELINE)
        with reader(self.engine) as conn:
            rows = [dict(r._mapping) for r in conn.execute(query).all()]
        rows.reverse()
        for row in rows:
            for key in ("value", "warn", "critical", "resolve"):
                row[key] = finite(row[key])
            row["reason"] = shown(row["reason"], 300)
        return rows

    def notifications(self, fingerprint: str) -> list[dict[str, Any]]:
        """What the outbox holds for this fingerprint: channel, kind, delivery state."""
        c = t.outbox.c
        query = (
            select(
                c.id,
                c.channel,
                c.kind,
                c.state,
                c.created_ms,
                c.attempts,
                c.sent_ms,
                c.last_error,
                c.payload,
            )
            .where(c.fingerprint == fingerprint)
            .order_by(c.id.desc())
            .limit(MAX_NOTIFICATIONS)
        )
        with reader(self.engine) as conn:
            rows = [dict(r._mapping) for r in conn.execute(query).all()]
        for row in rows:
            try:
                payload = json.loads(row.pop("payload"))
            except ValueError:
                payload = {}
            row["severity"] = shown(payload.get("severity", ""), 20)
            # delivery errors were redacted before they were stored (delivery.py)
            row["last_error"] = shown(row["last_error"], 300)
        return rows

    # -- distributions ----------------------------------------------------------------
    def distributions(
        self,
        reference: ReferenceProfile | None,
        model: str,
        features: list[str],
        start_ms: int,
        end_ms: int,
    ) -> list[Distribution]:
        """Current (the window range, read once) against reference, on the reference's
        buckets, for each of ``features`` both sides hold."""
        if reference is None or not features:
            return []
        window = self.store.window_range(model, start_ms, end_ms)
        if window is None:
            return []
        out = []
        for feature in features:
            # a segment's slot (amount[country=DE]): that segment of both sides
            name, ref, win = segment_view(reference, window, feature)
            column = ref.column(name) if ref is not None else None
            current = None if win is None else win.column(name)
            if column is None or current is None:
                continue
            try:
                b = binned(column, current)
            except (InsufficientDataError, ValueError, TypeError):
                continue  # kinds differ, or nothing to compare: no plot, the table stays
            n = max(1, b.n_current)
            labels = [
                "other (rare in reference)" if x == OTHER else "unseen" if x == UNSEEN else x
                for x in b.labels
            ]
            unseen = sorted(b.unseen.items(), key=lambda kv: (-kv[1], kv[0]))[:50]
            out.append(
                Distribution(
                    feature=feature,
                    kind=column.kind,
                    labels=[shown(x, 200) for x in labels],
                    reference=[float(p) for p in b.reference],
                    current=[float(x) / n for x in b.current],
                    n_reference=b.n_reference,
                    n_current=b.n_current,
                    unseen=[(shown(k, 200), int(v)) for k, v in unseen],
                    rank_error=float(b.rank_error),
                )
            )
        return out

    # -- models -----------------------------------------------------------------------
    def model_evaluations(self, model: str, since_ms: int) -> list[dict[str, Any]]:
        """The model's evaluations since ``since_ms`` (oldest first, bounded)."""
        c = t.evaluations.c
        query = (
            select(c.at_ms, c.policy, c.rule, c.metric, c.feature, c.value, c.state)
            .where((c.model == model) & (c.at_ms >= since_ms))
            .order_by(c.at_ms.desc(), c.id.desc())
            .limit(MAX_MODEL_EVALUATIONS)
        )
        with reader(self.engine) as conn:
            rows = [dict(r._mapping) for r in conn.execute(query).all()]
        rows.reverse()
        for row in rows:
            row["value"] = finite(row["value"])
            info = METRICS.get(row["metric"])
            row["scope"] = info.scope if info is not None else "other"
        return rows

    def latest_evaluations(self, limit: int = 1_000) -> list[dict[str, Any]]:
        """The newest evaluation of each (policy, rule, feature) among the last ``limit``."""
        rows = evaluation_rows(self.engine, limit=limit)
        seen: set[tuple[str, str, str]] = set()
        out = []
        for row in rows:
            key = (row["policy"], row["rule"], row["feature"] or "")
            if key in seen:
                continue
            seen.add(key)
            for name in ("value", "warn", "critical", "resolve"):
                row[name] = finite(row[name])
            out.append(row)
        out.sort(key=lambda r: (r["policy"], r["rule"], r["feature"] or ""))
        return out

    def latency(self, model: str, since_ms: int) -> list[dict[str, Any]]:
        """Latency percentiles per stored window (the newest ``MAX_LATENCY_WINDOWS``)."""
        starts = self.store.window_starts(model, since_ms, MAX_LATENCY_WINDOWS)
        if not starts:
            return []
        out = []
        for w in self.store.windows(model, None, min(starts), max(starts) + 1):
            sketch = w.summary.latency
            if sketch.count == 0:
                continue
            values = sketch.quantiles(LATENCY_RANKS)
            out.append(
                {
                    "start_ms": w.summary.start_ms,
                    "version": w.summary.version,
                    "count": int(sketch.count),
                    **{name: finite(v) for name, v in zip(LATENCY_NAMES, values, strict=True)},
                }
            )
        out.sort(key=lambda r: (r["start_ms"], r["version"]))
        return out

    def quarantine_counts(self) -> dict[str, int]:
        return self.store.quarantine_counts()

    def quarantined(self, reason: str | None, limit: int) -> list[dict[str, Any]]:
        rows = self.store.quarantined(reason, limit, raw_prefix=RAW_PREFIX)
        for row in rows:
            raw = bytes(row["raw"] or b"")
            row["raw"] = raw.decode("utf-8", "backslashreplace")
            row["detail"] = shown(row["detail"], 500)
        return rows
