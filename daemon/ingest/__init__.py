"""Ingestion: Kafka records in, columnar window state out.

Owns the ingestion loop (:mod:`.loop`), its event-time bookkeeping (:mod:`.event_time`),
decoding (:mod:`.decode`), field mapping (:mod:`.fields`, :mod:`.columns`), feature kinds
(:mod:`.kinds`), name admission (:mod:`.admission`), its Prometheus metrics
(:mod:`.metrics`) and the Kafka clients behind the :mod:`.source` protocol
(:mod:`.kafka_python`, :mod:`.confluent`, registered in :mod:`.sources`).

May import: ``daemon.store``, ``daemon.eventtime``, ``daemon.config``, ``daemon.errors``,
``detectors``, ``policies``. Never ``checks``, ``notify``, ``shadow``, ``http``, ``app``:
what ingestion hands on (sampled rows for shadow evaluation) goes through a protocol it
declares itself.
"""

from __future__ import annotations
