"""Secrets never echoed, and every channel escaping what events put in it: Slack mrkdwn
and Block Kit limits, the console and the terminal, Alertmanager labels, webhook JSON."""

from __future__ import annotations

import io
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from watchkeeper.alerts.alertmanager import ANNOTATION_CHARS, LABEL_CHARS, alert
from watchkeeper.alerts.console import render, render_line
from watchkeeper.alerts.errors import DeliveryError
from watchkeeper.alerts.notification import Notification
from watchkeeper.alerts.slack import SlackChannel, blocks, headline
from watchkeeper.alerts.webhook import payload
from watchkeeper.daemon.cli.main import main
from watchkeeper.daemon.config import load_config, secret_values
from watchkeeper.daemon.ingest.sources import option_checks
from watchkeeper.daemon.logs import RedactingFilter
from watchkeeper.policies.secrets import secret_parts

from tests.support import write_config

HOOK_PATH = "/services/T0SECRET1/B0SECRET2/abcdefghijklmnopqrstuvwx"


def note(**fields: Any) -> Notification:
    base: dict[str, Any] = {
        "kind": "opened",
        "fingerprint": "fp",
        "severity": "critical",
        "summary": "psi on <!channel> is 0.4",
        "model": "<https://evil.example|click>",
        "policy": "p & q",
        "rule": "drift",
        "metric": "psi",
        "feature": "<!here>",
        "members": {"<!channel>": 0.4, "<@U123>": 0.3, "a\x1b[31mred": 0.2},
        "at_ms": 1_795_255_380_000,
        "opened_ms": 1_795_255_380_000,
        "note": "<!everyone>",
        "links": {"report": "http://127.0.0.1:8450/reports/r.html"},
    }
    base.update(fields)
    return Notification(**base)


def _texts(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [
            t
            for k, v in value.items()
            for t in ([v] if k == "text" and isinstance(v, str) else _texts(v))
        ]
    if isinstance(value, list):
        return [t for v in value for t in _texts(v)]
    return []


def test_slack_text_is_escaped_mrkdwn() -> None:
    layout = blocks(note())
    texts = [*_texts(layout), headline(note())]
    joined = "\n".join(texts)
    for raw in ("<!channel>", "<!here>", "<!everyone>", "<https://evil", "<@U123>", "p & q"):
        assert raw not in joined, raw
    assert "&lt;!channel&gt;" in joined and "p &amp; q" in joined
    assert "&lt;https://evil.example|click&gt;" in joined


def test_slack_messages_keep_within_block_kit_limits() -> None:
    huge = note(
        summary="<" * 50_000,
        model="m" * 10_000,
        note="&" * 10_000,
        members={f"<f{i}>": float(i) for i in range(500)},
        links={f"l{i}": "https://x/" + "y" * 4000 for i in range(20)},
    )
    layout = blocks(huge)
    assert len(layout) <= 50
    for block in layout:
        if block["type"] == "section":
            if "text" in block:
                assert len(block["text"]["text"]) <= 3000
            for f in block.get("fields", []):
                assert len(f["text"]) <= 2000
            assert len(block.get("fields", [])) <= 10
        if block["type"] == "context":
            assert all(len(e["text"]) <= 2000 for e in block["elements"])
        if block["type"] == "actions":
            assert all(len(e["url"]) <= 3000 for e in block["elements"])
    assert len(headline(huge)) <= 3000
    # cut, never in the middle of an escape: every & starts a whole entity
    import re

    for text in _texts(layout):
        assert not re.search(r"&(?!amp;|lt;|gt;)", text), text[-40:]


def test_console_output_carries_no_terminal_escapes() -> None:
    hostile = note(
        summary="ok\x1b[2J\x1b]0;owned\x07\rfake line\x00",
        model="m\x1b[31m",
        note="\x9b31m\u2028x",
    )
    for text in (render(hostile), render_line(hostile, "console\x1b[0m")):
        assert "\x1b" not in text and "\x9b" not in text and "\x07" not in text
        assert "\r" not in text and "\x00" not in text and "\u2028" not in text


def test_alertmanager_labels_and_annotations_are_bounded() -> None:
    hostile = note(
        labels={"team": "t" * 10_000, "bad key!": "v", **{f"k{i}": "v" for i in range(100)}},
        summary="s" * 100_000,
    )
    body = alert(hostile, 0.0, 60.0)
    assert len(body["labels"]) <= 41
    assert all(len(v) <= LABEL_CHARS for v in body["labels"].values())
    assert all(k.replace("_", "a").isalnum() for k in body["labels"])
    assert all(len(v) <= ANNOTATION_CHARS for v in body["annotations"].values())


def test_webhook_json_stays_valid_with_hostile_strings() -> None:
    hostile = note(model='"},{"x":1}\u2028</script>', summary="\x00\ud800")
    text = json.dumps(payload(hostile), separators=(",", ":"))
    assert json.loads(text)["model"] == '"},{"x":1}\u2028</script>'


class _Echo(BaseHTTPRequestHandler):
    """A webhook endpoint (or proxy) that fails and echoes the request path in its body."""

    def log_message(self, *args: Any) -> None:
        return None

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = f"no such hook: {self.path}".encode()
        self.send_response(500)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_a_slack_webhook_error_never_carries_the_url_or_the_body(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}{HOOK_PATH}"
        channel = SlackChannel("oncall", webhook_url=url)
        with pytest.raises(DeliveryError) as caught:
            channel.send(note())
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
    reason = caught.value.reason
    assert "HTTP 500" in reason
    assert "T0SECRET1" not in reason and "no such hook" not in reason
    # and had a message carried a piece of the URL, redaction would cut it out
    redact = RedactingFilter(secret_parts(url)).redact
    assert "T0SECRET1" not in redact(f"echo: {HOOK_PATH} and /B0SECRET2/ and T0SECRET1")


def _config(tmp_path: Path, **sections: Any) -> Path:
    data: dict[str, Any] = {
        "kafka": {"bootstrap_servers": "127.0.0.1:1", "topics": {"predictions": {"name": "p"}}}
    }
    data.update(sections)
    return write_config(tmp_path / "watchkeeper.yaml", data)


@pytest.mark.parametrize(
    "sections",
    [
        {"store": {"url": "postgresql+psycopg://u@127.0.0.1/db?password=hunter2-secret"}},
        {"store": {"url": "postgresql+psycopg://u:hunter2-secret@127.0.0.1/db"}},
        {"alerts": {"channels": {"w": {"type": "webhook", "url": "https://u:hunter2-secret@h/x"}}}},
        {
            "alerts": {
                "channels": {"w": {"type": "webhook", "url": "https://h/x?token=hunter2-secret"}}
            }
        },
        {"http": {"public_url": "https://admin:hunter2-secret@wk.example"}},
        {"http": {"token_env": "xoxb-1234-hunter2-secret"}},
        {
            "kafka": {
                "bootstrap_servers": "h:1",
                "topics": {"predictions": {"name": "p"}},
                "sasl_password_env": "hunter2-secret-Zq81mXk2pLr9",
            }
        },
    ],
)
def test_config_check_refuses_credentials_and_never_echoes_them(
    tmp_path: Path, sections: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    path = _config(tmp_path, **sections)
    assert main(["config", "check", str(path)]) == 1
    out = capsys.readouterr()
    assert "hunter2" not in out.out + out.err
    assert str(path) in out.err


def test_the_pieces_of_secret_urls_are_redacted(tmp_path: Path) -> None:
    url = f"https://hooks.slack.com{HOOK_PATH}"
    path = _config(
        tmp_path,
        store={"url_env": "WK_STORE"},
        alerts={"channels": {"s": {"type": "slack", "webhook_url_env": "WK_HOOK"}}},
    )
    env = {
        "WK_HOOK": url,
        "WK_STORE": "postgresql://u@db/x?sslpassword=pw-Secret-99&password=pw-Other-77",
    }
    secrets = secret_values(load_config(path, env, clients=option_checks()), env)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter(secrets))
    logger = logging.getLogger("wk-test-redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.error("proxy said: 404 %s", HOOK_PATH)
        logger.error("segment B0SECRET2 and password pw-Other-77 and pw-Secret-99")
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    for secret in (
        "T0SECRET1",
        "B0SECRET2",
        "abcdefghijklmnopqrstuvwx",
        "pw-Other-77",
        "pw-Secret-99",
    ):
        assert secret not in text, text


def test_command_line_tables_show_names_as_text() -> None:
    """A feature named like rich markup or carrying escapes prints as itself, inert."""
    from rich.console import Console
    from watchkeeper.daemon.cli.common import cell
    from watchkeeper.daemon.offline.drift import render_table
    from watchkeeper.detectors.base import Finding

    name = "[link=https://evil.example]x[/link]\x1b]0;owned\x07\x1b[2J"
    finding = Finding("m", "psi", name, 0.1, "ok", 0, 1, 100)
    out = io.StringIO()
    console = Console(file=out, width=200, force_terminal=False, color_system=None)
    console.print(render_table([(finding, "ok")]))
    console.print(cell(name))
    text = out.getvalue()
    assert "\x1b" not in text and "\x07" not in text
    assert "[link=https://evil.example]x[/link]" in text  # shown, not interpreted
