"""A frame the simulated camera loses, as RenderedCamera reports it: a FrameTimeout on the clock.

The simulator's ``SimMicroscope`` loses frames on its way to the host (``drop_frame``: the
next one; ``camera_lost``: every one until ``camera_ok``). The driver must then behave as
a real camera driver whose grab times out: wait the frame timeout on its clock (virtual
time here: no hang, no wall time) and raise :class:`FrameTimeout`, a
:class:`~drivers.errors.DeviceError` naming the camera.
"""

from __future__ import annotations

import numpy as np
import pytest

from drivers.camera import ChannelPreset, FrameTimeout, Microscope, StagePosition, TriggerMode
from drivers.camera.rendered import ChannelLight, RenderedCamera, RenderedStage
from drivers.clock import VirtualClock
from drivers.errors import DeviceError, TransportError
from simulator.biology import Biology, SeedingParams
from simulator.microscope import CameraParams, SimMicroscope

EXPOSURE_MS = 10.0


def make_scope() -> SimMicroscope:
    """A 64 x 64 px simulated microscope over empty chambers (fast to render)."""
    biology = Biology(
        lambda: {},
        [],
        np.random.default_rng(0),
        seeding=SeedingParams(tumoroids_per_chamber=0),
        caf_ratio=[0.0] * 8,
    )
    return SimMicroscope(biology, seed=1, camera=CameraParams(sensor_shape=(64, 64)))


@pytest.fixture
def scope() -> SimMicroscope:
    return make_scope()


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def camera(scope: SimMicroscope, clock: VirtualClock) -> RenderedCamera:
    cam = RenderedCamera(scope, clock=clock, name="cam")
    cam.connect()
    cam.set_exposure_ms(EXPOSURE_MS)
    return cam


def lost_snap(camera: RenderedCamera, clock: VirtualClock, **kw: float) -> tuple[str, float]:
    """Snap a frame that must be lost; return the error line and the clock time it took."""
    start_s = clock.now_s()
    with pytest.raises(FrameTimeout) as info:
        camera.snap(**kw)
    return str(info.value), clock.now_s() - start_s


def test_a_dropped_frame_times_out_on_the_clock_then_frames_arrive(camera, clock, scope):
    scope.drop_frame()
    line, waited_s = lost_snap(camera, clock)
    # the default frame timeout: the exposure plus 1 s (Camera.default_timeout_s)
    assert line == "cam: no frame within 1.01 s of the trigger (lost)"
    assert waited_s == pytest.approx(EXPOSURE_MS / 1000.0 + 1.0, abs=1e-9)
    start_s = clock.now_s()
    image = camera.snap()
    assert image.shape == (64, 64) and int(image.max()) > 0
    assert clock.now_s() == start_s  # a frame that arrives costs no clock time


def test_the_error_is_a_device_error_naming_the_camera(camera, clock, scope):
    scope.drop_frame()
    with pytest.raises(DeviceError) as info:
        camera.snap()
    assert isinstance(info.value, TransportError)  # FrameTimeout < TransportTimeout
    assert info.value.device == "cam" and "\n" not in str(info.value)


def test_the_wait_is_the_timeout_given(camera, clock, scope):
    scope.drop_frame()
    line, waited_s = lost_snap(camera, clock, timeout_s=0.25)
    assert line == "cam: no frame within 0.25 s of the trigger (lost)"
    assert waited_s == pytest.approx(0.25, abs=1e-9)


def test_each_drop_loses_one_frame(camera, clock, scope):
    scope.drop_frame()
    scope.drop_frame()
    lost_snap(camera, clock)
    lost_snap(camera, clock)
    camera.snap()


def test_a_lost_camera_loses_every_frame_until_it_is_back(camera, clock, scope):
    scope.camera_lost()
    for _ in range(3):
        lost_snap(camera, clock)
    scope.camera_ok()
    camera.snap()


def test_camera_ok_also_clears_pending_drops(camera, scope):
    scope.drop_frame()
    scope.camera_ok()
    camera.snap()


def test_a_free_running_sequence_loses_one_frame(camera, clock, scope):
    camera.start_sequence(3)
    first = camera.read_frame(timeout_s=0.5)
    scope.drop_frame()
    start_s = clock.now_s()
    with pytest.raises(
        FrameTimeout, match=r"^cam: no frame within 0\.5 s of the trigger \(lost\)$"
    ):
        camera.read_frame(timeout_s=0.5)
    assert clock.now_s() - start_s == pytest.approx(0.5, abs=1e-9)
    second = camera.read_frame(timeout_s=0.5)
    assert (first.index, second.index) == (0, 1)  # the lost frame never reached the host
    camera.stop_sequence()


def test_a_software_trigger_whose_frame_is_lost_queues_nothing(camera, clock, scope):
    camera.set_trigger_mode(TriggerMode.SOFTWARE)
    camera.start_sequence()
    scope.drop_frame()
    camera.trigger_software()
    with pytest.raises(FrameTimeout, match=r"\(lost\)$"):
        camera.read_frame(timeout_s=0.5)
    # without a trigger, the timeout says so, as before
    with pytest.raises(FrameTimeout, match=r"\(no trigger\)$"):
        camera.read_frame(timeout_s=0.5)
    camera.trigger_software()
    assert camera.read_frame(timeout_s=0.5).image.shape == (64, 64)
    camera.stop_sequence()


def test_the_microscope_role_closes_the_light_of_a_lost_frame(scope, clock, camera):
    light = ChannelLight(camera, "live", name="led-488")
    stage = RenderedStage(scope, name="stage")
    stage.connect()
    microscope = Microscope(
        name="scope",
        camera=camera,
        stage=stage,
        clock=clock,
        channels=[ChannelPreset("live", 40.0, light=light)],
        positions={"here": StagePosition(*scope.position_um())},
    )
    scope.drop_frame()
    with pytest.raises(FrameTimeout, match=r"^cam: no frame within 1\.04 s"):
        microscope.acquire(["live"], position="here")
    assert not light.read_open() and camera.read_channel() == "brightfield"
    (image,) = microscope.acquire(["live"], position="here")
    assert image.t_s == pytest.approx(1.04)  # taken after the lost frame's timeout
