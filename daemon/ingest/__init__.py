"""Ingestion: Kafka records in, columnar window state out.

Owns the ingestion loop (:mod:`.loop`) and its helpers (:mod:`.collector`: the GC pause
while decoding; :mod:`.broker_progress`: offsets mirrored to Kafka, lag;
:mod:`.join_metrics`), its event-time bookkeeping (:mod:`.event_time`), the protocol
shadow evaluation taps batches through (:mod:`.batch_tap`), decoding (:mod:`.decode`),
field mapping (:mod:`.fields`, :mod:`.columns`), feature kinds
(:mod:`.kinds`), name admission (:mod:`.admission`), its Prometheus metrics
(:mod:`.metrics`) and the Kafka clients behind the :mod:`.source` protocol
(:mod:`.kafka_python`, :mod:`.confluent`, registered in :mod:`.sources`).

May import: ``daemon.store``, ``daemon.eventtime``, ``daemon.config``, ``daemon.errors``,
``detectors``, ``policies``. Never ``checks``, ``notify``, ``shadow``, ``http``, ``app``:
what ingestion hands on (sampled rows for shadow evaluation) goes through a protocol it
declares itself (:class:`~.batch_tap.BatchTap`).
"""

from __future__ import annotations
