"""Basler driver on pylon's camera emulation (pypylon 26.9 wheel, no pylon SDK install).

``PYLON_CAMEMU=N`` must be in the environment before pylon's transport-layer factory is
first used; pylon then lists N emulated cameras of device class ``BaslerCamEmu``
(hardware-reference §7.1). It is set at import time here, before any test opens a camera.
"""

from __future__ import annotations

import os
import struct
import sys
import zlib

os.environ.setdefault("PYLON_CAMEMU", "2")

import numpy as np
import pytest

pytest.importorskip("pypylon")

from drivers.camera import FrameTimeout, Roi, TriggerMode
from drivers.camera.basler import BaslerCamera
from drivers.errors import DeviceNotFound, IncompatibleStateError

EMU = "BaslerCamEmu"
SERIAL = "0815-0000"


def make_basler(serial: str | None = SERIAL) -> BaslerCamera:
    return BaslerCamera(name="basler", serial_number=serial, device_class=EMU)


class BaslerBench:
    """Contract-suite bench: a connected BaslerCamera on the emulator."""

    def __init__(self) -> None:
        self.camera = make_basler()
        self.camera.connect()
        # A connection starts from whatever the last one left; start from defaults.
        self.camera.set_trigger_mode(TriggerMode.FREE_RUN)
        self.camera.set_pixel_format("Mono8")
        self.camera.set_binning(1)
        self.camera.set_exposure_ms(1.0)

    def starve(self) -> None:
        """Make frames not come: software trigger mode, and nobody triggers."""
        self.camera.set_trigger_mode(TriggerMode.SOFTWARE)

    def close(self) -> None:
        self.camera.close()


@pytest.fixture
def camera():
    bench = BaslerBench()
    bench.camera.set_roi(Roi(0, 0, 320, 240))
    yield bench.camera
    bench.close()


def test_emulator_features(camera):
    f = camera.read_features()
    assert f.pixel_formats == ("Mono8", "Mono10", "Mono12", "Mono16")
    assert f.binnings == (1, 2, 3, 4)
    assert f.trigger_modes == set(TriggerMode)
    assert camera.read_sensor_size_px() == (4096, 4096)
    # SFNC ExposureTime (us) on the emulator: 1 us .. 10 s
    assert camera.read_exposure_range_ms() == pytest.approx((0.001, 10_000.0))


def test_camera_selection():
    with pytest.raises(DeviceNotFound, match=r"^basler: no Basler camera found \(serial 9999\)"):
        make_basler("9999").connect()
    with pytest.raises(DeviceNotFound, match="2 cameras found"):
        make_basler(None).connect()


def test_missing_pypylon_is_one_clear_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "pypylon", None)
    with pytest.raises(DeviceNotFound, match=r"pypylon is not installed.*'basler' extra"):
        make_basler().connect()


def test_software_trigger_sequence(camera):
    camera.set_trigger_mode(TriggerMode.SOFTWARE)
    with pytest.raises(IncompatibleStateError, match="without a sequence"):
        camera.trigger_software()
    camera.start_sequence(3)
    for index in range(3):
        camera.trigger_software()
        assert camera.read_frame(2.0).index == index
    assert not camera.is_sequence_running()


def test_software_trigger_only_in_software_mode(camera):
    camera.start_sequence(None)
    with pytest.raises(IncompatibleStateError, match="outside software mode"):
        camera.trigger_software()
    camera.stop_sequence()


def test_snap_in_software_mode_triggers_itself(camera):
    camera.set_trigger_mode(TriggerMode.SOFTWARE)
    assert camera.snap(timeout_s=2.0).shape == (240, 320)


def test_hardware_trigger_without_an_edge_times_out(camera):
    camera.set_trigger_mode(TriggerMode.HARDWARE)
    assert camera.node_map().GetNode("TriggerSource").Value == "Line1"
    with pytest.raises(FrameTimeout, match=r"^basler: no frame within 0.05 s"):
        camera.snap(timeout_s=0.05)


def _png_gray8(image: np.ndarray) -> bytes:
    """Encode an 8-bit grayscale PNG with the standard library (PNG spec, ISO 15948)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    h, w = image.shape
    raw = b"".join(b"\x00" + image[row].tobytes() for row in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    chunks = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


def test_emulator_serves_our_own_image(camera, tmp_path):
    """The route for simulator-rendered tumoroids: pylon's image-file mode (§7.1, §7.5b)."""
    rng = np.random.default_rng(7)
    expected = rng.integers(0, 256, size=(240, 320), dtype=np.uint8)
    path = tmp_path / "tumoroid.png"
    path.write_bytes(_png_gray8(expected))
    nodes = camera.node_map()
    nodes.GetNode("TestImageSelector").Value = "Off"  # image files only work with this off
    nodes.GetNode("ImageFileMode").Value = "On"
    nodes.GetNode("ImageFilename").Value = str(path)
    np.testing.assert_array_equal(camera.snap(), expected)


def test_reconnect_after_close(camera):
    camera.close()
    camera.close()
    camera.connect()
    # the emulator resets its nodes when re-opened; the image follows whatever ROI it has
    roi = camera.read_roi()
    assert camera.snap().shape == (roi.height_px, roi.width_px)
