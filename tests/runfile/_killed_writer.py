"""Helper for test_sigkill.py: write a run file in real time until killed.

Usage: ``python _killed_writer.py RUN_FILE``. Writes telemetry at 200 Hz and an event every
tenth sample, with ``flush_interval_s=0.2``, and after every flush prints one JSON line
``{"count": n, "rows": {table: rows}}`` naming what is on disk by then. It stops on its own
after 20 s so that a broken test cannot leave it running.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from chipctl.runfile import FlushReport, RunFileWriter
from drivers.clock import RealClock

PERIOD_S = 0.005
MAX_S = 20.0


def report(flush: FlushReport) -> None:
    print(json.dumps({"count": flush.count, "rows": dict(flush.rows)}), flush=True)


def main() -> None:
    clock = RealClock()
    writer = RunFileWriter(
        Path(sys.argv[1]),
        chipctl_version="0.1.0",
        simulated=True,
        seed=1,
        started_utc="2026-11-21T06:00:00+00:00",
        config_text="[rig]\n",
        protocol_text="steps = []\n",
        protocol_name="kill",
        telemetry={"pump": {"volume_ul": "uL", "rate_ul_min": "uL/min"}},
        flush_interval_s=0.2,
        now_s=clock.now_s,
        on_flush=report,
    )
    writer.open()
    start_s = clock.now_s()
    next_s = start_s
    i = 0
    while clock.now_s() - start_s < MAX_S:
        writer.telemetry("pump", i * PERIOD_S, {"volume_ul": float(i), "rate_ul_min": 5.0})
        if i % 10 == 0:
            writer.event(i * PERIOD_S, "pump", "sample", f"sample {i} ✓")
        i += 1
        next_s += PERIOD_S
        clock.sleep_until_s(next_s)
    writer.close("completed", "2026-11-21T06:00:20+00:00")


if __name__ == "__main__":
    main()
