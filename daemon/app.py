"""The daemon: builds each component, starts them in order through one exit stack, and
stops them in reverse order (ingestion commits and leaves the group before the HTTP
server and the store close)."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from watchkeeper.alerts.retry import RetryPolicy
from watchkeeper.daemon.api_routes import ApiRoutes
from watchkeeper.daemon.checks.ab_checks import ABChecks
from watchkeeper.daemon.checks.check_metrics import CheckMetrics
from watchkeeper.daemon.checks.checker import Checker
from watchkeeper.daemon.checks.housekeeping import Housekeeper
from watchkeeper.daemon.checks.leadership import Leadership
from watchkeeper.daemon.checks.retention import Retention
from watchkeeper.daemon.checks.scheduler import PolicyScheduler, PolicyStatus
from watchkeeper.daemon.checks.set_aside import SetAside
from watchkeeper.daemon.checks.stepping import PolicyStepper, labels_watermark, step_settings
from watchkeeper.daemon.config import Config, secret_values
from watchkeeper.daemon.console_sources import console_for
from watchkeeper.daemon.eventtime.empty_streams import EmptyStreams
from watchkeeper.daemon.http.reports import Reports, report_routes
from watchkeeper.daemon.http.server import HttpServer
from watchkeeper.daemon.ingest.loop import Ingestor
from watchkeeper.daemon.ingest.metrics import IngestMetrics
from watchkeeper.daemon.logs import RedactingFilter
from watchkeeper.daemon.notify.channels import build_channels
from watchkeeper.daemon.notify.delivery import DeliveryWorker
from watchkeeper.daemon.notify.incidents import IncidentStore
from watchkeeper.daemon.notify.outbox import Outbox
from watchkeeper.daemon.notify.router import Router
from watchkeeper.daemon.notify.silences import Silences
from watchkeeper.daemon.shadow.checks import ShadowChecks
from watchkeeper.daemon.shadow.evaluator import ShadowEvaluator
from watchkeeper.daemon.shadow.store import ShadowStore
from watchkeeper.daemon.store.skipped_windows import SkippedWindowsCollector
from watchkeeper.daemon.store.store import Store
from watchkeeper.detectors.segment_reference import declared_segments
from watchkeeper.policies.loader import LoadedPolicy

log = logging.getLogger(__name__)

REFERENCE_REFRESH_S = 30.0
"""How often the references in force at ingest are compared with what the policies score
against (a store query or a file stat per policy; a reference rebuild is rare)."""


class Daemon:
    """One watchkeeper process's components; :meth:`run` blocks until ``stop`` is set.

    ``clock`` is the wall clock every component reads (tests inject one to make idleness
    and ``alerts.max_age`` happen on cue)."""

    def __init__(
        self,
        config: Config,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.clock = clock
        self.registry = registry if registry is not None else CollectorRegistry()
        self.http: HttpServer | None = None
        self.store: Store | None = None
        self.ingestor: Ingestor | None = None
        self.started = threading.Event()
        self.scheduler: PolicyScheduler | None = None
        self.incidents: IncidentStore | None = None
        self.delivery: DeliveryWorker | None = None
        self.silences: Silences | None = None
        self.shadow: ShadowEvaluator | None = None
        self.shadow_store: ShadowStore | None = None
        self.leadership: Leadership | None = None
        self.checker: Checker | None = None
        self._next_reference_check = 0.0
        self.stepper: PolicyStepper | None = None
        # streams without any of a model's events: shared by the ticks and the A/B fold
        self.empty_streams = EmptyStreams()
        self.housekeeper: Housekeeper | None = None

    def _leadership_changed(self, leading: bool) -> None:
        if leading and self.checker is not None:
            # the previous leader's incident state is in the store: re-read it, never
            # act on what this replica remembered from its own last term
            self.checker.engines.clear()
        if leading and self.stepper is not None:
            self.stepper.reset()  # and where its policies stood

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

    def _base_url(self) -> str | None:
        if self.config.http.public_url:
            return self.config.http.public_url.rstrip("/")
        if self.http is not None:  # the address it listens on: right for a local setup
            return f"http://{self.http.address}"
        return None

    def _policies(self) -> dict[str, Any]:
        scheduler = self.scheduler
        if scheduler is None:
            return {}
        return {k: p.policy for k, p in scheduler.status.policies.items()}

    def _pruner(self, store: Store) -> Callable[[float], dict[str, int]] | None:
        retention = self.config.store.retention
        if retention <= 0:
            return None
        return Retention(
            store,
            self.config.kafka.group_id,
            retention,
            int(self.config.windows.size * 1000),
            self._policies,
        )

    def _policies_loaded(self, policies: dict[str, LoadedPolicy]) -> None:
        """On each (re)load: the shadow candidates, and the references in force at ingest."""
        assert self.shadow is not None and self.checker is not None
        try:
            self.shadow.configure(policies)
        finally:
            if self.ingestor is not None:
                self.ingestor.references.declared_segments = declared_segments(
                    (p.policy.model, p.policy.segment_specs()) for _, p in sorted(policies.items())
                )
                self.ingestor.references.adopt(self.checker.references.in_force(policies))

    def _references_refreshed(self, policies: dict[str, LoadedPolicy]) -> None:
        """A reference rebuilt under running policies (``reference build --into-store``, a
        file overwritten) reaches ingest within ``REFERENCE_REFRESH_S``, on every replica,
        without a reload: new windows count its bins and its estimate state."""
        now = time.monotonic()
        if self.ingestor is None or self.checker is None or now < self._next_reference_check:
            return
        self._next_reference_check = now + REFERENCE_REFRESH_S
        if self.ingestor.references.adopt_if_changed(self.checker.references.in_force(policies)):
            log.info("references in force at ingest refreshed")

    def reload(self) -> PolicyStatus | None:
        """Re-read the policy files now (SIGHUP, ``POST /-/reload``)."""
        return self.scheduler.reload() if self.scheduler is not None else None

    def run(self, stop: threading.Event) -> None:
        """Start every component in order, ingest until ``stop``, stop them in reverse."""
        config = self.config
        with ExitStack() as stack:
            store = Store.open(config.store_url())
            stack.callback(store.close)
            self.store = store
            self._register_store_metrics(stack, store)
            self._build_ingestion(store)
            reports = self._start_reports(stack, store)
            leadership = self._start_leadership(stack, store)
            outbox = Outbox(store.engine)
            self._start_delivery(stack, outbox, leadership)
            self._start_http(stack, store, reports)
            router = self._build_checker(store, reports)
            # the worker stops after ingestion (it may still hold offered rows), before
            # the store closes
            assert self.shadow is not None and self.ingestor is not None
            self.shadow.start()
            stack.callback(self.shadow.close)
            self.ingestor.open()
            stack.callback(self.ingestor.close)
            self._start_checks(stack, store, leadership)
            self._start_housekeeping(stack, store, outbox, router, leadership)
            self.started.set()
            log.info(
                "watchkeeper is running (group %s, topics %s)",
                config.kafka.group_id,
                ", ".join(t.name for t in config.kafka.topics.by_role().values()),
            )
            self.ingestor.run(stop)
            log.info("stopping: committing window state and offsets")
        log.info("stopped")

    # -- the steps of run(), in start order ---------------------------------------------
    def _register_store_metrics(self, stack: ExitStack, store: Store) -> None:
        """The store's skipped-window counts on ``/metrics``, labelled by the policies'
        models only (read at each scrape); unregistered when the daemon stops."""
        collector = SkippedWindowsCollector(
            store.skipped_windows, lambda: {p.model for p in self._policies().values()}
        )
        self.registry.register(collector)
        stack.callback(self.registry.unregister, collector)

    def _build_ingestion(self, store: Store) -> None:
        """The shadow evaluator and the ingestor (neither started yet)."""
        config = self.config
        topics = [t.name for t in config.kafka.topics.by_role().values()]
        metrics = IngestMetrics(self.registry, topics)
        size_ms = int(config.windows.size * 1000)
        self.shadow_store = ShadowStore(store.engine)
        self.shadow = ShadowEvaluator(
            config.shadow,
            self.shadow_store,
            config.kafka.group_id,
            size_ms,
            self.registry,
            label_ttl_ms=int(config.ingest.label_ttl * 1000),
            decision_threshold=config.ingest.decision_threshold,
        )
        self.ingestor = Ingestor(config, store, metrics, clock=self.clock, shadow=self.shadow)

    def _start_reports(self, stack: ExitStack, store: Store) -> Reports:
        config = self.config
        reports = Reports(
            store,
            Path(config.reports.dir),
            max_bytes=config.reports.max_bytes,
            max_age_s=config.reports.max_age,
            queue_size=config.reports.queue,
            wait_s=config.reports.wait,
        )
        stack.callback(reports.close)
        # evaluations are kept store.retention behind each policy's last tick (all: 0)
        retention = config.store.retention
        self.incidents = IncidentStore(
            store.engine, int(retention * 1000) if retention > 0 else 2**62
        )
        return reports

    def _start_leadership(self, stack: ExitStack, store: Store) -> Leadership:
        # one replica per group runs checks, delivery and housekeeping (leadership.py)
        leadership = Leadership(
            store.engine,
            self.config.kafka.group_id,
            self.registry,
            on_change=self._leadership_changed,
        ).start()
        stack.callback(leadership.close)
        self.leadership = leadership
        return leadership

    def _start_delivery(self, stack: ExitStack, outbox: Outbox, leadership: Leadership) -> None:
        config = self.config
        channels = build_channels(config, outbox)
        for channel in channels.values():
            stack.callback(channel.close)
        self.delivery = DeliveryWorker(
            outbox,
            channels,
            self.registry,
            retry=RetryPolicy(
                base=config.alerts.retry_base,
                cap=config.alerts.retry_cap,
                give_up_after=config.alerts.give_up_after,
            ),
            group_wait_s=config.alerts.group_wait,
            group_interval_s=config.alerts.group_interval,
            failure_channels=tuple(c for c in config.alerts.on_delivery_failure if c in channels),
            leading=leadership.is_leader,
            redact=RedactingFilter(secret_values(config)).redact,
        ).start()
        stack.callback(self.delivery.close)

    def _start_http(self, stack: ExitStack, store: Store, reports: Reports) -> None:
        config = self.config
        token = os.environ[config.http.token_env] if config.http.token_env else None
        self.http = HttpServer(
            config.http.host,
            config.http.port,
            self.registry,
            self._liveness,
            self._readiness,
            report_routes(reports)
            + ApiRoutes(self).routes()
            + console_for(self, store, reports, token).routes(),
            token,
            public_url=config.http.public_url,
        ).start()
        stack.callback(self.http.close)

    def _build_checker(self, store: Store, reports: Reports) -> Router:
        """The silences, the router and the checker (with its shadow part); returns the
        router, which housekeeping shares."""
        config = self.config
        assert self.incidents is not None and self.delivery is not None
        assert self.shadow_store is not None
        self.silences = Silences(store.engine)
        steps = step_settings(config)
        router = Router(
            self._base_url(),
            config.alerts.routes,
            int(config.windows.size * 1000),
            report_name=reports.name_for,
        )
        self.checker = Checker(
            store,
            self.incidents,
            config.windows.size,
            router.plan,
            enqueued=self.delivery.wake,
            clock=self.clock,
            metrics=CheckMetrics(self.registry),
            silenced=self.silences.silenced,
            max_age_s=config.alerts.max_age,
            label_ttl_s=config.ingest.label_ttl,
            ab=ABChecks(
                store,
                int(config.windows.size * 1000),
                config.ingest.label_ttl,
                router.plan_decision,
                self._base_url(),
                self.silences.silenced,
                self.delivery.wake,
                lateness_s=config.windows.allowed_lateness,
                max_age_s=config.alerts.max_age,
                clock=self.clock,
                labels_until=lambda model, now_ms: labels_watermark(
                    store, steps, model, now_ms, self.empty_streams
                ),
            ),
            shadow=ShadowChecks(
                self.shadow_store,
                int(config.windows.size * 1000),
                router.plan_decision,
                self._base_url(),
                self.silences.silenced,
                self.delivery.wake,
            ),
        )
        return router

    def _start_checks(self, stack: ExitStack, store: Store, leadership: Leadership) -> None:
        config = self.config
        assert self.checker is not None and self.shadow is not None
        self.stepper = PolicyStepper(
            self.checker,
            store,
            step_settings(config),
            self.registry,
            clock=self.clock,
            empty=self.empty_streams,
        )
        self.scheduler = PolicyScheduler(
            self.stepper,
            list(config.policies.paths),
            self.registry,
            set(config.alerts.channels),
            config.windows.size,
            clock=self.clock,
            on_reload=self._policies_loaded,
            on_watch=self._references_refreshed,
            leading=leadership.is_leader,
            poll_interval_s=config.policies.poll_interval,
        ).start()
        stack.callback(self.scheduler.close)

    def _start_housekeeping(
        self,
        stack: ExitStack,
        store: Store,
        outbox: Outbox,
        router: Router,
        leadership: Leadership,
    ) -> None:
        assert self.incidents is not None and self.delivery is not None
        self.housekeeper = Housekeeper(
            self.config.alerts,
            outbox,
            self.incidents,
            router,
            self._policies,
            self.delivery.wake,
            clock=self.clock,
            prune=self._pruner(store),
            leading=leadership.is_leader,
            set_aside=SetAside(store),
        ).start()
        stack.callback(self.housekeeper.close)
