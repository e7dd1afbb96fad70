"""Helper for test_sigkill.py: write a run file with telemetry and images until killed.

Usage::

    python _killed_writer.py RUN_FILE FLUSH_INTERVAL_S [--resume] [--for SECONDS]

Writes, in real time, pump telemetry at 200 Hz (``volume_ul`` counts the samples from 0),
an event every tenth sample, and a 512 x 512 uint16 frame every tenth sample (10 MB/s; the
pixels are the frame's index plus a gradient) with its metadata row. ``t_s`` is the monotonic
clock, shared by all processes on the machine, so the test can compare it with the moment it
killed this process.
After every flush it prints one JSON line ``{"count", "rows", "complete_t_s"}``.

``--resume`` first cuts a killed file back with :func:`chipctl.runfile.reopen_for_resume` and
goes on counting from what was kept (prints ``{"resumed": summary, "cut_t_s": t}`` first).
``--for`` stops after that many seconds and closes the file as completed; without it the
helper stops on its own after 20 s so that a broken test cannot leave it running.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Final

import numpy as np

from chipctl.runfile import FlushReport, RunFileWriter, reopen_for_resume
from chipctl.runfile.images import META_SUFFIX
from drivers.clock import RealClock

PERIOD_S: Final = 0.005
FRAME_EVERY: Final = 10
EVENT_EVERY: Final = 10
MAX_S: Final = 20.0
SHAPE: Final = (512, 512)
STACK: Final = "/images/p0/bf"
META: Final = STACK + META_SUFFIX
GRADIENT: Final = (np.arange(SHAPE[0] * SHAPE[1], dtype=np.uint16) % 97).reshape(SHAPE)


def frame(index: int) -> np.ndarray:
    """The frame with this index (what the test expects to read back)."""
    return GRADIENT + np.uint16(index % 60000)


def report(flush: FlushReport) -> None:
    line = {"count": flush.count, "rows": dict(flush.rows), "complete_t_s": flush.complete_t_s}
    print(json.dumps(line), flush=True)


def new_writer(path: Path, flush_interval_s: float) -> RunFileWriter:
    writer = RunFileWriter(
        path,
        chipctl_version="0.1.0",
        simulated=True,
        seed=1,
        started_utc="2026-11-21T06:00:00+00:00",
        config_text="[rig]\n",
        protocol_text="steps = []\n",
        protocol_name="kill",
        telemetry={"pump": {"volume_ul": "uL", "rate_ul_min": "uL/min"}},
        flush_interval_s=flush_interval_s,
        on_flush=report,
        clock="real",
    )
    writer.declare_frames(STACK, SHAPE, np.uint16, "ADU", attrs={"channel": "bf"})
    writer.declare_table(META, {"t_s": (np.float64, "s"), "frame": (np.int64, "1")})
    writer.open()
    return writer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("path", type=Path)
    parser.add_argument("flush_interval_s", type=float)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--for", dest="for_s", type=float, default=None)
    args = parser.parse_args()
    clock = RealClock()
    if args.resume:
        reopened = reopen_for_resume(args.path, on_flush=report)
        print(json.dumps({"resumed": reopened.summary(), "cut_t_s": reopened.cut_t_s}), flush=True)
        writer = reopened.open()
        i, k = reopened.kept["/telemetry/pump"], reopened.kept[STACK]
        e = (i + EVENT_EVERY - 1) // EVENT_EVERY  # sample events so far
    else:
        writer = new_writer(args.path, args.flush_interval_s)
        i = k = e = 0
    run_for_s = MAX_S if args.for_s is None else args.for_s
    start_s = next_s = clock.now_s()
    while clock.now_s() - start_s < run_for_s:
        t_s = clock.now_s()
        writer.telemetry("pump", t_s, {"volume_ul": float(i), "rate_ul_min": 5.0})
        if i % EVENT_EVERY == 0:
            writer.event(t_s, "pump", "sample", f"event {e} ✓")
            e += 1
        if i % FRAME_EVERY == 0:
            writer.append_frame(STACK, frame(k))
            writer.append_rows(META, {"t_s": [t_s], "frame": [k]})
            k += 1
        i += 1
        next_s += PERIOD_S
        clock.sleep_until_s(next_s)
    writer.close("completed", "2026-11-21T06:00:20+00:00")


if __name__ == "__main__":
    main()
