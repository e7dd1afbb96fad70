"""Micro-Manager drivers on pymmcore-plus's UniMMCore with pure-Python devices.

The PyPI wheels of pymmcore/pymmcore-plus ship no C++ device adapters (hardware-reference
§7.2), so this file writes a tiny camera, XY stage, Z stage and shutter as
``pymmcore_plus.experimental.unicore`` devices and loads them into a ``UniMMCore``. The
drivers only use the plain CMMCore API, so they see these exactly as C++ adapters.

The stages move at a finite speed on a VirtualClock, so ``wait_until_stopped`` is
exercised on virtual time; the camera's sequence runs on UniMMCore's acquisition thread in
real time, so the camera driver gets a RealClock.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np
import pytest

pytest.importorskip("pymmcore_plus")

from pymmcore_plus.experimental.unicore import (
    CameraDevice,
    ShutterDevice,
    StageDevice,
    UniMMCore,
    XYStageDevice,
)

from drivers.camera import (
    ChannelPreset,
    FrameTimeout,
    Microscope,
    MoveTimeout,
    Roi,
    StageLimits,
    StagePosition,
    TriggerMode,
    UnsupportedFeature,
)
from drivers.camera.mmcore import MMCamera, MMShutter, MMStage
from drivers.clock import RealClock, VirtualClock
from drivers.errors import DeviceError, DeviceNotFound

SENSOR_W, SENSOR_H = 640, 480
STAGE_SPEED_UM_S = 5000.0
Z_SPEED_UM_S = 500.0
LIMITS = StageLimits(x_um=(-50_000, 50_000), y_um=(-25_000, 25_000), z_um=(0, 5_000))


# -- pure-Python Micro-Manager devices ----------------------------------------------------


class TinyCamera(CameraDevice):
    """A 640 x 480 16-bit camera: binning 1/2/4, hardware ROI, gain, external trigger.

    The image is a ramp plus the frame counter, times exposure and gain, so frames differ.
    In ``TriggerMode=External`` each frame waits for :meth:`fire`; like a camera whose
    trigger wait times out, the sequence ends if no edge came within
    ``TRIGGER_GIVE_UP_S`` or once :meth:`release` was called, so that UniMMCore's
    ``stopSequenceAcquisition`` (which joins the acquisition thread) never hangs.
    """

    TRIGGER_GIVE_UP_S = 0.5

    def __init__(self) -> None:
        super().__init__()
        self._exposure_ms = 10.0
        self._gain_db = 0.0
        self._binning = 1
        self._roi: tuple[int, int, int, int] | None = None  # binned px
        self._count = 0
        self._trigger = threading.Event()
        self._released = threading.Event()
        self.light: ShutterDevice | None = None
        self.light_at_exposure: list[bool] = []
        self.set_property_limits("Exposure", (0.01, 2000.0))
        self.set_property_limits("Gain", (0.0, 24.0))
        self.set_property_allowed_values("Binning", (1, 2, 4))
        self.register_property(
            "TriggerMode", default_value="Internal", allowed_values=("Internal", "External")
        )

    def get_exposure(self) -> float:
        return self._exposure_ms

    def set_exposure(self, exposure: float) -> None:
        self._exposure_ms = float(exposure)

    def get_gain(self) -> float:
        return self._gain_db

    def set_gain(self, value: float) -> None:
        self._gain_db = float(value)

    def get_binning(self) -> int:
        return self._binning

    def set_binning(self, value: int) -> None:
        self._binning = int(value)
        self._roi = None

    def _full(self) -> tuple[int, int, int, int]:
        return (0, 0, SENSOR_W // self._binning, SENSOR_H // self._binning)

    def get_roi(self) -> tuple[int, int, int, int]:
        return self._roi or self._full()

    def set_roi(self, x: int, y: int, width: int, height: int) -> None:
        _, _, w, h = self._full()
        if x < 0 or y < 0 or x + width > w or y + height > h:
            raise ValueError(f"ROI {(x, y, width, height)} outside {w} x {h}")
        self._roi = (x, y, width, height)

    def clear_roi(self) -> None:
        self._roi = None

    def shape(self) -> tuple[int, int]:
        _, _, w, h = self.get_roi()
        return (h, w)

    def dtype(self) -> np.dtype:
        return np.dtype(np.uint16)

    def fire(self) -> None:
        self._trigger.set()

    def release(self) -> None:
        self._released.set()

    def _wait_trigger(self) -> bool:
        if self.get_property_value("TriggerMode") != "External":
            return True
        for _ in range(int(self.TRIGGER_GIVE_UP_S / 0.005)):
            if self._trigger.wait(0.005):
                break
            if self._released.is_set():
                return False
        else:
            return False
        self._trigger.clear()
        return True

    def start_sequence(self, n, get_buffer):
        shape, dtype = self.shape(), self.dtype()
        x, y, _, _ = self.get_roi()
        done = 0
        while n is None or done < n:
            if not self._wait_trigger():
                return
            if self.light is not None:
                self.light_at_exposure.append(self.light.get_open())
            buf = get_buffer(shape, dtype)
            rows = np.arange(y, y + shape[0], dtype=np.float64)[:, None]
            cols = np.arange(x, x + shape[1], dtype=np.float64)[None, :]
            level = (rows + cols + self._count) * self._exposure_ms * 10 ** (self._gain_db / 20)
            buf[:] = np.clip(level, 0, 65535).astype(np.uint16)
            self._count += 1
            done += 1
            yield {"frame": self._count}


@dataclass
class _Move:
    start: tuple[float, ...]
    target: tuple[float, ...]
    t0_s: float
    duration_s: float


class _Motion:
    """Straight-line motion at constant speed on a virtual clock."""

    def __init__(self, clock: VirtualClock, speed_um_s: float, start: tuple[float, ...]) -> None:
        self.clock = clock
        self.speed_um_s = speed_um_s
        self.move = _Move(start, start, 0.0, 0.0)

    def go(self, target: tuple[float, ...]) -> None:
        here = self.position()
        dist = float(np.linalg.norm(np.subtract(target, here)))
        self.move = _Move(here, target, self.clock.now_s(), dist / self.speed_um_s)

    def frac(self) -> float:
        m = self.move
        if m.duration_s == 0:
            return 1.0
        return min(1.0, (self.clock.now_s() - m.t0_s) / m.duration_s)

    def position(self) -> tuple[float, ...]:
        f = self.frac()
        return tuple(a + (b - a) * f for a, b in zip(self.move.start, self.move.target))

    def busy(self) -> bool:
        return self.frac() < 1.0

    def halt(self) -> None:
        here = self.position()
        self.move = _Move(here, here, self.clock.now_s(), 0.0)


class TinyXYStage(XYStageDevice):
    def __init__(self, clock: VirtualClock) -> None:
        super().__init__()
        self.motion = _Motion(clock, STAGE_SPEED_UM_S, (0.0, 0.0))

    def set_position_um(self, x: float, y: float) -> None:
        self.motion.go((x, y))

    def get_position_um(self) -> tuple[float, float]:
        x, y = self.motion.position()
        return x, y

    def busy(self) -> bool:
        return self.motion.busy()

    def stop(self) -> None:
        self.motion.halt()

    def home(self) -> None:
        self.motion.go((0.0, 0.0))

    def set_origin_x(self) -> None:
        raise NotImplementedError

    def set_origin_y(self) -> None:
        raise NotImplementedError


class TinyZStage(StageDevice):
    def __init__(self, clock: VirtualClock) -> None:
        super().__init__()
        self.motion = _Motion(clock, Z_SPEED_UM_S, (1000.0,))

    def set_position_um(self, val: float) -> None:
        self.motion.go((val,))

    def get_position_um(self) -> float:
        return self.motion.position()[0]

    def busy(self) -> bool:
        return self.motion.busy()

    def stop(self) -> None:
        self.motion.halt()

    def home(self) -> None:
        self.motion.go((0.0,))

    def set_origin(self) -> None:
        raise NotImplementedError


class TinyShutter(ShutterDevice):
    def __init__(self) -> None:
        super().__init__()
        self._open = False
        self.history: list[bool] = []

    def get_open(self) -> bool:
        return self._open

    def set_open(self, open: bool) -> None:
        self._open = bool(open)
        self.history.append(self._open)


@dataclass
class MMRig:
    """A UniMMCore with the tiny devices, and the drivers on top."""

    core: UniMMCore
    clock: VirtualClock
    cam_dev: TinyCamera
    xy_dev: TinyXYStage
    z_dev: TinyZStage
    shutters: dict[str, TinyShutter] = field(default_factory=dict)


def make_mm_rig() -> MMRig:
    clock = VirtualClock()
    core = UniMMCore()
    rig = MMRig(core, clock, TinyCamera(), TinyXYStage(clock), TinyZStage(clock))
    rig.shutters = {"LED-green": TinyShutter(), "LED-red": TinyShutter()}
    devices = {"Cam": rig.cam_dev, "XY": rig.xy_dev, "Z": rig.z_dev, **rig.shutters}
    for label, dev in devices.items():
        core.loadPyDevice(label, dev)
        core.initializeDevice(label)
    core.setCameraDevice("Cam")
    # No default shutter: chipctl opens lights itself (Microscope), never MM's auto-shutter.
    core.setAutoShutter(False)
    return rig


def make_mm_camera(rig: MMRig) -> MMCamera:
    return MMCamera(
        rig.core,
        name="mmcam",
        camera_label="Cam",
        clock=RealClock(),
        trigger_properties={
            TriggerMode.FREE_RUN: ("TriggerMode", "Internal"),
            TriggerMode.HARDWARE: ("TriggerMode", "External"),
        },
        sensor_pixel_size_um=6.5,
    )


class MMBench:
    """Contract-suite bench: a connected MMCamera on a fresh UniMMCore."""

    def __init__(self) -> None:
        self.rig = make_mm_rig()
        self.camera = make_mm_camera(self.rig)
        self.camera.connect()

    def starve(self) -> None:
        """Make frames not come: hardware trigger mode with no trigger edge."""
        self.camera.set_trigger_mode(TriggerMode.HARDWARE)

    def close(self) -> None:
        self.rig.cam_dev.release()
        self.camera.close()


# -- camera specifics ----------------------------------------------------------------------


@pytest.fixture
def rig():
    rig = make_mm_rig()
    yield rig
    rig.cam_dev.release()


@pytest.fixture
def camera(rig):
    cam = make_mm_camera(rig)
    cam.connect()
    yield cam
    cam.close()


def test_sensor_size_read_without_losing_the_roi(rig):
    rig.core.setROI("Cam", 10, 20, 100, 50)
    cam = make_mm_camera(rig)
    cam.connect()
    assert cam.read_sensor_size_px() == (SENSOR_W, SENSOR_H)
    assert cam.read_roi() == Roi(10, 20, 100, 50)
    assert cam.read_pixel_size_um() == 6.5


def test_roi_is_in_sensor_pixels_whatever_the_binning(camera, rig):
    camera.set_binning(2)
    camera.set_roi(Roi(64, 32, 128, 96))
    # Micro-Manager counts in binned pixels
    assert list(rig.core.getROI("Cam")) == [32, 16, 64, 48]
    assert camera.snap().shape == (48, 64)
    with pytest.raises(ValueError, match="multiple of 2"):
        camera.set_roi(Roi(1, 0, 128, 96))


def test_gain_limits_come_from_the_property(camera):
    assert camera.read_gain_range_db() == (0.0, 24.0)
    camera.set_gain_db(6.0)
    assert camera.read_gain_db() == pytest.approx(6.0)
    with pytest.raises(ValueError, match="outside"):
        camera.set_gain_db(30.0)


def test_hardware_trigger_frames_follow_the_edges(camera, rig):
    camera.set_trigger_mode(TriggerMode.HARDWARE)
    assert rig.core.getProperty("Cam", "TriggerMode") == "External"
    camera.start_sequence(2)
    rig.cam_dev.fire()
    assert camera.read_frame(2.0).index == 0
    with pytest.raises(FrameTimeout):
        camera.read_frame(0.05)
    rig.cam_dev.fire()
    assert camera.read_frame(2.0).index == 1
    assert not camera.is_sequence_running()


def test_no_software_trigger_in_micro_manager(rig):
    with pytest.raises(ValueError, match="software trigger"):
        MMCamera(
            rig.core,
            name="c",
            camera_label="Cam",
            clock=RealClock(),
            trigger_properties={TriggerMode.SOFTWARE: ("TriggerMode", "Software")},
        )


def test_missing_or_wrong_devices_are_reported_by_label(rig):
    with pytest.raises(DeviceNotFound, match="no Micro-Manager device 'Nope'"):
        MMCamera(rig.core, name="c", camera_label="Nope", clock=RealClock()).connect()
    with pytest.raises(DeviceNotFound, match="is a XYStageDevice, not CameraDevice"):
        MMCamera(rig.core, name="c", camera_label="XY", clock=RealClock()).connect()
    with pytest.raises(DeviceNotFound, match="TriggerMode has no value 'Edge'"):
        MMCamera(
            rig.core,
            name="c",
            camera_label="Cam",
            clock=RealClock(),
            trigger_properties={TriggerMode.HARDWARE: ("TriggerMode", "Edge")},
        ).connect()


def test_sdk_errors_become_device_errors_with_the_name(camera, rig):
    def broken(*_args):
        raise RuntimeError("adapter says no")

    rig.cam_dev.set_exposure = broken
    with pytest.raises(DeviceError, match=r"^mmcam: set exposure: adapter says no"):
        camera.set_exposure_ms(5.0)


# -- stage -----------------------------------------------------------------------------


@pytest.fixture
def stage(rig):
    st = MMStage(rig.core, name="stage", xy_label="XY", z_label="Z", limits=LIMITS)
    st.connect()
    return st


def test_move_starts_and_wait_polls_on_the_clock(stage, rig):
    stage.move_to(3000.0, 4000.0)  # 5 mm at 5 mm/s
    assert stage.is_moving()
    assert rig.clock.now_s() == 0.0
    stage.wait_until_stopped(rig.clock, timeout_s=5.0)
    assert not stage.is_moving()
    assert rig.clock.now_s() == pytest.approx(1.0, abs=0.011)
    pos = stage.read_position_um()
    assert (pos.x_um, pos.y_um, pos.z_um) == pytest.approx((3000.0, 4000.0, 1000.0))


def test_z_moves_with_xy(stage, rig):
    stage.move_to(0.0, 0.0, 1500.0)  # Z: 500 um at 500 um/s
    stage.wait_until_stopped(rig.clock, timeout_s=5.0)
    assert rig.clock.now_s() == pytest.approx(1.0, abs=0.011)
    assert stage.read_position_um().z_um == pytest.approx(1500.0)


def test_wait_times_out_with_a_typed_error(stage, rig):
    stage.move_to(50_000.0, 0.0)  # 10 s
    with pytest.raises(MoveTimeout, match=r"^stage: still moving after 0.5 s"):
        stage.wait_until_stopped(rig.clock, timeout_s=0.5)
    assert rig.clock.now_s() == pytest.approx(0.5)
    stage.stop()
    assert not stage.is_moving()
    assert stage.read_position_um().x_um == pytest.approx(2500.0)


@pytest.mark.parametrize(
    ("xyz", "match"),
    [
        ((60_000.0, 0.0, None), "x"),
        ((0.0, -30_000.0, None), "y"),
        ((0.0, 0.0, 6000.0), "z"),
        ((float("nan"), 0.0, None), "finite"),
    ],
)
def test_moves_outside_limits_are_refused_before_moving(stage, xyz, match):
    with pytest.raises(ValueError, match=match):
        stage.move_to(*xyz)
    assert not stage.is_moving()


def test_xy_only_stage(rig):
    st = MMStage(rig.core, name="xy", xy_label="XY", limits=StageLimits((0, 1), (0, 1)))
    st.connect()
    assert not st.has_z()
    assert st.read_position_um().z_um is None
    with pytest.raises(UnsupportedFeature):
        st.move_to(0.5, 0.5, 10.0)
    with pytest.raises(ValueError, match="Z limits"):
        MMStage(rig.core, name="xy", xy_label="XY", limits=LIMITS)
    with pytest.raises(DeviceNotFound, match="not XYStageDevice"):
        MMStage(rig.core, name="s", xy_label="Z", limits=StageLimits((0, 1), (0, 1))).connect()


# -- shutter and microscope ----------------------------------------------------------------


def test_shutter(rig):
    sh = MMShutter(rig.core, name="green", shutter_label="LED-green")
    sh.connect()
    sh.set_open(True)
    assert sh.read_open() and rig.shutters["LED-green"].get_open()
    sh.set_open(False)
    assert not sh.read_open()


@pytest.fixture
def microscope(rig, camera, stage):
    green = MMShutter(rig.core, name="green", shutter_label="LED-green")
    red = MMShutter(rig.core, name="red", shutter_label="LED-red")
    rig.cam_dev.light = rig.shutters["LED-green"]
    return Microscope(
        name="scope",
        camera=camera,
        stage=stage,
        clock=rig.clock,
        channels=[
            ChannelPreset("brightfield", exposure_ms=5.0),
            ChannelPreset("live", exposure_ms=100.0, gain_db=6.0, light=green),
            ChannelPreset("dead", exposure_ms=200.0, gain_db=12.0, light=red),
        ],
        positions={
            "chamber-1": StagePosition(1000.0, 0.0, 1200.0),
            "chamber-2": StagePosition(6000.0, 0.0, 1200.0),
        },
    )


def test_acquire_channels_at_a_named_position(microscope, rig, camera):
    camera.set_roi(Roi(0, 0, 64, 32))
    images = microscope.acquire_at("chamber-2", ["brightfield", "live", "dead"])
    assert [i.channel for i in images] == ["brightfield", "live", "dead"]
    assert all(i.position == "chamber-2" and i.image.shape == (32, 64) for i in images)
    assert images[0].stage_um == StagePosition(6000.0, 0.0, 1200.0)
    assert [(i.exposure_ms, i.gain_db) for i in images] == [(5.0, 0.0), (100.0, 6.0), (200.0, 12.0)]
    assert images[0].t_s == pytest.approx(6000.0 / STAGE_SPEED_UM_S, abs=0.011)
    # the green LED was on only during the live exposure, and is off again
    assert rig.cam_dev.light_at_exposure == [False, True, False]
    assert rig.shutters["LED-green"].history == [True, False]
    assert rig.shutters["LED-red"].history == [True, False]
    # brighter with exposure and gain (the tiny camera scales its ramp)
    assert images[1].image.mean() > images[0].image.mean()


def test_lights_close_even_if_the_snap_fails(microscope, rig):
    def broken(*_args, **_kw):
        raise RuntimeError("readout error")

    rig.cam_dev.start_sequence = broken
    with pytest.raises(DeviceError, match="readout error"):
        microscope.acquire(["live"])
    assert rig.shutters["LED-green"].history == [True, False]


def test_unknown_names_fail_before_anything_moves(microscope, stage):
    with pytest.raises(ValueError, match=r"unknown position 'chamber-9'.*chamber-1"):
        microscope.acquire_at("chamber-9", ["live"])
    with pytest.raises(ValueError, match=r"unknown channel 'blue'.*brightfield"):
        microscope.acquire_at("chamber-1", ["live", "blue"])
    assert not stage.is_moving()
    assert stage.read_position_um().x_um == 0.0


def test_preflight_lists_every_problem(rig, camera, stage):
    scope = Microscope(
        name="scope",
        camera=camera,
        stage=stage,
        clock=rig.clock,
        channels=[
            ChannelPreset("ok", exposure_ms=10.0),
            ChannelPreset("long", exposure_ms=5000.0),
            ChannelPreset("loud", exposure_ms=10.0, gain_db=40.0),
        ],
        positions={"far": StagePosition(0.0, 90_000.0), "home": StagePosition(0.0, 0.0)},
    )
    problems = scope.preflight()
    assert len(problems) == 3
    assert "channel 'long': exposure 5000 ms outside 0.01..2000 ms" in problems
    assert any("'loud': gain 40 dB" in p for p in problems)
    assert any("position 'far': y 90000 um" in p for p in problems)


def test_start_move_returns_at_once_for_the_engine(microscope, rig):
    microscope.start_move("chamber-1")
    assert microscope.is_moving()
    while microscope.is_moving():
        rig.clock.advance_s(0.05)
    assert rig.clock.now_s() == pytest.approx(0.4, abs=0.051)  # Z: 200 um at 500 um/s


def test_duplicate_channel_names_rejected(rig, camera, stage):
    with pytest.raises(ValueError, match="duplicate channel names"):
        Microscope(
            name="s",
            camera=camera,
            stage=stage,
            clock=rig.clock,
            channels=[ChannelPreset("a", 1.0), ChannelPreset("a", 2.0)],
            positions={},
        )
