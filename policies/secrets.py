"""Recognising secrets, so that no message echoes one.

Two uses: an error about a config or policy value never repeats a value that looks like
a credential (a token pasted where an environment variable's *name* belongs), and the
log redaction of the daemon knows which pieces of a secret URL are secret on their own
(an endpoint, or a proxy, that echoes the path of a Slack webhook URL puts
``/services/T…/B…/…`` into an error without the ``https://hooks.slack.com`` part).

>>> looks_like_secret("xoxb-1234-5678-abcdefghijkl")
True
>>> looks_like_secret("SLACK_BOT_TOKEN")
False
>>> looks_like_secret("http://127.0.0.1:8080/retrain"), looks_like_secret("https://u:pw@host/x")
(False, True)
>>> url = "https://hooks.slack.com/services/T0AAAAAAA/B0BBBBBBB/cccccccc"
>>> secret_parts(url)[1:]
['/services/T0AAAAAAA/B0BBBBBBB/cccccccc', 'T0AAAAAAA', 'B0BBBBBBB']
"""

from __future__ import annotations

import math
import re
from collections import Counter
from urllib.parse import parse_qsl, unquote, urlsplit

# well-known credential shapes (Slack, GitHub, AWS, JWTs, PEM keys, bearer headers)
_KNOWN = re.compile(
    r"xox[abposr]-|xapp-|hooks\.slack\.com/|gh[pousr]_[A-Za-z0-9]{20}|AKIA[0-9A-Z]{16}"
    r"|eyJ[A-Za-z0-9_-]{8,}\.|-----BEGIN |^bearer\s|://[^/@\s]*:[^/@\s]*@",
    re.IGNORECASE,
)
_TOKENISH = re.compile(r"^[A-Za-z0-9+/=_\-.:~]{20,}$")
CREDENTIAL_QUERY_KEYS = frozenset(
    {
        "password",
        "passwd",
        "pass",
        "pwd",
        "secret",
        "token",
        "access_token",
        "api_key",
        "apikey",
        "key",
        "sslpassword",
        "auth",
        "signature",
        "sig",
    }
)
MIN_PART = 6
"""Pieces of a secret shorter than this are not redacted alone (they would redact words)."""


def _entropy(text: str) -> float:
    counts = Counter(text)
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def looks_like_secret(value: object) -> bool:
    """Whether ``value`` could be a credential: a known token shape, a URL holding
    credentials, or a long high-entropy string with letters and digits mixed."""
    if not isinstance(value, str):
        return False
    text = value.strip()
    if _KNOWN.search(text):
        return True
    if has_url_credentials(text):
        return True
    if "://" in text:  # a URL without credentials is an address, not a secret
        return False
    if _TOKENISH.match(text) and any(c.isdigit() for c in text) and any(c.isalpha() for c in text):
        # an identifier has words; a token is noise (≥ 3.5 bits a character)
        return _entropy(text) >= 3.5 and not text.isupper()
    return False


def has_url_credentials(text: str) -> bool:
    """A URL with a password in its user info or a credential in its query."""
    if "://" not in text:
        return False
    try:
        parts = urlsplit(text)
        password = parts.password
    except ValueError:
        return False
    if password:
        return True
    return any(key.lower() in CREDENTIAL_QUERY_KEYS for key, _ in parse_qsl(parts.query))


def secret_parts(secret: str) -> list[str]:
    """``secret`` and the pieces of it that are secret alone: for a URL its path (and each
    long path segment), user info, query and query values, encoded and decoded."""
    out = [secret]
    if "://" in secret:
        try:
            parts = urlsplit(secret)
        except ValueError:
            return out
        pieces = [parts.path, parts.query, parts.fragment]
        if parts.password:
            pieces.append(parts.password)
        if parts.username and parts.password:
            pieces.append(f"{parts.username}:{parts.password}")
        # a path segment with digits in it (T0…, B0…, a token); words like "services" stay
        pieces += [seg for seg in parts.path.split("/") if any(c.isdigit() for c in seg)]
        pieces += [value for _, value in parse_qsl(parts.query)]
        for piece in pieces:
            for form in (piece, unquote(piece)):
                if len(form) >= MIN_PART and form not in out and form != "/":
                    out.append(form)
    return out
