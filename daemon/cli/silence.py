"""``watchkeeper silence add | list | expire``."""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import sys
from typing import Any

from watchkeeper.daemon.cli.common import open_store
from watchkeeper.policies.durations import parse_duration


def _silences(args: argparse.Namespace) -> Any:
    from watchkeeper.daemon.notify.silences import Silences

    store = open_store(args.config)
    return store, Silences(store.engine)


def cmd_add(args: argparse.Namespace) -> int:
    from watchkeeper.daemon.notify.silences import parse_matchers

    try:
        matchers = parse_matchers(args.matchers)
        duration = parse_duration(args.for_)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    store, silences = _silences(args)
    with store:
        silence_id = silences.add(matchers, duration, args.by or getpass.getuser(), args.comment)
    print(
        f"silence {silence_id} added: {', '.join(f'{k}={v}' for k, v in matchers.items())} "
        f"for {args.for_}"
    )
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    store, silences = _silences(args)
    with store:
        active = silences.active()
    for s in active:
        until = dt.datetime.fromtimestamp(s["ends_ms"] / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M")
        matchers = ", ".join(f"{k}={v}" for k, v in s["matchers"].items())
        print(f"{s['id']}: {matchers} until {until} UTC by {s['created_by']} {s['comment']}")
    if not active:
        print("no active silences")
    return 0


def cmd_expire(args: argparse.Namespace) -> int:
    store, silences = _silences(args)
    with store:
        done = silences.expire(args.id)
    print(f"silence {args.id} expired" if done else f"no active silence {args.id}")
    return 0 if done else 1


def add_parsers(sub: Any, default_config: str) -> None:
    silence = sub.add_parser("silence", help="mute notifications for a while")
    silence_sub = silence.add_subparsers(dest="silence_command", required=True)
    add = silence_sub.add_parser("add", help="e.g. silence add model=fraud severity=warn --for 2h")
    add.add_argument("matchers", nargs="+", help="label=value or label=~regex")
    add.add_argument("--for", dest="for_", required=True, help="how long, e.g. 2h")
    add.add_argument("--comment", default="")
    add.add_argument("--by", help="who (default: the current user)")
    add.add_argument("-c", "--config", default=default_config)
    add.set_defaults(func=cmd_add)
    listing = silence_sub.add_parser("list", help="active silences")
    listing.add_argument("-c", "--config", default=default_config)
    listing.set_defaults(func=cmd_list)
    expire = silence_sub.add_parser("expire", help="end a silence now")
    expire.add_argument("id", type=int)
    expire.add_argument("-c", "--config", default=default_config)
    expire.set_defaults(func=cmd_expire)
