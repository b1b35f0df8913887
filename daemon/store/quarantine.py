"""A quarantined record: what the store keeps of a record that could not be used.

Defined with the store that keeps it (table ``quarantine``); the decoder makes them. The
reasons are the decoder's (:mod:`watchkeeper.daemon.ingest.decode`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Quarantined:
    """A record that could not be used, with why and its first bytes."""

    topic: str
    partition: int
    offset: int
    reason: str
    detail: str
    raw: bytes
    size: int
