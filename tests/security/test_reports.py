"""Reports: hostile strings in model names, feature names and category values reach the
Evidently report inert, the report is sandboxed, a GET never makes a report for a name
the daemon did not mint, creation is one at a time from a bounded queue, and the folder is
pruned by age and size."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from watchkeeper.daemon.eventtime.windows import WindowState
from watchkeeper.daemon.http.reports import REPORT_CSP, Reports, report_routes
from watchkeeper.daemon.http.server import HttpServer
from watchkeeper.daemon.offline import drift as drift_module
from watchkeeper.daemon.store.store import Store
from watchkeeper.detectors.column_batch import Column, ColumnBatch
from watchkeeper.detectors.profile import profile_from_window
from watchkeeper.detectors.reservoir import record_keys

from tests.security.browser import FLAG, PAYLOADS, chromium, visit
from tests.security.probes import exchange, get, request_bytes, rss_bytes

START_MS = 1_795_251_600_000
MODEL = PAYLOADS[0]


def commit_hostile_windows(url: str, n: int = 400) -> None:
    """Windows whose model, feature names and category values are the payloads."""
    rng = np.random.default_rng(7)
    zeros = np.zeros(n, bool)
    categories = np.empty(n, dtype=object)
    categories[:] = [PAYLOADS[i % len(PAYLOADS)] for i in range(n)]
    features = {
        "amount": Column("numeric", rng.lognormal(3, 1, n), zeros, zeros),
        "country": Column("categorical", categories, zeros, zeros),
    }
    for j, payload in enumerate(PAYLOADS):
        values = np.empty(n, dtype=object)
        values[:] = rng.choice(["a", "b"], n).tolist()
        features[payload + str(j)] = Column("categorical", values, zeros, zeros)
    with Store.open(url) as store:
        state = WindowState(300, 3600)
        state.add(
            ColumnBatch(
                model=MODEL,
                role="predictions",
                ts_ms=START_MS + np.arange(n, dtype=np.int64) * 1000,
                versions=np.array(["1"] * n, dtype=object),
                keys=record_keys(0, 0, np.arange(n)),
                features=features,
            )
        )
        store.commit("g", state.drain(), {("p", 0): n})
        window = store.window_range(MODEL, 0, START_MS * 2)
        assert window is not None
        store.save_reference(profile_from_window(window))


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[HttpServer, Reports]]:
    url = f"sqlite:///{tmp_path / 's.db'}"
    commit_hostile_windows(url)
    store = Store.open(url)
    reports = Reports(store, tmp_path / "reports", wait_s=120)
    server = HttpServer(
        "127.0.0.1",
        0,
        CollectorRegistry(),
        lambda: (True, ""),
        lambda: (True, ""),
        report_routes(reports),
    ).start()
    yield server, reports
    server.close()
    reports.close()
    store.close()


def test_hostile_strings_reach_the_report_inert_and_no_script_of_theirs_runs(
    served: tuple[HttpServer, Reports],
) -> None:
    server, reports = served
    name = reports.name_for(MODEL, START_MS, START_MS + 3_600_000)
    answer = get(server.server_address, f"/reports/{name}", timeout=120)
    assert answer.status == 200
    assert answer.headers["content-security-policy"] == REPORT_CSP
    assert "sandbox allow-scripts" in REPORT_CSP and "allow-same-origin" not in REPORT_CSP
    html = answer.body
    for payload in PAYLOADS:  # not one payload is left as markup anywhere in the page
        assert payload.encode() not in html
    assert b"<script>window.__xss" not in html
    assert b'onerror="window.__xss' not in html
    assert b"\xe2\x80\xa8</script>" not in html  # U+2028 then a closing tag
    url = f"http://{server.address}/reports/{name}"
    with chromium() as browser:
        served_page = visit(browser, url)  # as served: sandboxed, with the CSP
        bare_page = visit(browser, url, html=html)  # the same HTML without any header
    assert served_page.clean, served_page
    assert bare_page.clean, bare_page  # escaping alone holds, CSP or not
    # and the report is a report: Evidently rendered the columns
    assert "amount" in bare_page.text and "country" in bare_page.text, bare_page.text[:500]
    assert f"window.{FLAG}" not in "".join(bare_page.errors)


def test_the_sandbox_stops_a_script_that_escaped_escaping(tmp_path: Path) -> None:
    """A report that did hold a live payload runs it in an opaque origin: it cannot read
    the daemon's API or post to it."""
    from watchkeeper.daemon.http.routes import Request, Response, Route

    posted: list[int] = []

    def evil(_request: Request) -> Response:
        page = (
            b"<html><body><script>"
            b"fetch('/-/reload',{method:'POST'}).then(r=>window.__xss='post '+r.status)"
            b".catch(e=>window.__done=1);"
            b"try{document.cookie; window.__origin=String(window.origin)}catch(e){}"
            b"</script></body></html>"
        )
        return Response(200, page, "text/html", {"Content-Security-Policy": REPORT_CSP})

    def reload(_request: Request) -> Response:
        posted.append(1)
        return Response.of_json(200, {})

    server = HttpServer(
        "127.0.0.1",
        0,
        CollectorRegistry(),
        lambda: (True, ""),
        lambda: (True, ""),
        [Route("GET", "/evil", evil), Route("POST", "/-/reload", reload)],
    ).start()
    try:
        with chromium() as browser:
            page = visit(browser, f"http://{server.address}/evil")
    finally:
        server.close()
    assert page.flag is None  # the fetch was refused (connect-src 'none'; origin null)
    assert posted == []


def test_a_get_never_makes_a_report_for_a_name_the_daemon_did_not_mint(
    served: tuple[HttpServer, Reports],
) -> None:
    server, reports = served
    good = reports.name_for(MODEL, START_MS, START_MS + 3_600_000)
    stem, _, signature = good.removesuffix(".html").rpartition("~")
    forged = [
        f"{stem}~{'0' * len(signature)}.html",  # a guessed signature
        stem.replace(str(START_MS), str(START_MS - 300_000)) + f"~{signature}.html",  # range
        "fraud~default~0~99999999999999.html",  # the old unsigned form
        "../s.db",
        "x" * 5000 + ".html",
    ]
    rss = rss_bytes()
    started = time.monotonic()
    threads = []
    for name in forged * 4:  # 20 concurrent GETs: was 249 → 950 MB RSS
        t = threading.Thread(target=lambda n=name: get(server.server_address, f"/reports/{n}"))
        threads.append(t)
        t.start()
    for t in threads:
        t.join()
    for name in forged:
        assert get(server.server_address, f"/reports/{name}").status in (404, 400)
        head = exchange(
            server.address_tuple if False else server.server_address,
            request_bytes("HEAD", f"/reports/{name}", {"Connection": "close"}),
            expect=1,
            head=True,
        )
        assert head.statuses in ([404], [400])
    assert time.monotonic() - started < 10
    assert reports.made == 0
    assert reports.names() == []
    assert rss_bytes() < rss + 100 * 1024 * 1024


def test_reports_are_made_one_at_a_time_from_a_bounded_queue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    commit_hostile_windows(url)
    release = threading.Event()
    running: list[int] = []
    most = [0]

    def slow_report(profile: object, window: object, path: Path) -> Path:
        running.append(1)
        most[0] = max(most[0], len(running))
        release.wait(30)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("<html>ok</html>")
        running.pop()
        return path

    # the report job imports drift_report when it runs (pandas only then)
    monkeypatch.setattr(drift_module, "drift_report", slow_report)
    with Store.open(url) as store:
        reports = Reports(store, tmp_path / "reports", queue_size=2, wait_s=0.2)
        routes = report_routes(reports)
        server = HttpServer(
            "127.0.0.1", 0, CollectorRegistry(), lambda: (True, ""), lambda: (True, ""), routes
        ).start()
        try:
            names = [
                reports.name_for(MODEL, START_MS, START_MS + 3_600_000 + i * 1000) for i in range(6)
            ]
            answers = [get(server.server_address, f"/reports/{n}") for n in names]
            statuses = [a.status for a in answers]
            assert statuses == [503] * 6  # one making, two queued, the rest refused at once
            started = time.monotonic()
            assert get(server.server_address, f"/reports/{names[5]}").status == 503
            assert time.monotonic() - started < 0.15  # refused at once: the queue is full
            assert all(a.headers.get("retry-after") for a in answers)
            release.set()
            deadline = time.monotonic() + 30
            while reports.made < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert most[0] == 1  # never two at once
            assert get(server.server_address, f"/reports/{names[0]}").status == 200
        finally:
            release.set()
            server.close()
            reports.close()


def test_the_report_folder_is_pruned_by_age_and_size(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    with Store.open(url) as store:
        folder = tmp_path / "reports"
        folder.mkdir()
        now = time.time()
        for i in range(10):
            path = folder / f"r{i}.html"
            path.write_bytes(b"x" * 300_000)
            os.utime(path, (now - i * 3600, now - i * 3600))
        reports = Reports(store, folder, max_bytes=1_000_000, max_age_s=5.5 * 3600)
        removed = reports.prune()
        left = sorted(p.name for p in folder.iterdir())
        # r6..r9 are older than 5.5 h; of r0..r5 (1.8 MB) the oldest go until ≤ 1 MB
        assert set(removed) >= {"r6.html", "r7.html", "r8.html", "r9.html"}
        assert left == ["r0.html", "r1.html", "r2.html"]
        reports.close()
