"""RenderedCamera, RenderedStage and ChannelLight over the simulator's SimMicroscope.

The contract suite (test_camera_contract.py) runs over :class:`RenderedBench` too; the tests
here cover what is specific to rendering: the mapping of settings onto the render source,
channel selection, stage timing on a virtual clock, and the Microscope role end to end.
"""

from __future__ import annotations

import numpy as np
import pytest

from drivers.camera import (
    ChannelPreset,
    FrameTimeout,
    Microscope,
    Roi,
    StageLimits,
    StagePosition,
    TriggerMode,
)
from drivers.camera.rendered import ChannelLight, RenderedCamera, RenderedStage, RenderSource
from drivers.clock import RealClock, VirtualClock
from drivers.errors import DeviceError
from simulator.biology import Biology, SeedingParams, build_reference_biology
from simulator.microscope import Appearance, CameraParams, SimMicroscope
from simulator.world import World

SENSOR_PX = 256


def make_scope(*, tumoroids: bool = True, seed: int = 1) -> SimMicroscope:
    """A small (256 x 256) simulated microscope over the reference biology."""
    cam = CameraParams(sensor_shape=(SENSOR_PX, SENSOR_PX))
    if tumoroids:
        world = World(0)
        bio = build_reference_biology(world, lambda: {}, seed=3)
        world.advance_to(0.0)
    else:
        bio = Biology(
            lambda: {},
            [],
            np.random.default_rng(0),
            seeding=SeedingParams(tumoroids_per_chamber=0),
            caf_ratio=[0.0] * 8,
        )
    return SimMicroscope(bio, seed=seed, camera=cam, appearance=Appearance())


class RenderedBench:
    """Contract-suite bench: a connected RenderedCamera on a small SimMicroscope."""

    def __init__(self) -> None:
        self.scope = make_scope(tumoroids=False)
        self.camera = RenderedCamera(
            self.scope, clock=RealClock(), name="simcam", sensor_pixel_size_um=6.5
        )
        self.camera.connect()

    def starve(self) -> None:
        """Make frames not come: software trigger mode and no trigger."""
        self.camera.set_trigger_mode(TriggerMode.SOFTWARE)

    def close(self) -> None:
        self.camera.close()


@pytest.fixture
def scope() -> SimMicroscope:
    return make_scope()


@pytest.fixture
def camera(scope) -> RenderedCamera:
    cam = RenderedCamera(scope, clock=VirtualClock(), name="cam", sensor_pixel_size_um=6.5)
    cam.connect()
    return cam


def test_sim_microscope_is_a_render_source(scope):
    source: RenderSource = scope  # mypy checks the structural match in the source tree
    assert source.pixel_size_um == pytest.approx(1.625)


def test_sensor_size_comes_from_the_field_of_view(camera):
    assert camera.read_sensor_size_px() == (SENSOR_PX, SENSOR_PX)
    assert camera.read_roi() == Roi(0, 0, SENSOR_PX, SENSOR_PX)
    assert camera.read_pixel_size_um() == 6.5


def test_not_connected_is_a_device_error(scope):
    cam = RenderedCamera(scope, clock=VirtualClock(), name="cam")
    with pytest.raises(DeviceError, match=r"^cam: camera not connected"):
        cam.read_roi()


def test_settings_reach_the_renderer(scope, camera):
    """The same settings given to SimMicroscope.snap directly give the same noise-free mean."""
    camera.set_binning(2)
    camera.set_roi(Roi(32, 64, 128, 96))
    camera.set_exposure_ms(20.0)
    camera.set_gain_db(6.0)
    camera.set_pixel_format("Mono12")
    image = camera.snap()
    assert image.shape == (48, 64) and image.dtype == np.uint16
    expected = scope.snap("brightfield", 20.0, 10 ** (6.0 / 20), (32, 64, 128, 96), 2, 12)
    assert abs(float(image.mean()) - float(expected.mean())) < 0.02 * float(expected.mean())
    assert int(image.max()) < 2**12


def test_mono8_frames_are_uint8(camera):
    camera.set_pixel_format("Mono8")
    image = camera.snap()
    assert image.dtype == np.uint8 and image.shape == (SENSOR_PX, SENSOR_PX)


def test_gain_raises_the_signal(camera):
    camera.set_roi(Roi(0, 0, 64, 64))
    camera.set_exposure_ms(0.5)  # far from saturation at 4x the gain
    low = float(camera.snap().mean())
    camera.set_gain_db(12.0)
    high = float(camera.snap().mean())
    offset = 100.0  # CameraParams.offset_adu
    assert (high - offset) / (low - offset) == pytest.approx(10 ** (12 / 20), rel=0.05)


def test_channel_selection_by_set_channel_and_by_light(camera):
    camera.set_roi(Roi(0, 0, 64, 64))
    assert camera.read_channel() == "brightfield"
    bright = float(camera.snap().mean())
    live = ChannelLight(camera, "live")
    live.set_open(True)
    assert camera.read_channel() == "live"
    fluo = float(camera.snap().mean())
    live.set_open(False)
    assert camera.read_channel() == "brightfield"
    assert fluo < bright / 5  # fluorescence background is dark; brightfield is bright
    camera.set_channel("dead")
    assert camera.read_channel() == "dead"
    with pytest.raises(ValueError, match="non-empty"):
        camera.set_channel("")


def test_unknown_channel_is_a_device_error(camera):
    camera.set_channel("uv")
    with pytest.raises(DeviceError, match=r"^cam: render failed: unknown channel 'uv'"):
        camera.snap()


def test_software_trigger_queues_frames_and_times_out_on_the_clock(scope):
    clock = VirtualClock()
    cam = RenderedCamera(scope, clock=clock, name="cam")
    cam.connect()
    cam.set_roi(Roi(0, 0, 32, 32))
    cam.set_trigger_mode(TriggerMode.SOFTWARE)
    cam.start_sequence(None)
    cam.trigger_software()
    cam.trigger_software()
    assert [cam.read_frame(timeout_s=1.0).index for _ in range(2)] == [0, 1]
    with pytest.raises(FrameTimeout, match=r"^cam: no frame within 0\.5 s"):
        cam.read_frame(timeout_s=0.5)
    assert clock.now_s() == pytest.approx(0.5)
    cam.stop_sequence()


def test_sync_hook_runs_before_every_render(scope):
    calls = []
    cam = RenderedCamera(scope, clock=VirtualClock(), name="cam", sync=lambda: calls.append(1))
    cam.connect()
    cam.set_roi(Roi(0, 0, 32, 32))
    cam.snap()
    cam.start_sequence(2)
    cam.read_frame(timeout_s=1.0)
    cam.read_frame(timeout_s=1.0)
    assert len(calls) == 3


# -- stage -------------------------------------------------------------------------------


def test_stage_moves_the_render_source(scope):
    stage = RenderedStage(scope, name="stage")
    stage.connect()
    x, y, z = scope.chamber_positions_um()[3]
    stage.move_to(x, y, z)
    assert not stage.is_moving()
    assert stage.read_position_um() == StagePosition(x, y, z)
    assert scope.position_um() == (x, y, z)
    stage.move_to(x + 10.0, y)  # z kept
    assert scope.position_um() == (x + 10.0, y, z)


def test_stage_limits_are_checked_before_moving(scope):
    limits = StageLimits((-1000.0, 1000.0), (-1000.0, 1000.0), (0.0, 500.0))
    stage = RenderedStage(scope, name="stage", limits=limits)
    before = scope.position_um()
    with pytest.raises(ValueError, match=r"^stage: x"):
        stage.move_to(5000.0, 0.0)
    assert scope.position_um() == before
    with pytest.raises(ValueError, match="z limits"):
        RenderedStage(scope, limits=StageLimits((0.0, 1.0), (0.0, 1.0)))
    with pytest.raises(ValueError, match="needs a clock"):
        RenderedStage(scope, speed_um_s=1000.0)


def test_stage_with_speed_takes_clock_time(scope):
    clock = VirtualClock()
    stage = RenderedStage(scope, name="stage", speed_um_s=10_000.0, clock=clock)
    x0, y0, z0 = scope.position_um()
    stage.move_to(x0 + 3000.0, y0, z0)
    assert stage.is_moving()
    clock.advance_s(0.1)
    assert stage.read_position_um().x_um == pytest.approx(x0 + 1000.0)
    stage.wait_until_stopped(clock, timeout_s=5.0)
    assert clock.now_s() == pytest.approx(0.3, abs=0.011)
    assert stage.read_position_um().x_um == pytest.approx(x0 + 3000.0)
    stage.move_to(x0, y0, z0)
    clock.advance_s(0.15)
    stage.stop()
    assert not stage.is_moving()
    assert stage.read_position_um().x_um == pytest.approx(x0 + 1500.0)
    assert scope.position_um()[0] == pytest.approx(x0 + 1500.0)


# -- the Microscope role over rendered devices --------------------------------------------


def test_microscope_presets_pick_channels_through_lights(scope):
    clock = VirtualClock()
    cam = RenderedCamera(scope, clock=clock, name="cam")
    stage = RenderedStage(scope, name="stage", speed_um_s=5000.0, clock=clock)
    cam.connect()
    stage.connect()
    cam.set_binning(4)
    live, dead = ChannelLight(cam, "live"), ChannelLight(cam, "dead")
    positions = {
        f"chamber{k}": StagePosition(*p) for k, p in enumerate(scope.chamber_positions_um())
    }
    scope_role = Microscope(
        name="scope",
        camera=cam,
        stage=stage,
        clock=clock,
        channels=[
            ChannelPreset("brightfield", 5.0),
            ChannelPreset("live", 50.0, gain_db=6.0, light=live),
            ChannelPreset("dead", 80.0, light=dead),
        ],
        positions=positions,
    )
    assert scope_role.preflight() == []
    images = scope_role.acquire_at("chamber2", ["brightfield", "live", "dead"])
    assert [i.channel for i in images] == ["brightfield", "live", "dead"]
    assert clock.now_s() == pytest.approx(3000.0 * 2 / 5000.0, abs=0.011)
    assert images[0].stage_um == positions["chamber2"]
    assert [i.gain_db for i in images] == [0.0, 6.0, 6.0]
    assert all(i.image.shape == (64, 64) for i in images)
    assert not live.read_open() and not dead.read_open()
    # each channel rendered what its preset asked for (same noise-free scene, same settings)
    scope.move_to(*scope.chamber_positions_um()[2])
    expected = scope.snap("live", 50.0, 10 ** (6 / 20), None, 4, 16, noise=False)
    assert abs(float(images[1].image.mean()) - float(expected.mean())) < 0.05 * float(
        expected.mean()
    )
