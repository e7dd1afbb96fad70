"""A writer killed with SIGKILL leaves a readable file holding everything it had flushed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from chipctl.runfile import open_run
from drivers.clock import RealClock

HELPER = Path(__file__).with_name("_killed_writer.py")
RUN_FOR_S = 1.5


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_sigkill_keeps_everything_up_to_the_last_flush(tmp_path: Path) -> None:
    path = tmp_path / "killed.h5"
    proc = subprocess.Popen(
        [sys.executable, str(HELPER), str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    clock = RealClock()
    reports: list[dict[str, Any]] = []
    try:
        assert proc.stdout is not None
        start_s: float | None = None
        for line in proc.stdout:  # one line per flush, every 0.2 s
            reports.append(json.loads(line))
            start_s = clock.now_s() if start_s is None else start_s
            if clock.now_s() - start_s >= RUN_FOR_S:
                break
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, err
    reports.extend(json.loads(line) for line in out.splitlines() if line.endswith("}"))
    assert len(reports) >= 5, err  # flushes really happened every 0.2 s
    last = reports[-1]["rows"]
    assert last["/telemetry/pump"] > 0 and last["/events"] > 0

    with open_run(path) as run:
        assert run.status == "running"
        assert run.attrs["ended_utc"] == ""
        assert run.protocol_text == "steps = []\n"
        data = run.telemetry("pump")
        events = run.events()
    n = len(data["t_s"])
    assert n >= last["/telemetry/pump"]
    assert len(events) >= last["/events"]
    np.testing.assert_array_equal(data["volume_ul"], np.arange(n, dtype=float))
    np.testing.assert_allclose(data["t_s"], np.arange(n) * 0.005)
    assert all(e.message == f"sample {10 * k} ✓" for k, e in enumerate(events))
