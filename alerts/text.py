"""Making strings from events safe for each channel that shows them.

Model, feature and category names come from whatever the serving code logs. Each channel
reads some characters as commands:

* Slack mrkdwn reads ``<!channel>`` as a ping of the whole channel and ``<url|text>`` as a
  link; Slack asks that ``&``, ``<`` and ``>`` be sent as ``&amp;``, ``&lt;``, ``&gt;``
  (api.slack.com, "Formatting text for app surfaces": escaping text) — :func:`mrkdwn`.
* Block Kit rejects a message whose texts are too long or whose blocks are too many
  (``invalid_blocks``, final): :func:`clip` cuts text at a limit without splitting an
  escape, and the Slack module keeps within the documented limits.
* A terminal reads ANSI escape sequences (colours, cursor moves, window titles) and
  control characters (a carriage return that overwrites the line) — :func:`terminal`.

>>> mrkdwn("<!channel> & <https://x|report>")
'&lt;!channel&gt; &amp; &lt;https://x|report&gt;'
>>> terminal("ok\\x1b[2J\\x1b]0;pwned\\x07\\rfake")
'ok fake'
"""

from __future__ import annotations

import re

_ANSI = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor, erase
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC: window title, hyperlinks
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"  # DCS, SOS, PM, APC strings
    r"|\x1b[@-Z\\-_]"  # other two-character escapes
    r"|\x9b[0-?]*[ -/]*[@-~]"  # 8-bit CSI
)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROL_OR_NEWLINE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def mrkdwn(text: object, limit: int | None = None) -> str:
    """``text`` escaped for Slack mrkdwn (``&``, ``<``, ``>``), cut at ``limit`` characters."""
    escaped = str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return clip(escaped, limit) if limit is not None else escaped


def clip(text: str, limit: int, ellipsis: str = "…") -> str:
    """``text`` cut to at most ``limit`` characters, never in the middle of an ``&…;``."""
    if len(text) <= limit:
        return text
    cut = text[: max(0, limit - len(ellipsis))]
    amp = cut.rfind("&")
    if amp >= 0 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + ellipsis


def terminal(text: object, *, newlines: bool = False) -> str:
    """``text`` without ANSI escape sequences and control characters (each becomes one
    space; with ``newlines``, tabs and line breaks are kept)."""
    without = _ANSI.sub("", str(text))
    pattern = _CONTROL if newlines else _CONTROL_OR_NEWLINE
    return pattern.sub(" ", without)
