"""Time-lapse acquisition into a real run file, read back through chipctl.runfile.images.

The microscope is the Microscope role over RenderedCamera/RenderedStage on a small
SimMicroscope (tests may import the simulator), on a virtual clock, with the simulated
world advanced to the clock's time before every render.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from chipctl.acquisition import (
    Acquisition,
    ImagingPlan,
    parse_compression,
    writer_supports_stack_attrs,
)
from chipctl.errors import RunFileError
from chipctl.runfile import RunFileWriter, open_run
from chipctl.runfile import images as img
from chipctl.runfile.framestore import Compression, compression_available
from drivers.camera import ChannelPreset, Microscope, MoveTimeout, Roi, StagePosition
from drivers.camera.rendered import ChannelLight, RenderedCamera, RenderedStage
from drivers.clock import VirtualClock
from simulator.biology import build_reference_biology
from simulator.microscope import CameraParams, SimMicroscope
from simulator.world import World

FLUIDICS = {"flow_ul_min": "uL/min", "medium_delivered_ul": "uL", "conc_nm": "nM"}
HOUR_S = 3600.0
STAGE_SPEED_UM_S = 10_000.0


@dataclass
class Rig:
    clock: VirtualClock
    world: World
    scope: SimMicroscope
    camera: RenderedCamera
    microscope: Microscope


def make_rig(*, seed: int = 2) -> Rig:
    """A 4x microscope (512 px sensor) on the reference biology; ROI 256 x 256, binning 2."""
    clock = VirtualClock()
    world = World(0)
    bio = build_reference_biology(world, lambda: {}, seed=3)
    world.advance_to(0.0)
    scope = SimMicroscope(bio, seed=seed, camera=CameraParams(sensor_shape=(512, 512)))
    camera = RenderedCamera(
        scope,
        clock=clock,
        name="cam",
        sensor_pixel_size_um=6.5,
        sync=lambda: world.advance_to(clock.now_s()),
    )
    stage = RenderedStage(scope, name="stage", speed_um_s=STAGE_SPEED_UM_S, clock=clock)
    camera.connect()
    stage.connect()
    camera.set_binning(2)
    camera.set_roi(Roi(128, 128, 256, 256))
    centres = scope.chamber_positions_um()
    microscope = Microscope(
        name="scope",
        camera=camera,
        stage=stage,
        clock=clock,
        channels=[
            ChannelPreset("brightfield", 5.0, gain_db=0.0),
            ChannelPreset("live", 40.0, gain_db=6.0, light=ChannelLight(camera, "live")),
        ],
        positions={"chamber 1": StagePosition(*centres[0]), "c4": StagePosition(*centres[3])},
    )
    return Rig(clock, world, scope, camera, microscope)


def make_writer(path: Path) -> RunFileWriter:
    return RunFileWriter(
        path,
        chipctl_version="0.1.0",
        simulated=True,
        seed=2,
        started_utc="2026-11-21T06:00:00+00:00",
        config_text="[rig]\n",
        protocol_text='name = "imaging"\n',
        protocol_name="imaging",
        telemetry={},
        fsync=False,
    )


def make_plan(rig: Rig, **kw: Any) -> ImagingPlan:
    args: dict[str, Any] = {
        "channels": ["brightfield", "live"],
        "fluidic_columns": FLUIDICS,
        "magnification": 4.0,
        "objective": "4x/0.13",
        "channel_exposure_ms": {"brightfield": 5.0, "live": 40.0},
    }
    args.update(kw)
    return ImagingPlan.for_microscope(rig.microscope, **args)


def fluidic_state(k: int) -> dict[str, float]:
    return {"flow_ul_min": 1.0, "medium_delivered_ul": 60.0 * k, "conc_nm": 10.0 * k}


@dataclass
class RecordedRun:
    path: Path
    images: dict[tuple[str, str], list[np.ndarray[Any, Any]]]
    times: list[float]


def record_run(tmp_path: Path, n_points: int = 3, **plan_kw: Any) -> RecordedRun:
    """Declare, open, acquire ``n_points`` hourly time points at 2 positions x 2 channels."""
    rig = make_rig()
    writer = make_writer(tmp_path / "run.h5")
    acq = Acquisition(rig.microscope, make_plan(rig, **plan_kw), writer, clock=rig.clock)
    acq.declare()
    writer.open()
    kept: dict[tuple[str, str], list[np.ndarray[Any, Any]]] = {}
    original = rig.microscope.acquire

    def spy(channels: Any, *, position: str | None = None) -> Any:
        out = original(channels, position=position)
        for image in out:
            kept.setdefault((str(position), image.channel), []).append(image.image.copy())
        return out

    rig.microscope.acquire = spy  # type: ignore[method-assign]
    times = []
    try:
        for k in range(n_points):
            rig.clock.sleep_until_s(k * HOUR_S)
            times.append(k * HOUR_S)
            summary = acq.acquire(k * HOUR_S, fluidic_state(k))
            assert summary.frames == 4
            assert summary.positions == ("chamber 1", "c4")
    finally:
        writer.close("completed", "2026-11-21T07:00:00+00:00")
    return RecordedRun(tmp_path / "run.h5", kept, times)


# -- plan -------------------------------------------------------------------------------------


def test_plan_from_the_microscope_settings():
    rig = make_rig()
    plan = make_plan(rig)
    assert plan.positions == ("chamber 1", "c4")
    assert plan.frame_shape == (128, 128)
    assert plan.dtype == np.uint16
    assert plan.pixel_size_um == pytest.approx(6.5 * 2 / 4.0)
    assert plan.bit_depth == 16
    assert make_plan(rig, positions=["c4"]).positions == ("c4",)
    rig.camera.set_pixel_format("Mono8")
    assert make_plan(rig).dtype == np.uint8


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"positions": ["nowhere"]}, "unknown positions \\['nowhere'\\]"),
        ({"channels": ["uv"]}, "unknown channels \\['uv'\\]"),
        ({"channels": ["live", "live"]}, "duplicate channel names"),
        ({"fluidic_columns": {"t_s": "s"}}, "clashes with a metadata column"),
        ({"fluidic_columns": {"a/b": "s"}}, "invalid fluidic column name"),
        ({"compression": "bzip9"}, "unknown compression 'bzip9'"),
    ],
)
def test_plan_rejects_bad_input_in_one_line(kw, message):
    with pytest.raises(ValueError, match=message) as info:
        make_plan(make_rig(), **kw)
    assert "\n" not in str(info.value)


def test_plan_rejects_names_that_break_the_layout():
    base = {"frame_shape": (8, 8), "dtype": np.uint16}
    with pytest.raises(ValueError, match="must not end in '_meta'"):
        ImagingPlan(positions=("p",), channels=("x_meta",), **base)
    with pytest.raises(ValueError, match=r"invalid position name '\.\.'"):
        ImagingPlan(positions=("..",), channels=("c",), **base)
    with pytest.raises(ValueError, match="uint8 or uint16"):
        ImagingPlan(positions=("p",), channels=("c",), frame_shape=(8, 8), dtype=np.float32)


# -- acquisition round trip ---------------------------------------------------------------


def test_frames_and_metadata_round_trip(tmp_path):
    run = record_run(tmp_path)
    with open_run(run.path) as rf:
        stacks = img.image_stacks(rf)
        assert [(s.position, s.channel) for s in stacks] == [
            ("c4", "brightfield"),
            ("c4", "live"),
            ("chamber 1", "brightfield"),
            ("chamber 1", "live"),
        ]
        for stack in stacks:
            assert stack.n_frames == 3
            assert stack.shape == (128, 128) and stack.dtype == np.uint16
            assert stack.pixel_size_um == pytest.approx(3.25)
            frames, meta = img.read_stack(rf, stack.position, stack.channel)
            expected = np.stack(run.images[(stack.position, stack.channel)])
            np.testing.assert_array_equal(frames, expected)  # pixels identical
            np.testing.assert_array_equal(
                img.read_frame(rf, stack.position, stack.channel, -1), expected[-1]
            )
            assert list(meta["frame"]) == [0, 1, 2]
            np.testing.assert_allclose(meta["t_point_s"], run.times)
            exposure = 5.0 if stack.channel == "brightfield" else 40.0
            np.testing.assert_allclose(meta["exposure_ms"], exposure)
            np.testing.assert_allclose(meta["gain_db"], 0.0 if exposure == 5.0 else 6.0)
            np.testing.assert_allclose(meta["conc_nm"], [0.0, 10.0, 20.0])
            np.testing.assert_allclose(meta["medium_delivered_ul"], [0.0, 60.0, 120.0])
            np.testing.assert_allclose(meta["pixel_size_um"], 3.25)
            units = rf.table_units(stack.meta_path)
            assert units["t_s"] == "s" and units["conc_nm"] == "nM"
            assert units["stage_x_um"] == "um" and units["exposure_ms"] == "ms"
            assert rf.frames(stack.frames_path).attrs["units"] == "ADU"
            assert rf.frames(stack.frames_path).chunks == (1, 128, 128)


def test_stage_positions_and_frame_times(tmp_path):
    run = record_run(tmp_path, n_points=2)
    rig = make_rig()
    centres = rig.scope.chamber_positions_um()
    with open_run(run.path) as rf:
        c1 = img.read_metadata(rf, "chamber 1", "brightfield")
        c4 = img.read_metadata(rf, "c4", "live")
    np.testing.assert_allclose(c1["stage_x_um"], centres[0][0])
    np.testing.assert_allclose(c4["stage_x_um"], centres[3][0])
    np.testing.assert_allclose(c4["stage_z_um"], centres[3][2])
    # first point: the stage starts over chamber 1, then travels 9 mm to c4 (0.9 s); the
    # second starts over c4, goes back to chamber 1 and on to c4 again. Frame times are run
    # times: the time point plus the clock time elapsed since it began.
    assert c1["t_s"][0] == pytest.approx(0.0, abs=0.02)
    assert c4["t_s"][0] == pytest.approx(0.9, abs=0.03)
    assert c1["t_s"][1] == pytest.approx(HOUR_S + 0.9, abs=0.03)
    assert c4["t_s"][1] == pytest.approx(HOUR_S + 1.8, abs=0.05)
    assert np.all(c4["t_s"] >= c4["t_point_s"])


def test_summary_reports_stage_time_and_subsets(tmp_path):
    rig = make_rig()
    writer = make_writer(tmp_path / "run.h5")
    acq = Acquisition(rig.microscope, make_plan(rig), writer, clock=rig.clock)
    acq.declare()
    writer.open()
    try:
        summary = acq.acquire(0.0, {})
        assert summary.frames == 4
        assert summary.stage_s == pytest.approx(0.9, abs=0.03)
        assert summary.elapsed_s == pytest.approx(summary.stage_s)
        only = acq.acquire(60.0, fluidic_state(1), positions=["c4"], channels=["live"])
        assert (only.frames, only.positions) == (1, ("c4",))
        assert acq.frames_written("c4", "live") == 2
        assert acq.frames_written("chamber 1", "live") == 1
        with pytest.raises(
            ValueError, match=r"positions \['elsewhere'\] are not in the imaging plan"
        ):
            acq.acquire(0.0, {}, positions=["elsewhere"])
        with pytest.raises(ValueError, match=r"undeclared fluidic quantities \['pressure_kpa'\]"):
            acq.acquire(0.0, {"pressure_kpa": 1.0})
    finally:
        writer.close("completed", "2026-11-21T07:00:00+00:00")
    with open_run(tmp_path / "run.h5") as rf:
        meta = img.read_metadata(rf, "chamber 1", "live")
        assert math.isnan(meta["conc_nm"][0])  # not given: NaN, not 0
        assert [s.n_frames for s in img.image_stacks(rf)] == [1, 2, 1, 1]


def test_a_time_point_runs_step_by_step_without_waiting(tmp_path):
    """Each step is bounded and returns when to come back; only the caller's waits take time."""
    rig = make_rig()
    writer = make_writer(tmp_path / "run.h5")
    acq = Acquisition(rig.microscope, make_plan(rig), writer, clock=rig.clock, poll_s=0.1)
    acq.declare()
    writer.open()
    try:
        point = acq.start(0.0, fluidic_state(1))
        delays = []
        while True:
            before_s = rig.clock.now_s()
            delay_s = point.step()
            assert rig.clock.now_s() == before_s  # a step never sleeps
            if delay_s is None:
                break
            delays.append(delay_s)
            rig.clock.sleep_s(delay_s)
        # chamber 1 (the stage starts there): move, snap, snap; c4: move, polls every 0.1 s
        # until the 0.9 s travel is over, snap, snap
        assert point.done and point.step() is None
        summary = point.summary()
        assert (summary.frames, summary.positions) == (4, ("chamber 1", "c4"))
        assert 0.9 - 1e-9 <= summary.stage_s <= 1.0 + 1e-9
        assert delays.count(0.1) == round(summary.stage_s / 0.1)
        assert len(delays) == 5 + delays.count(0.1)
    finally:
        writer.close("completed", "2026-11-21T07:00:00+00:00")


def test_a_stage_that_does_not_arrive_times_out_and_is_stopped(tmp_path):
    rig = make_rig()
    slow = RenderedStage(rig.scope, name="slow-stage", speed_um_s=100.0, clock=rig.clock)
    rig.microscope.stage = slow
    writer = make_writer(tmp_path / "run.h5")
    acq = Acquisition(rig.microscope, make_plan(rig), writer, clock=rig.clock, move_timeout_s=5.0)
    acq.declare()
    writer.open()
    try:
        with pytest.raises(MoveTimeout, match=r"^slow-stage: still moving to 'c4' after 5 s"):
            acq.acquire(0.0, {})
        assert not slow.is_moving()
        assert acq.frames_written("chamber 1", "live") == 1  # what was taken stays
        assert acq.frames_written("c4", "live") == 0
    finally:
        writer.close("completed", "2026-11-21T07:00:00+00:00")


def test_fluidic_state_can_be_sampled_per_position(tmp_path):
    rig = make_rig()
    writer = make_writer(tmp_path / "run.h5")
    acq = Acquisition(rig.microscope, make_plan(rig), writer, clock=rig.clock)
    acq.declare()
    writer.open()
    asked: list[float] = []

    def state_at(t_s: float) -> dict[str, float]:
        asked.append(t_s)
        return {"medium_delivered_ul": t_s}

    try:
        acq.acquire(100.0, state_at)
    finally:
        writer.close("completed", "2026-11-21T07:00:00+00:00")
    assert len(asked) == 2 and asked[1] == pytest.approx(100.9, abs=0.03)
    with open_run(tmp_path / "run.h5") as rf:
        c4 = img.read_metadata(rf, "c4", "brightfield")
    assert c4["medium_delivered_ul"][0] == pytest.approx(asked[1])


def test_changed_camera_settings_are_refused_before_writing(tmp_path):
    rig = make_rig()
    writer = make_writer(tmp_path / "run.h5")
    acq = Acquisition(rig.microscope, make_plan(rig), writer, clock=rig.clock)
    acq.declare()
    writer.open()
    try:
        rig.camera.set_binning(1)  # also resets the ROI to the 512 px sensor
        with pytest.raises(ValueError, match=r"does not match the declared uint16\[128, 128\]"):
            acq.acquire(0.0, {})
        assert acq.frames_written("chamber 1", "brightfield") == 0
    finally:
        writer.close("completed", "2026-11-21T07:00:00+00:00")


def test_declare_must_come_before_open_and_acquire(tmp_path):
    rig = make_rig()
    writer = make_writer(tmp_path / "run.h5")
    acq = Acquisition(rig.microscope, make_plan(rig), writer, clock=rig.clock)
    writer.open()
    try:
        with pytest.raises(RunFileError, match=r"declare\(\) was not called"):
            acq.acquire(0.0, {})
        with pytest.raises(RunFileError, match="after open"):
            acq.declare()
    finally:
        writer.close("completed", "2026-11-21T07:00:00+00:00")


# -- compression and the writer extension ----------------------------------------------------


def test_compression_names():
    assert parse_compression(None) is Compression.NONE
    assert parse_compression("none") is Compression.NONE
    with pytest.raises(ValueError, match="unknown compression 'zstd'"):
        parse_compression("zstd")
    if not compression_available():
        with pytest.raises(ValueError, match="needs the packages hdf5plugin and blosc2"):
            parse_compression("lz4")
        return
    assert parse_compression("lz4") is Compression.LZ4
    assert parse_compression("blosc2-lz4-bitshuffle") is Compression.LZ4_BITSHUFFLE


@pytest.mark.parametrize("compression", ["lz4", "blosc2-lz4-bitshuffle"])
def test_compressed_round_trip(tmp_path, compression):
    run = record_run(tmp_path, n_points=2, compression=compression)
    with open_run(run.path) as rf:
        stack = img.image_stacks(rf)[0]
        assert stack.attrs["compression"] == parse_compression(compression).value
        frames, meta = img.read_stack(rf, stack.position, stack.channel)
    np.testing.assert_array_equal(frames, np.stack(run.images[(stack.position, stack.channel)]))
    assert list(meta["frame"]) == [0, 1]
    with h5py.File(run.path, "r") as h5:
        plist = h5[stack.frames_path].id.get_create_plist()
        assert plist.get_nfilters() == 1 and plist.get_filter(0)[0] == 32026  # Blosc2


def test_stack_attributes_follow_the_writer(tmp_path):
    run = record_run(tmp_path, n_points=1)
    with h5py.File(run.path, "r") as h5:
        attrs = dict(h5[img.frames_path("c4", "live")].attrs)
    assert attrs["units"] == "ADU"
    if not writer_supports_stack_attrs(make_writer(tmp_path / "probe.h5")):
        assert "pixel_size_um" not in attrs  # kept in the metadata table instead
        return
    assert attrs["channel"] == "live" and attrs["position"] == "c4"
    assert attrs["objective"] == "4x/0.13" and attrs["magnification"] == 4.0
    assert attrs["pixel_size_um"] == pytest.approx(3.25)
    assert attrs["exposure_ms"] == 40.0 and attrs["bit_depth"] == 16


# -- reader helpers --------------------------------------------------------------------------


def test_reader_helpers_on_a_run_without_images(tmp_path):
    writer = make_writer(tmp_path / "run.h5")
    writer.open()
    writer.close("completed", "2026-11-21T07:00:00+00:00")
    with open_run(tmp_path / "run.h5") as rf:
        assert img.image_stacks(rf) == []
        with pytest.raises(KeyError, match="no frame stack '/images/p/c'"):
            img.read_stack(rf, "p", "c")


def test_read_frame_index_out_of_range(tmp_path):
    run = record_run(tmp_path, n_points=1)
    with open_run(run.path) as rf:
        with pytest.raises(IndexError, match="frame 1 of 1"):
            img.read_frame(rf, "c4", "live", 1)
