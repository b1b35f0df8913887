"""The daemon's HTTP layer: the server (``server``: Hypercorn in a thread), the Starlette
application and its gate (``application``: host check, bearer token, cross-site rule),
limits and security headers (``guard``), checked query parameters (``params``), signed
drift reports (``reports``), the status document (``status``), and the console: pages,
their queries, static assets and the OpenAPI description of the JSON API.

It may import ``watchkeeper.daemon.store.store`` / ``queries`` / ``tables`` / ``engine``,
``config``, the notification layer's read APIs (incidents, silences, outbox), the
``policies`` and ``detectors`` packages, Starlette, Hypercorn, Jinja2 and
prometheus-client. Nothing below ``app.py`` imports it except ``cli`` (the status
document), so the rest of the daemon never depends on how pages are drawn.
"""
