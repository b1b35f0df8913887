"""What every command needs: the config, or a clean exit naming what is wrong with it."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from watchkeeper.daemon.config import Config, load_config
from watchkeeper.daemon.ingest.sources import option_checks
from watchkeeper.policies.errors import WatchkeeperDocumentError

if TYPE_CHECKING:
    from watchkeeper.daemon.store.store import Store


def cell(value: object) -> Any:
    """A table cell or line for rich from a string that came from events or files: shown
    as text (rich markup such as ``[red]`` in a feature name is not interpreted), with its
    ANSI escapes and control characters removed."""
    from rich.text import Text
    from watchkeeper.alerts.text import terminal

    return Text(terminal("" if value is None else value))


def load_or_exit(path: str) -> Config:
    """The config at ``path``; on any error, print every error and exit with status 2."""
    try:
        return load_config(path, clients=option_checks())
    except WatchkeeperDocumentError as exc:
        print(f"watchkeeper: invalid configuration\n{exc}", file=sys.stderr)
        raise SystemExit(2) from None


def open_store(path: str) -> Store:
    """The store the config at ``path`` names, migrated (a context manager)."""
    from watchkeeper.daemon.store.store import Store

    return Store.open(load_or_exit(path).store_url())
