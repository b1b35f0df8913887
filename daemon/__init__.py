"""The watchkeeper process, in subpackages by capability.

Layers, top to bottom (a module imports only from its own layer's package or below;
import-linter's contracts in ``pyproject.toml`` enforce it, ``docs/architecture.md`` draws it):

* ``cli``, ``demo`` — the command line and the demo;
* ``app`` — the composition root: builds every component and runs them in one exit stack;
* the HTTP server, API and report pages (``http``);
* ``offline`` — references and drift of files;
* ``checks`` — scheduler, checker, leadership, housekeeping, retention;
* ``shadow`` — candidate models beside production;
* ``notify`` — router, incidents, outbox, delivery, silences, channels;
* ``ingest`` — the loop, decoding, field mapping;
* ``store`` — SQLAlchemy store, queries, tables, migrations;
* ``eventtime`` — windows and watermarks;
* ``config``, ``config_shadow``, ``errors``, ``logs``.
"""

from __future__ import annotations
