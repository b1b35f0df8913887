"""The daemon: builds each component, starts them in order through one exit stack, and
stops them in reverse order (ingestion commits and leaves the group before the HTTP
server and the store close)."""

from __future__ import annotations

import logging
import os
import threading
import time
from contextlib import ExitStack
from pathlib import Path

from prometheus_client import CollectorRegistry
from watchkeeper.daemon.config import Config
from watchkeeper.daemon.http import HttpServer
from watchkeeper.daemon.ingest import Ingestor
from watchkeeper.daemon.metrics import IngestMetrics
from watchkeeper.daemon.reports import Reports, report_routes
from watchkeeper.daemon.store import Store

log = logging.getLogger(__name__)


class Daemon:
    """One watchkeeper process's components; :meth:`run` blocks until ``stop`` is set."""

    def __init__(self, config: Config, registry: CollectorRegistry | None = None) -> None:
        self.config = config
        self.registry = registry if registry is not None else CollectorRegistry()
        self.http: HttpServer | None = None
        self.store: Store | None = None
        self.ingestor: Ingestor | None = None
        self.started = threading.Event()

    def _liveness(self) -> tuple[bool, str]:
        ingestor = self.ingestor
        if ingestor is None:
            return True, "starting"
        stalled = time.monotonic() - ingestor.heartbeat
        limit = max(30.0, 10 * self.config.ingest.poll_timeout)
        if stalled > limit:
            return False, f"the ingestion loop has not turned for {stalled:.0f}s"
        return True, "ingesting"

    def _readiness(self) -> tuple[bool, str]:
        ingestor = self.ingestor
        if ingestor is None or not ingestor.ready.is_set():
            return False, "not consuming yet (no partitions assigned)"
        if not ingestor.store_ok:
            return False, "the store is unavailable; consumption is paused"
        return True, "consuming"

    def run(self, stop: threading.Event) -> None:
        config = self.config
        with ExitStack() as stack:
            store = Store.open(config.store_url())
            stack.callback(store.close)
            self.store = store
            topics = [t.name for t in config.kafka.topics.by_role().values()]
            metrics = IngestMetrics(self.registry, topics)
            self.ingestor = Ingestor(config, store, metrics)
            reports = Reports(store, Path(config.reports.dir))
            token = os.environ[config.http.token_env] if config.http.token_env else None
            self.http = HttpServer(
                config.http.host,
                config.http.port,
                self.registry,
                self._liveness,
                self._readiness,
                report_routes(reports),
                token,
            ).start()
            stack.callback(self.http.close)
            self.ingestor.open()
            stack.callback(self.ingestor.close)
            self.started.set()
            log.info(
                "watchkeeper is running (group %s, topics %s)",
                config.kafka.group_id,
                ", ".join(topics),
            )
            self.ingestor.run(stop)
            log.info("stopping: committing window state and offsets")
        log.info("stopped")
