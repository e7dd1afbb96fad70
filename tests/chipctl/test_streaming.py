"""FrameStream: bounded ring between a camera thread and the run-file writer.

Timing is never forced with sleeps: a "gated" writer blocks its own writer thread inside the
callback that returns a buffer to the ring, until the test releases it. While it is blocked
the ring cannot drain, so the test knows exactly which offers must be dropped.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from chipctl.runfile import RunFileError, RunFileWriter, open_run
from chipctl.runfile.framestore import Compression, compression_available, register_filters
from chipctl.streaming import FRAME_NUMBER_COLUMN, FrameStream
from drivers.clock import VirtualClock

WAIT_S = 10.0  # generous bound on real waits for the writer thread; never reached when green
SHAPE = (24, 32)


class GatedWriter(RunFileWriter):
    """A RunFileWriter whose writer thread can be held after writing a frame.

    ``arm()`` makes the next frame's ``on_written`` callback (on the writer thread) signal
    ``entered`` and then wait for ``release()``: the frame is in the file but its buffer is
    not back in the ring, and no later item of the writer's queue is processed.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.entered = threading.Event()
        self._released = threading.Event()
        self._armed = False
        self.fail_callbacks = False

    def arm(self) -> None:
        self.entered.clear()
        self._released.clear()
        self._armed = True

    def release(self) -> None:
        self._released.set()

    def wait_entered(self) -> None:
        assert self.entered.wait(WAIT_S), "writer thread never reached the gate"

    def append_encoded_frame(
        self,
        path: str,
        chunk: np.ndarray[Any, Any] | bytes,
        on_written: Callable[[], None] | None = None,
    ) -> None:
        def gated() -> None:
            if self.fail_callbacks:
                raise OSError("injected disk failure")
            if self._armed:
                self._armed = False
                self.entered.set()
                assert self._released.wait(WAIT_S), "test never released the writer"
            if on_written is not None:
                on_written()

        super().append_encoded_frame(path, chunk, gated)


def make_writer(path: Path, cls: type[RunFileWriter] = GatedWriter) -> Any:
    return cls(
        path,
        chipctl_version="test",
        simulated=True,
        seed=1,
        started_utc="2026-11-21T00:00:00Z",
        config_text="",
        protocol_text="",
        protocol_name="stream-test",
        telemetry={},
        fsync=False,
    )


def frames(n: int, seed: int = 0) -> np.ndarray[Any, Any]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 4096, size=(n, *SHAPE), dtype=np.uint16)


def stream_events(path: Path) -> list[tuple[str, str]]:
    with open_run(path) as run:
        return [(e.kind, e.message) for e in run.events() if e.source == "stream:/images/cam"]


def make_stream(writer: Any, capacity: int, **kw: Any) -> FrameStream:
    kw.setdefault("clock", VirtualClock())
    return FrameStream(
        writer,
        "/images/cam",
        shape=SHAPE,
        dtype=np.uint16,
        units="ADU",
        capacity_frames=capacity,
        metadata_units={"t_s": "s", "exposure_ms": "ms"},
        **kw,
    )


def test_no_frame_loss_when_the_writer_keeps_up(tmp_path: Path) -> None:
    path = tmp_path / "run.h5"
    writer = make_writer(path)
    stream = make_stream(writer, capacity=4)
    data = frames(64)
    writer.open()
    for start in range(0, len(data), 4):
        for i in range(start, start + 4):
            assert stream.offer(data[i], {"t_s": 0.1 * i, "exposure_ms": 20.0})
        assert stream.wait_idle(WAIT_S)  # the writer keeps up: the ring is empty again
    counters = stream.close()
    writer.close("completed", "")

    assert (counters.offered, counters.written, counters.dropped) == (64, 64, 0)
    with open_run(path) as run:
        stack = run.frames("/images/cam/frames")
        assert stack.shape == (64, *SHAPE)
        np.testing.assert_array_equal(stack[()], data)  # pixels intact
        assert stack.attrs["units"] == "ADU"
        meta = run.table("/images/cam/meta")
        np.testing.assert_array_equal(meta[FRAME_NUMBER_COLUMN], np.arange(64))
        np.testing.assert_allclose(meta["t_s"], 0.1 * np.arange(64))
        assert run.table_units("/images/cam/meta")["exposure_ms"] == "ms"
    events = stream_events(path)
    assert events == [("stream_closed", "offered 64, written 64, dropped 0")]


def test_dropped_frames_are_counted_and_recorded(tmp_path: Path) -> None:
    path = tmp_path / "run.h5"
    writer = make_writer(path)
    stream = make_stream(writer, capacity=3)
    data = frames(9)
    writer.open()
    writer.arm()
    assert all(stream.offer(data[i], {"t_s": float(i)}) for i in range(3))
    writer.wait_entered()  # frame 0 is written, its buffer is held: the ring is full
    assert [stream.offer(data[i], {"t_s": float(i)}) for i in range(3, 8)] == [False] * 5
    counters = stream.counters()
    assert (counters.offered, counters.written, counters.dropped) == (8, 0, 5)
    assert counters.in_flight == 3
    writer.release()
    assert stream.wait_idle(WAIT_S)
    assert stream.offer(data[8], {"t_s": 8.0})  # the burst is over: one event with its count
    counters = stream.close()
    writer.close("completed", "")

    assert (counters.offered, counters.written, counters.dropped) == (9, 4, 5)
    assert counters.written == counters.offered - counters.dropped
    with open_run(path) as run:
        kept = [0, 1, 2, 8]
        np.testing.assert_array_equal(run.frames("/images/cam/frames")[()], data[kept])
        meta = run.table("/images/cam/meta")
        np.testing.assert_array_equal(meta[FRAME_NUMBER_COLUMN], kept)  # drops show as gaps
        np.testing.assert_array_equal(meta["t_s"], [0.0, 1.0, 2.0, 8.0])
        assert np.isnan(meta["exposure_ms"]).all()  # never given: NaN, not 0
    events = stream_events(path)
    assert [kind for kind, _ in events] == ["frames_dropped", "frames_dropped", "stream_closed"]
    assert events[0][1].startswith("5 frames dropped (frame numbers 3..7, 1 burst)")
    assert events[1][1] == "total: 5 of 9 offered frames dropped"
    assert events[2][1] == "offered 9, written 4, dropped 5"


def test_drop_events_are_rate_limited_per_burst(tmp_path: Path) -> None:
    path = tmp_path / "run.h5"
    clock = VirtualClock()
    writer = make_writer(path)
    stream = make_stream(writer, capacity=1, clock=clock, drop_event_interval_s=1.0)
    data = frames(1)[0]
    writer.open()

    def burst(t_s: float, n_dropped: int) -> None:
        clock.sleep_until_s(t_s)
        writer.arm()
        assert stream.offer(data)  # may report the drops before it
        writer.wait_entered()
        assert not any(stream.offer(data) for _ in range(n_dropped))
        writer.release()
        assert stream.wait_idle(WAIT_S)

    burst(0.0, 3)  # frames 1..3 dropped, reported when frame 4 is accepted
    burst(0.5, 2)  # frames 5, 6: reported later (the last report was at 0.5 s)
    burst(1.0, 1)  # frame 8
    clock.sleep_until_s(1.6)
    assert stream.offer(data)  # 1.1 s after the last report: frames 5..8 in one event
    assert stream.wait_idle(WAIT_S)
    clock.sleep_until_s(2.1)
    counters = stream.close()
    writer.close("completed", "")

    assert counters.dropped == 6
    events = stream_events(path)
    dropped = [text for kind, text in events if kind == "frames_dropped"]
    assert len(dropped) == 3
    assert dropped[0].startswith("3 frames dropped (frame numbers 1..3, 1 burst)")
    assert dropped[1].startswith("3 frames dropped (frame numbers 5..8, 2 bursts)")
    assert dropped[2] == "total: 6 of 10 offered frames dropped"
    with open_run(path) as run:
        times = [e.t_s for e in run.events() if e.kind == "frames_dropped"]
    assert times == [0.5, 1.6, 2.1]


def test_a_burst_that_goes_on_is_reported_once_per_interval(tmp_path: Path) -> None:
    path = tmp_path / "run.h5"
    clock = VirtualClock()
    writer = make_writer(path)
    stream = make_stream(writer, capacity=1, clock=clock, drop_event_interval_s=1.0)
    data = frames(1)[0]
    writer.open()
    writer.arm()
    assert stream.offer(data)
    writer.wait_entered()  # the disk "stalls" for good
    for _ in range(24):  # 3 s of drops at 8 frames/s (binary-exact times)
        clock.advance_s(0.125)
        assert not stream.offer(data)
    writer.release()
    stream.close()
    writer.close("completed", "")
    dropped = [text for kind, text in stream_events(path) if kind == "frames_dropped"]
    # reported at 1.125 s (frames 1..9, the burst has lasted 1 s), at 2.25 s (10..18: 1 s
    # since the last report and since the first unreported drop), the rest at close
    assert [text.split(" (")[0] for text in dropped[:3]] == [
        "9 frames dropped",
        "9 frames dropped",
        "6 frames dropped",
    ]
    assert dropped[3] == "total: 24 of 25 offered frames dropped"


def test_close_drains_every_accepted_frame(tmp_path: Path) -> None:
    path = tmp_path / "run.h5"
    writer = make_writer(path)
    stream = make_stream(writer, capacity=4)
    data = frames(4)
    writer.open()
    writer.arm()
    for frame in data:
        assert stream.offer(frame)
    writer.wait_entered()
    assert stream.counters().in_flight == 4
    result: list[Any] = []
    closer = threading.Thread(target=lambda: result.append(stream.close()))
    closer.start()
    writer.release()
    closer.join(WAIT_S)
    assert not closer.is_alive()
    counters = result[0]
    assert (counters.written, counters.in_flight, counters.dropped) == (4, 0, 0)
    with pytest.raises(RunFileError, match="closed"):
        stream.offer(data[0])
    assert stream.close() == counters  # a second close only reports
    writer.close("completed", "")
    with open_run(path) as run:
        np.testing.assert_array_equal(run.frames("/images/cam/frames")[()], data)


def test_bad_offers_raise_in_the_caller(tmp_path: Path) -> None:
    writer = make_writer(tmp_path / "run.h5")
    stream = make_stream(writer, capacity=2)
    with pytest.raises(RunFileError, match="not open"):
        stream.offer(frames(1)[0])  # the writer is not open yet: the buffer comes back
    writer.open()
    with pytest.raises(ValueError, match="shape"):
        stream.offer(np.zeros((2, 2), np.uint16))
    with pytest.raises(ValueError, match="dtype"):
        stream.offer(np.zeros(SHAPE, np.float64))
    with pytest.raises(ValueError, match="undeclared metadata"):
        stream.offer(frames(1)[0], {"gain_db": 1.0})
    assert stream.offer(np.full(SHAPE, 7, np.uint8))  # uint8 casts safely into uint16
    assert stream.offer(np.full(SHAPE, 8, np.uint8))  # both buffers usable again
    counters = stream.close()
    writer.close("completed", "")
    assert (counters.offered, counters.written, counters.dropped, counters.in_flight) == (
        3,
        2,
        0,
        0,
    )


def test_a_writer_failure_surfaces_at_close(tmp_path: Path) -> None:
    writer = make_writer(tmp_path / "run.h5")
    stream = make_stream(writer, capacity=2)
    writer.open()
    writer.fail_callbacks = True
    assert stream.offer(frames(1)[0])
    with pytest.raises(RunFileError, match="injected disk failure"):
        stream.close(timeout_s=WAIT_S)
    with pytest.raises(RunFileError):
        writer.close("failed", "")


def test_stream_must_be_declared_before_open(tmp_path: Path) -> None:
    writer = make_writer(tmp_path / "run.h5")
    writer.open()
    with pytest.raises(RunFileError, match="after open"):
        make_stream(writer, capacity=2)
    writer.close("completed", "")


@pytest.mark.skipif(not compression_available(), reason="needs hdf5plugin and blosc2")
@pytest.mark.parametrize("compression", [Compression.LZ4, Compression.LZ4_BITSHUFFLE])
def test_compressed_stream_round_trip(tmp_path: Path, compression: Compression) -> None:
    path = tmp_path / "run.h5"
    writer = make_writer(path)
    stream = make_stream(writer, capacity=3, compression=compression)
    rng = np.random.default_rng(3)
    data = (rng.poisson(100, size=(12, *SHAPE)) + 100).astype(np.uint16)  # compressible
    writer.open()
    writer.arm()
    assert all(stream.offer(f) for f in data[:3])
    writer.wait_entered()
    assert not stream.offer(data[3])  # the compression thread does not grow the bound
    writer.release()
    for frame in data[4:]:
        assert stream.wait_for_slot(WAIT_S)
        assert stream.offer(frame)
    counters = stream.close()
    writer.close("completed", "")
    assert (counters.written, counters.dropped) == (11, 1)
    assert register_filters()
    with open_run(path) as run:
        stack = run.frames("/images/cam/frames")
        assert stack.attrs["compression"] == compression.value
        np.testing.assert_array_equal(stack[()], np.delete(data, 3, axis=0))
        _, chunk = stack.id.read_direct_chunk((0, 0, 0))
        assert len(chunk) < data[0].nbytes  # stored compressed


def test_live_reader_sees_frames_flushed_every_n(tmp_path: Path) -> None:
    path = tmp_path / "run.h5"
    writer = make_writer(path)
    stream = make_stream(writer, capacity=8, flush_every_frames=2)
    data = frames(5)
    writer.open()
    for frame in data:
        assert stream.offer(frame)
    assert stream.wait_idle(WAIT_S)
    with open_run(path) as live:  # SWMR reader while the writer is still open
        assert live.status == "running"
        stack = live.frames("/images/cam/frames")
        assert stack.shape[0] >= 4  # flushed after frames 2 and 4, at the latest
        np.testing.assert_array_equal(stack[:4], data[:4])
    stream.close()
    writer.close("completed", "")
