"""YAML bombs and broken policy files: refused with a located error, quickly and within
memory, one bad file rejected alone while the others load and later edits apply; the
running daemon tells the truth about it on /api/policies, /metrics and POST /-/reload."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from watchkeeper.policies.errors import InvalidDocumentError
from watchkeeper.policies.loader import load_all
from watchkeeper.policies.yamlbounds import MAX_DEPTH, MAX_NODES
from watchkeeper.policies.yamlsource import parse_yaml

from tests.security.conftest import GOOD_POLICY, RunningDaemon
from tests.security.probes import rss_bytes
from tests.support import wait_until

# 9 levels of 9 aliases: 9⁹ ≈ 387 M nodes from ~450 bytes (the 459-byte bomb)
BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8)
)
DEEP = "model: fraud\nx: " + "[" * 5000 + "]" * 5000 + "\n"
BIG_INT = "model: fraud\nwindow: " + "9" * 5000 + "\n"
RECURSIVE = "a: &a [*a]\n"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (BOMB, "expands to more than"),
        (DEEP, "nested deeper than"),
        (BIG_INT, "digits"),
        (RECURSIVE, "recursive"),
        ("model: fraud\n" + "x" * (2 * 1024 * 1024), "larger than the limit"),
    ],
)
def test_bombs_are_refused_with_a_located_error_quickly(text: str, words: str) -> None:
    rss = rss_bytes()
    started = time.monotonic()
    with pytest.raises(InvalidDocumentError) as caught:
        parse_yaml(text, "bomb.yaml")
    assert time.monotonic() - started < 5
    assert rss_bytes() < rss + 200 * 1024 * 1024
    (error,) = caught.value.errors
    assert words in error.message
    assert error.file == "bomb.yaml" and error.line is not None and error.column is not None
    assert str(error).startswith(f"bomb.yaml:{error.line}:{error.column}:")


def test_policy_check_refuses_the_bomb_within_time_and_memory(tmp_path: Path) -> None:
    """Was: past 5 GB RSS in 60 s."""
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(BOMB)
    # VmHWM, not ru_maxrss: the latter keeps the forked parent's (pytest's) peak across exec
    script = (
        "import sys\n"
        "from watchkeeper.daemon.cli.main import main\n"
        "code = main(['policy', 'check', sys.argv[1]])\n"
        "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])\n"
        "sys.exit(code)\n"
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", script, str(bomb)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1, done.stderr
    assert time.monotonic() - started < 60
    peak_kib = int(done.stdout.strip().splitlines()[-1])
    assert peak_kib < 400 * 1024  # the interpreter and its imports (~130 MB), nothing expanded
    assert "expands to more than" in done.stdout + done.stderr
    assert "Traceback" not in done.stderr


def test_one_bad_file_is_rejected_alone(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD_POLICY.format(model="a"))
    (tmp_path / "bomb.yaml").write_text(BOMB)
    (tmp_path / "deep.yaml").write_text(DEEP)
    (tmp_path / "int.yaml").write_text(BIG_INT)
    (tmp_path / "z.yaml").write_text(GOOD_POLICY.format(model="z"))
    result = load_all([tmp_path])
    assert sorted(p.policy.model for p in result.policies) == ["a", "z"]
    assert sorted(Path(p).name for p in result.errors) == ["bomb.yaml", "deep.yaml", "int.yaml"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    fan=st.integers(1, 40),
    levels=st.integers(1, 12),
    nesting=st.integers(0, 200),
    flow=st.booleans(),
)
def test_fuzz_aliases_and_nesting_never_escape_the_bounds(
    fan: int, levels: int, nesting: int, flow: bool
) -> None:
    lines = [f"l0: &l0 [{', '.join(['x'] * fan)}]"]
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * fan)}]")
    if flow:
        lines.append("deep: " + "[" * nesting + "]" * nesting)
    else:
        lines.append("deep:" + "".join(f"\n{'  ' * (d + 1)}k{d}:" for d in range(nesting)) + " 1")
    text = "\n".join(lines) + "\n"
    expanded = sum(fan**k for k in range(1, levels + 1)) + levels  # a rough lower bound
    started = time.monotonic()
    refused: InvalidDocumentError | None = None
    try:
        doc = parse_yaml(text, "fuzz.yaml")
    except InvalidDocumentError as exc:
        refused = exc
    assert time.monotonic() - started < 5
    if refused is not None:
        assert refused.errors and refused.errors[0].line is not None
        assert expanded > MAX_NODES // 4 or nesting + 2 > MAX_DEPTH // 2
    else:
        assert expanded <= MAX_NODES and nesting < MAX_DEPTH
        assert doc.data["l0"] == ["x"] * fan


def policies(daemon: RunningDaemon) -> dict[str, object]:
    status, body = daemon.json("/api/policies")
    assert status == 200
    return dict(body)


@pytest.mark.broker
def test_the_running_daemon_rejects_a_bad_file_alone_and_says_so(daemon: RunningDaemon) -> None:
    """Was: one bad file blocked every later reload, reported as success (and 500)."""
    rss = rss_bytes(daemon.pid)
    bad = daemon.policies / "bad.yaml"
    for text in (BOMB, DEEP, BIG_INT):
        bad.write_text(text)
        wait_until(
            lambda: str(bad) in policies(daemon)["errors"],
            timeout=30,
            describe=lambda: policies(daemon),
        )
        body = policies(daemon)
        assert body["last_reload_successful"] is False
        assert {p["model"] for p in body["policies"]} >= {"fraud", "churn"}  # others in force
        status, answer = daemon.json("/-/reload", "POST")
        assert status == 422
        assert str(bad) in answer["errors"]
        assert "watchkeeper_policy_last_reload_successful 0.0" in daemon.metrics()
    assert rss_bytes(daemon.pid) < rss + 100 * 1024 * 1024  # was +266 MB, 614 MB retained
    # a later edit of another file applies while the bad one is still there
    (daemon.policies / "churn.yaml").write_text(
        GOOD_POLICY.format(model="churn").replace("every: 1m", "every: 2m")
    )
    wait_until(
        lambda: any(
            p["model"] == "churn" and p["schedule"].get("every") == 120
            for p in policies(daemon)["policies"]
        ),
        timeout=30,
        describe=lambda: policies(daemon),
    )
    bad.unlink()
    wait_until(lambda: policies(daemon)["last_reload_successful"] is True, timeout=30)
    assert daemon.json("/-/reload", "POST")[0] == 200
    assert daemon.alive()
