"""Event-time primitives shared by ingestion, the store and the checks.

Owns tumbling windows and the in-memory window state between two commits
(:mod:`.windows`), and per-partition clocks and watermarks (:mod:`.watermarks`).

May import: ``detectors`` only (and the standard library / numpy).
"""

from __future__ import annotations
