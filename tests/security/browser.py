"""Debian's Chromium driven by Playwright, for the XSS tests of every page the daemon
serves (reports now; the console pages of issue 16 reuse :func:`chromium` and
:func:`visit`).

A page passes when no script from a payload ran: no dialog opened and no payload set
``window.__xss``. Payloads both set the flag and open a dialog, so a dialog the page's
sandbox blocks still shows through the flag.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.support import IN_CI

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",  # we run as root
    "--disable-gpu",
    # without these Chromium tries to reach Google on start and is refused here
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
FLAG = "__xss"
PAYLOADS = (
    f"</script><script>window.{FLAG}=1;alert(document.domain)</script>",
    f'"><img src=x onerror="window.{FLAG}=2;alert(1)">',
    f"<!--<script>window.{FLAG}=3</script>",
    f"\u2028</script><svg onload=window.{FLAG}=4>",
)
"""Strings an attacker puts in model names, feature names and category values."""


@dataclass
class Visit:
    dialogs: list[str] = field(default_factory=list)
    flag: Any = None
    text: str = ""
    errors: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.dialogs and self.flag is None


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium (Debian's package); skipped outside CI when it is missing."""
    if shutil.which("chromium") is None and not os.path.exists(CHROMIUM):
        if IN_CI:
            pytest.fail("chromium is not installed (make system-deps installs it)")
        pytest.skip("chromium is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


def visit(
    browser: Any,
    url: str,
    *,
    html: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Visit:
    """Open ``url`` and report what ran. With ``html``, the page is answered with that body
    and no security headers (to prove escaping alone, without the CSP behind it)."""
    result = Visit()
    context = browser.new_context(extra_http_headers=headers or {})
    try:
        page = context.new_page()

        def on_dialog(dialog: Any) -> None:
            result.dialogs.append(dialog.message)
            dialog.dismiss()

        page.on("dialog", on_dialog)
        page.on("pageerror", lambda exc: result.errors.append(str(exc)))
        if html is not None:
            page.route(
                url,
                lambda route: route.fulfill(
                    status=200, body=html, headers={"Content-Type": "text/html; charset=utf-8"}
                ),
            )
        page.goto(url, wait_until="load", timeout=60_000)
        # a payload runs from a load or error handler (an <img onerror>, a <script src>):
        # once the network is idle every resource has loaded or failed and its handlers
        # have fired — a condition, not a guessed delay
        page.wait_for_load_state("networkidle", timeout=60_000)
        result.flag = page.evaluate(f"() => window.{FLAG} ?? null")
        result.text = page.inner_text("body")[:20_000]
    finally:
        context.close()
    return result
