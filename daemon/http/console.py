"""The console: server-rendered pages over the store, the target of every alert link.

Pages (read-only, no token needed to read, like the JSON API):

* ``/`` — overview: each model's health, every policy's last evaluations against their
  thresholds, open incidents by severity, shadow verdicts;
* ``/incidents/<fingerprint>`` — what fired, its history, the rule's evaluations over the
  last day with its thresholds, current against reference distribution, notifications
  sent and their delivery state, and a silence form;
* ``/models/<model>`` — drift per feature over time, latency percentiles, performance,
  quarantine counts, shadow comparison;
* ``/quarantine`` — recent bad records by reason, raw prefix shown escaped.

Why server-side Jinja2 and not a front end over the JSON API: every value is escaped in
one place (autoescape on every template; chart data through ``tojson``), a page works
with the plot script blocked, and there is no second build tool. The one script,
``console.js``, only draws the charts from the JSON the page embeds
(``<script type="application/json">``, never executed) and submits the silence form.
Plotly.js is served from the plotly wheel the daemon already depends on (Evidently
does), so nothing is fetched from a CDN: the console works air-gapped.

Pages set ``Content-Security-Policy`` with ``script-src 'self'`` (no inline script, no
eval), ``connect-src 'self'``, ``form-action 'self'``, ``frame-ancestors 'none'``.
Styles allow ``'unsafe-inline'`` because Plotly sets style attributes on the SVG it draws.

The silence form (:mod:`~watchkeeper.daemon.http.console_silence`) posts JSON with a
CSRF token and, when the daemon has ``http.token_env``, the bearer token the on-call
types in; the application's gate applies the same rules as to every other change.
"""

from __future__ import annotations

import importlib.resources
import json
import logging
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import yaml
from watchkeeper.daemon.eventtime.windows import window_bounds
from watchkeeper.daemon.http.console_charts import incident_chart, severity_changes, when
from watchkeeper.daemon.http.console_queries import (
    DAY_MS,
    LATENCY_NAMES,
    ConsoleQueries,
    Distribution,
    finite,
)
from watchkeeper.daemon.http.console_silence import (
    FINGERPRINT,
    SILENCE_DURATIONS,
    CsrfTokens,
    SilenceForm,
    incident_matchers,
)
from watchkeeper.daemon.http.console_timeline import timeline_members, whole_ticks
from watchkeeper.daemon.http.params import ParamError, bounded_int, query_params
from watchkeeper.daemon.http.routes import Request, Response, Route
from watchkeeper.daemon.store.incident_values import rule_bad_side
from watchkeeper.detectors.profile import ReferenceProfile
from watchkeeper.detectors.registry import METRICS
from watchkeeper.policies.schema import Policy
from watchkeeper.policies.segments import described

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self'; connect-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
HTML = "text/html; charset=utf-8"


@dataclass(frozen=True)
class ConsoleSources:
    """What the pages read, handed in by the daemon (this layer imports no peer)."""

    queries: ConsoleQueries
    policies: Callable[[], Mapping[str, Policy]]
    reference_of: Callable[[str], ReferenceProfile | None]
    """Policy key → the reference in force for it (None when there is none)."""
    status: Callable[[], dict[str, Any]]
    shadow: Callable[[], dict[str, Any]]
    silences: Callable[[], list[dict[str, Any]]]
    add_silence: Callable[[dict[str, str], float, str, str], int]
    window_size_ms: int
    csrf_key: bytes
    token_required: bool
    report_name: Callable[[str, int, int, str], str] | None = None
    clock: Callable[[], float] = time.time


def _static_assets() -> dict[str, tuple[bytes, str]]:
    plotly = importlib.resources.files("plotly") / "package_data" / "plotly.min.js"
    return {
        "plotly.min.js": (plotly.read_bytes(), "text/javascript; charset=utf-8"),
        "console.js": ((HERE / "static" / "console.js").read_bytes(), "text/javascript"),
        "console.css": ((HERE / "static" / "console.css").read_bytes(), "text/css"),
    }


def _number(value: Any) -> str:
    number = finite(value)
    if number is None:
        return "—"
    return f"{number:.4g}"


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(HERE / "templates")),
        autoescape=True,  # every template, whatever its name: all of them are HTML
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = when
    env.filters["number"] = _number
    env.filters["q"] = lambda s: urllib.parse.quote(str(s), safe="")
    return env


class Console:
    """The pages and their routes (module docstring)."""

    def __init__(self, sources: ConsoleSources) -> None:
        self.sources = sources
        self.env = environment()
        self.assets = _static_assets()
        self.tokens = CsrfTokens(sources.csrf_key, sources.clock)
        self.form = SilenceForm(sources.queries, sources.add_silence, self.tokens)
        spec = yaml.safe_load((HERE / "openapi.yaml").read_text(encoding="utf-8"))
        self.openapi = json.dumps(spec, sort_keys=False).encode()

    # -- helpers ----------------------------------------------------------------------
    def page(self, template: str, code: int = 200, **context: Any) -> Response:
        body = self.env.get_template(template).render(
            now=when(int(self.sources.clock() * 1000)), **context
        )
        return Response(code, body.encode(), HTML, {"content-security-policy": PAGE_CSP})

    def not_found(self, what: str) -> Response:
        return self.page("missing.html", 404, what=what)

    def _now_ms(self) -> int:
        return int(self.sources.clock() * 1000)

    # -- pages ------------------------------------------------------------------------
    def overview(self, request: Request) -> Response:
        try:
            query_params(request, ())
        except ParamError as exc:
            return self.page("missing.html", 400, what=str(exc))
        q = self.sources.queries
        status = self.sources.status()
        incidents = q.open_incidents()
        by_model: dict[str, dict[str, int]] = {}
        for row in incidents:
            counts = by_model.setdefault(row["model"], {})
            counts[row["severity"]] = counts.get(row["severity"], 0) + 1
        lag: dict[str, int] = {}
        for part in status.get("partitions", []):
            if part.get("lag") is not None:
                lag[part["topic"]] = lag.get(part["topic"], 0) + int(part["lag"])
        policies = self.sources.policies()
        models = sorted(set(status.get("models", {})) | {p.model for p in policies.values()})
        windows = {
            p.model: tick["tick"]
            for key, p in policies.items()
            if (tick := status.get("policies", {}).get(key)) is not None and tick["tick"]
        }
        return self.page(
            "overview.html",
            models=models,
            status=status,
            open_by_model=by_model,
            lag=lag,
            last_tick=windows,
            incidents=incidents,
            evaluations=self.sources.queries.latest_evaluations(),
            shadow=self.sources.shadow().get("models", {}),
        )

    def incident(self, request: Request) -> Response:
        rest = request.path.removeprefix("/incidents/")
        if not FINGERPRINT.match(rest):
            return self.not_found("no such incident")
        try:
            query_params(request, ())
        except ParamError as exc:
            return self.page("missing.html", 400, what=str(exc))
        q = self.sources.queries
        incident = q.incident(rest)
        if incident is None:
            return self.not_found("no such incident")
        policies = self.sources.policies()
        policy = policies.get(incident["policy"])
        # the worst members, and whole ticks: "worst member per tick" must see the worst
        features = timeline_members(
            incident["members"], incident["feature"], rule_bad_side(policies, incident)
        )
        timeline = whole_ticks(
            q.timeline(
                incident["policy"], incident["rule"], features or None, self._now_ms() - DAY_MS
            )
        )
        distributions, report = self._column_view(incident, policy, timeline, features)
        ab = self._ab_view(incident)
        matchers = incident_matchers(incident)
        silenced_by = [
            s
            for s in self.sources.silences()
            if all(matchers.get(k) == v for k, v in s["matchers"].items())
        ]
        return self.page(
            "incident.html",
            incident=incident,
            history=q.history(rest),
            severity_changes=severity_changes(timeline),
            timeline=timeline[-50:][::-1],
            evaluations=len(timeline),
            chart=incident_chart(incident["metric"], timeline, distributions),
            distributions=distributions,
            report=report,
            notifications=q.notifications(rest),
            matchers=matchers,
            silences=silenced_by,
            durations=list(SILENCE_DURATIONS),
            csrf=self.tokens.issue(),
            token_required=self.sources.token_required,
            policy_known=policy is not None,
            ab=ab,
        )

    def _ab_view(self, incident: dict[str, Any]) -> dict[str, Any] | None:
        """For an ``ab_*`` incident: the latest look of its pair (values with intervals,
        both versions side by side), as ``/api/shadow`` shows it."""
        metric = METRICS.get(incident["metric"])
        if metric is None or metric.scope != "ab":
            return None
        entry = self.sources.shadow().get("ab", {}).get(incident["policy"], {})
        for comparison in entry.get("comparisons", []):
            if comparison["pair"] == incident["feature"]:
                return dict(comparison)
        return None

    def _column_view(
        self,
        incident: dict[str, Any],
        policy: Policy | None,
        timeline: list[dict[str, Any]],
        features: list[str],
    ) -> tuple[list[Distribution], str | None]:
        """For a column metric's incident: the distributions of its last window against
        the reference, and the link to that window's drift report (stored references)."""
        metric = METRICS.get(incident["metric"])
        if policy is None or metric is None or metric.scope != "column":
            return [], None
        size = self.sources.window_size_ms
        # the windows behind the last value on the plot: an evaluation that measured
        # nothing (too few samples, no data yet) has no distribution to show
        measured = [row for row in timeline if row["value"] is not None]
        last = measured[-1] if measured else timeline[-1] if timeline else None
        anchor = last["at_ms"] if last is not None else incident["updated_ms"]
        start, end = window_bounds(int(anchor), size, int(policy.window * 1000))
        reference = self.sources.reference_of(incident["policy"])
        distributions = self.sources.queries.distributions(
            reference, incident["model"], features[:6], start, end
        )
        ref_name = policy.stored_reference()
        report = None
        if self.sources.report_name is not None and ref_name is not None:
            report = "/reports/" + self.sources.report_name(incident["model"], start, end, ref_name)
        return distributions, report

    def model(self, request: Request) -> Response:
        name = request.path.removeprefix("/models/")  # ASGI paths arrive decoded
        try:
            query_params(request, ())
        except ParamError as exc:
            return self.page("missing.html", 400, what=str(exc))
        status = self.sources.status()
        policies = {k: p for k, p in self.sources.policies().items() if p.model == name}
        if name not in status.get("models", {}) and not policies:
            return self.not_found("no such model")  # a name the daemon never saw
        q = self.sources.queries
        since = self._now_ms() - DAY_MS
        rows = q.model_evaluations(name, since)
        drift: dict[str, dict[str, dict[str, float | None]]] = {}
        other: dict[str, dict[str, Any]] = {}
        for row in rows:
            at = when(row["at_ms"])
            if row["scope"] == "column" and row["feature"]:
                drift.setdefault(row["metric"], {}).setdefault(row["feature"], {})[at] = row[
                    "value"
                ]
            else:
                key = f"{row['metric']} ({row['rule']})"
                series = other.setdefault(key, {"x": [], "y": [], "scope": row["scope"]})
                series["x"].append(at)
                series["y"].append(row["value"])
        heatmaps = []
        for metric, by_feature in sorted(drift.items()):
            times = sorted({t for values in by_feature.values() for t in values})
            names = sorted(by_feature)[:50]
            heatmaps.append(
                {
                    "metric": metric,
                    "x": times,
                    "y": [described(f) for f in names],  # "prediction", "amount for country=DE"
                    "z": [[by_feature[f].get(t) for t in times] for f in names],
                }
            )
        latency = q.latency(name, since)
        metric_series = [{"name": k, **v} for k, v in sorted(other.items())]
        chart = {
            "heatmaps": heatmaps,
            "series": metric_series,
            "latency": {
                "x": [when(r["start_ms"]) for r in latency],
                "percentiles": list(LATENCY_NAMES),
                **{p: [r[p] for r in latency] for p in LATENCY_NAMES},
            },
        }
        tables = self.sources.shadow()
        shadow = tables.get("models", {}).get(name)
        comparisons = [  # each A/B policy's comparison in force (the decision links here)
            entry["comparisons"][0]
            for entry in tables.get("ab", {}).values()
            if entry["model"] == name and entry["comparisons"]
        ]
        return self.page(
            "model.html",
            model=name,
            entry=status.get("models", {}).get(name, {}),
            policies=sorted(policies),
            chart=chart,
            quarantine=q.quarantine_counts(),
            shadow=shadow,
            comparisons=comparisons,
            performance=[s for s in metric_series if s["scope"] == "performance"],
        )

    def quarantine(self, request: Request) -> Response:
        try:
            params = query_params(request, {"reason", "limit"})
            limit = bounded_int(params, "limit", 100, 1, 500)
        except ParamError as exc:
            return self.page("missing.html", 400, what=str(exc))
        q = self.sources.queries
        counts = q.quarantine_counts()
        reason = params.get("reason")
        if reason is not None and reason not in counts:
            reason = None
        return self.page(
            "quarantine.html",
            counts=counts,
            reason=reason,
            rows=q.quarantined(reason, limit),
            limit=limit,
        )

    def static(self, request: Request) -> Response:
        asset = self.assets.get(request.path.removeprefix("/static/"))
        if asset is None:
            return Response.of_json(404, {"error": "not found"})
        body, media = asset
        # the assets change only with the package: let the browser keep them an hour
        return Response(200, body, media, {"cache-control": "public, max-age=3600"})

    def openapi_document(self, _request: Request) -> Response:
        return Response(200, self.openapi, "application/json")

    def routes(self) -> list[Route]:
        return [
            Route("GET", "/", self.overview),
            Route("GET", "/incidents/", self.incident, prefix=True),
            Route("POST", "/incidents/", self.form.post, prefix=True),
            Route("GET", "/models/", self.model, prefix=True),
            Route("GET", "/quarantine", self.quarantine),
            Route("GET", "/static/", self.static, prefix=True),
            Route("GET", "/openapi.json", self.openapi_document),
        ]
