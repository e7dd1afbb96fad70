"""Benchmark: ``snap()`` versus a sequence, per camera backend, measured side by side.

For each backend whose SDK is installed (pylon camera emulation, Viky GenTL producer,
pymmcore-plus UniMMCore with the test's pure-Python 16-bit camera), at one 256 x 256 ROI
in the camera's default pixel format:

* frames per second through repeated ``snap()`` (each one starts and stops acquisition);
* frames per second through ``start_sequence(n)`` + ``read_frame``;
* their ratio, which says how much a time-lapse of single snaps costs against streaming
  (the emulators' own rate limits cap both: pylon's emulator at 1 ms exposure and its
  100 fps default rate limit, Viky at 200 fps; Micro-Manager sequence frames are polled
  every 1 ms on the clock, which caps that path near 1000 fps).

Run with ``pytest -m slow tests/benchmarks/test_camera_snap_bench.py -s``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from drivers.camera import Roi
from drivers.clock import RealClock

N_FRAMES = 40
ROI = Roi(0, 0, 256, 256)
clock = RealClock()


def _basler() -> Any:
    pytest.importorskip("pypylon")
    from tests.drivers.camera.test_basler import BaslerBench

    return BaslerBench()


def _genicam() -> Any:
    pytest.importorskip("harvesters")
    from tests.drivers.camera.test_genicam import VikyBench

    return VikyBench()


def _mmcore() -> Any:
    pytest.importorskip("pymmcore_plus")
    from tests.drivers.camera.test_mmcore import MMBench

    return MMBench()


BACKENDS: dict[str, Callable[[], Any]] = {
    "basler-camemu": _basler,
    "genicam-viky": _genicam,
    "mmcore-unicore": _mmcore,
}


def _rates_fps(bench: Any) -> tuple[float, float, str]:
    camera = bench.camera
    camera.set_roi(ROI)
    camera.snap()  # warm-up: first grab allocates buffers
    t0_s = clock.now_s()
    for _ in range(N_FRAMES):
        camera.snap()
    snap_fps = N_FRAMES / (clock.now_s() - t0_s)
    t0_s = clock.now_s()
    camera.start_sequence(N_FRAMES)
    for _ in range(N_FRAMES):
        camera.read_frame(timeout_s=2.0)
    seq_fps = N_FRAMES / (clock.now_s() - t0_s)
    return snap_fps, seq_fps, camera.read_pixel_format()


@pytest.mark.slow
@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_camera_snap_vs_sequence_bench(backend: str) -> None:
    bench = BACKENDS[backend]()
    try:
        snap_fps, seq_fps, pixel_format = _rates_fps(bench)
    finally:
        bench.close()
    print(
        f"\n{backend}: {ROI.width_px}x{ROI.height_px} {pixel_format}, {N_FRAMES} frames: "
        f"snap {snap_fps:.0f} fps, sequence {seq_fps:.0f} fps, "
        f"sequence/snap = {seq_fps / snap_fps:.2f}"
    )
    assert snap_fps > 0 and seq_fps > 0
