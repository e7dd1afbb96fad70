"""GenICam driver through harvesters on the simulated GenTL producer ``viky.cti``.

The producer ships inside the ``genicam`` wheel (genicam 1.6.0, pulled in by harvesters
1.4.3; hardware-reference §7.3); :func:`drivers.camera.genicam.bundled_viky_cti` finds it.
Viky lists three cameras (serials 0, 1, 2) and has Width/Height, PixelFormat and
AcquisitionFrameRate only.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

pytest.importorskip("harvesters")

from drivers.camera import Roi, UnsupportedFeature
from drivers.camera.genicam import GenICamCamera, bundled_viky_cti
from drivers.errors import DeviceNotFound

FAST_FPS = 200.0


def make_viky(serial: str | None = "0", cti: str | None = None) -> GenICamCamera:
    return GenICamCamera(name="viky", cti_paths=[cti or bundled_viky_cti()], serial_number=serial)


class VikyBench:
    """Contract-suite bench: a connected GenICamCamera on Viky at its top frame rate."""

    def __init__(self) -> None:
        self.camera = make_viky()
        self.camera.connect()
        self.camera.node_map().AcquisitionFrameRate.value = FAST_FPS

    def starve(self) -> None:
        """Make frames late: Viky has no trigger nodes, so slow it to 4 fps.

        Viky delivers the first frame one frame period after the start, so a 50 ms wait
        times out; stopping then waits for the frame in progress (up to 250 ms).
        """
        self.camera.node_map().AcquisitionFrameRate.value = 4.0

    def close(self) -> None:
        self.camera.close()


@pytest.fixture
def camera():
    bench = VikyBench()
    yield bench.camera
    bench.close()


def test_bundled_producer_is_found():
    assert bundled_viky_cti().endswith("viky.cti")


def test_viky_features(camera):
    f = camera.read_features()
    assert (f.exposure, f.gain, f.binnings, f.pixel_formats) == (False, False, (1,), ("Mono8",))
    # Viky powers up in RGBa8; connect() switched to the only mono format
    assert camera.node_map().PixelFormat.value == "Mono8"
    c = camera.read_roi_constraints()
    assert (c.sensor_width_px, c.sensor_height_px, c.min_width_px, c.x_step_px) == (
        800,
        800,
        100,
        0,
    )


def test_missing_features_raise_typed_errors(camera):
    with pytest.raises(UnsupportedFeature, match=r"^viky: this camera has no exposure control"):
        camera.set_exposure_ms(10.0)
    with pytest.raises(UnsupportedFeature, match="gain"):
        camera.read_gain_db()


def test_roi_without_offsets(camera):
    camera.set_roi(Roi(0, 0, 200, 120))
    image = camera.snap()
    assert image.shape == (120, 200) and image.dtype == np.uint8
    with pytest.raises(ValueError, match="x offset must be 0"):
        camera.set_roi(Roi(8, 0, 200, 120))
    with pytest.raises(ValueError, match="below the minimum 100 px"):
        camera.set_roi(Roi(0, 0, 50, 120))


def test_camera_selection():
    with pytest.raises(DeviceNotFound, match=r"3 cameras found \(serials \['0', '1', '2'\]\)"):
        make_viky(serial=None).connect()
    with pytest.raises(DeviceNotFound, match="camera serial '7' not among"):
        make_viky(serial="7").connect()
    with pytest.raises(DeviceNotFound, match="GenTL producer not found"):
        make_viky(cti="/nonexistent/producer.cti").connect()


def test_each_simulated_camera_opens_by_serial():
    for serial in ("1", "2"):
        cam = make_viky(serial)
        cam.connect()
        cam.node_map().AcquisitionFrameRate.value = FAST_FPS
        assert cam.snap().ndim == 2
        cam.close()


def test_missing_harvesters_is_one_clear_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "harvesters.core", None)
    with pytest.raises(DeviceNotFound, match=r"harvesters is not installed.*'genicam' extra"):
        make_viky().connect()
