"""Notifications: from an incident change to a message handed to a channel.

Owns routing (:mod:`.router`), incidents and evaluations in the store (:mod:`.incidents`),
the durable outbox (:mod:`.outbox`), the delivery worker (:mod:`.delivery`), silences
(:mod:`.silences`) and building the configured channels (:mod:`.channels`).

May import: ``daemon.store``, ``daemon.eventtime``, ``daemon.config``, ``daemon.errors``,
``detectors``, ``policies``, ``alerts``.
"""

from __future__ import annotations
