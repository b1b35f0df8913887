"""Reference profiles from files and from the store, `drift` as a CI gate, drift reports."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from prometheus_client import CollectorRegistry
from watchkeeper.daemon.cli.main import main
from watchkeeper.daemon.eventtime.windows import WindowState
from watchkeeper.daemon.http.reports import Reports, report_routes
from watchkeeper.daemon.http.server import HttpServer
from watchkeeper.daemon.store.store import Store
from watchkeeper.detectors.column_batch import Column, ColumnBatch
from watchkeeper.detectors.profile import ReferenceProfile, bin_counts
from watchkeeper.detectors.reservoir import record_keys

from tests.support import write_config

NOW_MS = 1_795_255_200_000


@pytest.fixture
def training(tmp_path: Path) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 20_000
    frame = pd.DataFrame(
        {
            "id": np.arange(n),
            "amount": rng.lognormal(3, 1, n),
            "age": rng.normal(40, 10, n),
            "country": rng.choice(["DE", "FR", "US"], n, p=[0.5, 0.3, 0.2]),
        }
    )
    frame.loc[::50, "age"] = np.nan
    frame["score"] = 1 / (1 + np.exp(-(np.log(frame.amount) - 3)))
    frame["label"] = (rng.random(n) < frame.score).astype(int)
    frame.to_parquet(tmp_path / "train.parquet")
    frame.to_csv(tmp_path / "train.csv", index=False)
    return frame


@pytest.mark.parametrize("suffix", ["parquet", "csv"])
def test_reference_build_from_a_file(tmp_path: Path, training: pd.DataFrame, suffix: str) -> None:
    out = tmp_path / f"ref-{suffix}.json"
    assert (
        main(
            [
                "reference",
                "build",
                "--model",
                "fraud",
                "--from",
                str(tmp_path / f"train.{suffix}"),
                "--prediction",
                "score",
                "--label",
                "label",
                "--exclude",
                "id",
                "-o",
                str(out),
            ]
        )
        == 0
    )
    profile = ReferenceProfile.load(out)
    assert profile.model == "fraud" and profile.rows == len(training)
    assert sorted(profile.features) == ["age", "amount", "country"]
    age = profile.features["age"]
    assert age.kind == "numeric" and age.nulls == 400 and len(age.edges) == 9  # type: ignore[union-attr]
    exact = bin_counts(training.age.to_numpy(), age.edges)  # type: ignore[union-attr]
    assert np.allclose(age.proportions, exact / exact.sum())  # type: ignore[union-attr]
    country = profile.features["country"]
    assert country.kind == "categorical"
    assert country.proportions["DE"] == pytest.approx((training.country == "DE").mean())  # type: ignore[union-attr]
    assert profile.task == "classification"
    expected_accuracy = ((training.score >= 0.5).astype(int) == training.label).mean()
    assert profile.metrics["accuracy"] == pytest.approx(expected_accuracy)
    assert 0.5 < profile.metrics["roc_auc"] < 1.0
    assert len(profile.sample) == 2000 and "amount" in profile.sample[0]["features"]


def test_drift_is_a_ci_gate(
    tmp_path: Path, training: pd.DataFrame, capsys: pytest.CaptureFixture[str]
) -> None:
    ref = tmp_path / "ref.json"
    main(
        [
            "reference",
            "build",
            "--model",
            "fraud",
            "--from",
            str(tmp_path / "train.parquet"),
            "--exclude",
            "id,score,label",
            "-o",
            str(ref),
        ]
    )
    same = training.sample(3000, random_state=1)
    same.to_csv(tmp_path / "same.csv", index=False)
    shifted = same.copy()
    shifted["amount"] *= 2.0
    shifted.iloc[:200, shifted.columns.get_loc("country")] = "BR"
    shifted.to_parquet(tmp_path / "shifted.parquet")
    capsys.readouterr()
    assert main(["drift", "--reference", str(ref), "--current", str(tmp_path / "same.csv")]) == 0
    assert "0 critical" in capsys.readouterr().out
    code = main(
        [
            "drift",
            "--reference",
            str(ref),
            "--current",
            str(tmp_path / "shifted.parquet"),
            "--format",
            "json",
        ]
    )
    report = json.loads(capsys.readouterr().out)
    assert code == 1 and report["critical"] > 0
    critical = {
        (f["feature"], f["metric"]) for f in report["findings"] if f["severity"] == "critical"
    }
    assert ("amount", "psi") in critical and ("country", "unseen_mass") in critical
    assert not any(feature == "age" for feature, _ in critical)
    # the same gate with a policy's own thresholds: only amount's PSI matters here
    policy = tmp_path / "fraud.yaml"
    policy.write_text(
        "model: fraud\nrules:\n  - {metric: psi, features: [amount], "
        "critical: 5.0}\n  - {metric: unseen_mass, features: [country], "
        "warn: 0.5}\n"
    )
    capsys.readouterr()
    assert (
        main(
            [
                "drift",
                "--reference",
                str(ref),
                "--current",
                str(tmp_path / "shifted.parquet"),
                "--policy",
                str(policy),
                "--format",
                "json",
            ]
        )
        == 0
    )
    lenient = json.loads(capsys.readouterr().out)
    assert lenient["critical"] == 0
    assert {(f["feature"], f["metric"]) for f in lenient["findings"]} == {
        ("amount", "psi"),
        ("country", "unseen_mass"),
    }
    policy.write_text(
        "model: fraud\nrules:\n  - {metric: psi, features: [amount], critical: 0.25}\n"
    )
    assert (
        main(
            [
                "drift",
                "--reference",
                str(ref),
                "--current",
                str(tmp_path / "shifted.parquet"),
                "--policy",
                str(policy),
            ]
        )
        == 1
    )


def _commit_windows(url: str, n: int = 600) -> None:
    rng = np.random.default_rng(1)
    with Store.open(url) as store:
        state = WindowState(300, 3600)
        amount = rng.lognormal(3, 1, n)
        country = np.empty(n, dtype=object)
        country[:] = rng.choice(["DE", "FR"], n).tolist()
        zeros = np.zeros(n, bool)
        state.add(
            ColumnBatch(
                model="fraud",
                role="predictions",
                ts_ms=NOW_MS + np.arange(n, dtype=np.int64) * 1000,
                versions=np.array(["3"] * n, dtype=object),
                keys=record_keys(0, 0, np.arange(n)),
                features={
                    "amount": Column("numeric", amount, zeros, zeros),
                    "country": Column("categorical", country, zeros, zeros),
                },
            )
        )
        store.commit("g", state.drain(), {("preds", 0): n})


def test_reference_from_a_stored_window_range_and_a_report(
    tmp_path: Path, store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _commit_windows(store_url)
    config = write_config(
        tmp_path / "watchkeeper.yaml",
        {
            "kafka": {"bootstrap_servers": "127.0.0.1:1", "topics": {"predictions": {"name": "p"}}},
            "store": {"url": store_url},
        },
    )
    start, end = str(NOW_MS - NOW_MS % 300_000), str(NOW_MS + 3_600_000)
    assert (
        main(
            [
                "reference",
                "build",
                "--model",
                "fraud",
                "--from-store",
                "--start",
                start,
                "--end",
                end,
                "-c",
                str(config),
                "--into-store",
                "-o",
                str(tmp_path / "pinned.json"),
            ]
        )
        == 0
    )
    pinned = ReferenceProfile.load(tmp_path / "pinned.json")
    assert pinned.rows == 600 and sorted(pinned.features) == ["amount", "country"]
    assert pinned.source.startswith("store:")
    out = tmp_path / "report.html"
    assert (
        main(
            [
                "report",
                "--model",
                "fraud",
                "--window",
                f"{start}/{end}",
                "-c",
                str(config),
                "-o",
                str(out),
            ]
        )
        == 0
    )
    html = out.read_text()
    assert out.stat().st_size > 10_000 and "drifted columns" in html.lower()
    assert "amount" in html and "country" in html
    assert main(["report", "--model", "nobody", "--window", start, "-c", str(config)]) == 2


def _fetch(url: str, data: bytes | None = None, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_the_daemon_makes_and_serves_reports(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    _commit_windows(url)
    with Store.open(url) as store:
        window = store.window_range("fraud", 0, NOW_MS * 2)
        assert window is not None
        from watchkeeper.detectors.profile import profile_from_window

        store.save_reference(profile_from_window(window))
        reports = Reports(store, tmp_path / "reports")
        server = HttpServer(
            "127.0.0.1",
            0,
            CollectorRegistry(),
            lambda: (True, ""),
            lambda: (True, ""),
            report_routes(reports),
            token="s3cret-token",
        )
        server.start()
        try:
            base = f"http://{server.address}"
            body = json.dumps({"model": "fraud", "start_ms": 0, "end_ms": NOW_MS * 2}).encode()
            assert _fetch(base + "/api/reports", body)[0] == 401
            status, answer = _fetch(base + "/api/reports", body, token="s3cret-token")
            assert status == 201
            link = json.loads(answer)["url"]
            status, html = _fetch(base + link)
            assert status == 200 and b"drifted columns" in html.lower()
            assert link in json.loads(_fetch(base + "/reports/")[1])["reports"]
            # an alert's link names a report that does not exist yet: made on first visit
            lazy = reports.name_for(
                "fraud", NOW_MS - NOW_MS % 300_000, NOW_MS - NOW_MS % 300_000 + 3_600_000, "default"
            )
            status, html = _fetch(base + f"/reports/{lazy}")
            assert status == 200 and b"drifted columns" in html.lower()
            # a name the daemon did not mint (a range written by hand, a forged signature)
            # is a 404 that costs nothing: no report is made for it
            made = reports.made
            forged = lazy.replace(str(NOW_MS - NOW_MS % 300_000), "0", 1)
            assert _fetch(base + f"/reports/{forged}")[0] == 404
            assert _fetch(base + "/reports/nobody~default~0~1.html")[0] == 404
            assert reports.made == made
            assert _fetch(base + "/reports/..%2Fs.db")[0] == 404
            assert _fetch(base + "/reports/nothing.html")[0] == 404
            bad = json.dumps({"model": "fraud"}).encode()
            assert _fetch(base + "/api/reports", bad, token="s3cret-token")[0] == 400
            assert _fetch(base + "/api/reports")[0] == 405
        finally:
            server.close()
            reports.close()


def test_reference_build_with_segments(tmp_path: Path, training: pd.DataFrame) -> None:
    out = tmp_path / "ref-segments.json"
    args = ["reference", "build", "--model", "fraud", "--from", str(tmp_path / "train.parquet")]
    args += ["--prediction", "score", "--exclude", "id", "--segments", "country"]
    assert main([*args, "--segment-top-k", "2", "-o", str(out)]) == 0
    profile = ReferenceProfile.load(out)
    country = profile.segments["country"]
    assert country.values == ("DE", "FR") and set(country.profiles) == {"DE", "FR", "(other)"}
    us = country.profiles["(other)"]
    assert us.rows == int((training.country == "US").sum())
    age = us.features["age"]
    assert age.edges == profile.features["age"].edges  # type: ignore[union-attr]
    rows = training.loc[training.country == "US", "age"].to_numpy()
    exact = bin_counts(rows, age.edges)  # type: ignore[union-attr]
    assert list(age.proportions) == (exact / exact.sum()).tolist()  # type: ignore[union-attr]
    assert main([*args, "--segment-top-k", "101", "-o", str(out)]) != 0


def test_drift_on_the_same_file_prints_the_same_bytes_in_two_processes(tmp_path: Path) -> None:
    """KLL flips coins per process: two processes over one file, past its k, printed
    different out-of-range rates and KS before every current-side number was exact."""
    import subprocess
    import sys

    rng = np.random.default_rng(5)
    pd.DataFrame({"a": rng.normal(size=20_000), "b": rng.lognormal(size=20_000)}).to_csv(
        tmp_path / "train.csv", index=False
    )
    current = pd.DataFrame(
        {"a": rng.normal(0.2, 1.5, 50_000), "b": rng.lognormal(0.1, 1.2, 50_000)}
    )
    current.to_csv(tmp_path / "current.csv", index=False)
    ref = tmp_path / "ref.json"
    assert (
        main(
            [
                "reference",
                "build",
                "--model",
                "m",
                "--from",
                str(tmp_path / "train.csv"),
                "-o",
                str(ref),
            ]
        )
        == 0
    )

    def drift(*extra: str) -> bytes:
        args = ["drift", "--reference", str(ref), "--current", str(tmp_path / "current.csv")]
        done = subprocess.run(
            [sys.executable, "-m", "watchkeeper.daemon", *args, *extra],
            capture_output=True,
            check=False,
            env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
        )
        assert done.returncode in (0, 1), done.stderr.decode()
        return done.stdout

    for extra in ((), ("--format", "json")):
        first, second = drift(*extra), drift(*extra)
        assert first and first == second
    findings = json.loads(drift("--format", "json"))["findings"]
    rates = {f["feature"]: f for f in findings if f["metric"] == "out_of_range_rate"}
    profile = ReferenceProfile.load(ref)
    for name in ("a", "b"):
        p = profile.features[name]
        width = p.max - p.min  # type: ignore[union-attr]
        lo, hi = p.min - 0.1 * width, p.max + 0.1 * width  # type: ignore[union-attr]
        values = pd.read_csv(tmp_path / "current.csv")[name].to_numpy()
        want = int(np.count_nonzero(values < lo) + np.count_nonzero(values > hi)) / values.size
        assert rates[name]["value"] == want and rates[name]["details"]["exact"]
