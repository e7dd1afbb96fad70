"""Crash resume (issue 6): kill a simulated run mid-dose, resume it, compare with a whole run.

The run is a real ``chipctl run`` process killed with SIGKILL at a seeded random point of
its dose; ``chipctl resume`` then re-simulates it from its seed to the cut and finishes it.
The drug delivered must equal that of an uninterrupted run with the same seed.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import chipctl.api as api
from chipctl.engine.resume import resume_run
from chipctl.errors import RunFileError
from chipctl.runfile import RunFile
from drivers.clock import RealClock

DOSE = """
[protocol]
name = "dose"

[[step]]
name = "prime drug"
action = "prime"
pump = "drug"
rate = "15 uL/min"

[[step]]
name = "pulse"
action = "dose"
drug_pump = "drug"
carrier_pump = "medium"
rate = "0.5 uL/min"
profile = "pulse"
on = "12 h"
duration = "24 h"
"""

SEED = 3


def _last_t_s(path: Path) -> float:
    try:
        with RunFile(path) as run:
            t = run.telemetry("drug")["t_s"]
            return float(t[-1]) if len(t) else 0.0
    except (RunFileError, OSError, KeyError):
        return 0.0


def _kill_at(protocol: Path, out: Path, target_s: float) -> float:
    """Run ``protocol`` in a process and SIGKILL it once the file holds ``target_s``."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "chipctl",
            "run",
            str(protocol),
            "--sim",
            "--seed",
            str(SEED),
            "--out",
            str(out),
            "--quiet",
            "--no-analysis",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    clock = RealClock()
    deadline = clock.now_s() + 120.0
    try:
        while clock.now_s() < deadline and proc.poll() is None:
            if out.exists() and _last_t_s(out) >= target_s:
                break
            clock.sleep_s(0.02)
        assert proc.poll() is None, "the run ended before the kill point"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)
    return _last_t_s(out)


@pytest.mark.slow
@pytest.mark.parametrize("fraction", [random.Random(7).uniform(0.1, 0.9)])
def test_a_killed_dose_resumes_to_the_same_delivered_drug(tmp_path, fraction, capsys):
    protocol = tmp_path / "dose.toml"
    protocol.write_text(DOSE, encoding="utf-8")
    whole = api.run_protocol(
        str(protocol), sim=True, seed=SEED, out=tmp_path / "whole.h5", live_analysis=False
    )
    assert whole.ok, whole.message
    target_s = fraction * whole.duration_s
    killed = tmp_path / "killed.h5"
    at_kill_s = _kill_at(protocol, killed, target_s)
    with RunFile(killed) as run:
        assert run.status == "running"  # the process died: the file says so
    resumed = resume_run(killed, live_analysis=False)
    assert resumed.ok, resumed.message
    for pump in ("drug", "medium"):
        assert resumed.delivered_ul[pump] == pytest.approx(whole.delivered_ul[pump], abs=1e-6)
    with RunFile(killed) as run, RunFile(whole.path) as ref:
        assert run.status == "completed"
        t = np.asarray(run.telemetry("drug")["t_s"])
        assert np.all(np.diff(t) > 0)  # no duplicated or missing-order rows across the cut
        assert len(t) == pytest.approx(len(ref.telemetry("drug")["t_s"]), abs=1)
        kinds = [(e.source, e.kind) for e in run.events()]
        assert ("resume", "replayed") in kinds and ("resume", "reconciled") in kinds
        np.testing.assert_allclose(
            run.telemetry("drug")["delivered_ul"][-1], ref.telemetry("drug")["delivered_ul"][-1]
        )
    with capsys.disabled():
        print(
            f"\nkilled at t={at_kill_s:.0f} s of {whole.duration_s:.0f} s; drug delivered "
            f"resumed {resumed.delivered_ul['drug']:.6f} uL vs whole "
            f"{whole.delivered_ul['drug']:.6f} uL"
        )


def test_a_finished_run_is_not_resumed(tmp_path):
    result = api.run_protocol("medium-24h", sim=True, out=tmp_path / "done.h5")
    with pytest.raises(RunFileError, match="ended"):
        resume_run(result.path)
