"""Bad files, stores, times and addresses get one located line and a non-zero exit, never a
traceback; an empty or column-less batch fails the offline drift gate; ``[::1]`` works."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from prometheus_client import CollectorRegistry
from watchkeeper.daemon.cli.main import main
from watchkeeper.daemon.http.server import HttpServer

from tests.security.probes import get
from tests.support import write_config


@dataclass
class Done:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Any:
    """The CLI in this process (``main`` is what ``watchkeeper`` runs): exit code and output."""

    def call(*argv: str) -> Done:
        capsys.readouterr()
        code = main(list(argv))
        out = capsys.readouterr()
        return Done(code, out.out, out.err)

    return call


def assert_one_line_error(done: Done, *words: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stdout[-500:], done.stderr[-2000:])
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    for word in words:
        assert word in lines[0], lines[0]


def _files(tmp: Path) -> dict[str, Path]:
    out = {}
    out["empty.csv"] = tmp / "empty.csv"
    out["empty.csv"].write_bytes(b"")
    out["ragged.csv"] = tmp / "ragged.csv"
    out["ragged.csv"].write_text("a,b\n1,2\n3,4,5,6\n")
    out["latin1.csv"] = tmp / "latin1.csv"
    out["latin1.csv"].write_bytes("a,b\n1,caf\xe9\n".encode("latin-1"))
    out["garbage.csv"] = tmp / "garbage.csv"
    out["garbage.csv"].write_bytes(bytes(range(256)) * 40)
    out["empty.parquet"] = tmp / "empty.parquet"
    out["empty.parquet"].write_bytes(b"")
    good = tmp / "good.parquet"
    pq.write_table(pa.table({"a": np.arange(1000.0)}), good)
    out["truncated.parquet"] = tmp / "truncated.parquet"
    out["truncated.parquet"].write_bytes(good.read_bytes()[:200])
    out["nested.parquet"] = tmp / "nested.parquet"
    pq.write_table(pa.table({"a": [[1, 2], [3]], "b": [{"x": 1}, {"x": 2}]}), out["nested.parquet"])
    out["header.csv"] = tmp / "header.csv"
    out["header.csv"].write_text("a,b\n")
    out["wide.csv"] = tmp / "wide.csv"
    out["wide.csv"].write_text(
        ",".join(f"c{i}" for i in range(10_000)) + "\n" + ",".join("1" * 10_000) + "\n"
    )
    return out


@pytest.mark.parametrize(
    "name",
    [
        "empty.csv",
        "ragged.csv",
        "latin1.csv",
        "garbage.csv",
        "empty.parquet",
        "truncated.parquet",
        "nested.parquet",
        "header.csv",
        "wide.csv",
    ],
)
def test_a_bad_data_file_is_one_line_and_exit_2(tmp_path: Path, name: str, run: Any) -> None:
    path = _files(tmp_path)[name]
    started = time.monotonic()
    done = run(
        "reference", "build", "--model", "m", "--from", str(path), "-o", str(tmp_path / "p.json")
    )
    assert_one_line_error(done, str(path))
    assert time.monotonic() - started < 60  # 10,000 columns took 12 s and ~1 GB before


@pytest.fixture
def profile(tmp_path: Path, run: Any) -> Path:
    source = tmp_path / "train.csv"
    rng = np.random.default_rng(1)
    pd.DataFrame({"amount": rng.normal(size=500), "country": rng.choice(["DE", "FR"], 500)}).to_csv(
        source, index=False
    )
    out = tmp_path / "profile.json"
    done = run("reference", "build", "--model", "m", "--from", str(source), "-o", str(out))
    assert done.returncode == 0, done.stderr
    return out


def test_drift_refuses_an_empty_or_column_less_batch(
    tmp_path: Path, profile: Path, run: Any
) -> None:
    """A CI gate must not pass on nothing: was exit 0 on an empty batch, IndexError on a
    batch sharing no column."""
    empty = tmp_path / "empty.csv"
    empty.write_text("amount,country\n")
    other = tmp_path / "other.csv"
    other.write_text("x,y\n1,2\n3,4\n")
    for batch, words in ((empty, ("no rows",)), (other, ("shares no column",))):
        done = run("drift", "--reference", str(profile), "--current", str(batch))
        assert_one_line_error(done, str(batch), *words)
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    done = run("drift", "--reference", str(garbage), "--current", str(other))
    assert_one_line_error(done, "not a reference profile")


def test_an_unreachable_store_is_one_line(
    tmp_path: Path, run: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Was: a 130-line traceback."""
    config = write_config(
        tmp_path / "watchkeeper.yaml",
        {
            "kafka": {"bootstrap_servers": "127.0.0.1:1", "topics": {"predictions": {"name": "p"}}},
            "store": {"url_env": "WK_STORE"},
        },
    )
    url = "postgresql+psycopg://u:pw-Secret-42@127.0.0.1:1/db?connect_timeout=2"
    monkeypatch.setenv("WK_STORE", url)
    done = run("db", "upgrade", "-c", str(config))
    assert_one_line_error(done, "store")
    assert "pw-Secret-42" not in done.stderr


def test_a_bad_time_on_the_command_line_is_one_line(tmp_path: Path, run: Any) -> None:
    config = write_config(
        tmp_path / "watchkeeper.yaml",
        {
            "kafka": {"bootstrap_servers": "127.0.0.1:1", "topics": {"predictions": {"name": "p"}}},
            "store": {"url": f"sqlite:///{tmp_path / 's.db'}"},
        },
    )
    done = run(
        "reference",
        "build",
        "--model",
        "m",
        "--from-store",
        "--start",
        "yesterday",
        "--end",
        "2026-11-21T10:00Z",
        "-o",
        str(tmp_path / "p.json"),
        "-c",
        str(config),
    )
    assert_one_line_error(done, "not a time")


def test_ipv6_loopback_listen_addresses_work(tmp_path: Path, run: Any) -> None:
    config = write_config(
        tmp_path / "watchkeeper.yaml",
        {
            "kafka": {"bootstrap_servers": "127.0.0.1:1", "topics": {"predictions": {"name": "p"}}},
            "http": {"listen": "[::1]:8450"},
        },
    )
    assert run("config", "check", str(config)).returncode == 0
    bad = write_config(
        tmp_path / "bad.yaml",
        {
            "kafka": {"bootstrap_servers": "127.0.0.1:1", "topics": {"predictions": {"name": "p"}}},
            "http": {"listen": "::1:8450"},
        },
    )
    done = run("config", "check", str(bad))
    assert done.returncode == 1 and "brackets" in done.stderr
    try:
        server = HttpServer("::1", 0, CollectorRegistry(), lambda: (True, ""), lambda: (True, ""))
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    server.start()
    try:
        assert server.loopback
        assert get(server.server_address, "/healthz").status == 200
    finally:
        server.close()
