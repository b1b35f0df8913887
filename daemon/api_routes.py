"""The JSON API's routes (``/api/…``, ``POST /-/reload``), wired from the daemon's components.

Like the console (:mod:`watchkeeper.daemon.console_sources`), each handler reads the
daemon's attributes when called, so it sees the components started after the HTTP server
(scheduler, stepper, checker, silences) once they exist, and answers 503 "starting"
before.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, Protocol

from watchkeeper.daemon.checks.ab_status import ab_table
from watchkeeper.daemon.checks.ab_store import ABStore
from watchkeeper.daemon.checks.checker import Checker
from watchkeeper.daemon.checks.scheduler import PolicyScheduler, PolicyStatus, describe
from watchkeeper.daemon.checks.stepping import PolicyStepper
from watchkeeper.daemon.config import Config
from watchkeeper.daemon.http.params import (
    INCIDENT_STATES,
    ParamError,
    bounded_int,
    choice,
    query_params,
)
from watchkeeper.daemon.http.routes import Request, Response, Route
from watchkeeper.daemon.http.status import status as status_document
from watchkeeper.daemon.notify.incidents import IncidentStore
from watchkeeper.daemon.notify.silences import Silences
from watchkeeper.daemon.shadow.checks import shadow_table
from watchkeeper.daemon.shadow.store import ShadowStore
from watchkeeper.daemon.store.store import Store


def starting() -> Response:
    """The answer before the component a route reads exists."""
    return Response.of_json(503, {"error": "starting"})


class ApiParts(Protocol):
    """What the API reads of the daemon (:class:`~watchkeeper.daemon.app.Daemon`); a
    protocol, not the class, since the app imports this module."""

    config: Config
    clock: Callable[[], float]
    store: Store | None
    scheduler: PolicyScheduler | None
    stepper: PolicyStepper | None
    checker: Checker | None
    incidents: IncidentStore | None
    shadow_store: ShadowStore | None
    silences: Silences | None

    def reload(self) -> PolicyStatus | None: ...


class ApiRoutes:
    """One handler per route of the API, over the parts of ``daemon``."""

    def __init__(self, daemon: ApiParts) -> None:
        self.daemon = daemon

    def routes(self) -> list[Route]:
        return [
            Route("GET", "/api/silences", self.silences),
            Route("GET", "/api/shadow", self.shadow),
            Route("GET", "/api/policies", self.policies),
            Route("GET", "/api/status", self.status),
            Route("GET", "/api/incidents", self.incidents),
            Route("GET", "/api/evaluations", self.evaluations),
            Route("POST", "/-/reload", self.reload),
        ]

    def _progress(self, key: str) -> dict[str, Any] | None:
        stepper = self.daemon.stepper
        entry = stepper.progress.get(key) if stepper is not None else None
        return None if entry is None else asdict(entry)

    def policies(self, _request: Request) -> Response:
        scheduler = self.daemon.scheduler
        if scheduler is None:
            return starting()
        checker = self.daemon.checker
        names = checker.name_warnings if checker is not None else {}
        body = describe(scheduler.status, self._progress, lambda key: names.get(key, []))
        return Response.of_json(200, body)

    def status(self, _request: Request) -> Response:
        d = self.daemon
        store, scheduler, checker, stepper = d.store, d.scheduler, d.checker, d.stepper
        if store is None or scheduler is None:
            return starting()
        body = status_document(
            store,
            d.config,
            {k: p.policy for k, p in scheduler.status.policies.items()},
            int(d.clock() * 1000),
            stepper.progress if stepper is not None else None,
            reference_of=(
                (lambda m: checker.references.of_model(scheduler.status.policies, m))
                if checker is not None
                else None
            ),
            rows_cache=checker.row_cache if checker is not None else None,
        )
        return Response.of_json(200, body)

    def incidents(self, request: Request) -> Response:
        incidents = self.daemon.incidents
        if incidents is None:
            return starting()
        try:
            q = query_params(request, {"state", "limit"})
            state = choice(q, "state", INCIDENT_STATES, "open")
            limit = bounded_int(q, "limit", 200, 1, 1000)
        except ParamError as exc:
            return Response.of_json(400, {"error": str(exc)})
        rows = incidents.incidents(None if state == "all" else state, limit)
        return Response.of_json(200, {"incidents": rows})

    def evaluations(self, request: Request) -> Response:
        incidents = self.daemon.incidents
        if incidents is None:
            return starting()
        try:
            q = query_params(request, {"policy", "rule", "feature", "limit"})
            limit = bounded_int(q, "limit", 100, 1, 1000)
        except ParamError as exc:
            return Response.of_json(400, {"error": str(exc)})
        rows = incidents.evaluations(q.get("policy"), q.get("rule"), q.get("feature"), limit)
        return Response.of_json(200, {"evaluations": rows})

    def reload(self, _request: Request) -> Response:
        status = self.daemon.reload()
        if status is None:
            return starting()
        return Response.of_json(200 if status.ok else 422, describe(status))

    def shadow(self, _request: Request) -> Response:
        d = self.daemon
        if d.shadow_store is None or d.scheduler is None:
            return starting()
        policies = {k: p.policy for k, p in d.scheduler.status.policies.items()}
        body = shadow_table(
            d.shadow_store,
            policies,
            int(time.time() * 1000),
            int(d.config.windows.size * 1000),
        )
        body["ab"] = ab_table(ABStore(d.shadow_store.engine), policies)  # the same database
        return Response.of_json(200, body)

    def silences(self, _request: Request) -> Response:
        silences = self.daemon.silences
        if silences is None:
            return starting()
        return Response.of_json(200, {"silences": silences.active()})
