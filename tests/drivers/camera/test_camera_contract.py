"""The Camera contract, run over every camera driver whose SDK is installed.

Each backend is a *bench* from its vendor test module: a connected camera on the vendor's
own emulator (pylon camera emulation, the Viky GenTL producer, pymmcore-plus UniMMCore with
a pure-Python camera; the simulator's SimMicroscope behind ``RenderedCamera``), plus
``starve()``, which makes frames stop coming in the way that backend can (a trigger that
never comes, or Viky's 1 fps), and ``close()``. A backend whose SDK is missing is skipped,
not failed.

Features a device lacks are part of the contract too: the call must raise
:class:`UnsupportedFeature`, so each test checks one branch or the other.
"""

from __future__ import annotations

import math
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from drivers.camera import (
    Camera,
    FrameTimeout,
    Roi,
    RoiConstraints,
    TriggerMode,
    UnsupportedFeature,
)
from drivers.errors import DeviceError, IncompatibleStateError, TransportTimeout


def _basler() -> Any:
    pytest.importorskip("pypylon")
    from .test_basler import BaslerBench

    return BaslerBench()


def _genicam() -> Any:
    pytest.importorskip("harvesters")
    from .test_genicam import VikyBench

    return VikyBench()


def _mmcore() -> Any:
    pytest.importorskip("pymmcore_plus")
    from .test_mmcore import MMBench

    return MMBench()


def _rendered() -> Any:
    from .test_rendered import RenderedBench

    return RenderedBench()


BACKENDS: dict[str, Callable[[], Any]] = {
    "basler-camemu": _basler,
    "genicam-viky": _genicam,
    "mmcore-unicore": _mmcore,
    "rendered-sim": _rendered,
}


@pytest.fixture(params=sorted(BACKENDS))
def bench(request):
    b = BACKENDS[request.param]()
    yield b
    b.close()


@pytest.fixture
def camera(bench) -> Camera:
    return bench.camera


def _round_up(value: int, step: int) -> int:
    return math.ceil(value / step) * step


def small_roi(c: RoiConstraints) -> Roi:
    """A valid ROI away from the origin where the camera allows offsets: about 128 x 96."""
    width = _round_up(max(c.min_width_px, 128), c.width_step_px)
    height = _round_up(max(c.min_height_px, 96), c.height_step_px)
    x = _round_up(16, c.x_step_px) if c.x_step_px else 0
    y = _round_up(8, c.y_step_px) if c.y_step_px else 0
    assert x + width <= c.sensor_width_px and y + height <= c.sensor_height_px
    return Roi(x, y, width, height)


def expected_dtype(camera: Camera) -> type[np.unsignedinteger[Any]]:
    return np.uint8 if camera.read_bit_depth() <= 8 else np.uint16


# -- description ----------------------------------------------------------------------------


def test_features_are_coherent(camera):
    f = camera.read_features()
    assert f.pixel_formats and all(p.startswith("Mono") for p in f.pixel_formats)
    assert camera.read_pixel_format() in f.pixel_formats
    assert 1 in f.binnings
    assert TriggerMode.FREE_RUN in f.trigger_modes
    assert camera.read_trigger_mode() in f.trigger_modes
    width_px, height_px = camera.read_sensor_size_px()
    assert width_px > 0 and height_px > 0


# -- snap -----------------------------------------------------------------------------------


def test_snap_shape_and_dtype(camera):
    roi = small_roi(camera.read_roi_constraints())
    camera.set_roi(roi)
    image = camera.snap()
    assert isinstance(image, np.ndarray)
    assert image.shape == (roi.height_px, roi.width_px)
    assert image.dtype == expected_dtype(camera)


def test_snapped_images_are_independent_copies(camera):
    camera.set_roi(small_roi(camera.read_roi_constraints()))
    first = camera.snap()
    kept = first.copy()
    camera.snap()
    np.testing.assert_array_equal(first, kept)


# -- exposure and gain ----------------------------------------------------------------------


def test_exposure_set_get_and_range(camera):
    if not camera.read_features().exposure:
        with pytest.raises(UnsupportedFeature):
            camera.set_exposure_ms(10.0)
        with pytest.raises(UnsupportedFeature):
            camera.read_exposure_ms()
        return
    low_ms, high_ms = camera.read_exposure_range_ms()
    assert 0 < low_ms < high_ms
    target_ms = min(max(2.5, low_ms), high_ms)
    camera.set_exposure_ms(target_ms)
    assert camera.read_exposure_ms() == pytest.approx(target_ms, rel=0.01)
    for bad_ms in (low_ms / 2, high_ms * 2, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=f"^{camera.name}: exposure"):
            camera.set_exposure_ms(bad_ms)
    assert camera.read_exposure_ms() == pytest.approx(target_ms, rel=0.01)


def test_gain_set_get_and_range(camera):
    if not camera.read_features().gain:
        with pytest.raises(UnsupportedFeature):
            camera.set_gain_db(1.0)
        return
    low_db, high_db = camera.read_gain_range_db()
    target_db = low_db + (high_db - low_db) / 4
    camera.set_gain_db(target_db)
    assert camera.read_gain_db() == pytest.approx(target_db, abs=0.1)
    for bad_db in (high_db + 1.0, low_db - 1.0, float("nan")):
        with pytest.raises(ValueError, match="gain"):
            camera.set_gain_db(bad_db)


# -- ROI and binning ------------------------------------------------------------------------


def test_roi_round_trip_and_reset(camera):
    c = camera.read_roi_constraints()
    roi = small_roi(c)
    camera.set_roi(roi)
    assert camera.read_roi() == roi
    camera.reset_roi()
    full = camera.read_roi()
    assert (full.x_px, full.y_px) == (0, 0)
    assert c.sensor_width_px - c.width_step_px < full.width_px <= c.sensor_width_px


def test_roi_validation_errors_name_every_problem(camera):
    c = camera.read_roi_constraints()
    before = camera.read_roi()
    too_wide = Roi(0, 0, _round_up(c.sensor_width_px + 1, c.width_step_px), c.min_height_px)
    with pytest.raises(ValueError, match="exceeds the sensor"):
        camera.set_roi(too_wide)
    off_end = Roi(c.x_step_px or 0, 0, c.sensor_width_px, c.min_height_px)
    if c.x_step_px:
        with pytest.raises(ValueError, match="exceeds the sensor"):
            camera.set_roi(off_end)
    else:
        with pytest.raises(ValueError, match="offset must be 0"):
            camera.set_roi(Roi(1, 0, c.min_width_px, c.min_height_px))
    if c.min_width_px > 1:
        with pytest.raises(ValueError, match="below the minimum"):
            camera.set_roi(Roi(0, 0, c.min_width_px - 1, c.min_height_px))
    if c.width_step_px > 1:
        with pytest.raises(ValueError, match="not a multiple"):
            camera.set_roi(Roi(0, 0, c.min_width_px + 1, c.min_height_px))
    with pytest.raises(ValueError, match="ROI size must be > 0"):
        Roi(0, 0, 0, 10)
    with pytest.raises(ValueError, match="offsets must be >= 0"):
        Roi(-1, 0, 10, 10)
    assert camera.read_roi() == before  # nothing was sent


def test_binning(camera):
    binnings = camera.read_features().binnings
    with pytest.raises(ValueError, match="binning 99"):
        camera.set_binning(99)
    for b in binnings[:3]:
        camera.set_binning(b)
        assert camera.read_binning() == b
        c = camera.read_roi_constraints()
        roi = small_roi(c)
        assert roi.width_px % b == 0 and roi.height_px % b == 0
        camera.set_roi(roi)
        assert camera.read_roi() == roi
        assert camera.snap().shape == (roi.height_px // b, roi.width_px // b)
    camera.set_binning(1)


# -- pixel format ---------------------------------------------------------------------------


def test_pixel_formats_and_bit_depth(camera):
    camera.set_roi(small_roi(camera.read_roi_constraints()))
    for fmt in camera.read_features().pixel_formats:
        camera.set_pixel_format(fmt)
        assert camera.read_pixel_format() == fmt
        depth = camera.read_bit_depth()
        assert depth == int(fmt.removeprefix("Mono"))
        image = camera.snap()
        assert image.dtype == (np.uint8 if depth == 8 else np.uint16)
        assert int(image.max()) < 2**depth
    with pytest.raises(ValueError, match="pixel format 'RGB8'"):
        camera.set_pixel_format("RGB8")


# -- trigger ----------------------------------------------------------------------------------


def test_trigger_modes(camera):
    supported = camera.read_features().trigger_modes
    for mode in TriggerMode:
        if mode in supported:
            camera.set_trigger_mode(mode)
            assert camera.read_trigger_mode() is mode
        else:
            with pytest.raises(UnsupportedFeature, match=mode.value):
                camera.set_trigger_mode(mode)
    camera.set_trigger_mode(TriggerMode.FREE_RUN)


# -- sequences --------------------------------------------------------------------------------


def test_sequence_of_n_frames(camera):
    roi = small_roi(camera.read_roi_constraints())
    camera.set_roi(roi)
    camera.start_sequence(5)
    assert camera.is_sequence_running()
    frames = [camera.read_frame(timeout_s=2.0) for _ in range(5)]
    assert [f.index for f in frames] == [0, 1, 2, 3, 4]
    assert all(f.image.shape == (roi.height_px, roi.width_px) for f in frames)
    assert not camera.is_sequence_running()  # stops by itself after the last frame
    with pytest.raises(IncompatibleStateError, match="without a running sequence"):
        camera.read_frame(timeout_s=0.1)
    assert camera.snap().shape == (roi.height_px, roi.width_px)  # usable again


def test_continuous_sequence_locks_settings_until_stopped(camera):
    camera.set_roi(small_roi(camera.read_roi_constraints()))
    camera.start_sequence(None)
    assert [camera.read_frame(timeout_s=2.0).index for _ in range(3)] == [0, 1, 2]
    with pytest.raises(IncompatibleStateError, match="while a sequence runs"):
        camera.set_roi(small_roi(camera.read_roi_constraints()))
    with pytest.raises(IncompatibleStateError, match="while a sequence runs"):
        camera.snap()
    with pytest.raises(IncompatibleStateError, match="while a sequence runs"):
        camera.start_sequence(2)
    camera.stop_sequence()
    camera.stop_sequence()  # idempotent
    assert not camera.is_sequence_running()
    camera.start_sequence(1)  # restartable
    assert camera.read_frame(timeout_s=2.0).index == 0


def test_frame_timeout_raises_a_typed_error_in_bounded_time(bench, camera):
    camera.set_roi(small_roi(camera.read_roi_constraints()))
    bench.starve()
    camera.start_sequence(None)
    t0 = time.monotonic()
    with pytest.raises(FrameTimeout) as info:
        camera.read_frame(timeout_s=0.05)
    elapsed_s = time.monotonic() - t0
    assert 0.04 <= elapsed_s < 1.0
    err = info.value
    assert isinstance(err, TransportTimeout) and isinstance(err, DeviceError)
    assert err.device == camera.name and str(err).startswith(f"{camera.name}: ")
    camera.stop_sequence()


@pytest.mark.parametrize("bad_s", [0.0, -1.0, float("nan"), float("inf")])
def test_argument_errors_before_any_sdk_call(camera, bad_s):
    with pytest.raises(ValueError, match="timeout"):
        camera.snap(timeout_s=bad_s)
    with pytest.raises(ValueError, match="n_frames"):
        camera.start_sequence(0)
    camera.start_sequence(None)
    with pytest.raises(ValueError, match="timeout"):
        camera.read_frame(timeout_s=bad_s)
    camera.stop_sequence()


def test_close_stops_a_running_sequence(camera):
    camera.start_sequence(None)
    camera.close()
    assert not camera.is_sequence_running()
    camera.close()  # twice is fine


# -- role-level checks (no device) -----------------------------------------------------------


def test_roi_constraints_report_every_problem_at_once():
    c = RoiConstraints(
        sensor_width_px=2048,
        sensor_height_px=1536,
        min_width_px=64,
        min_height_px=32,
        width_step_px=16,
        height_step_px=2,
        x_step_px=8,
        y_step_px=0,
    )
    assert c.problems(Roi(8, 0, 2032, 1536)) == []
    assert c.problems(Roi(4, 2, 40, 1535)) == [
        "x size 40 px is below the minimum 64 px",
        "x size 40 px is not a multiple of 16 px",
        "x offset 4 px is not a multiple of 8 px",
        "y 2+1535 px exceeds the sensor's 1536 px",
        "y size 1535 px is not a multiple of 2 px",
        "y offset must be 0 (this camera has no y offset)",
    ]


# -- packaging ---------------------------------------------------------------------------------


def test_drivers_import_without_any_camera_sdk():
    code = (
        "import sys\n"
        "import drivers.camera, drivers.camera.basler, drivers.camera.genicam, "
        "drivers.camera.mmcore\n"
        "sdks = {'pypylon', 'harvesters', 'genicam', 'pymmcore_plus', 'pymmcore'}\n"
        "print(sorted(sdks & {m.split('.')[0] for m in sys.modules}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
