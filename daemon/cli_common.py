"""What every command needs: the config, or a clean exit naming what is wrong with it."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from watchkeeper.daemon.config import Config, load_config
from watchkeeper.policies.errors import WatchkeeperDocumentError

if TYPE_CHECKING:
    from watchkeeper.daemon.store import Store


def load_or_exit(path: str) -> Config:
    """The config at ``path``; on any error, print every error and exit with status 2."""
    try:
        return load_config(path)
    except WatchkeeperDocumentError as exc:
        print(f"watchkeeper: invalid configuration\n{exc}", file=sys.stderr)
        raise SystemExit(2) from None


def open_store(path: str) -> Store:
    """The store the config at ``path`` names, migrated (a context manager)."""
    from watchkeeper.daemon.store import Store

    return Store.open(load_or_exit(path).store_url())
