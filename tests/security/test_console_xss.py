"""The console's pages with hostile strings in every source a page shows: model, feature
and category names (events), raw record bytes and quarantine details (bad records), the
incident's summary, note and members, evaluation reasons (policies and checks), channel
names and delivery errors (config and channels), shadow candidates (policy files), and a
silence's author and comment (the form). In Chromium, no payload runs: neither as
served (with the page CSP) nor with the same HTML served without any header (escaping
alone); and the payloads are shown, as text."""

from __future__ import annotations

import dataclasses
import json
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert
from watchkeeper.daemon.notify.silences import Silences
from watchkeeper.daemon.store import tables as t
from watchkeeper.daemon.store.store import Store
from watchkeeper.detectors.profile import CategoricalProfile
from watchkeeper.policies.schema import Policy

from tests.security.browser import FLAG, PAYLOADS, chromium, visit
from tests.security.test_reports import MODEL, START_MS, commit_hostile_windows
from tests.support import console_server, make_config

pytestmark = [pytest.mark.slow, pytest.mark.browser]

FINGERPRINT = "0123456789abcdef"
AT_MS = START_MS + 400_000
REASON = "bad_json"


def hostile_store(url: str) -> None:
    commit_hostile_windows(url)
    with Store.open(url) as store:
        reference = store.reference(MODEL)
        assert reference is not None
        # the reference saw none of the current categories: every payload is "unseen"
        features = dict(reference.features)
        features["country"] = CategoricalProfile(count=100, nulls=0, proportions={"x": 1.0})
        store.save_reference(dataclasses.replace(reference, features=features))
        with store.engine.begin() as conn:
            conn.execute(
                insert(t.incidents).values(
                    fingerprint=FINGERPRINT,
                    state="open",
                    policy=MODEL,
                    model=MODEL,
                    rule="drift",
                    feature="country",
                    metric="psi",
                    severity="critical",
                    summary=PAYLOADS[1],
                    members=json.dumps({"country": 0.5, PAYLOADS[2]: 0.3}),
                    opened_ms=AT_MS - 60_000,
                    updated_ms=AT_MS,
                    resolved_ms=None,
                    note=PAYLOADS[3],
                )
            )
            for i in range(5):
                conn.execute(
                    insert(t.evaluations).values(
                        at_ms=AT_MS - (4 - i) * 60_000,
                        policy=MODEL,
                        model=MODEL,
                        rule="drift",
                        metric="psi",
                        feature="country",
                        value=0.1 * (i + 1),
                        warn=0.1,
                        critical=0.25,
                        resolve=0.05,
                        decision="breach",
                        severity="critical",
                        state="firing",
                        n_current=400,
                        reason=PAYLOADS[i % len(PAYLOADS)],
                    )
                )
            conn.execute(
                insert(t.outbox).values(
                    channel=PAYLOADS[1],
                    fingerprint=FINGERPRINT,
                    kind="opened",
                    payload=json.dumps({"severity": PAYLOADS[0]}),
                    state="failed",
                    created_ms=AT_MS,
                    attempts=3,
                    next_attempt_ms=AT_MS,
                    sent_ms=None,
                    last_error=PAYLOADS[0],
                )
            )
            for payload in PAYLOADS:
                conn.execute(
                    insert(t.quarantine).values(
                        received_at=store_now(),
                        topic=payload,
                        partition=0,
                        offset=1,
                        reason=REASON,
                        detail=payload,
                        size=len(payload) + 2,
                        raw=payload.encode() + b"\xff\xfe",
                    )
                )
        Silences(store.engine).add(
            {"model": MODEL, "policy": MODEL, "rule": "drift", "feature": "country"},
            3600,
            created_by=PAYLOADS[2],
            comment=PAYLOADS[3],
        )


def store_now() -> Any:
    import datetime as dt

    return dt.datetime.now(dt.UTC)


@pytest.fixture
def console(tmp_path: Path) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 's.db'}"
    hostile_store(url)
    config = make_config(tmp_path, "127.0.0.1:9", url, {"predictions": {"name": "t"}})
    policy = Policy.model_validate(
        {
            "model": MODEL,
            "reference": "store:default",
            "window": "1h",
            "schedule": {"every": "1m"},
            "rules": [
                {
                    "name": "drift",
                    "metric": "psi",
                    "features": ["country"],
                    "critical": 0.25,
                    "actions": {"critical": ["console"]},
                }
            ],
        }
    )
    store = Store.open(url)
    clock = lambda: AT_MS / 1000 + 60  # noqa: E731 (the daemon's injected wall clock)
    shadow = {
        "models": {
            MODEL: {
                "policy": MODEL,
                "candidates": [
                    {
                        "candidate": PAYLOADS[1],
                        "state": PAYLOADS[2],
                        "reason": PAYLOADS[3],
                        "comparison": {PAYLOADS[0]: 1.0, "note": PAYLOADS[1]},
                        "decision": {"decision": PAYLOADS[1], "reasons": [PAYLOADS[2]]},
                    }
                ],
            }
        }
    }
    try:
        with console_server(
            store,
            config,
            policy,
            clock=clock,
            reference_of=lambda _key: store.reference(MODEL),
            shadow=lambda: shadow,
        ) as base:
            yield base
    finally:
        store.close()


def test_no_hostile_string_runs_on_any_console_page_and_each_is_shown_as_text(
    console: str,
) -> None:
    quoted = urllib.parse.quote(MODEL, safe="")
    pages = {
        "overview": "/",
        "incident": f"/incidents/{FINGERPRINT}",
        "model": f"/models/{quoted}",
        "quarantine": "/quarantine",
        "quarantine by reason": f"/quarantine?reason={REASON}",
    }
    texts: dict[str, str] = {}
    with chromium() as browser:
        for name, path in pages.items():
            with urllib.request.urlopen(console + path, timeout=10) as response:
                assert response.status == 200, name
                html = response.read()
            for payload in PAYLOADS:
                assert payload.encode() not in html, (name, payload)  # never verbatim
            served = visit(browser, console + path)
            bare = visit(browser, console + path, html=html)
            assert served.clean, (name, served)
            assert bare.clean, (name, bare)  # escaping alone holds, CSP or not
            assert not [e for e in served.errors + bare.errors if FLAG in e], name
            texts[name] = bare.text
    shown = PAYLOADS[1]  # '"><img src=x onerror=…>' is shown as these very characters
    assert shown in texts["incident"]  # the summary (and the channel name)
    assert PAYLOADS[3].strip() in texts["incident"]  # the note / silence comment
    assert PAYLOADS[0] in texts["quarantine"]  # the raw prefix, as text
    assert shown in texts["overview"]
    assert MODEL in texts["model"]


def test_the_plot_draws_hostile_category_names_as_text(console: str) -> None:
    """Plotly gets the payloads as category labels and draws them as SVG text."""
    with chromium() as browser:
        context = browser.new_context()
        try:
            page = context.new_page()
            dialogs: list[str] = []
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(f"{console}/incidents/{FINGERPRINT}", wait_until="load")
            page.wait_for_selector("#distribution-0[data-drawn='1']", timeout=30_000)
            page.wait_for_selector("#timeline-chart[data-drawn='1']", timeout=30_000)
            page.wait_for_load_state("networkidle")  # every load and error handler has fired
            assert page.evaluate(f"() => window.{FLAG} ?? null") is None
            assert dialogs == []
            assert (
                page.locator(
                    "#timeline-chart .scatterlayer .trace:first-child .points path"
                ).count()
                == 5
            )
            unseen = page.locator("table.unseen td code").all_inner_texts()
            assert set(unseen) == set(PAYLOADS)  # every payload named, as text
            assert page.locator("#distribution-0 img, #distribution-0 script").count() == 0
        finally:
            context.close()
