"""Shadow evaluation: candidate ONNX models beside production on sampled live rows.

Owns the evaluator thread (:mod:`.evaluator`), each model's set-up loaded from its
policy (:mod:`.setup`), the ONNX runtime with its limits
(:mod:`.runtime`), rows and labels waiting for it (:mod:`.rows`, :mod:`.labels`), its part
of the store (:mod:`.store`), its part of each check and promotion decisions
(:mod:`.checks`) and ``watchkeeper compress`` (:mod:`.compress`).

May import: ``daemon.notify``, ``daemon.store``, ``daemon.eventtime``, ``daemon.config``,
``daemon.config_shadow``, ``daemon.errors``, ``detectors``, ``policies``, ``alerts`` and
the exception root ``watchkeeper.errors``. Decisions are written through
``daemon.notify`` (routed by its router, enqueued by its outbox), never by this package's
store.
"""

from __future__ import annotations
