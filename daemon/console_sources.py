"""What the console reads, wired from the daemon's components.

The console (:mod:`watchkeeper.daemon.http.console`) imports no peer of the HTTP layer:
it is handed callables. They read the daemon's attributes when called, so they see the
components started after the HTTP server (scheduler, stepper, silences) once they exist.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from watchkeeper.daemon.checks.ab_status import ab_table
from watchkeeper.daemon.checks.ab_store import ABStore
from watchkeeper.daemon.checks.performance_rows import PerformanceRowCache
from watchkeeper.daemon.checks.reference_cache import ReferenceCache
from watchkeeper.daemon.checks.scheduler import PolicyScheduler
from watchkeeper.daemon.checks.stepping import PolicyStepper
from watchkeeper.daemon.config import Config
from watchkeeper.daemon.http.console import Console, ConsoleSources
from watchkeeper.daemon.http.console_queries import ConsoleQueries
from watchkeeper.daemon.http.reports import Reports
from watchkeeper.daemon.http.status import status as status_document
from watchkeeper.daemon.notify.silences import Silences
from watchkeeper.daemon.shadow.checks import shadow_table
from watchkeeper.daemon.shadow.store import ShadowStore
from watchkeeper.daemon.store.store import Store
from watchkeeper.detectors.profile import ReferenceProfile
from watchkeeper.policies.schema import Policy


class DaemonParts(Protocol):
    """What the console reads of the daemon (:class:`~watchkeeper.daemon.app.Daemon`).

    A protocol, not the class: the app imports this module, so this module cannot import
    the app (the acyclic import contract).
    """

    config: Config
    clock: Callable[[], float]
    scheduler: PolicyScheduler | None
    stepper: PolicyStepper | None
    shadow_store: ShadowStore | None
    silences: Silences | None


def console_for(daemon: DaemonParts, store: Store, reports: Reports, token: str | None) -> Console:
    """The console of ``daemon`` over ``store`` (``token``: the HTTP bearer token, if any)."""
    references = ReferenceCache(store)
    rows_cache = PerformanceRowCache()  # the model page's rows: parsed when they change
    size_ms = int(daemon.config.windows.size * 1000)
    comparisons = ABStore(store.engine)  # the A/B comparisons' latest looks

    def policies() -> dict[str, Policy]:
        scheduler = daemon.scheduler
        if scheduler is None:
            return {}
        return {k: p.policy for k, p in scheduler.status.policies.items()}

    def reference_of(key: str) -> ReferenceProfile | None:
        scheduler = daemon.scheduler
        loaded = scheduler.status.policies.get(key) if scheduler is not None else None
        return references.get(loaded) if loaded is not None else None

    def status() -> dict[str, Any]:
        stepper = daemon.stepper
        progress = stepper.progress if stepper is not None else None
        now_ms = int(daemon.clock() * 1000)
        scheduler = daemon.scheduler
        loaded = scheduler.status.policies if scheduler is not None else {}
        return status_document(
            store,
            daemon.config,
            policies(),
            now_ms,
            progress,
            reference_of=lambda model: references.of_model(loaded, model),
            rows_cache=rows_cache,
        )

    def shadow() -> dict[str, Any]:
        ab = {"ab": ab_table(comparisons, policies())}
        if daemon.shadow_store is None:
            return ab
        now_ms = int(daemon.clock() * 1000)
        return shadow_table(daemon.shadow_store, policies(), now_ms, size_ms) | ab

    def silences() -> list[dict[str, Any]]:
        return daemon.silences.active() if daemon.silences is not None else []

    def add_silence(matchers: dict[str, str], duration: float, by: str, note: str) -> int:
        if daemon.silences is None:
            raise RuntimeError("the daemon is starting: silences are not open yet")
        return daemon.silences.add(matchers, duration, created_by=by, comment=note)

    return Console(
        ConsoleSources(
            queries=ConsoleQueries(store, policies),
            policies=policies,
            reference_of=reference_of,
            status=status,
            shadow=shadow,
            silences=silences,
            add_silence=add_silence,
            window_size_ms=size_ms,
            csrf_key=store.secret("console-csrf"),
            token_required=token is not None,
            report_name=reports.name_for,
            clock=daemon.clock,
        )
    )
