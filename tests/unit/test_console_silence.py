"""The console's silence form without a server: its CSRF tokens and matchers."""

from __future__ import annotations

import doctest

from watchkeeper.daemon.http import console_silence
from watchkeeper.daemon.http.console_silence import CSRF_TTL_S, CsrfTokens, incident_matchers


def test_the_examples_hold() -> None:
    result = doctest.testmod(console_silence)
    assert result.attempted and not result.failed


def test_a_token_is_valid_for_its_ttl_under_its_key_only() -> None:
    now = [1_800_000_000.0]
    tokens = CsrfTokens(b"a" * 32, clock=lambda: now[0])
    token = tokens.issue()
    assert tokens.valid(token)
    assert not CsrfTokens(b"b" * 32, clock=lambda: now[0]).valid(token)  # another key
    now[0] += CSRF_TTL_S
    assert tokens.valid(token)
    now[0] += 1
    assert not tokens.valid(token)  # expired: the page must be reloaded
    for forged in ("", ".", "x.y", "1" * 13 + "." + "0" * 32, token + "0"):
        assert not tokens.valid(forged)


def test_matchers_name_the_incident_and_leave_out_a_grouped_feature() -> None:
    base = {"model": "fraud", "policy": "p", "rule": "drift"}
    assert incident_matchers({**base, "feature": "amount"}) == {**base, "feature": "amount"}
    assert incident_matchers({**base, "feature": "*"}) == base  # a digest of features
    assert incident_matchers({**base, "feature": None}) == base
