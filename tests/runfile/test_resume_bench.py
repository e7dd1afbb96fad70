"""Benchmark: what resuming a killed run file costs, in place versus copying the file.

A subprocess writes ``CHIPCTL_RESUME_BENCH_MIB`` MiB (default 256; the figure quoted in
:mod:`chipctl.runfile.recover` is for 1024) of 1024 x 1024 uint16 frames with their metadata
and telemetry through :class:`~chipctl.runfile.RunFileWriter`, then kills itself with SIGKILL.
Measured side by side on that file:

* in place (what :func:`~chipctl.runfile.reopen_for_resume` does): inspect, clear the flags,
  cut the last frames, fsync, then open the appending writer (SWMR on) and close it;
* a plain copy of the file with fsync: the least that the copy-and-replace alternative
  would cost (it would also re-read and re-write through HDF5).

Run with ``pytest -s tests/runfile/test_resume_bench.py``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from chipctl.runfile import inspect_run, open_run, reopen_for_resume
from drivers.clock import RealClock

MIB = int(os.environ.get("CHIPCTL_RESUME_BENCH_MIB", "256"))
FRAME_MIB = 2

_WRITE_AND_DIE = textwrap.dedent(
    """
    import os, signal, sys, threading
    from pathlib import Path
    import numpy as np
    from chipctl.runfile import RunFileWriter
    n_frames = int(sys.argv[2])
    done = threading.Event()
    def on_flush(report):
        if report.rows["/images/p0/bf"] == n_frames:
            done.set()
    w = RunFileWriter(
        Path(sys.argv[1]), chipctl_version="bench", simulated=True, seed=1, started_utc="",
        config_text="", protocol_text="", protocol_name="bench",
        telemetry={"pump": {"volume_ul": "uL"}}, flush_interval_s=0.2, on_flush=on_flush,
        clock="virtual",
    )
    w.declare_frames("/images/p0/bf", (1024, 1024), np.uint16, "ADU")
    w.declare_table("/images/p0/bf_meta", {"t_s": (np.float64, "s"), "frame": (np.int64, "1")})
    w.open()
    pixels = np.random.default_rng(0).integers(0, 4096, (1024, 1024), dtype=np.uint16)
    for k in range(n_frames):
        for j in range(10):
            w.telemetry("pump", k + j / 10, {"volume_ul": k + j / 10})
        w.append_frame("/images/p0/bf", pixels)
        w.append_rows("/images/p0/bf_meta", {"t_s": [float(k)], "frame": [k]})
    assert done.wait(600)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_resume_in_place_versus_copy(tmp_path: Path) -> None:
    n_frames = MIB // FRAME_MIB
    path = tmp_path / "big.h5"
    proc = subprocess.run(
        [sys.executable, "-c", _WRITE_AND_DIE, str(path), str(n_frames)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == -9, proc.stderr[-3000:]
    size_mib = path.stat().st_size / 2**20
    clock = RealClock()

    t0 = clock.now_s()
    crashed = inspect_run(path)
    t1 = clock.now_s()
    assert crashed.last_t_s is not None
    cut_t_s = crashed.last_t_s - 3.5  # cut the last 3 frames too, to time a real cut
    reopened = reopen_for_resume(path, cut_t_s=cut_t_s)
    t2 = clock.now_s()
    reopened.open()
    reopened.writer.close("completed", "")
    t3 = clock.now_s()
    inspect_s, cut_s, append_s = t1 - t0, t2 - t1, t3 - t2
    in_place_s = t3 - t0

    copy = tmp_path / "copy.h5"
    c0 = clock.now_s()
    shutil.copyfile(path, copy)
    with open(copy, "rb") as fh:
        os.fsync(fh.fileno())
    copy_s = clock.now_s() - c0

    with open_run(path) as run:
        assert run.status == "completed"
        assert run.frames("/images/p0/bf").shape[0] == n_frames - 3
    print(
        f"\nresume of a killed run file of {size_mib:.0f} MiB ({n_frames} frames of 2 MiB):"
        f"\n  in place: {in_place_s * 1000:.1f} ms (inspect {inspect_s * 1000:.1f}, clear flags +"
        f" cut + fsync {cut_s * 1000:.1f}, open appending + close {append_s * 1000:.1f})"
        f"\n  plain copy + fsync (least a copy-and-replace costs): {copy_s * 1000:.0f} ms"
        f"\n  ratio copy / in place: {copy_s / in_place_s:.0f}"
    )
    assert in_place_s < copy_s
