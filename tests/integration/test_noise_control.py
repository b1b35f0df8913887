"""Silences on both stores; and secrets stay out of logs and the API (the daemon as a
process). Routing, heartbeat and reminders, which need no server: tests/unit/test_routing.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from watchkeeper.daemon.demo.broker import EmbeddedBroker, free_port
from watchkeeper.daemon.notify.incidents import IncidentStore
from watchkeeper.daemon.notify.outbox import Outbox
from watchkeeper.daemon.notify.router import Router
from watchkeeper.daemon.notify.silences import Silences, parse_matchers
from watchkeeper.daemon.store.store import Store

from tests.notifications import POLICY, event
from tests.support import FakeSlack, daemon_config_dict, wait_until, write_config


def test_silences_keep_notifications_unsent_until_they_expire(store_url: str) -> None:
    with Store.open(store_url) as store:
        silences = Silences(store.engine, cache_s=0.0)
        incidents = IncidentStore(store.engine)
        router = Router()
        sid = silences.add(
            parse_matchers(["model=fraud", "severity=~warn|critical"]), 3600, "alice", "deploying"
        )
        e = event()
        incidents.record("fraud", 0, [], [e], {}, router.plan(e, POLICY), silences.silenced)
        assert [r["state"] for r in Outbox(store.engine).rows()] == ["silenced"]
        assert [s["created_by"] for s in silences.active()] == ["alice"]
        assert silences.expire(sid) and silences.active() == []
        e2 = event(kind="resolved", at=1)
        incidents.record("fraud", 1, [], [e2], {}, router.plan(e2, POLICY), silences.silenced)
        assert [r["state"] for r in Outbox(store.engine).rows()] == ["silenced", "pending"]
    with pytest.raises(ValueError, match="label=value"):
        parse_matchers(["fraud"])


@pytest.mark.slow
def test_secrets_appear_in_no_log_line_and_no_api_response(
    broker: EmbeddedBroker,
    tmp_path: Path,
    slack: FakeSlack,
    topic_name: str,
) -> None:
    from tests.support import create_topic

    create_topic(broker.bootstrap, topic_name)
    token, hook_secret = "xoxb-do-not-leak-4242", "whsec_" + "c2VjcmV0LWtleS1mb3ItdGVzdHM="
    port = free_port()
    data = daemon_config_dict(
        broker.bootstrap,
        f"sqlite:///{tmp_path / 's.db'}",
        {"predictions": {"name": topic_name}},
        http={"listen": f"127.0.0.1:{port}"},
        alerts={
            "channels": {
                "oncall": {
                    "type": "slack",
                    "token_env": "WK_SLACK",
                    "channel": "#x",
                    "api_url": slack.api,
                },
                "hook": {
                    "type": "webhook",
                    "url": f"http://127.0.0.1:{free_port()}/h",
                    "secret_env": "WK_HOOK",
                },
                "console": {"type": "console"},
            },
            "heartbeat": {"channels": ["oncall", "hook"], "every": "1s"},
            "give_up_after": "2s",
        },
    )
    config = write_config(tmp_path / "watchkeeper.yaml", data)
    env = dict(os.environ, WK_SLACK=token, WK_HOOK=hook_secret)
    log = tmp_path / "daemon.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "watchkeeper.daemon",
                "run",
                "-c",
                str(config),
                "--log-level",
                "DEBUG",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:

        def gave_up() -> bool:
            return "gave up delivering" in log.read_text()

        wait_until(gave_up, timeout=90)  # Slack said invalid_auth; the hook was unreachable
        bodies = []
        for path in (
            "/api/policies",
            "/api/incidents?state=all",
            "/api/silences",
            "/api/evaluations",
            "/metrics",
            "/healthz",
            "/readyz",
        ):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                    bodies.append(r.read().decode())
            except urllib.error.HTTPError as exc:
                bodies.append(exc.read().decode())
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    text = log.read_text()
    assert "invalid_auth" in text  # the failure is logged…
    for secret in (token, hook_secret, "c2VjcmV0LWtleS1mb3ItdGVzdHM="):
        assert secret not in text  # …without the secret
        assert all(secret not in body for body in bodies)
    assert json.loads(bodies[0])["last_reload_successful"] is True
