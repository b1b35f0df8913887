"""JSON parsers for the columnar parse stage, measured on the ingest benchmark's own events.

Each candidate turns one slice (2,000 events of ~393 bytes, 20 numeric features under
``features``, the shape ``bench_ingest.produce`` writes) into the columns the decoder needs:
model, model_version, request_id (text), ts, latency_ms, prediction and each
``features.fNN`` (float64), with a null mask per column (a null or absent field must be
told apart from a value: the per-record path quarantines or masks it). The columns of every
candidate are compared with Arrow's (``np.array_equal``, NaN-aware) before timing.

* ``arrow``: ``pyarrow.json.read_json`` as ``columnar_decode.ColumnarDecoder._read`` calls
  it (one block, no threads, the system pool, an Arrow buffer), then the columns to numpy;
* ``arrow+schema``: the same with an explicit schema for every field;
* ``polars``: ``polars.read_ndjson`` with an explicit schema (struct for ``features``),
  ``POLARS_MAX_THREADS=1``;
* ``msgspec``: one ``msgspec.json.Decoder(list[Event])`` call on the slice as a JSON array,
  typed ``Struct``s whose fields default to None (absent and null alike, as Arrow reads
  them), then columns with ``attrgetter`` per event;
* ``orjson``: one ``orjson.loads`` of the slice as a JSON array, then columns per event;
* ``simdjson``: ``pysimdjson``'s parser on the slice as a JSON array, then per event.

The columns are also compared on a slice with holes (a feature null in every 7th event,
absent in every 11th, ``latency_ms`` absent in every 13th): null masks and values must
agree too.

Times are the best and median of ``--repeat`` calls on one thread (µs an event), alone,
and beside a thread running Python (the daemon's loop, which takes the GIL: a parser that
keeps the GIL cannot overlap it). Import-time RSS is each library's import measured in a
fresh interpreter (VmRSS after the import minus after ``import numpy``).

Run: ``python tests/benchmarks/bench_parsers.py [--events 2000] [--repeat 200]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from operator import attrgetter
from typing import Any

os.environ.setdefault("POLARS_MAX_THREADS", "1")

import numpy as np
import orjson

FEATURES = 20
NAMES = [f"f{i:02d}" for i in range(FEATURES)]
TEXT = ("model", "model_version", "request_id")
NUMBERS = ("ts", "prediction", "latency_ms", *(f"features.{n}" for n in NAMES))

Columns = dict[str, tuple[Any, Any]]  # name -> (values, null mask)


def holed(values: list[bytes]) -> list[bytes]:
    """The events with holes: ``f03`` null every 7th, ``f05`` absent every 11th,
    ``latency_ms`` absent every 13th (the first event whole: Arrow infers from it)."""
    out = []
    for j, value in enumerate(values):
        event = orjson.loads(value)
        if j and j % 7 == 0:
            event["features"]["f03"] = None
        if j and j % 11 == 0:
            del event["features"]["f05"]
        if j and j % 13 == 0:
            del event["latency_ms"]
        out.append(orjson.dumps(event))
    return out


def events(n: int, seed: int = 1) -> list[bytes]:
    """``n`` events as ``bench_ingest.produce`` writes them (same fields, same rounding)."""
    rng = np.random.default_rng(seed)
    base_ms = int(time.time() * 1000) - 60_000
    values = np.round(rng.normal(size=(n, FEATURES)), 4).tolist()
    preds = np.round(rng.random(n), 4).tolist()
    return [
        orjson.dumps(
            {
                "model": "fraud",
                "model_version": "3",
                "request_id": f"r{j}",
                "ts": base_ms + j // 20,
                "features": dict(zip(NAMES, values[j], strict=True)),
                "prediction": preds[j],
                "latency_ms": 12.5,
            }
        )
        for j in range(n)
    ]


# -- Arrow ----------------------------------------------------------------------------
def _arrow_columns(table: Any) -> Columns:
    import pyarrow as pa

    out: Columns = {}
    for name in TEXT:
        arr = table.column(name).chunk(0)
        out[name] = (
            arr.to_numpy(zero_copy_only=False),
            arr.is_null().to_numpy(zero_copy_only=False),
        )
    feats = table.column("features").chunk(0)
    for name in NUMBERS:
        arr = (
            feats.field(name.split(".")[1])
            if name.startswith("features.")
            else table.column(name).chunk(0)
        )
        out[name] = (
            arr.cast(pa.float64(), safe=False).to_numpy(zero_copy_only=False, writable=True),
            arr.is_null().to_numpy(zero_copy_only=False),
        )
    return out


def arrow_parse(schema: Any = None) -> Callable[[list[bytes]], Any]:
    import pyarrow as pa
    import pyarrow.json as pj

    def parse(values: list[bytes]) -> Any:
        joined = b"\n".join(values)
        return pj.read_json(
            pa.BufferReader(joined),
            read_options=pj.ReadOptions(use_threads=False, block_size=len(joined) + 1),
            parse_options=pj.ParseOptions(explicit_schema=schema),
            memory_pool=pa.system_memory_pool(),
        )

    return parse


def arrow_schema() -> Any:
    import pyarrow as pa

    return pa.schema(
        [
            ("model", pa.string()),
            ("model_version", pa.string()),
            ("request_id", pa.string()),
            ("ts", pa.int64()),
            ("features", pa.struct([(n, pa.float64()) for n in NAMES])),
            ("prediction", pa.float64()),
            ("latency_ms", pa.float64()),
        ]
    )


# -- polars ---------------------------------------------------------------------------
def polars_parse() -> Callable[[list[bytes]], Any]:
    import io

    import polars as pl

    schema = {
        "model": pl.String,
        "model_version": pl.String,
        "request_id": pl.String,
        "ts": pl.Int64,
        "features": pl.Struct(dict.fromkeys(NAMES, pl.Float64)),
        "prediction": pl.Float64,
        "latency_ms": pl.Float64,
    }

    def parse(values: list[bytes]) -> Any:
        return pl.read_ndjson(io.BytesIO(b"\n".join(values)), schema=schema)

    return parse


def _polars_columns(frame: Any) -> Columns:
    out: Columns = {}
    feats = frame["features"].struct.unnest()
    for name in TEXT:
        s = frame[name]
        out[name] = (s.to_numpy(), s.is_null().to_numpy())
    for name in NUMBERS:
        s = feats[name.split(".")[1]] if name.startswith("features.") else frame[name]
        s = s.cast(float)
        out[name] = (s.to_numpy(), s.is_null().to_numpy())
    return out


# -- per-event parsers: Python objects, then columns ------------------------------------
def _columns_of_rows(
    rows: list[Any], get: Callable[[Any, str], Any], feats: Callable[[Any], Any]
) -> Columns:
    """Columns of parsed rows: texts with ``get``, the features with ``feats`` (a tuple a
    row); null masks from ``None``. A Python call per row and field, as a columnar path
    over a row parser must."""
    out: Columns = {}
    n = len(rows)
    for name in TEXT:
        vals = np.array([get(r, name) for r in rows], dtype=object)
        out[name] = (vals, np.equal(vals, None))
    for name in ("ts", "prediction", "latency_ms"):
        raw = [get(r, name) for r in rows]
        nulls = np.fromiter((v is None for v in raw), dtype=bool, count=n)
        out[name] = (
            np.array([np.nan if v is None else v for v in raw], dtype=np.float64)
            if nulls.any()
            else np.array(raw, dtype=np.float64),
            nulls,
        )
    matrix = np.array([feats(r) for r in rows], dtype=np.float64)
    nulls = np.isnan(matrix)
    for i, name in enumerate(NAMES):
        out[f"features.{name}"] = (matrix[:, i].copy(), nulls[:, i].copy())
    return out


def _dict_features() -> Callable[[dict[str, Any] | None], tuple[Any, ...]]:
    """A features dict's values in ``NAMES`` order, None where absent (one ``itemgetter``
    call a row; a row missing a feature takes the slower ``dict.get`` per name)."""
    from operator import itemgetter

    whole = itemgetter(*NAMES)

    def feats(d: dict[str, Any] | None) -> tuple[Any, ...]:
        if d is None:
            return (None,) * FEATURES
        try:
            return whole(d)  # type: ignore[no-any-return]
        except KeyError:
            return tuple(map(d.get, NAMES))

    return feats


def msgspec_parse() -> tuple[Callable[[list[bytes]], Any], Callable[[Any], Columns]]:
    import msgspec

    absent = (
        None  # absent and null both None here: an _ABSENT default would need one check per field
    )
    features_cls = msgspec.defstruct(
        "Features", [(n, float | None, absent) for n in NAMES], gc=False
    )
    event_cls = msgspec.defstruct(
        "Event",
        [
            ("model", str | None, absent),
            ("model_version", str | None, absent),
            ("request_id", str | None, absent),
            ("ts", int | None, absent),
            ("features", features_cls | None, absent),
            ("prediction", float | None, absent),
            ("latency_ms", float | None, absent),
        ],
        gc=False,
    )
    decoder = msgspec.json.Decoder(list[event_cls])  # type: ignore[valid-type]
    feats = attrgetter(*NAMES)

    def parse(values: list[bytes]) -> Any:
        return decoder.decode(b"[" + b",".join(values) + b"]")

    def columns(rows: Any) -> Columns:
        return _columns_of_rows(rows, getattr, lambda r: feats(r.features))

    return parse, columns


def msgspec_dict_parse() -> tuple[Callable[[list[bytes]], Any], Callable[[Any], Columns]]:
    """msgspec with the features as ``dict[str, float]``: the feature names come from the
    data (the kind registry learns them), so a typed ``Struct`` per model would have to be
    built at run time; this is the form that needs no schema."""

    import msgspec

    event_cls = msgspec.defstruct(
        "EventD",
        [
            ("model", str | None, None),
            ("model_version", str | None, None),
            ("request_id", str | None, None),
            ("ts", int | None, None),
            ("features", dict[str, float | None] | None, None),
            ("prediction", float | None, None),
            ("latency_ms", float | None, None),
        ],
        gc=False,
    )
    decoder = msgspec.json.Decoder(list[event_cls])  # type: ignore[valid-type]
    feats = _dict_features()

    def parse(values: list[bytes]) -> Any:
        return decoder.decode(b"[" + b",".join(values) + b"]")

    def columns(rows: Any) -> Columns:
        return _columns_of_rows(rows, getattr, lambda r: feats(r.features))

    return parse, columns


def orjson_parse() -> tuple[Callable[[list[bytes]], Any], Callable[[Any], Columns]]:
    feats = _dict_features()

    def parse(values: list[bytes]) -> Any:
        return orjson.loads(b"[" + b",".join(values) + b"]")

    def columns(rows: Any) -> Columns:
        return _columns_of_rows(rows, dict.get, lambda r: feats(r.get("features")))

    return parse, columns


def simdjson_parse() -> tuple[Callable[[list[bytes]], Any], Callable[[Any], Columns]]:
    import simdjson

    parser = simdjson.Parser()
    feats = _dict_features()

    def parse(values: list[bytes]) -> Any:
        # as_list: the document's Python objects (a proxy is valid only until the next parse)
        return parser.parse(b"[" + b",".join(values) + b"]").as_list()

    def columns(rows: Any) -> Columns:
        return _columns_of_rows(rows, dict.get, lambda r: feats(r.get("features")))

    return parse, columns


# -- measuring ------------------------------------------------------------------------
def same(a: Columns, b: Columns) -> bool:
    for name in (*TEXT, *NUMBERS):
        (va, na), (vb, nb) = a[name], b[name]
        if not np.array_equal(na, nb):
            return False
        if name in TEXT:
            if list(va) != list(vb):
                return False
        elif not np.array_equal(va, vb, equal_nan=True):
            return False
    return True


def timed(
    fn: Callable[[], Any], repeat: int, clock: Callable[[], float] = time.perf_counter
) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        t = clock()
        fn()
        times.append(clock() - t)
    return min(times), statistics.median(times)


class Busy:
    """A thread running Python (holding the GIL between switch intervals), as the loop does."""

    def __enter__(self) -> Busy:
        self._stop = False
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()
        return self

    def _spin(self) -> None:
        while not self._stop:
            self.spins = sum(range(200))

    def __exit__(self, *exc: object) -> None:
        self._stop = True
        self._thread.join()


def import_rss(module: str) -> float:
    """MB of resident memory an import adds, in a fresh interpreter, over ``import numpy``
    (VmRSS: a child's ``ru_maxrss`` starts from its parent's peak across the exec)."""
    code = (
        "import numpy\n"
        "def rss():\n"
        "    return int(open('/proc/self/status').read().split('VmRSS:')[1].split()[0])\n"
        f"a = rss()\nimport {module}\nprint(rss() - a)"
    )
    env = dict(os.environ, POLARS_MAX_THREADS="1")
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    return int(out.stdout) / 1024


def pipeline(
    parse: Callable[[list[bytes]], Any],
    columns: Callable[[Any], Columns],
    values: list[bytes],
    slices: int,
    loop_us: float,
    ahead: bool,
) -> float:
    """µs an event of a daemon-like pipeline: the loop's thread spends ``loop_us`` an event
    of Python (the daemon's decode tail, summarising, admission: 1.7–2.5 µs measured at
    1 M events) on each slice's columns, the parse of the next slice running on a worker
    (``ahead``, as ``prefetch.py`` does) or inline."""
    from concurrent.futures import ThreadPoolExecutor

    spin = int(loop_us * len(values) / 0.024)  # ~24 ns an iteration of the loop below

    def work() -> None:
        x = 0
        for i in range(spin):
            x += i

    started = time.perf_counter()
    if ahead:
        with ThreadPoolExecutor(1) as pool:
            future = pool.submit(parse, values)
            for _ in range(slices):
                table = future.result()
                future = pool.submit(parse, values)
                columns(table)
                work()
            future.result()
    else:
        for _ in range(slices):
            columns(parse(values))
            work()
    return (time.perf_counter() - started) / (slices * len(values)) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument(
        "--loop-us", type=float, default=2.1, help="the loop's own work, µs an event"
    )
    parser.add_argument("--slices", type=int, default=100)
    args = parser.parse_args()
    values = events(args.events)
    n = len(values)
    print(
        f"{n} events a call, {sum(map(len, values)) / n:.0f} bytes an event; uptime: "
        + os.popen("uptime").read().strip()
    )

    # before this process imports any of them (measured after, the children read ~0)
    # polars and pysimdjson are not watchkeeper dependencies: ``pip install polars
    # pysimdjson`` into the venv to measure them (skipped when absent)
    rss = {}
    for module in ("pyarrow", "polars", "msgspec", "orjson", "simdjson"):
        try:
            rss[module] = import_rss(module)
        except subprocess.CalledProcessError:
            print(f"{module} not installed: skipped")
    candidates: dict[str, tuple[Callable[[list[bytes]], Any], Callable[[Any], Columns], str]] = {}
    candidates["arrow"] = (arrow_parse(), _arrow_columns, "pyarrow")
    candidates["arrow+schema"] = (arrow_parse(arrow_schema()), _arrow_columns, "pyarrow")
    if "polars" in rss:
        candidates["polars"] = (polars_parse(), _polars_columns, "polars")
    candidates["msgspec"] = (*msgspec_parse(), "msgspec")
    candidates["msgspec, features as dict"] = (*msgspec_dict_parse(), "msgspec")
    candidates["orjson"] = (*orjson_parse(), "orjson")
    if "simdjson" in rss:
        candidates["simdjson"] = (*simdjson_parse(), "simdjson")

    reference = _arrow_columns(candidates["arrow"][0](values))
    holes = holed(values)
    holed_reference = _arrow_columns(candidates["arrow"][0](holes))
    for name, (parse, columns, _) in candidates.items():
        try:
            agree = same(holed_reference, columns(parse(holes)))
        except Exception as exc:  # a candidate that refuses the holes says so
            agree = False
            print(f"{name} on the slice with holes: {type(exc).__name__}: {exc}")
        print(f"{name}: same columns and null masks as Arrow on the slice with holes: {agree}")
    print(
        "| parser | same columns as Arrow | parse µs/event (min / median) | parse + columns | "
        "parse + columns, CPU | parse + columns beside a Python thread | holds the GIL | "
        "import RSS |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, (parse, columns, module) in candidates.items():
        cols = columns(parse(values))
        ok = same(reference, cols)
        p = timed(lambda parse=parse: parse(values), args.repeat)
        pc = timed(lambda parse=parse, columns=columns: columns(parse(values)), args.repeat)
        # the process's CPU (every thread: polars parses on its own pool), which the
        # machine's other load does not inflate as it does wall time
        cpu = timed(
            lambda parse=parse, columns=columns: columns(parse(values)),
            args.repeat,
            time.process_time,
        )
        with Busy():
            pb = timed(
                lambda parse=parse, columns=columns: columns(parse(values)),
                max(20, args.repeat // 4),
            )
        gil = not name.startswith(("arrow", "polars"))
        us = 1e6 / n
        print(
            f"| {name} | {'yes' if ok else 'NO'} | {p[0] * us:.2f} / {p[1] * us:.2f} | "
            f"{pc[0] * us:.2f} / {pc[1] * us:.2f} | {cpu[0] * us:.2f} / {cpu[1] * us:.2f} | "
            f"{pb[0] * us:.2f} / {pb[1] * us:.2f} | "
            f"{'yes' if gil else 'no'} | {rss[module]:.0f} MB |",
            flush=True,
        )
    calib = time.perf_counter()
    x = 0
    for i in range(10_000_000):
        x += i
    print(
        f"\nthe spin: {(time.perf_counter() - calib) / 1e7 * 1e9:.1f} ns an iteration (taken as 24)"
    )
    print(
        f"pipeline, {args.loop_us} µs an event of Python on the loop's thread, "
        f"{args.slices} slices:"
    )
    for name in [c for c in ("arrow", "polars", "msgspec", "orjson") if c in candidates]:
        parse, columns, _ = candidates[name]
        ahead = name in ("arrow", "polars")
        rates = [
            pipeline(parse, columns, values, args.slices, args.loop_us, ahead) for _ in range(3)
        ]
        print(
            f"  {name} ({'parse ahead on a worker' if ahead else 'inline'}): "
            + " / ".join(f"{r:.2f}" for r in rates)
            + " µs an event",
            flush=True,
        )
    for name in ("msgspec",):
        parse, columns, _ = candidates[name]
        rates = [
            pipeline(parse, columns, values, args.slices, args.loop_us, True) for _ in range(3)
        ]
        print(
            f"  {name} (parse ahead on a worker): "
            + " / ".join(f"{r:.2f}" for r in rates)
            + " µs an event"
        )


if __name__ == "__main__":
    main()
