"""Benchmark: telemetry through RunFileWriter versus raw h5py, measured side by side.

Prints, for one device with 6 float64 quantities (the 56-byte record of perf-limits §3):

* producer cost of ``RunFileWriter.telemetry`` per call, and its ratio to a bare
  ``list.append`` of the same tuple (what the control thread pays);
* the writer's backlog at ``close()`` (time from the last call to all on disk, per record);
* end-to-end cost per record (open to close, all on disk), and its ratio to raw h5py block
  writes of the same columns and to per-record h5py appends (the anti-pattern);
* file size relative to the raw 56 bytes per record.

Run with ``pytest -m slow tests/benchmarks/test_runfile_telemetry_bench.py -s``.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from chipctl.runfile import RunFileWriter
from drivers.clock import RealClock

N = 200_000
N_PER_RECORD = 20_000
QUANTITIES = [f"ch{i}" for i in range(6)]
CHUNK = 4096
clock = RealClock()


def _writer(path: Path) -> RunFileWriter:
    return RunFileWriter(
        path,
        chipctl_version="bench",
        simulated=True,
        seed=None,
        started_utc="",
        config_text="",
        protocol_text="",
        protocol_name="bench",
        telemetry={"dev": dict.fromkeys(QUANTITIES, "1")},
    )


def _bare_append(n: int) -> float:
    rows: list[tuple[float, dict[str, float]]] = []
    values = dict.fromkeys(QUANTITIES, 1.0)
    t0 = clock.now_s()
    for i in range(n):
        rows.append((i * 0.01, values))
    return clock.now_s() - t0


def _writer_run(path: Path, n: int) -> tuple[float, float]:
    values = dict.fromkeys(QUANTITIES, 1.0)
    w = _writer(path)
    t0 = clock.now_s()
    w.open()
    t_calls = clock.now_s()
    for i in range(n):
        w.telemetry("dev", i * 0.01, values)
    calls_s = clock.now_s() - t_calls
    w.close("completed", "")
    return calls_s, clock.now_s() - t0


def _raw_blocks(path: Path, n: int) -> float:
    t0 = clock.now_s()
    with h5py.File(path, "w", libver=("v110", "v110")) as h5:
        cols = [
            h5.create_dataset(c, shape=(0,), maxshape=(None,), dtype="f8", chunks=(CHUNK,))
            for c in ["t_s", *QUANTITIES]
        ]
        h5.swmr_mode = True
        block = np.ones(CHUNK)
        for start in range(0, n, CHUNK):
            k = min(CHUNK, n - start)
            for ds in cols:
                ds.resize((start + k,))
                ds[start:] = block[:k]
        h5.flush()
    return clock.now_s() - t0


def _raw_per_record(path: Path, n: int) -> float:
    t0 = clock.now_s()
    with h5py.File(path, "w", libver=("v110", "v110")) as h5:
        ds = h5.create_dataset("x", shape=(0, 7), maxshape=(None, 7), dtype="f8", chunks=(1024, 7))
        row = np.ones(7)
        for i in range(n):
            ds.resize((i + 1, 7))
            ds[i] = row
    return clock.now_s() - t0


@pytest.mark.slow
def test_runfile_telemetry_bench(tmp_path: Path) -> None:
    rounds = 3
    keys = ("bare", "calls", "drain", "e2e", "raw", "rec")
    results: dict[str, list[float]] = {k: [] for k in keys}
    for r in range(rounds):
        results["bare"].append(_bare_append(N) / N)
        calls_s, e2e_s = _writer_run(tmp_path / f"w{r}.h5", N)
        results["calls"].append(calls_s / N)
        results["e2e"].append(e2e_s / N)
        results["drain"].append((e2e_s - calls_s) / N)
        results["raw"].append(_raw_blocks(tmp_path / f"raw{r}.h5", N) / N)
        results["rec"].append(_raw_per_record(tmp_path / f"rec{r}.h5", N_PER_RECORD) / N_PER_RECORD)
    med = {k: float(np.median(v)) * 1e6 for k, v in results.items()}
    size = (tmp_path / "w0.h5").stat().st_size / (N * 56)
    print(
        f"\nrun-file telemetry, {N} records x 7 float64 (median of {rounds}):\n"
        f"  producer telemetry() call   {med['calls']:.2f} us  "
        f"({med['calls'] / med['bare']:.1f} x bare list.append {med['bare']:.2f} us)\n"
        f"  backlog left at close()     {med['drain']:.2f} us/record\n"
        f"  end to end (open..close)    {med['e2e']:.2f} us/record  "
        f"({med['e2e'] / med['raw']:.1f} x raw h5py blocks {med['raw']:.2f} us; "
        f"{med['rec'] / med['e2e']:.0f} x faster than per-record appends {med['rec']:.1f} us)\n"
        f"  file size                   {size:.3f} x raw 56 B/record"
    )
    assert med["e2e"] < med["rec"]  # never worse than per-record appends
    assert size < 1.1
