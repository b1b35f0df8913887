"""One exception root: every exception class of ours derives from
:class:`watchkeeper.errors.WatchkeeperError` and says whether it is retriable, and the
delivery worker's retry decision reads ``retriable`` — also of an error that is not a
channel's own."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import time
from pathlib import Path
from typing import ClassVar

import pytest
from prometheus_client import CollectorRegistry
from watchkeeper.alerts.notification import Notification
from watchkeeper.alerts.retry import RetryPolicy
from watchkeeper.daemon.errors import StoreUnavailableError
from watchkeeper.daemon.notify.delivery import DeliveryWorker
from watchkeeper.daemon.notify.outbox import Outbox
from watchkeeper.daemon.store.store import Store
from watchkeeper.errors import WatchkeeperError

PACKAGES = ("watchkeeper.detectors", "watchkeeper.policies", "watchkeeper.alerts")
DAEMON = ("errors", "http", "notify", "checks", "shadow", "store", "ingest", "config")


def our_modules() -> list[str]:
    names = []
    for package in PACKAGES:
        module = importlib.import_module(package)
        names += [m.name for m in pkgutil.walk_packages(module.__path__, package + ".")]
    daemon = importlib.import_module("watchkeeper.daemon")
    for info in pkgutil.walk_packages(daemon.__path__, "watchkeeper.daemon."):
        if info.name.split(".")[2] in DAEMON and ".migrations" not in info.name:
            names.append(info.name)
    return names


def our_exceptions() -> list[type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for name in our_modules():
        module = importlib.import_module(name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__ == name:
                found[f"{name}.{obj.__qualname__}"] = obj
    return [found[k] for k in sorted(found)]


def test_every_exception_of_ours_has_the_one_root() -> None:
    exceptions = our_exceptions()
    assert len(exceptions) >= 15, exceptions  # the walk found them
    strays = [e.__qualname__ for e in exceptions if not issubclass(e, WatchkeeperError)]
    assert strays == []
    for e in exceptions:
        assert isinstance(e.retriable, bool), e  # type: ignore[attr-defined]


class _FlakyError(WatchkeeperError):
    def __init__(self, retriable: bool) -> None:
        self.retriable = retriable
        super().__init__("retriable" if retriable else "final")


class _RaisingChannel:
    """A channel whose send fails with one of our errors that is not a DeliveryError."""

    grouped: ClassVar[bool] = True

    def __init__(self, error: BaseException) -> None:
        self.name = "c"
        self.error = error
        self.calls = 0

    def send(self, notification: Notification) -> None:
        self.calls += 1
        raise self.error

    def close(self) -> None:
        pass


def _note() -> Notification:
    return Notification(
        kind="opened",
        fingerprint="fp",
        severity="critical",
        summary="s",
        model="m",
        policy="p",
        rule="r",
        metric="psi",
        feature=None,
        members={},
        at_ms=0,
        opened_ms=0,
    )


@pytest.mark.parametrize(
    ("error", "state"),
    [
        (_FlakyError(retriable=False), "failed"),
        (_FlakyError(retriable=True), "pending"),
        (StoreUnavailableError("send", OSError("down")), "pending"),
        (OSError("connection reset"), "pending"),  # not ours: retried until give_up_after
    ],
    ids=["final", "retriable", "store-outage", "foreign"],
)
def test_the_delivery_worker_reads_retriable(
    error: BaseException, state: str, tmp_path: Path
) -> None:
    with Store.open(f"sqlite:///{tmp_path / 's.db'}") as store:
        outbox = Outbox(store.engine)
        channel = _RaisingChannel(error)
        worker = DeliveryWorker(
            outbox,
            {"c": channel},
            CollectorRegistry(),
            RetryPolicy(base=60.0, cap=60.0, give_up_after=3600.0, jitter=False),
            failure_channels=(),
        )
        outbox.add([("c", _note())], int(time.time() * 1000))
        worker.deliver_due()
        (row,) = outbox.rows()
        assert channel.calls == 1
        assert (row["state"], row["attempts"]) == (state, 1)
        assert row["last_error"] == f"{type(error).__name__}: {error}"
