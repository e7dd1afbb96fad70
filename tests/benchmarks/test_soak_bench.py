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
    result = api.run_protocol(protocol, sim=True, out=out, live_analysis=False)
    wall_s = clock.now_s() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with RunFile(out) as run:
        rows = sum(len(run.telemetry(d)["t_s"]) for d in run.telemetry_devices())
        frames = 0
        for stack in image_stacks(run):
            pixels, meta = read_stack(run, stack.position, stack.channel)
            frames += int(pixels.shape[0])
    print(json.dumps({"ok": result.ok, "sim_s": result.duration_s, "wall_s": wall_s,
                      "peak_mb": peak_mb, "rows": rows, "frames": frames}))
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
    # linear: 4x the simulated time costs 3..5.5x the wall time; memory stays flat
    assert 3.0 <= figures[14.0]["wall_s"] / base["wall_s"] <= 5.5
    assert figures[14.0]["peak_mb"] <= 1.25 * base["peak_mb"]
