"""Helper for test_recover.py: write a known run file, then die with SIGKILL mid-run.

Usage: ``python _crashing_writer.py RUN_FILE``. The writer's flush clock is driven by this
script, so the file's contents are known exactly: for t = 0..9 s one row per second in every
timed table (telemetry, events, two frame stacks with their metadata, an analysis table every
third second) and a row in a table without time; then one flush (completeness mark 9.5 s: the
"wake" event); then rows for t = 10, 11, 12 handed to the writer, and SIGKILL before any
flush covers them. Prints ``ready`` before it kills itself.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from typing import Final

import numpy as np

from chipctl.runfile import FlushReport, RunFileWriter, layout

STACK: Final = "/images/p0/bf"
STREAM: Final = "/stream/cam"
SHAPE: Final = (8, 6)
STREAM_SHAPE: Final = (4, 4)
VIABILITY: Final = "/analysis/viability"
NOTES: Final = "/analysis/notes"
FLUSHED_T_S: Final = 9.5


class Now:
    """The writer's flush clock, moved by this script."""

    t_s = 0.0

    def __call__(self) -> float:
        return self.t_s


def frame(k: int) -> np.ndarray:
    return np.full(SHAPE, k, np.uint16)


def stream_frame(k: int) -> np.ndarray:
    return np.full(STREAM_SHAPE, k, np.uint8)


def write_second(writer: RunFileWriter, t: int) -> None:
    """Every record of second ``t``."""
    writer.telemetry("pump", float(t), {"volume_ul": float(t), "rate_ul_min": 5.0})
    writer.event(float(t), "engine", "step", f"second {t}")
    writer.append_frame(STACK, frame(t))
    writer.append_rows(STACK + "_meta", {"t_s": [float(t)], "frame": [t]})
    writer.append_frame(STREAM + "/frames", stream_frame(t))
    writer.append_rows(STREAM + "/meta", {"frame": [t], "t_s": [float(t)]})
    if t % 3 == 0:
        writer.append_rows(VIABILITY, {"t_s": [float(t)], "well": [f"A{t}"], "live": [0.5]})
    writer.append_rows(NOTES, {"n": [t]})


def make_writer(path: Path, now: Now, on_flush: object = None) -> RunFileWriter:
    writer = RunFileWriter(
        path,
        chipctl_version="0.1.0",
        simulated=True,
        seed=11,
        started_utc="2026-11-21T06:00:00+00:00",
        config_text='[rig]\nname = "crash"\n',
        protocol_text="steps = []  # ✓\n",
        protocol_name="crash",
        telemetry={"pump": {"volume_ul": "uL", "rate_ul_min": "uL/min"}},
        flush_interval_s=1.0,
        now_s=now,
        on_flush=on_flush,  # type: ignore[arg-type]
        clock="virtual",
        extra_attrs={"instrument": "bench-1"},
    )
    writer.declare_frames(STACK, SHAPE, np.uint16, "ADU", attrs={"channel": "bf"})
    writer.declare_table(STACK + "_meta", {"t_s": (np.float64, "s"), "frame": (np.int64, "1")})
    writer.declare_frames(STREAM + "/frames", STREAM_SHAPE, np.uint8, "ADU")
    writer.declare_table(STREAM + "/meta", {"frame": (np.int64, ""), "t_s": (np.float64, "s")})
    writer.declare_table(
        VIABILITY,
        {"t_s": (np.float64, "s"), "well": (layout.utf8(8), ""), "live": (np.float32, "1")},
    )
    writer.declare_table(NOTES, {"n": (np.int64, "1")})
    return writer


def main() -> None:
    now = Now()
    flushed = threading.Event()

    def on_flush(report: FlushReport) -> None:
        if report.complete_t_s == FLUSHED_T_S:
            flushed.set()

    writer = make_writer(Path(sys.argv[1]), now, on_flush)
    writer.open()
    for t in range(10):
        write_second(writer, t)
    now.t_s = 10.0  # the flush falls due; the next record wakes the writer
    writer.event(FLUSHED_T_S, "engine", "tick", "wake")
    if not flushed.wait(30):
        sys.exit("no flush")
    for t in range(10, 13):
        write_second(writer, t)
    print("ready", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    main()
