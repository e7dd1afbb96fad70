"""Benchmark: one 1024 x 1024 16-bit microscope frame, against plain numpy side by side.

Prints, for a brightfield and a live-stain frame of a populated field (reference patient,
day 3, several tumoroids in view, noise on):

* the median render time per frame (``SimMicroscope.snap``, background cached);
* the median time of a plain numpy operation of the same size in the same run
  (``np.add`` of two 1024 x 1024 float32 arrays into a third), and the ratio;
* the first-visit cost (building the cached background of a new position).

The project target is <= 20 ms per frame on the 2-core CI machine; the assertion is
loose (median, best of three attempts) because the machine is shared.

Run with ``pytest -m slow tests/benchmarks/test_render_bench.py -s``.
"""

from __future__ import annotations

import numpy as np
import pytest

from drivers.clock import RealClock
from simulator.biology import build_reference_biology
from simulator.microscope import CameraParams, SimMicroscope
from simulator.world import World

TARGET_MS = 20.0
ROUNDS = 40
clock = RealClock()


def _scope() -> SimMicroscope:
    world = World(0)
    bio = build_reference_biology(world, lambda: {}, seed=3)
    world.advance_to(0.0)
    world.advance_to(3 * 86400.0)
    scope = SimMicroscope(bio, seed=1, camera=CameraParams(sensor_shape=(1024, 1024)))
    t = bio.tumoroids()
    sel = np.flatnonzero(t.chamber == 0)
    i = sel[np.argmax(t.radius_um[sel])]
    x0, y0 = bio.layout.origin_um(0)
    scope.move_to(x0 + t.x_um[i], y0 + t.y_um[i], scope.focus_z_um)
    return scope


def _timed(fn) -> float:
    t0 = clock.now_s()
    fn()
    return clock.now_s() - t0


def _measure(scope: SimMicroscope, channel: str, exposure_ms: float) -> tuple[float, float]:
    a = np.ones((1024, 1024), np.float32)
    b = np.ones_like(a)
    c = np.empty_like(a)
    render, reference = [], []
    for _ in range(ROUNDS):
        render.append(_timed(lambda: scope.snap(channel, exposure_ms)))
        reference.append(_timed(lambda: np.add(a, b, out=c)))
    return float(np.median(render)), float(np.median(reference))


@pytest.mark.slow
def test_render_1024_frame_within_20_ms():
    scope = _scope()
    first_s = _timed(lambda: scope.snap("brightfield", 10.0))
    in_view = len(scope.truth_labels())
    assert in_view >= 3
    results = {}
    attempts = 0
    while attempts < 3:
        attempts += 1
        for channel, exposure_ms in (("brightfield", 10.0), ("live", 100.0)):
            scope.snap(channel, exposure_ms)  # background cached
            results[channel] = _measure(scope, channel, exposure_ms)
        if results["brightfield"][0] * 1e3 <= TARGET_MS:
            break
    print(f"\nrender 1024x1024 uint16, {in_view} tumoroids in view (attempt {attempts})")
    print(f"first visit (background build): {first_s * 1e3:8.2f} ms")
    for channel, (render_s, ref_s) in results.items():
        print(
            f"{channel:11s}: {render_s * 1e3:7.2f} ms/frame; np.add 1024^2 float32 "
            f"{ref_s * 1e3:6.3f} ms; ratio {render_s / ref_s:6.1f}x; "
            f"target {TARGET_MS:.0f} ms ({render_s * 1e3 / TARGET_MS:.2f} of it)"
        )
    assert results["brightfield"][0] * 1e3 <= TARGET_MS
    assert results["live"][0] * 1e3 <= 2 * TARGET_MS
