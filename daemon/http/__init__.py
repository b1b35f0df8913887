"""The daemon's HTTP layer: what the daemon serves on its listen address.

Owns the server (:mod:`.server`: Hypercorn in a thread), the Starlette application and its
gate (:mod:`.application`: host check, bearer token, cross-site rule), limits and security
headers (:mod:`.guard`), checked query parameters (:mod:`.params`), signed drift reports
(:mod:`.reports`), the status document (:mod:`.status`), and the console: its pages
(:mod:`.console`), their bounded queries (:mod:`.console_queries`), the silence form and its
CSRF tokens (:mod:`.console_silence`), templates, static assets and the OpenAPI
description of the JSON API.

May import: ``daemon.checks`` (tick and stepping read-outs for the status document),
``daemon.offline`` (the drift report), ``daemon.store``, ``daemon.eventtime``,
``daemon.config``, ``detectors``, ``policies``; Starlette, Hypercorn, Jinja2 and
prometheus-client. What the console reads of notify and shadow is handed to it as
callables by :mod:`watchkeeper.daemon.console_sources`, so pages never reach into them.
"""
