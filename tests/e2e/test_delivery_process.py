"""Promise: with the daemon killed (-9) and restarted while a webhook endpoint is failing,
every notification still arrives exactly once by idempotency key, and in order."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from watchkeeper.daemon.demo.broker import EmbeddedBroker, free_port
from watchkeeper.daemon.notify.outbox import Outbox
from watchkeeper.daemon.store.store import Store

from tests.support import (
    SECRET,
    DaemonProcess,
    Receiver,
    create_topic,
    daemon_config_dict,
    wait_until,
    write_config,
)

pytestmark = [pytest.mark.slow, pytest.mark.broker]


def test_kill_9_and_restart_during_an_outage_loses_and_duplicates_nothing(
    broker: EmbeddedBroker,
    tmp_path: Path,
    topic_name: str,
    monkeypatch: pytest.MonkeyPatch,
    processes: list[DaemonProcess],
    receiver: Receiver,
) -> None:
    create_topic(broker.bootstrap, topic_name)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    data = daemon_config_dict(
        broker.bootstrap,
        url,
        {"predictions": {"name": topic_name}},
        http={"listen": f"127.0.0.1:{free_port()}"},
        alerts={
            "channels": {
                "retrain": {"type": "webhook", "url": receiver.url, "secret_env": "WK_HOOK"}
            },
            "heartbeat": {"channels": ["retrain"], "every": "1s"},
            "retry_base": "100ms",
            "retry_cap": "1s",
        },
    )
    config = write_config(tmp_path / "watchkeeper.yaml", data)
    monkeypatch.setenv("WK_HOOK", SECRET)
    receiver.fail_next = 10**9  # the endpoint is down
    first = DaemonProcess(config, tmp_path / "daemon.log").start()
    processes.append(first)

    def rows() -> list[dict[str, object]]:
        try:
            with Store.open(url, migrate=False) as store:
                return Outbox(store.engine).rows("retrain")
        except Exception:
            return []

    wait_until(lambda: len(rows()) >= 4, timeout=90)  # heartbeats pile up unsent
    receiver.fail_next = 3  # it comes back, after a few more failures
    wait_until(lambda: len(receiver.received) >= 2, timeout=60)
    assert first.proc is not None
    first.proc.send_signal(signal.SIGKILL)  # killed mid-delivery
    first.proc.wait()
    second = DaemonProcess(config, tmp_path / "daemon.log").start()
    processes.append(second)
    try:
        wait_until(lambda: rows() and all(r["state"] == "sent" for r in rows()), timeout=90)
    finally:
        assert second.proc is not None
        second.proc.send_signal(signal.SIGTERM)
        assert second.proc.wait(timeout=60) == 0
    final = rows()
    sent_ids = [f"wk-{r['id']}" for r in final]
    received = [body["id"] for body in receiver.received]
    # at least once, and the idempotency key makes it exactly once for the receiver
    assert set(received) == set(sent_ids)
    assert len(set(received)) == len(final) >= 4
    # in order: the heartbeat is one stream, so its ids arrive ascending
    first_seen = list(dict.fromkeys(received))
    assert first_seen == sorted(first_seen, key=lambda i: int(i[3:]))
