"""The ``watchkeeper`` command line."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path

from watchkeeper.alerts.text import terminal
from watchkeeper.daemon.cli.common import load_or_exit
from watchkeeper.daemon.cli.detect import add_parsers as add_detect_parsers
from watchkeeper.daemon.cli.policy import add_parsers as add_policy_parsers
from watchkeeper.daemon.cli.shadow import add_parsers as add_shadow_parsers
from watchkeeper.daemon.cli.silence import add_parsers as add_alert_parsers
from watchkeeper.daemon.config import load_config, secret_values
from watchkeeper.daemon.ingest.sources import option_checks
from watchkeeper.daemon.logs import setup_logging
from watchkeeper.policies.errors import WatchkeeperDocumentError

log = logging.getLogger("watchkeeper")
DEFAULT_CONFIG = "watchkeeper.yaml"


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handler(signum: int, _frame: object) -> None:
        log.info("received %s", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


def cmd_run(args: argparse.Namespace) -> int:
    from watchkeeper.daemon.app import Daemon

    config = load_or_exit(args.config)
    setup_logging(args.log_level or config.log_level, secret_values(config))
    stop = _stop_on_signals()
    daemon = Daemon(config)

    def reload(_signum: int, _frame: object) -> None:
        log.info("SIGHUP: reloading policies")
        threading.Thread(target=daemon.reload, name="wk-sighup-reload").start()

    signal.signal(signal.SIGHUP, reload)
    daemon.run(stop)
    return 0


def cmd_config_check(args: argparse.Namespace) -> int:
    failed = 0
    for path in args.paths:
        try:
            load_config(path, clients=option_checks())
        except WatchkeeperDocumentError as exc:
            print(exc, file=sys.stderr)
            failed += 1
        else:
            print(f"{path}: ok")
    return 1 if failed else 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from watchkeeper.daemon.store.store import Store

    config = load_or_exit(args.config)
    Store.open(config.store_url()).close()
    print("store schema is up to date")
    return 0


def cmd_quarantine(args: argparse.Namespace) -> int:
    from watchkeeper.daemon.store.store import Store

    config = load_or_exit(args.config)
    with Store.open(config.store_url(), migrate=False) as store:
        for row in store.quarantined(args.reason, args.limit):
            raw = bytes(row["raw"])[:120].decode("utf-8", "replace")
            # repr() shows control characters as escapes; the detail quotes the record
            print(
                f"{row['topic']}[{row['partition']}]@{row['offset']} {row['reason']}: "
                f"{terminal(row['detail'])} | {raw!r}"
            )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from watchkeeper.daemon.demo.run import run_demo
    from watchkeeper.daemon.demo.setup import DemoOptions

    workdir = Path(args.workdir) if args.workdir else None
    log_path = (workdir or Path(tempfile.gettempdir())) / "watchkeeper-demo.log"
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
    # the terminal belongs to the live view and the console channel: the log goes to a file
    secrets = [os.environ.get("SLACK_BOT_TOKEN", "")]
    setup_logging("INFO", secrets, log_file=log_path)
    print(f"daemon log: {log_path}")
    options = DemoOptions(
        config=Path(args.config),
        duration=args.duration,
        bootstrap=args.bootstrap,
        rate=args.rate,
        phase_s=args.phase,
        workdir=workdir,
        listen=args.listen,
        alertmanager=args.alertmanager,
    )
    return run_demo(options)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="watchkeeper", description="Keeps watch over ML models in production."
    )
    parser.add_argument("--version", action="version", version=version("watchkeeper"))
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the daemon")
    run.add_argument("-c", "--config", default=DEFAULT_CONFIG)
    run.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    run.set_defaults(func=cmd_run)

    config = sub.add_parser("config", help="configuration tools")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser("check", help="validate config files; exit 1 on any error")
    check.add_argument("paths", nargs="+")
    check.set_defaults(func=cmd_config_check)

    db = sub.add_parser("db", help="store tools")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_sub.add_parser("upgrade", help="migrate the store's schema to the latest")
    upgrade.add_argument("-c", "--config", default=DEFAULT_CONFIG)
    upgrade.set_defaults(func=cmd_db_upgrade)

    quarantine = sub.add_parser("quarantine", help="list quarantined records")
    quarantine.add_argument("-c", "--config", default=DEFAULT_CONFIG)
    quarantine.add_argument("--reason")
    quarantine.add_argument("--limit", type=int, default=50)
    quarantine.set_defaults(func=cmd_quarantine)

    add_detect_parsers(sub, DEFAULT_CONFIG)
    add_policy_parsers(sub, DEFAULT_CONFIG)
    add_shadow_parsers(sub, DEFAULT_CONFIG)
    add_alert_parsers(sub, DEFAULT_CONFIG)

    demo = sub.add_parser(
        "demo", help="run the daemon on an embedded broker with synthetic traffic"
    )
    demo.add_argument(
        "-c",
        "--config",
        default=str(Path(__file__).resolve().parents[2] / "deploy" / "watchkeeper.yaml"),
    )
    demo.add_argument(
        "--duration",
        type=float,
        help="stop after this many seconds (default: when the timeline ends; 0: at Ctrl-C)",
    )
    demo.add_argument("--phase", type=float, default=20.0, help="seconds per timeline phase")
    demo.add_argument("--bootstrap", help="use this Kafka cluster instead of the embedded broker")
    demo.add_argument("--rate", type=float, default=300.0, help="events per second, both models")
    demo.add_argument("--workdir", help="keep the store, config, policies and models here")
    demo.add_argument("--listen", help="HTTP address (default: a free loopback port)")
    demo.add_argument("--alertmanager", help="an Alertmanager URL to send alerts to")
    demo.set_defaults(func=cmd_demo)
    return parser


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:300] + "…"


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command; an error it cannot go on from is one line on stderr and exit 2,
    never a traceback (a bug of ours still shows one: it should be reported)."""
    from sqlalchemy.exc import SQLAlchemyError
    from watchkeeper.errors import WatchkeeperError

    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
    except WatchkeeperError as exc:
        print(f"watchkeeper: {_one_line(exc)}", file=sys.stderr)
        return 2
    except SQLAlchemyError as exc:
        # the driver's message (first line only): no URL, no SQL, no parameters
        first = str(getattr(exc, "orig", None) or type(exc).__name__).splitlines()[0][:200]
        print(f"watchkeeper: the store cannot be used: {first}", file=sys.stderr)
        return 2
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
