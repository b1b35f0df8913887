"""The console's silence form: its CSRF tokens and the ``POST`` that takes it.

The form is posted as JSON by ``console.js`` with ``X-CSRF-Token``; the application's
gate has already applied the rules of every change (bearer token when configured,
loopback only without one, no cross-site request). The token is an HMAC of the time it
was issued under a key the store generates and keeps (``Store.secret``), so every
replica accepts it and a page older than ``CSRF_TTL_S`` must be reloaded. A silence made
here matches the incident's model, policy, rule and feature.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

from watchkeeper.daemon.http.console_queries import ConsoleQueries
from watchkeeper.daemon.http.routes import Request, Response
from watchkeeper.policies.incident_model import DIGEST

log = logging.getLogger(__name__)

FINGERPRINT = re.compile(r"^[0-9a-f]{16}$")
CSRF_TTL_S = 12 * 3600
SILENCE_DURATIONS = {"1h": 3600, "4h": 4 * 3600, "24h": 86_400, "7d": 7 * 86_400}
MAX_COMMENT = 500
MAX_AUTHOR = 100

AddSilence = Callable[[dict[str, str], float, str, str], int]
"""(matchers, duration s, created by, comment) → the new silence's id."""


class CsrfTokens:
    """Tokens the pages carry and the form must send back.

    >>> tokens = CsrfTokens(b"k" * 32, clock=lambda: 1_000.0)
    >>> token = tokens.issue()
    >>> tokens.valid(token), tokens.valid(token[:-1] + "0"), tokens.valid("1000.x")
    (True, False, False)
    >>> CsrfTokens(b"k" * 32, clock=lambda: 1_000.0 + CSRF_TTL_S + 1).valid(token)
    False
    """

    def __init__(self, key: bytes, clock: Callable[[], float] = time.time) -> None:
        self._key = key
        self._clock = clock

    def _mac(self, issued: str) -> str:
        return hmac.new(self._key, f"csrf\0{issued}".encode(), hashlib.sha256).hexdigest()[:32]

    def issue(self) -> str:
        issued = str(int(self._clock()))
        return f"{issued}.{self._mac(issued)}"

    def valid(self, token: str) -> bool:
        issued, _, mac = token.partition(".")
        if not issued.isdigit() or len(issued) > 12 or len(mac) != 32:
            return False
        if not hmac.compare_digest(mac.encode(), self._mac(issued).encode()):
            return False
        age = self._clock() - int(issued)
        return -60 <= age <= CSRF_TTL_S  # a minute of clock skew between replicas


def incident_matchers(incident: Mapping[str, Any]) -> dict[str, str]:
    """The silence matchers that hold exactly this incident's notifications."""
    out = {
        "model": str(incident["model"]),
        "policy": str(incident["policy"]),
        "rule": str(incident["rule"]),
    }
    feature = incident.get("feature")
    if feature and feature != DIGEST:
        out["feature"] = str(feature)
    return out


class SilenceForm:
    """``POST /incidents/<fingerprint>/silence`` (module docstring)."""

    def __init__(self, queries: ConsoleQueries, add: AddSilence, tokens: CsrfTokens) -> None:
        self.queries = queries
        self.add = add
        self.tokens = tokens

    def post(self, request: Request) -> Response:
        fingerprint = request.path.removeprefix("/incidents/").removesuffix("/silence")
        if not request.path.endswith("/silence") or not FINGERPRINT.match(fingerprint):
            return Response.of_json(404, {"error": "no such incident"})
        if not self.tokens.valid(request.headers.get("x-csrf-token", "")[:64]):
            return Response.of_json(403, {"error": "missing or expired CSRF token: reload"})
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return Response.of_json(415, {"error": "send the form as application/json"})
        try:
            body = request.json()
        except ValueError:
            return Response.of_json(400, {"error": "the body is not JSON"})
        if not isinstance(body, dict) or set(body) - {"duration", "comment", "author"}:
            return Response.of_json(400, {"error": "expected {duration, comment, author}"})
        duration = SILENCE_DURATIONS.get(str(body.get("duration", "")))
        comment = body.get("comment", "")
        author = body.get("author", "") or "console"
        if duration is None:
            allowed = ", ".join(SILENCE_DURATIONS)
            return Response.of_json(400, {"error": f"duration: one of {allowed}"})
        if not isinstance(comment, str) or len(comment) > MAX_COMMENT:
            return Response.of_json(400, {"error": f"comment: at most {MAX_COMMENT} characters"})
        if not isinstance(author, str) or len(author) > MAX_AUTHOR:
            return Response.of_json(400, {"error": f"author: at most {MAX_AUTHOR} characters"})
        incident = self.queries.incident(fingerprint)
        if incident is None:
            return Response.of_json(404, {"error": "no such incident"})
        matchers = incident_matchers(incident)
        silence_id = self.add(matchers, duration, author, comment)
        log.info("silence %d of %s for %ds from the console", silence_id, matchers, duration)
        return Response.of_json(
            201, {"silence": silence_id, "matchers": matchers, "duration_s": duration}
        )
