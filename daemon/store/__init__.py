"""The store: window state, offsets, references, quarantine, label joins; SQLite or PostgreSQL.

Owns the write path (:mod:`.store`), the read path (:mod:`.queries`), the schema
(:mod:`.tables`, Alembic migrations in ``migrations/``), the engine (:mod:`.connection`),
``INSERT … ON CONFLICT`` (:mod:`.upsert`), the label join done inside the flush transaction
(:mod:`.label_join`) and the quarantined-record type (:mod:`.quarantine`).

May import: ``daemon.eventtime``, ``daemon.config``, ``daemon.errors``, ``detectors``,
``policies``.
"""

from __future__ import annotations
