"""Benchmark: 72 h of chip hydraulics and drug transport at 1 s world steps.

Prints the CPU time of the world with stub pumps only, and with the reference chip's
``FluidicNetwork`` + ``DrugTransport`` added, side by side in one run, for steady pumps
(the steady-state fast path) and for pumps with 3 % step-to-step flow noise (a full
exponential step every second). CPU time (``time.process_time``) is what the brief bounds.

Run with ``pytest -m slow tests/benchmarks/test_fluidics_bench.py -s``.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from simulator.chip import build_reference_fluidics
from simulator.world import World

HOURS = 72.0


class NoisyPump:
    """Stub SyringeMechanics with multiplicative flow noise per step (CV ``cv``)."""

    def __init__(self, rate_ul_min: float, cv: float, seed: int) -> None:
        self.rate_ul_min = rate_ul_min
        self.cv = cv
        self.rng = np.random.default_rng(seed)
        self.last_step_displaced_ul = 0.0
        self.back_pressure_kpa = 0.0

    def step(self, t0_s: float, t1_s: float) -> None:
        noise = 1.0 + self.cv * float(self.rng.standard_normal()) if self.cv else 1.0
        self.last_step_displaced_ul = self.rate_ul_min * (t1_s - t0_s) / 60.0 * noise


def _cpu_s(cv: float, with_physics: bool) -> float:
    world = World(max_step_s=1.0)
    pumps = {"medium": NoisyPump(20 / 60, cv, 1), "drug": NoisyPump(20 / 60, cv, 2)}
    for pump in pumps.values():
        world.add(pump)
    if with_physics:
        parts = build_reference_fluidics(world, pumps=pumps)
        parts.drug.set_inlet_contents("drug", {"mmae": 100.0})
    world.advance_to(0.0)
    start = time.process_time()
    world.advance_to(HOURS * 3600.0)
    return time.process_time() - start


@pytest.mark.slow
@pytest.mark.parametrize("cv", [0.0, 0.03])
def test_72_hours_of_fluidics_and_drug(cv: float) -> None:
    base = _cpu_s(cv, with_physics=False)
    total = _cpu_s(cv, with_physics=True)
    physics = total - base
    steps = HOURS * 3600.0
    print(
        f"\n72 h, 1 s steps, pump CV {cv:.2f}: pumps only {base:.3f} s, with physics "
        f"{total:.3f} s; fluidics+drug {physics:.3f} s CPU = {physics / steps * 1e6:.2f} us/step "
        f"= {physics / base:.1f} x the stub pumps' own cost"
    )
    assert physics < 3.0
