"""Checks: each policy on its schedule, and the periodic chores around them.

Owns the scheduler (:mod:`.scheduler`), stepping through ticks (:mod:`.stepping`,
:mod:`.ticks`), running one policy at one tick (:mod:`.checker`) with the references it
scores against (:mod:`.reference_cache`) and realised beside estimated (:mod:`.estimates`),
live A/B comparisons between versions (:mod:`.ab_checks`, with :mod:`.ab_look`, :mod:`.ab_state`,
:mod:`.ab_store`, :mod:`.ab_values`, :mod:`.ab_report`, :mod:`.ab_incidents`,
:mod:`.ab_promotion`, :mod:`.ab_status`),
leadership among replicas (:mod:`.leadership`), heartbeat and reminders
(:mod:`.housekeeping`) and retention (:mod:`.retention`).

May import: ``daemon.shadow``, ``daemon.notify``, ``daemon.ingest``, ``daemon.store``,
``daemon.eventtime``, ``daemon.config``, ``daemon.errors``, ``detectors``, ``policies``,
``alerts``.
"""

from __future__ import annotations
