"""``watchkeeper demo``: the whole product on one machine, on a timeline of faults.

It starts the embedded Kafka-protocol broker (unless ``--bootstrap`` names a cluster), a
synthetic model server for two models (:mod:`watchkeeper.daemon.demo.synthetic`), reference
profiles built from their "training" data, an INT8 candidate of the fraud model made by
``watchkeeper compress``, and the daemon with the shipped example config and policies —
time-compressed (:mod:`watchkeeper.daemon.demo.timeline`). Then it injects drift, a
latency regression, a NaN burst and an accuracy drop one after another, and puts the
candidate in shadow; incidents print as the console channel renders them (as in Slack),
and a live view shows traffic, checks, incidents and the candidate. At the end it prints
which incidents each phase opened and resolved against what it should have.

Everything it starts stops through one exit stack, in reverse order, on ``--duration``,
Ctrl-C or SIGTERM: the traffic first, then the daemon. When the timeline ran to its end (or
``--duration``) the daemon stops once it has read all the traffic sent, so the summary's
stored, late and quarantined events add up to what was produced; after Ctrl-C, SIGTERM or
a failed start it stops at once (:func:`end_wait`).
``--workdir`` keeps the store, config, policies and models afterwards.
"""

from __future__ import annotations

import json
import signal
import tempfile
import threading
import time
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from watchkeeper.daemon.app import Daemon
from watchkeeper.daemon.config import Config, load_config
from watchkeeper.daemon.config_kafka import Role, TopicConfig
from watchkeeper.daemon.demo.broker import EmbeddedBroker
from watchkeeper.daemon.demo.setup import (
    DemoOptions,
    Sent,
    Traffic,
    create_topics,
    demo_config,
    make_candidate,
    shadow_policy,
    store_references,
    store_url,
)
from watchkeeper.daemon.demo.synthetic import Faults
from watchkeeper.daemon.demo.timeline import (
    Phase,
    Scale,
    judge,
    outcome_dicts,
    phase_at,
    timeline,
    write_policies,
)
from watchkeeper.daemon.demo.view import LiveView
from watchkeeper.daemon.errors import StoreUnavailableError
from watchkeeper.daemon.ingest.sources import option_checks

SHIPPED_POLICIES = Path(__file__).resolve().parents[2] / "policies" / "examples"
READ_TO_END_S = 30.0
"""How long the demo waits, once its traffic has stopped, for the daemon to read the rest:
it reads ~100 k records a second (shared/DESIGN.md), the demo sends 450 a second."""


def _wait_for_data(daemon: Daemon, scale: Scale, stop: threading.Event, timeout: float) -> bool:
    """Until the store holds a full look-back of both models (so no policy starts on an
    empty window and reports "no data")."""
    deadline = time.monotonic() + timeout
    need = 1.2 * scale.lookback_s
    while not stop.wait(0.5):
        store = daemon.store
        if store is not None and daemon.ingestor is not None and daemon.ingestor.ready.is_set():
            now = int(time.time() * 1000)
            spans = []
            for model in ("fraud", "churn"):
                counts = [s for s, n in store.event_counts(model, 0, now + 1) if n]
                spans.append((now - min(counts)) / 1000 if counts else 0.0)
            if min(spans) >= need:
                return True
        if time.monotonic() > deadline:
            return False
    return False


def run_demo(options: DemoOptions) -> int:
    console = Console()
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with ExitStack() as outer:
            if options.workdir is not None:
                workdir = options.workdir.resolve()
                workdir.mkdir(parents=True, exist_ok=True)
            else:
                workdir = Path(outer.enter_context(tempfile.TemporaryDirectory(prefix="wk-demo-")))
            record: dict[str, Any] = {"phase_s": options.phase_s, "phases": [], "t0_ms": None}
            with ExitStack() as stack:
                outcome, traffic = _run(options, console, workdir, record, stop, stack)
            # everything has stopped (reverse order); the store holds the final state, and
            # only now are the traffic's counts final (Traffic.sent)
            return _summary(console, workdir, options.phase_s, record, traffic.sent(), outcome)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _run(
    options: DemoOptions,
    console: Console,
    workdir: Path,
    record: dict[str, Any],
    stop: threading.Event,
    stack: ExitStack,
) -> tuple[int, Traffic]:
    """The outcome and the traffic (its counts are final once ``stack`` has closed)."""
    scale = Scale(options.phase_s)
    phases = timeline(options.phase_s)
    bootstrap, topics, config, shadow = _set_up(options, console, workdir, stack, scale)
    daemon = Daemon(config)
    daemon_stop = threading.Event()
    runner = threading.Thread(target=daemon.run, args=(daemon_stop,), name="wk-daemon")
    runner.start()
    stack.callback(runner.join)
    stack.callback(daemon_stop.set)
    # set once the timeline ran to its end or --duration: only then does the way out
    # wait for the daemon to read the rest (end_wait)
    played = threading.Event()
    traffic = Traffic(
        bootstrap,
        topics["predictions"].name,
        topics["labels"].name,
        options.rate,
        scale.label_delay_s,
    )
    # on the way out: the traffic stops, the daemon reads what it sent, then it stops
    stack.callback(_read_to_the_end, daemon, traffic, runner, console, stop, played)
    stack.enter_context(traffic)
    started = time.monotonic()
    view = LiveView(daemon, phases, started)
    outcome = 0
    with Live(view.frame(), console=console, refresh_per_second=2) as live:
        if not _wait_for_data(daemon, scale, stop, timeout=120):
            if not stop.is_set():
                console.print("[red]no events reached the store within 120 s[/]")
                outcome = 1
            return outcome, traffic
        if daemon.http is not None:
            # the console: each notification below links its incident page here
            console.print(f"console: http://{daemon.http.address}/")
        written = write_policies(SHIPPED_POLICIES, workdir / "policies", scale)
        view.t0 = time.monotonic()
        record["t0_ms"] = int(time.time() * 1000)
        console.print("policies in force: " + ", ".join(p.name for p in written))
        show = _Show(runner, traffic, view, live, shadow)
        outcome = _play(options, console, workdir, record, stop, show)
        if not stop.is_set():
            played.set()
    return outcome, traffic


def end_wait(played: bool, interrupted: bool, daemon_alive: bool) -> str | None:
    """Whether the way out waits for the daemon to read what the traffic sent: None to
    wait, else why not (printed, unless the demo never got going).

    Only a timeline that ran to its end (or ``--duration``) waits, so that its summary
    adds up; Ctrl-C or SIGTERM stops at once (the README promises it always stops
    cleanly, not up to :data:`READ_TO_END_S` later), a failed start has nothing to add
    up, and a daemon that died reads nothing more.

    >>> end_wait(played=True, interrupted=False, daemon_alive=True) is None
    True
    >>> end_wait(played=True, interrupted=True, daemon_alive=True)
    'interrupted: the daemon stops without reading the last records sent'
    >>> end_wait(played=False, interrupted=False, daemon_alive=True)
    ''
    """
    if interrupted:
        return "interrupted: the daemon stops without reading the last records sent"
    if not daemon_alive:
        return (
            "the daemon has stopped: not waiting for it to read the records sent; see its log file"
        )
    if not played:
        return ""  # the start failed: what went wrong is printed (or raised) already
    return None


def _read_to_the_end(
    daemon: Daemon,
    traffic: Traffic,
    runner: threading.Thread,
    console: Console,
    stop: threading.Event,
    played: threading.Event,
    timeout: float = READ_TO_END_S,
) -> None:
    """Once the traffic has stopped, if :func:`end_wait` says so: until the daemon has
    committed every record the broker acknowledged, so the summary's stored +
    quarantined equals what was produced (a daemon stopped at once would leave the last
    flush interval's records unread). Ctrl-C or SIGTERM meanwhile ends the wait."""
    store, ingestor = daemon.store, daemon.ingestor
    sent = traffic.sent()
    deadline = time.monotonic() + timeout
    unread = sent.predictions + sent.labels
    while True:
        why = end_wait(played.is_set(), stop.is_set(), runner.is_alive())
        if why is None and (store is None or ingestor is None):
            why = ""  # it never started: nothing to wait for
        if why is not None:
            if why:
                console.print(f"[yellow]{why}[/]")
            return
        assert store is not None and ingestor is not None
        # the daemon retries its commits while the store is away; so does this, until the deadline
        with suppress(StoreUnavailableError):
            unread = sent.unread(store.offsets(ingestor.group_id))
        if not unread:
            return
        if time.monotonic() > deadline:
            console.print(f"[yellow]the daemon had not read {unread:,} records in {timeout:g}s[/]")
            return
        stop.wait(0.2)


def _set_up(
    options: DemoOptions, console: Console, workdir: Path, stack: ExitStack, scale: Scale
) -> tuple[str, dict[Role, TopicConfig], Config, dict[str, Any]]:
    """The broker (embedded unless one is given), the topics, the stored references, the
    shadow candidate and the demo's config: (bootstrap, topics by role, config, candidate)."""
    bootstrap = options.bootstrap
    if bootstrap is None:
        broker = stack.enter_context(EmbeddedBroker(log_path=workdir / "broker.log"))
        bootstrap = broker.bootstrap
    base = load_config(options.config, clients=option_checks())
    topics = base.kafka.topics.by_role()
    create_topics(bootstrap, [t.name for t in topics.values()])
    console.print(f"[bold]watchkeeper demo[/] · broker {bootstrap} · work dir {workdir}")
    (workdir / "policies").mkdir(exist_ok=True)
    reference = store_references(store_url(workdir), workdir)
    shadow = make_candidate(workdir, reference, console)
    config_path, notes = demo_config(options, workdir, bootstrap, scale)
    config = load_config(config_path, clients=option_checks())
    console.print("channels: " + "; ".join(notes))
    console.print(
        f"time compressed: windows of {scale.window_size_s:g}s, policies look at the last "
        f"{scale.lookback_s:g}s every {scale.every_s:g}s; labels arrive "
        f"{scale.label_delay_s:g}s after their prediction"
    )
    return bootstrap, topics, config, shadow


@dataclass
class _Show:
    """What runs while the timeline plays: the daemon's thread, the traffic, the view."""

    runner: threading.Thread
    traffic: Traffic
    view: LiveView
    live: Live
    shadow: dict[str, Any]
    """The policy ``shadow`` section the shadow phase puts in force."""


def _play(
    options: DemoOptions,
    console: Console,
    workdir: Path,
    record: dict[str, Any],
    stop: threading.Event,
    show: _Show,
) -> int:
    """The timeline, phase by phase, until it ends, ``stop`` or the daemon stops (then 1)."""
    runner, traffic, view, live, shadow = (
        show.runner,
        show.traffic,
        show.view,
        show.live,
        show.shadow,
    )
    phases = view.phases
    started = view.started
    outcome = 0
    current: Phase | None = None
    t0 = view.t0
    assert t0 is not None, "the timeline starts once the policies are written"
    while not stop.wait(0.25):
        t = time.monotonic() - t0
        if options.duration and time.monotonic() - started >= options.duration:
            break
        if options.duration is None and t >= phases[-1].settle_s:
            break
        if not runner.is_alive():
            console.print("[red]the daemon stopped unexpectedly; see its log file[/]")
            outcome = 1
            break
        phase = phase_at(phases, t)
        if phase is not current:
            current = phase
            if phase is not None:
                console.print(f"[bold magenta]▶ {phase.name}[/]: {phase.title}")
                record["phases"].append(phase.name)
                if phase.shadow:
                    shadow_policy(workdir, shadow, options.phase_s)
        injecting = phase is not None and t < phase.end_s
        traffic.faults = phase.faults if phase is not None and injecting else Faults()
        record["elapsed_s"] = t
        live.update(view.frame())
    live.update(view.frame())
    return outcome


def _summary(
    console: Console,
    workdir: Path,
    phase_s: float,
    record: dict[str, Any],
    sent: Sent,
    outcome: int,
) -> int:
    """What each phase opened against what it should have, the candidate's decision and
    the event totals; also written to ``demo-result.json`` in the work dir."""
    from rich.table import Table
    from watchkeeper.daemon.notify.incidents import IncidentStore
    from watchkeeper.daemon.shadow.store import ShadowStore
    from watchkeeper.daemon.store.store import Store

    phases = timeline(phase_s)
    done = [
        p
        for p in phases
        if p.name in record["phases"] and p.settle_s <= record.get("elapsed_s", 0) + 0.5
    ]
    with Store.open(store_url(workdir)) as store:
        incidents = IncidentStore(store.engine).incidents(None, limit=1000)
        decisions = list(ShadowStore(store.engine).decisions().values())
        totals = store.totals()
    outcomes = judge(done, record["t0_ms"], incidents) if record["t0_ms"] else []
    console.print()
    table = Table(title="what the timeline injected and what watchkeeper made of it")
    for column in (
        "phase",
        "expected incidents",
        "opened",
        "first after",
        "resolved after end",
        "",
    ):
        table.add_column(column)
    for o in outcomes:
        table.add_row(
            o.phase,
            ", ".join(o.expected) or "none",
            ", ".join(o.opened) or "none",
            "—" if o.first_open_s is None else f"{o.first_open_s:.1f}s",
            "—" if o.last_resolve_s is None else f"{o.last_resolve_s:.1f}s",
            "[green]✓[/]"
            if o.ok
            else "[red]✗[/]" + (f" open: {', '.join(o.unresolved)}" if o.unresolved else ""),
        )
    console.print(table)
    for d in decisions:
        console.print(
            f"shadow decision for {d['policy']} / {d['candidate']}: [bold]{d['decision']}[/]"
        )
    console.print(
        f"events produced {sent.predictions + sent.labels:,} ({sent.predictions:,} predictions,"
        f" {sent.labels:,} labels, as the broker acknowledged them; 1 % malformed on purpose)"
        f" · stored {totals['events']:,} · late {totals['late_events']:,}"
        f" · quarantined {totals['quarantined']:,}"
        + (f" · [red]{sent.failed:,} sends failed[/]" if sent.failed else "")
    )
    result = record | {
        "outcomes": outcome_dicts(outcomes),
        "decisions": decisions,
        "produced": sent.predictions,
        "labels_produced": sent.labels,
        "send_failures": sent.failed,
        "totals": totals,
    }
    (workdir / "demo-result.json").write_text(json.dumps(result, indent=2, default=str))
    console.print("demo finished")
    return outcome
