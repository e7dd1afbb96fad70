"""The analysis pipeline, live during an acquisition, and recomputed from the run file."""

from __future__ import annotations

import math
import threading
from pathlib import Path

import numpy as np
import pytest
from skimage.draw import disk

from chipctl.acquisition import Acquisition, ImagingPlan
from chipctl.analysis import tables
from chipctl.analysis.images import analyze_images
from chipctl.analysis.live import AnalysisParams, ChamberResult, LiveAnalysis, Pipeline
from chipctl.runfile import RunFileWriter, open_run
from drivers.camera import ChannelPreset, Microscope, StagePosition
from drivers.camera.rendered import ChannelLight, RenderedCamera, RenderedStage
from drivers.clock import VirtualClock
from simulator.biology import build_reference_biology
from simulator.microscope import SimMicroscope
from simulator.world import World
from tests.analysis import DAY_S, EXPOSURE_MS, HOUR_S, REFERENCE_CAMERA, SERIES_NM, Record

PX = 3.25
CHANNELS = ("brightfield", "live", "dead")


def _writer(path: Path) -> RunFileWriter:
    return RunFileWriter(
        path,
        chipctl_version="0.1.0",
        simulated=True,
        seed=31,
        started_utc="2026-11-21T06:00:00+00:00",
        config_text="[rig]\n",
        protocol_text='name = "analysis"\n',
        protocol_name="analysis",
        telemetry={},
        fsync=False,
    )


# -- a live run: acquisition -> frame listener -> LiveAnalysis -> run file ---------------------


class LiveRun:
    """Four 6-hourly time points of chambers 1 (control) and 8 (100 nM paclitaxel)."""

    POSITIONS = ("chamber 1", "chamber 8")
    TIMES_S = tuple(DAY_S + k * 6 * HOUR_S for k in range(4))

    def __init__(self, path: Path) -> None:
        clock = VirtualClock()
        world = World(0)
        bio = build_reference_biology(world, lambda: {"paclitaxel": SERIES_NM}, seed=31)
        world.advance_to(0.0)
        scope = SimMicroscope(bio, seed=31, camera=REFERENCE_CAMERA)
        camera = RenderedCamera(
            scope,
            clock=clock,
            name="cam",
            sensor_pixel_size_um=REFERENCE_CAMERA.pixel_pitch_um,
            sync=lambda: world.advance_to(clock.now_s()),
        )
        stage = RenderedStage(scope, name="stage", speed_um_s=5000.0, clock=clock)
        camera.connect()
        stage.connect()
        centres = scope.chamber_positions_um()
        microscope = Microscope(
            name="scope",
            camera=camera,
            stage=stage,
            clock=clock,
            channels=[
                ChannelPreset("brightfield", EXPOSURE_MS["brightfield"]),
                ChannelPreset("live", EXPOSURE_MS["live"], light=ChannelLight(camera, "live")),
                ChannelPreset("dead", EXPOSURE_MS["dead"], light=ChannelLight(camera, "dead")),
            ],
            positions={p: StagePosition(*centres[int(p.split()[1]) - 1]) for p in self.POSITIONS},
        )
        plan = ImagingPlan.for_microscope(
            microscope, channels=list(CHANNELS), magnification=4.0, channel_exposure_ms=EXPOSURE_MS
        )
        writer = _writer(path)
        acquisition = Acquisition(microscope, plan, writer, clock=clock)
        self.results: list[ChamberResult] = []
        self.live = LiveAnalysis(
            writer,
            plan.positions,
            plan.channels,
            on_result=self.results.append,
            exposure_ms=plan.channel_exposure_ms,
        )
        acquisition.frame_listeners.append(self.live.on_frame)
        acquisition.declare()
        self.live.declare()
        writer.open()
        self.live.start()
        try:
            for t_s in self.TIMES_S:
                clock.sleep_until_s(t_s)
                acquisition.acquire(t_s, {})
                self.live.end_time_point()
            self.drained = self.live.stop(timeout_s=300.0)
        finally:
            writer.close("completed", "2026-11-21T07:00:00+00:00")
        self.path = path
        self.biology = bio


@pytest.fixture(scope="module")
def live_run(tmp_path_factory) -> LiveRun:
    return LiveRun(tmp_path_factory.mktemp("live") / "run.h5")


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    if a.dtype.kind == "f":
        return bool(np.array_equal(a, b, equal_nan=True))
    return bool(np.array_equal(a, b))


def test_every_frame_is_analysed_and_every_result_written(live_run):
    stats = live_run.live.stats()
    n_frames = len(LiveRun.POSITIONS) * len(CHANNELS) * len(LiveRun.TIMES_S)
    assert live_run.drained
    assert (stats.received, stats.analysed, stats.skipped, stats.errors) == (
        n_frames,
        n_frames,
        0,
        0,
    )
    assert stats.results == len(live_run.results) == len(LiveRun.POSITIONS) * len(LiveRun.TIMES_S)
    with open_run(live_run.path) as run:
        chambers = run.table(tables.CHAMBERS)
        tumoroids = run.table(tables.TUMOROIDS)
        units = {**run.table_units(tables.TUMOROIDS), **run.table_units(tables.CHAMBERS)}
    assert list(chambers) == list(tables.CHAMBER_COLUMNS)
    assert list(tumoroids) == list(tables.TUMOROID_COLUMNS)
    assert units["volume_um3"] == "um^3" and units["growth_rate_per_h"] == "1/h"
    assert units["position"] == "" and units["t_s"] == "s"
    assert len(chambers["t_s"]) == stats.results
    assert len(tumoroids["t_s"]) == sum(len(r.tumoroids) for r in live_run.results)
    assert set(chambers["position"]) == set(LiveRun.POSITIONS)
    assert sorted(set(chambers["t_point_s"])) == list(LiveRun.TIMES_S)


def test_analyze_images_recomputes_the_live_tables_exactly(live_run):
    with open_run(live_run.path) as run:
        live_tumoroids = run.table(tables.TUMOROIDS)
        live_chambers = run.table(tables.CHAMBERS)
        again = analyze_images(run)
    assert again.frames == len(LiveRun.POSITIONS) * len(CHANNELS) * len(LiveRun.TIMES_S)
    assert again.unmatched_stain_frames == 0
    for live, recomputed in ((live_tumoroids, again.tumoroids), (live_chambers, again.chambers)):
        assert list(recomputed) == list(live)
        for name in live:  # same rows, same order
            assert _same(live[name], recomputed[name]), name


def test_latest_values_and_callbacks_give_the_newest_chamber_numbers(live_run):
    latest = live_run.live.latest()
    last = {r.chamber.position: r for r in live_run.results}
    for position in LiveRun.POSITIONS:
        assert latest[f"{position}.t_point_s"] == LiveRun.TIMES_S[-1]
        assert latest == {**latest, **last[position].values()}
        # 4 points 6 h apart: the last 12 h hold 3, enough for a growth rate
        assert math.isfinite(latest[f"{position}.growth_rate_per_h"])
    control, treated = (latest[f"{p}.growth_rate_per_h"] for p in LiveRun.POSITIONS)
    # the control grows (doubling in days), 100 nM paclitaxel stops growth
    assert math.log(2) / (20 * 24) < control < math.log(2) / 24
    assert treated < 0.5 * control
    assert latest["chamber 1.live_fraction"] > 0.95 > latest["chamber 8.live_fraction"]


def test_tumoroids_keep_their_track_ids_across_time_points(live_run):
    with open_run(live_run.path) as run:
        t = run.table(tables.TUMOROIDS)
    control = t["position"] == "chamber 1"
    per_track = {
        tid: int((t["track_id"][control] == tid).sum()) for tid in set(t["track_id"][control])
    }
    assert len(per_track) >= 5
    assert all(n == len(LiveRun.TIMES_S) for n in per_track.values())


# -- the pipeline on synthetic frames ---------------------------------------------------------


def _frames(shape=(192, 192)):
    """Brightfield with two dark discs; live and dead frames with signal in them."""
    rng = np.random.default_rng(4)
    bf = 20000.0 * (1.0 + 0.01 * rng.standard_normal(shape))
    live = 100.0 + rng.standard_normal(shape)
    dead = 100.0 + rng.standard_normal(shape)
    for (r, c), live_share in (((60, 60), 0.8), ((130, 120), 0.2)):
        rr, cc = disk((r, c), 18, shape=shape)
        bf[rr, cc] *= 0.5
        live[rr, cc] += 500.0 * live_share
        dead[rr, cc] += 500.0 * (1.0 - live_share)
    return {"brightfield": bf, "live": live, "dead": dead, "uv": live}


def _feed(pipeline, order, position="chamber 1", t_s=0.0):
    frames = _frames()
    out = []
    for channel in order:
        record = Record(position, channel, 0, t_s, t_s, PX, {})
        out += pipeline.add(record, frames[channel], exposure_ms=10.0)
    return out


def test_stain_frames_may_come_before_their_brightfield_frame():
    first = _feed(Pipeline(CHANNELS), ["brightfield", "live", "dead"])
    second = _feed(Pipeline(CHANNELS), ["dead", "live", "brightfield"])
    assert len(first) == len(second) == 1
    assert first[0] == second[0]
    fractions = sorted(r.live_fraction for r in first[0].tumoroids)
    assert fractions == pytest.approx([0.2, 0.8], abs=0.03)


def test_when_a_time_point_is_complete():
    pipeline = Pipeline(["brightfield", "live"])
    assert _feed(pipeline, ["brightfield"]) == []  # the live frame may still come
    (done,) = _feed(pipeline, ["brightfield"], position="chamber 2")  # another position
    assert done.chamber.position == "chamber 1"
    (done,) = _feed(pipeline, ["live"], position="chamber 2")  # all channels seen
    assert done.chamber.position == "chamber 2"
    assert _feed(pipeline, ["brightfield"], t_s=3600.0) == []
    (done,) = pipeline.flush()
    assert done.chamber.t_point_s == 3600.0
    assert pipeline.flush() == []
    assert len(_feed(Pipeline(["brightfield"]), ["brightfield"])) == 1


def test_stains_without_brightfield_and_unknown_channels_are_counted_not_analysed():
    pipeline = Pipeline(None)
    assert _feed(pipeline, ["live", "uv"]) == []
    assert pipeline.flush() == []
    assert (pipeline.unmatched_stain_frames, pipeline.ignored_frames) == (1, 1)


def test_a_frame_without_pixel_size_needs_a_default():
    record = Record("chamber 1", "brightfield", 0, 0.0, 0.0, None, {})
    with pytest.raises(ValueError, match="chamber 1 / brightfield at 0 s: the pixel size"):
        Pipeline(["brightfield"]).add(record, _frames()["brightfield"])
    pipeline = Pipeline(["brightfield"], AnalysisParams(pixel_size_um=PX))
    (result,) = pipeline.add(record, _frames()["brightfield"])
    assert result.chamber.n_tumoroids == 2


# -- LiveAnalysis: queue, errors, lifecycle ---------------------------------------------------


def test_a_full_queue_skips_frames_and_counts_them(tmp_path):
    writer = _writer(tmp_path / "run.h5")
    entered, release = threading.Event(), threading.Event()

    def slow_consumer(result: ChamberResult) -> None:
        entered.set()
        release.wait(60.0)

    live = LiveAnalysis(
        writer, ["chamber 1"], ["brightfield"], on_result=slow_consumer, max_queued_frames=2
    )
    live.declare()
    writer.open()
    live.start()
    frame = _frames()["brightfield"]
    try:
        live.on_frame(Record("chamber 1", "brightfield", 0, 0.0, 0.0, PX, {}), frame)
        assert entered.wait(60.0)  # the worker is busy with the first result
        for k in range(1, 6):
            live.on_frame(Record("chamber 1", "brightfield", k, k, k, PX, {}), frame)
        stats = live.stats()
        assert (stats.received, stats.skipped, stats.queued) == (6, 3, 2)
        release.set()
        assert live.stop(60.0)
    finally:
        release.set()
        writer.close("completed", "")
    stats = live.stats()
    assert (stats.analysed, stats.skipped, stats.results, stats.queued) == (3, 3, 3, 0)
    with open_run(tmp_path / "run.h5") as run:
        assert len(run.table(tables.CHAMBERS)["t_s"]) == 3


def test_wait_when_full_waits_for_room_instead_of_skipping(tmp_path):
    writer = _writer(tmp_path / "run.h5")
    entered, release = threading.Event(), threading.Event()

    def slow_consumer(result: ChamberResult) -> None:
        entered.set()
        release.wait(60.0)

    live = LiveAnalysis(
        writer,
        ["chamber 1"],
        ["brightfield"],
        on_result=slow_consumer,
        max_queued_frames=1,
        wait_when_full=True,
    )
    live.declare()
    writer.open()
    live.start()
    frame = _frames()["brightfield"]

    def produce() -> None:
        for k in range(1, 4):
            live.on_frame(Record("chamber 1", "brightfield", k, k, k, PX, {}), frame)

    producer = threading.Thread(target=produce)
    try:
        live.on_frame(Record("chamber 1", "brightfield", 0, 0.0, 0.0, PX, {}), frame)
        assert entered.wait(60.0)  # the worker is busy with the first result
        producer.start()
        tick = threading.Event()
        for _ in range(2000):  # until the producer has queued one frame and waits
            if live.stats().received == 3:
                break
            tick.wait(0.005)
        stats = live.stats()
        assert (stats.received, stats.queued, stats.skipped) == (3, 1, 0)
        assert producer.is_alive()  # waiting for room, not skipping
        release.set()
        producer.join(60.0)
        assert not producer.is_alive()
        assert live.stop(60.0)
    finally:
        release.set()
        writer.close("completed", "")
    stats = live.stats()
    assert (stats.received, stats.analysed, stats.skipped, stats.results) == (4, 4, 0, 4)


def test_a_bad_frame_is_an_error_event_and_the_analysis_goes_on(tmp_path):
    writer = _writer(tmp_path / "run.h5")
    live = LiveAnalysis(writer, ["chamber 1"], ["brightfield"])
    live.declare()
    writer.open()
    live.start()
    try:
        live.on_frame(Record("chamber 1", "brightfield", 0, 5.0, 5.0, PX, {}), np.zeros((3, 3, 3)))
        live.on_frame(
            Record("chamber 9", "brightfield", 0, 6.0, 6.0, PX, {}), _frames()["brightfield"]
        )
        live.on_frame(
            Record("chamber 1", "brightfield", 1, 7.0, 7.0, PX, {}), _frames()["brightfield"]
        )
        assert live.stop(60.0)
    finally:
        writer.close("completed", "")
    stats = live.stats()
    assert (stats.errors, stats.ignored, stats.results) == (1, 1, 1)
    assert "chamber 1 / brightfield at 5 s" in stats.last_error and "\n" not in stats.last_error
    with open_run(tmp_path / "run.h5") as run:
        errors = [e for e in run.events() if e.source == "analysis"]
    assert len(errors) == 1 and errors[0].t_s == 5.0 and "2-D image" in errors[0].message


def test_lifecycle(tmp_path):
    live = LiveAnalysis(_writer(tmp_path / "run.h5"), ["chamber 1"], ["brightfield"])
    assert live.stop(1.0)  # never started: nothing to drain
    live.start()
    with pytest.raises(RuntimeError, match="twice"):
        live.start()
    assert live.stop(60.0)
    with pytest.raises(ValueError, match="max_queued_frames"):
        LiveAnalysis(_writer(tmp_path / "other.h5"), [], [], max_queued_frames=0)


def test_a_run_without_images_gives_empty_tables_with_every_column(tmp_path):
    writer = _writer(tmp_path / "run.h5")
    writer.open()
    writer.close("completed", "")
    with open_run(tmp_path / "run.h5") as run:
        empty = analyze_images(run)
    assert empty.frames == 0
    assert list(empty.tumoroids) == list(tables.TUMOROID_COLUMNS)
    assert list(empty.chambers) == list(tables.CHAMBER_COLUMNS)
    assert all(len(v) == 0 for v in (*empty.tumoroids.values(), *empty.chambers.values()))
    assert empty.chambers["n_tumoroids"].dtype == np.int64


def test_analyze_images_can_take_some_positions(live_run):
    with open_run(live_run.path) as run:
        some = analyze_images(run, positions=["chamber 8"])
    assert set(some.chambers["position"]) == {"chamber 8"}
    assert some.frames == len(CHANNELS) * len(LiveRun.TIMES_S)


# -- a chamber imaged in several fields ------------------------------------------------------


def test_the_fields_of_a_chamber_are_summed_into_one_chamber_row():
    pipeline = Pipeline(["brightfield", "live", "dead"], positions=["chamber 2a", "chamber 2b"])
    one = _feed(Pipeline(CHANNELS), ["brightfield", "live", "dead"])[0]
    assert _feed(pipeline, ["brightfield", "live", "dead"], position="chamber 2a") == []
    (done,) = _feed(pipeline, ["brightfield", "live", "dead"], position="chamber 2b")
    row = done.chamber
    assert row.position == "chamber 2"
    assert row.n_tumoroids == 2 * one.chamber.n_tumoroids
    assert row.total_volume_um3 == pytest.approx(2 * one.chamber.total_volume_um3)
    assert row.mean_diameter_um == pytest.approx(one.chamber.mean_diameter_um)
    assert row.live_fraction == pytest.approx(one.chamber.live_fraction)
    # tumoroids keep their field, and their track ids are the field's own
    assert [r.position for r in done.tumoroids] == ["chamber 2a"] * 2 + ["chamber 2b"] * 2
    assert [r.track_id for r in done.tumoroids[:2]] == [r.track_id for r in done.tumoroids[2:]]


def test_a_chamber_completes_when_another_chamber_or_time_point_comes_or_at_a_flush():
    pipeline = Pipeline(["brightfield"])  # fields not announced
    assert _feed(pipeline, ["brightfield"], position="chamber 1a") == []
    assert _feed(pipeline, ["brightfield"], position="chamber 1b") == []
    (done,) = _feed(pipeline, ["brightfield"], position="chamber 3a")
    assert (done.chamber.position, done.chamber.n_tumoroids) == ("chamber 1", 4)
    (done,) = _feed(pipeline, ["brightfield"], position="chamber 3a", t_s=3600.0)
    assert (done.chamber.position, done.chamber.t_point_s) == ("chamber 3", 0.0)
    (done,) = pipeline.flush()
    assert (done.chamber.position, done.chamber.t_point_s) == ("chamber 3", 3600.0)


def test_the_growth_rate_is_the_whole_chambers():
    params = AnalysisParams(growth_min_points=2)
    pipeline = Pipeline(["brightfield"], params, positions=["chamber 1a", "chamber 1b"])
    small, big = _frames(), _frames()
    rr, cc = disk((60, 60), 26, shape=big["brightfield"].shape)
    big["brightfield"][rr, cc] *= 0.5
    rows = []
    for t_s, second in ((0.0, small), (3600.0, big)):
        for position, frames in (("chamber 1a", small), ("chamber 1b", second)):
            record = Record(position, "brightfield", 0, t_s, t_s, PX, {})
            rows += [r.chamber for r in pipeline.add(record, frames["brightfield"])]
    first, last = rows
    expected = math.log(last.total_volume_um3 / first.total_volume_um3)
    assert last.growth_rate_per_h == pytest.approx(expected, rel=1e-9)
    assert expected > 0.1  # one field grew: the chamber's rate is between the fields'
