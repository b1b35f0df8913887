"""The lists of incidents and of evaluations: one query each, for the API, the CLI and
the console."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Engine, select
from watchkeeper.daemon.store import tables as t
from watchkeeper.daemon.store.connection import reading
from watchkeeper.daemon.store.incident_values import current_values


def incident_rows(
    engine: Engine, state: str | None = "open", limit: int = 200
) -> list[dict[str, Any]]:
    """Incidents (in ``state``, or all), most recently updated first, members parsed.

    The one query for lists of incidents: the API, the CLI and the console read it."""
    query = select(t.incidents).order_by(t.incidents.c.updated_ms.desc()).limit(limit)
    if state is not None:
        query = query.where(t.incidents.c.state == state)
    with reading(engine, "read incidents") as conn:
        rows = [dict(r._mapping) for r in conn.execute(query).all()]
        for row in rows:
            row["members"] = json.loads(row["members"])
            row["current"] = current_values(conn, row)
    return rows


def evaluation_rows(
    engine: Engine,
    policy: str | None = None,
    rule: str | None = None,
    feature: str | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """The newest ``limit`` evaluations (of ``policy``, ``rule``, ``feature``), newest first.

    The one query for recent evaluations: the API, the CLI and the console read it."""
    query = select(t.evaluations).order_by(t.evaluations.c.id.desc()).limit(limit)
    for column, value in (("policy", policy), ("rule", rule), ("feature", feature)):
        if value is not None:
            query = query.where(t.evaluations.c[column] == value)
    with reading(engine, "read evaluations") as conn:
        return [dict(r._mapping) for r in conn.execute(query).all()]
