"""A frame the camera loses is taken again, a bounded number of times, and each loss recorded.

The rig of ``test_acquisition`` (Microscope role over RenderedCamera on a SimMicroscope,
virtual clock, a real run file); the simulator's ``drop_frame`` / ``camera_lost`` faults
lose frames, and the camera reports each after its frame timeout (exposure + 1 s).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from chipctl.acquisition import FRAME_RETRIES, Acquisition, FrameRecord
from chipctl.runfile import images as img
from chipctl.runfile import open_run
from drivers.camera import FrameTimeout
from tests.chipctl.test_acquisition import make_plan, make_rig, make_writer

#: The brightfield preset's frame timeout: its 5 ms exposure plus 1 s.
BRIGHTFIELD_TIMEOUT_S = 1.005
#: Frames of one time point: 2 positions x 2 channels.
FRAMES = 4

Event = tuple[float, str, str, str]


def lost_message(frame: str, k: int, of: int = FRAME_RETRIES, timeout_s: float = 1.005) -> str:
    return (
        f"frame lost ({frame}), retrying ({k} of {of}): "
        f"cam: no frame within {timeout_s:g} s of the trigger (lost)"
    )


def setup(tmp_path: Path, **kw: Any) -> tuple[Any, Any, Acquisition, list[Event]]:
    """A rig, an open writer, a declared acquisition recording its events into a list."""
    rig = make_rig()
    writer = make_writer(tmp_path / "run.h5")
    events: list[Event] = []

    def record(*event: Any) -> None:
        events.append(event)

    acq = Acquisition(
        rig.microscope, make_plan(rig), writer, clock=rig.clock, on_event=record, **kw
    )
    acq.declare()
    writer.open()
    return rig, writer, acq, events


def close(writer: Any) -> None:
    writer.close("completed", "2026-11-21T07:00:00+00:00")


def test_a_lost_frame_is_taken_again_and_recorded_in_the_run_file(tmp_path):
    """Default sink: the writer's /events; the time point costs one frame timeout more."""
    baseline = make_rig()
    plain = Acquisition(
        baseline.microscope,
        make_plan(baseline),
        make_writer(tmp_path / "plain.h5"),
        clock=baseline.clock,
    )
    plain.declare()
    plain.writer.open()
    normal = plain.acquire(0.0, {})
    close(plain.writer)

    rig = make_rig()
    writer = make_writer(tmp_path / "run.h5")
    acq = Acquisition(rig.microscope, make_plan(rig), writer, clock=rig.clock)
    acq.declare()
    writer.open()
    rig.scope.drop_frame()
    summary = acq.acquire(0.0, {})
    close(writer)

    assert (summary.frames, summary.frames_lost, normal.frames_lost) == (FRAMES, 1, 0)
    assert summary.elapsed_s - normal.elapsed_s == pytest.approx(BRIGHTFIELD_TIMEOUT_S)
    with open_run(tmp_path / "run.h5") as rf:
        rows = [(e.t_s, e.source, e.kind, e.message) for e in rf.events()]
        meta = img.read_metadata(rf, "chamber 1", "brightfield")
        counts = [s.n_frames for s in img.image_stacks(rf)]
    # the stage starts over chamber 1: its brightfield frame is the first, lost at once
    assert rows == [
        (
            pytest.approx(BRIGHTFIELD_TIMEOUT_S),
            "scope",
            "frame_lost",
            lost_message("chamber 1 / brightfield", 1),
        )
    ]
    assert list(meta["t_s"]) == [pytest.approx(BRIGHTFIELD_TIMEOUT_S)]  # taken right after
    assert counts == [1, 1, 1, 1]


def test_the_retry_is_the_next_step(tmp_path):
    """The scheduler gets control between the loss and the retry (interlocks keep running)."""
    rig, writer, acq, events = setup(tmp_path)
    rig.scope.drop_frame()
    point = acq.start(0.0, {})
    assert point.step() == 0.0  # move (the stage is there already)
    assert point.step() == 0.0  # the snap: lost after its timeout
    assert point.summary().frames == 0 and len(events) == 1
    assert rig.clock.now_s() == pytest.approx(BRIGHTFIELD_TIMEOUT_S)
    assert point.step() == 0.0  # the retry
    assert point.summary().frames == 1 and len(events) == 1
    close(writer)


def test_a_camera_that_stays_lost_fails_the_time_point_naming_the_frame(tmp_path):
    """After 2 retries the FrameTimeout names the microscope; earlier frames stay in the file."""
    rig, writer, acq, events = setup(tmp_path)

    def lose_the_camera(record: FrameRecord, _pixels: Any) -> None:
        if (record.position, record.channel) == ("chamber 1", "live"):
            rig.scope.camera_lost()

    acq.frame_listeners.append(lose_the_camera)
    with pytest.raises(FrameTimeout) as info:
        acq.acquire(0.0, {})
    close(writer)
    assert str(info.value) == (
        "scope: no frame of c4 / brightfield in 3 tries; "
        "last: cam: no frame within 1.005 s of the trigger (lost)"
    )
    assert isinstance(info.value.__cause__, FrameTimeout)
    assert [e[1:3] for e in events] == [("scope", "frame_lost")] * 2
    assert [e[3] for e in events] == [lost_message("c4 / brightfield", k) for k in (1, 2)]
    # the tries are one frame timeout apart
    assert events[1][0] - events[0][0] == pytest.approx(BRIGHTFIELD_TIMEOUT_S)
    with open_run(tmp_path / "run.h5") as rf:
        counts = {(s.position, s.channel): s.n_frames for s in img.image_stacks(rf)}
    assert counts == {
        ("chamber 1", "brightfield"): 1,
        ("chamber 1", "live"): 1,
        ("c4", "brightfield"): 0,
        ("c4", "live"): 0,
    }


def test_a_camera_back_before_the_retries_run_out_completes_the_time_point(tmp_path):
    rig, writer, acq, events = setup(tmp_path)
    rig.scope.camera_lost()

    def operator(*event: Any) -> None:
        events.append(event)
        if len(events) == 2:
            rig.scope.camera_ok()

    acq.on_event = operator
    summary = acq.acquire(0.0, {})
    close(writer)
    assert (summary.frames, summary.frames_lost) == (FRAMES, 2)
    assert [e[3] for e in events] == [lost_message("chamber 1 / brightfield", k) for k in (1, 2)]


def test_the_retries_count_per_frame(tmp_path):
    """With one retry, two frames lost once each still complete the time point."""
    rig, writer, acq, events = setup(tmp_path, frame_retries=1)
    rig.scope.drop_frame()

    def drop_another(record: FrameRecord, _pixels: Any) -> None:
        if record.position == "chamber 1" and record.channel == "live":
            rig.scope.drop_frame()

    acq.frame_listeners.append(drop_another)
    summary = acq.acquire(0.0, {})
    close(writer)
    assert (summary.frames, summary.frames_lost) == (FRAMES, 2)
    assert [e[3] for e in events] == [
        lost_message("chamber 1 / brightfield", 1, of=1),
        lost_message("c4 / brightfield", 1, of=1),
    ]


def test_no_retries_fails_at_the_first_loss(tmp_path):
    rig, writer, acq, events = setup(tmp_path, frame_retries=0)
    rig.scope.drop_frame()
    with pytest.raises(
        FrameTimeout, match=r"^scope: no frame of chamber 1 / brightfield in 1 try;"
    ):
        acq.acquire(0.0, {})
    close(writer)
    assert events == []


@pytest.mark.parametrize("retries", [-1, 1.5, True])
def test_frame_retries_must_be_a_count(tmp_path, retries):
    rig = make_rig()
    with pytest.raises(ValueError, match="frame_retries must be an integer >= 0"):
        Acquisition(
            rig.microscope,
            make_plan(rig),
            make_writer(tmp_path / "run.h5"),
            clock=rig.clock,
            frame_retries=retries,
        )
