"""Helper for test_diskfull.py: write a run file until the "disk" is full.

Usage: ``python _full_disk_writer.py RUN_FILE LIMIT_BYTES``. The disk is emulated with the
process's file size limit (``RLIMIT_FSIZE``, set once the file is open, with SIGXFSZ ignored),
so that every write past ``LIMIT_BYTES`` fails with EFBIG, as a full disk fails with ENOSPC:
portable to any POSIX CI machine, no root, no tmpfs. It writes telemetry (``a`` counts the
samples; ``t_s`` = sample / 100), and every fifth sample a 64 x 64 frame (the frame's index
plus a gradient) with its metadata row, paced at 2 ms per frame so that the writer (flush
every 50 ms) flushes several times before the limit. It prints one JSON line per flush
(``{"count", "rows", "complete_t_s"}``) and one per error it is given (``{"where": "producer"
| "close", "type", "message"}``), then exits normally.
"""

from __future__ import annotations

import json
import resource
import signal
import sys
from pathlib import Path
from typing import Final

import numpy as np

from chipctl.runfile import FlushReport, RunFileError, RunFileWriter
from drivers.clock import RealClock

SHAPE: Final = (64, 64)
STACK: Final = "/images/p0/bf"
META: Final = STACK + "_meta"
FRAME_EVERY: Final = 5
PERIOD_S: Final = 0.0004
GRADIENT: Final = (np.arange(SHAPE[0] * SHAPE[1], dtype=np.uint16) % 97).reshape(SHAPE)


def frame(index: int) -> np.ndarray:
    """The frame with this index (what the test expects to read back)."""
    return GRADIENT + np.uint16(index)


def report(flush: FlushReport) -> None:
    line = {"count": flush.count, "rows": dict(flush.rows), "complete_t_s": flush.complete_t_s}
    print(json.dumps(line), flush=True)


def error(where: str, exc: RunFileError) -> None:
    print(json.dumps({"where": where, "type": type(exc).__name__, "message": str(exc)}), flush=True)


def main() -> None:
    path, limit = Path(sys.argv[1]), int(sys.argv[2])
    clock = RealClock()
    writer = RunFileWriter(
        path,
        chipctl_version="0",
        simulated=True,
        seed=3,
        started_utc="2026-11-21T06:00:00+00:00",
        config_text="[rig]\n",
        protocol_text="steps = []\n",
        protocol_name="full",
        telemetry={"s": {"a": "1"}},
        flush_interval_s=0.05,
        on_flush=report,
        clock="virtual",
    )
    writer.declare_frames(STACK, SHAPE, np.uint16, "ADU")
    writer.declare_table(META, {"t_s": (np.float64, "s"), "frame": (np.int64, "1")})
    writer.open()
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails: EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    next_s = clock.now_s()
    try:
        for i in range(10_000_000):
            writer.telemetry("s", i / 100, {"a": float(i)})
            if i % FRAME_EVERY == 0:
                k = i // FRAME_EVERY
                writer.append_frame(STACK, frame(k))
                writer.append_rows(META, {"t_s": [i / 100], "frame": [k]})
                next_s += PERIOD_S * FRAME_EVERY
                clock.sleep_until_s(next_s)
    except RunFileError as exc:
        error("producer", exc)
    try:
        writer.close("failed", "2026-11-21T06:00:01+00:00")
    except RunFileError as exc:
        error("close", exc)


if __name__ == "__main__":
    main()
