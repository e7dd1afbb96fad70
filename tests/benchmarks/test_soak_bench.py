"""Soak (issue 9): a 14-day simulated protocol with hourly imaging; memory flat, time linear.

Opt-in (it takes minutes): ``CHIPCTL_SOAK=1 pytest -s tests/benchmarks/test_soak_bench.py``.
Each length runs in its own process (clean peak RSS); the figures printed are wall time per
simulated day and peak RSS, for 3.5, 7 and 14 days, as ratios to the shortest run measured in
the same session. The run file is then read back whole (every telemetry row, every frame).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(4 * 3600),
    pytest.mark.skipif(not os.environ.get("CHIPCTL_SOAK"), reason="opt-in: set CHIPCTL_SOAK=1"),
]

PROTOCOL = """
[protocol]
name = "soak"

[[step]]
action = "image"
positions = ["chamber 1b", "chamber 8b"]
channels = ["brightfield"]
every = "1 h"
duration = "{hours} h"

[[step]]
action = "perfuse"
rates = {{ medium = "0.4 uL/min", drug = "0.4 uL/min" }}
duration = "{hours} h"
"""

CHILD = textwrap.dedent(
    """
    import json, resource, sys
    import numpy as np
    import chipctl.api as api
    from chipctl.runfile import RunFile
    from chipctl.runfile.images import image_stacks, read_stack
    from drivers.clock import RealClock

    protocol, out = sys.argv[1], sys.argv[2]
    clock = RealClock()
    t0 = clock.now_s()
    day_ends = []  # wall time at the end of each simulated day

    def on_status(status):
        if status.t_s >= 86400.0 * (len(day_ends) + 1):
            day_ends.append(clock.now_s() - t0)

    result = api.run_protocol(
        protocol, sim=True, out=out, live_analysis=False, on_status=on_status
    )
    wall_s = clock.now_s() - t0
    per_day_s = list(np.diff([0.0, *day_ends]))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with RunFile(out) as run:
        rows = sum(len(run.telemetry(d)["t_s"]) for d in run.telemetry_devices())
        frames = 0
        for stack in image_stacks(run):
            pixels, meta = read_stack(run, stack.position, stack.channel)
            frames += int(pixels.shape[0])
    print(json.dumps({"ok": result.ok, "sim_s": result.duration_s, "wall_s": wall_s,
                      "peak_mb": peak_mb, "rows": rows, "frames": frames,
                      "per_day_s": per_day_s}))
    """
)


def test_soak_memory_flat_and_time_linear(tmp_path, capsys):
    figures = {}
    for days in (3.5, 7.0, 14.0):
        hours = int(days * 24)
        protocol = tmp_path / f"soak{hours}.toml"
        protocol.write_text(PROTOCOL.format(hours=hours), encoding="utf-8")
        out = tmp_path / f"soak{hours}.h5"
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, str(protocol), str(out)],
            capture_output=True,
            text=True,
            check=True,
            timeout=3600,
        )
        got = json.loads(proc.stdout.strip().splitlines()[-1])
        assert got["ok"]
        assert got["frames"] == 2 * (hours + 1)
        figures[days] = got
    base = figures[3.5]
    with capsys.disabled():
        for days, got in figures.items():
            print(
                f"\nsoak {days:>4} d: wall {got['wall_s']:.1f} s "
                f"({got['wall_s'] / days:.2f} s/day, x{got['wall_s'] / base['wall_s']:.2f} "
                f"for x{days / 3.5:.0f} the time), peak RSS {got['peak_mb']:.0f} MB "
                f"(x{got['peak_mb'] / base['peak_mb']:.2f}), {got['rows']} telemetry rows, "
                f"{got['frames']} frames read back"
            )
    # linear: a simulated day costs as much at the end of the 14-day run as at its start
    # (medians of days 2-4 and of the last 3 days, in the same process: the ratio of whole
    # runs of different lengths swings with this shared machine's load); memory stays flat
    days = figures[14.0]["per_day_s"]
    early, late = float(np.median(days[1:4])), float(np.median(days[-3:]))
    with capsys.disabled():
        print(
            f"14 d run, wall per simulated day: days 2-4 {early:.2f} s, last 3 days "
            f"{late:.2f} s (x{late / early:.2f}); each day: " + ", ".join(f"{d:.1f}" for d in days)
        )
    assert late <= 1.3 * early
    assert figures[14.0]["peak_mb"] <= 1.25 * base["peak_mb"]
