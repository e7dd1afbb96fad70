"""Camera streams into the run file: a bounded ring of frame buffers that never blocks the camera.

A :class:`FrameStream` sits between a camera (live view, fast recording) and the run-file
writer. The camera offers each frame; if a pre-allocated buffer is free, the frame is copied
into it and goes on to the file; if all buffers are still waiting for the disk, the frame is
*dropped*: counted, and reported in the run file's ``/events`` as ``frames_dropped`` (one
event per burst, at most one per ``drop_event_interval_s``, and a final total at
:meth:`FrameStream.close`). Nothing is lost silently, and the camera never waits for the disk.

Thread topology::

    camera thread ──offer()──► ring of `capacity_frames` pre-allocated buffers
        (copies the frame into a free buffer, or drops it; never waits)
            │ uncompressed: the camera thread lends the buffer to the writer
            │ compressed:   a slot number goes to the compression thread
            ▼
    compression thread "framestream-compress:<path>" (only for compressed streams)
        (Blosc2-LZ4 encodes the buffer, lends the encoded chunk to the writer)
            ▼
    RunFileWriter queue ──► writer thread "runfile-writer:<file>" (owns h5py)
        (writes the chunk with write_direct_chunk, then hands the buffer back to the ring)

* **Camera (producer) thread**: :meth:`FrameStream.offer` validates the frame, takes a free
  buffer under a lock held for microseconds, copies the frame in (``np.copyto``, ~0.6 ms per
  8 MiB frame, perf-limits §1) and queues it. It never waits for the disk or for another
  thread's work. One producer thread per stream (offers from several threads are safe but
  their frame order is then the order in which they took the lock).
* **Compression thread** (compressed streams only): encodes with one Blosc thread by default,
  so the writer keeps the other core (this machine has two). The control (engine) thread
  never compresses.
* **Writer thread** (owned by :class:`~chipctl.runfile.RunFileWriter`): writes each frame as
  one HDF5 chunk (:mod:`chipctl.runfile.framestore`) and one row of per-frame metadata, and
  returns the buffer to the ring from its ``on_written`` callback.
* **Owner thread** (the session): creates the stream *before* ``writer.open()`` (it declares
  its datasets, which SWMR forbids later), and calls :meth:`FrameStream.close` *before*
  ``writer.close()``; ``close`` waits until every accepted frame is in the file.

Memory is bounded by the ring: at most ``capacity_frames`` frames (plus as many compressed
chunks) exist between camera and disk, whatever the disk does. Size the ring for the longest
writer stall to ride out: e.g. a periodic fsync of a second's worth of 8 MiB frames can stall
the writer for ~0.3-0.7 s here, i.e. 60-150 frames at 200 fps (perf-limits §2a, §2f).

Run-file layout of a stream at ``path`` (e.g. ``/images/live``):

* ``<path>/frames``: the frames, ``(n, height, width)``, one chunk per frame;
* ``<path>/meta``: a table with one row per written frame: ``frame_number`` (the 0-based
  number of the offer, so dropped frames show as gaps) and one float64 column per declared
  metadata quantity (NaN where an offer did not give it).
"""

from __future__ import annotations

import functools
import math
import queue
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from chipctl.errors import RunFileError
from chipctl.runfile.framestore import Compression, FrameEncoder
from chipctl.runfile.writer import RunFileWriter
from drivers.clock import Clock, RealClock

__all__ = [
    "EVENT_FRAMES_DROPPED",
    "EVENT_STREAM_CLOSED",
    "FRAME_NUMBER_COLUMN",
    "FrameStream",
    "StreamCounters",
]

FRAME_NUMBER_COLUMN: Final = "frame_number"
"""Metadata column holding the 0-based offer number of each written frame."""

EVENT_FRAMES_DROPPED: Final = "frames_dropped"
"""Event kind of a drop report (a burst's count, and the total at close)."""
EVENT_STREAM_CLOSED: Final = "stream_closed"
"""Event kind of the counters recorded when a stream closes."""

_DRAIN_POLL_S: Final = 0.05
_STOP: Final = -1


@dataclass(frozen=True)
class StreamCounters:
    """A consistent snapshot of a stream's counters.

    Attributes:
        offered: frames passed to :meth:`FrameStream.offer`.
        written: frames in the run file (handed back by the writer thread).
        dropped: frames refused because every buffer was in use.
        in_flight: accepted frames not yet written (``offered - dropped - written`` while
            the stream is healthy).
    """

    offered: int
    written: int
    dropped: int
    in_flight: int


class FrameStream:
    """A bounded, never-blocking path from a camera thread into the run file.

    See the module docstring for the thread topology and the file layout.

    Args:
        writer: the run-file writer, not yet opened (the stream declares its datasets).
        path: the stream's group in the run file, e.g. ``"/images/live"``.
        shape: the shape of one frame, e.g. ``(2048, 2048)``.
        dtype: the pixel dtype stored (offered frames must cast to it safely).
        units: the pixel units, e.g. ``"ADU"``.
        capacity_frames: the number of pre-allocated frame buffers (the bound of the queue).
        metadata_units: per-frame metadata quantities -> units, e.g.
            ``{"t_s": "s", "exposure_ms": "ms"}``; each becomes a float64 column.
        compression: how frames are stored; compressed streams start a compression thread.
        compression_nthreads: Blosc threads used by the compression thread.
        flush_every_frames: also flush the frame stack every that many frames (see
            :meth:`RunFileWriter.declare_frames`).
        source: the ``source`` of this stream's events; by default ``stream:<path>``.
        clock: timestamps the events and paces their rate; by default real time.
        drop_event_interval_s: the shortest time between two ``frames_dropped`` events.

    Raises:
        ValueError: a bad argument, a path the writer refuses, or a compression whose
            packages are missing.
        RunFileError: the writer is already open.
    """

    def __init__(
        self,
        writer: RunFileWriter,
        path: str,
        *,
        shape: tuple[int, ...],
        dtype: npt.DTypeLike,
        units: str,
        capacity_frames: int,
        metadata_units: Mapping[str, str] | None = None,
        compression: Compression | str = Compression.NONE,
        compression_nthreads: int = 1,
        flush_every_frames: int | None = None,
        source: str | None = None,
        clock: Clock | None = None,
        drop_event_interval_s: float = 1.0,
    ) -> None:
        if capacity_frames < 1:
            raise ValueError(f"capacity_frames must be >= 1, got {capacity_frames}")
        if not (math.isfinite(drop_event_interval_s) and drop_event_interval_s >= 0):
            raise ValueError(f"drop_event_interval_s must be >= 0, got {drop_event_interval_s}")
        self._shape = tuple(int(n) for n in shape)
        self._dtype: np.dtype[Any] = np.dtype(dtype)
        self._capacity = int(capacity_frames)
        self._quantities = tuple(metadata_units or {})
        if FRAME_NUMBER_COLUMN in self._quantities:
            raise ValueError(f"metadata name {FRAME_NUMBER_COLUMN!r} is reserved")
        self._index = {q: i for i, q in enumerate(self._quantities)}
        self._compression = Compression(compression)
        self._encoder = FrameEncoder(
            self._shape, self._dtype, self._compression, nthreads=compression_nthreads
        )
        base = path.rstrip("/")
        self.frames_path = f"{base}/frames"
        self.meta_path = f"{base}/meta"
        writer.declare_frames(
            self.frames_path,
            self._shape,
            self._dtype,
            units,
            compression=self._compression,
            flush_every_frames=flush_every_frames,
        )
        columns: dict[str, tuple[npt.DTypeLike, str]] = {FRAME_NUMBER_COLUMN: (np.int64, "")}
        for quantity, quantity_units in (metadata_units or {}).items():
            columns[quantity] = (np.float64, quantity_units)
        writer.declare_table(self.meta_path, columns)
        self._writer = writer
        self._source = source if source is not None else f"stream:{base}"
        self._clock: Clock = clock if clock is not None else RealClock()
        self._event_interval_s = float(drop_event_interval_s)

        # The ring: every page touched now, so no frame pays a first touch (perf-limits §1).
        self._buffers = np.empty((self._capacity, *self._shape), self._dtype)
        self._buffers.fill(0)
        self._numbers = np.zeros(self._capacity, np.int64)
        self._values = np.full((self._capacity, len(self._quantities)), math.nan)
        self._release_slot = [
            functools.partial(self._on_written, slot) for slot in range(self._capacity)
        ]

        self._cond = threading.Condition()
        self._free = list(range(self._capacity - 1, -1, -1))
        self._offered = 0
        self._written = 0
        self._dropped = 0
        self._lost = 0  # accepted, but never written because a thread failed
        self._closed = False
        self._error: BaseException | None = None
        # Drops not reported yet, for the rate-limited frames_dropped events.
        self._unreported = 0
        self._unreported_first = 0
        self._unreported_last = 0
        self._unreported_bursts = 0
        self._burst_open = False
        self._burst_start_s = 0.0
        self._last_report_s = -math.inf

        self._work: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._compressor: threading.Thread | None = None
        if self._compression is not Compression.NONE:
            self._compressor = threading.Thread(
                target=self._compress_loop, name=f"framestream-compress:{base}", daemon=True
            )
            self._compressor.start()

    # -- counters ---------------------------------------------------------------------------

    @property
    def capacity_frames(self) -> int:
        """The number of frame buffers (the queue's bound)."""
        return self._capacity

    @property
    def offered(self) -> int:
        """Frames offered so far."""
        return self._offered

    @property
    def written(self) -> int:
        """Frames in the run file so far."""
        return self._written

    @property
    def dropped(self) -> int:
        """Frames dropped so far because every buffer was in use."""
        return self._dropped

    def counters(self) -> StreamCounters:
        """Return a consistent snapshot of the counters."""
        with self._cond:
            return self._counters()

    def _counters(self) -> StreamCounters:
        in_flight = self._offered - self._dropped - self._written - self._lost
        return StreamCounters(self._offered, self._written, self._dropped, in_flight)

    # -- producer side ----------------------------------------------------------------------

    def offer(self, frame: npt.ArrayLike, metadata: Mapping[str, float] | None = None) -> bool:
        """Queue one frame for the run file, or drop it if every buffer is in use.

        Never waits for the disk: the cost is a lock held for microseconds and one copy of
        the frame. The caller may reuse ``frame`` as soon as this returns.

        Args:
            frame: the pixels, of the stream's shape; any dtype that casts safely to the
                stream's (e.g. uint8 into uint16).
            metadata: values of declared quantities (missing ones are stored as NaN).

        Returns:
            True if the frame was queued, False if it was dropped (and counted).

        Raises:
            ValueError: a frame of the wrong shape or dtype, or an undeclared quantity.
            RunFileError: the stream is closed, or the writer or compression thread failed.
        """
        pixels = np.asarray(frame)
        if pixels.shape != self._shape:
            raise ValueError(f"{self.frames_path}: frame shape {pixels.shape} != {self._shape}")
        if not np.can_cast(pixels.dtype, self._dtype, casting="safe"):
            raise ValueError(f"{self.frames_path}: frame dtype {pixels.dtype} != {self._dtype}")
        row = self._metadata_row(metadata)
        now_s = self._clock.now_s()
        report: str | None = None
        with self._cond:
            self._check_usable()
            number = self._offered
            self._offered += 1
            if self._free:
                slot = self._free.pop()
                self._burst_open = False
                report = self._drop_report(now_s, burst_over=True)
            else:
                slot = -1
                self._note_drop(number, now_s)
                report = self._drop_report(now_s, burst_over=False)
        if report is not None:
            self._writer.event(now_s, self._source, EVENT_FRAMES_DROPPED, report)
        if slot < 0:
            return False
        np.copyto(self._buffers[slot], pixels, casting="safe")
        self._numbers[slot] = number
        self._values[slot] = row
        if self._compressor is not None:
            self._work.put(slot)
        else:
            self._submit(slot, self._buffers[slot])
        return True

    def wait_for_slot(self, timeout_s: float) -> bool:
        """Wait until a buffer is free (for producers that prefer waiting to dropping).

        A camera thread should not call this; a replay or a benchmark producer may.

        Returns:
            True if a buffer is free, False after ``timeout_s`` or if the stream closed.
        """
        with self._cond:
            self._cond.wait_for(
                lambda: bool(self._free) or self._closed or self._error is not None,
                timeout=timeout_s,
            )
            return bool(self._free) and not self._closed

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until every accepted frame is in the run file.

        Returns:
            True if nothing is in flight, False after ``timeout_s``.

        Raises:
            RunFileError: the writer or the compression thread failed.
        """
        deadline_s = RealClock().now_s() + timeout_s
        with self._cond:
            while self._counters().in_flight:
                self._raise_if_failed()
                remaining_s = deadline_s - RealClock().now_s()
                if remaining_s <= 0:
                    return False
                self._cond.wait(min(remaining_s, _DRAIN_POLL_S))
            self._raise_if_failed()
            return True

    def _metadata_row(self, metadata: Mapping[str, float] | None) -> list[float]:
        row = [math.nan] * len(self._quantities)
        for quantity, value in (metadata or {}).items():
            i = self._index.get(quantity)
            if i is None:
                raise ValueError(
                    f"{self.frames_path}: undeclared metadata {quantity!r} "
                    f"(declared: {list(self._quantities)})"
                )
            row[i] = float(value)
        return row

    def _check_usable(self) -> None:
        if self._closed:
            raise RunFileError(f"{self.frames_path}: frame stream is closed")
        self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        error = self._error if self._error is not None else self._writer.failure
        if error is not None:
            raise RunFileError(
                f"{self.frames_path}: frame stream failed: {type(error).__name__}: {error}"
            ) from error

    # -- drop accounting (called with the lock held) ----------------------------------------

    def _note_drop(self, number: int, now_s: float) -> None:
        self._dropped += 1
        if not self._unreported:
            self._unreported_first = number
            self._burst_start_s = now_s
            self._unreported_bursts = 0
        if not self._burst_open or not self._unreported:
            self._unreported_bursts += 1
        self._burst_open = True
        self._unreported += 1
        self._unreported_last = number

    def _drop_report(self, now_s: float, *, burst_over: bool) -> str | None:
        """Return the text of a frames_dropped event if one is due now, else None."""
        if not self._unreported or now_s - self._last_report_s < self._event_interval_s:
            return None
        if not burst_over and now_s - self._burst_start_s < self._event_interval_s:
            return None  # a burst still going on is reported once it has lasted an interval
        return self._take_report(now_s, "the writer was behind")

    def _take_report(self, now_s: float, why: str) -> str:
        bursts = self._unreported_bursts
        text = (
            f"{self._unreported} frames dropped (frame numbers {self._unreported_first}.."
            f"{self._unreported_last}, {bursts} burst{'s' if bursts != 1 else ''}): {why}, "
            f"all {self._capacity} buffers in use; {self._dropped} of {self._offered} "
            "offered dropped so far"
        )
        self._unreported = 0
        self._last_report_s = now_s
        return text

    # -- hand-over to the writer ------------------------------------------------------------

    def _submit(self, slot: int, chunk: np.ndarray[Any, Any] | bytes) -> None:
        """Lend ``chunk`` (encoded from buffer ``slot``) and its metadata row to the writer."""
        try:
            self._writer.append_encoded_frame(self.frames_path, chunk, self._release_slot[slot])
        except BaseException:
            with self._cond:
                self._lost += 1
                self._free.append(slot)
                self._cond.notify_all()
            raise
        rows: dict[str, Any] = {FRAME_NUMBER_COLUMN: self._numbers[slot : slot + 1]}
        for i, quantity in enumerate(self._quantities):
            rows[quantity] = self._values[slot, i : i + 1]
        self._writer.append_rows(self.meta_path, rows)

    def _on_written(self, slot: int) -> None:
        """Writer thread: the chunk of ``slot`` is in the file; recycle the buffer."""
        with self._cond:
            self._written += 1
            self._free.append(slot)
            self._cond.notify_all()

    def _compress_loop(self) -> None:
        while True:
            slot = self._work.get()
            if slot == _STOP:
                return
            try:
                self._submit(slot, self._encoder.encode(self._buffers[slot]))
            except BaseException as exc:
                with self._cond:
                    if self._error is None:
                        self._error = exc
                    self._cond.notify_all()
                # Account for what is still queued: it can no longer reach the file.
                while (slot := self._work.get()) != _STOP:
                    with self._cond:
                        self._lost += 1
                        self._free.append(slot)
                        self._cond.notify_all()
                return

    # -- lifecycle --------------------------------------------------------------------------

    def close(self, timeout_s: float | None = None) -> StreamCounters:
        """Stop accepting frames, wait until every accepted frame is written, report drops.

        Records any drops not yet reported, then a final ``frames_dropped`` event with the
        total (if any frame was dropped) and a ``stream_closed`` event with every counter.
        Call it before the writer's ``close``. Calling it again returns the counters.

        Args:
            timeout_s: the longest wait for the writer to drain; None waits as long as the
                writer thread is healthy.

        Returns:
            The final counters.

        Raises:
            RunFileError: the writer or the compression thread failed (frames accepted but
                not written are in the message), or the drain timed out.
        """
        with self._cond:
            if self._closed:
                return self._counters()
            self._closed = True
            self._cond.notify_all()
        if self._compressor is not None:
            self._work.put(_STOP)
            self._compressor.join()
        deadline_s = math.inf if timeout_s is None else RealClock().now_s() + timeout_s
        with self._cond:
            while self._counters().in_flight:
                error = self._error if self._error is not None else self._writer.failure
                if error is not None:
                    counters = self._counters()
                    raise RunFileError(
                        f"{self.frames_path}: {counters.in_flight} accepted frames not written: "
                        f"{type(error).__name__}: {error}"
                    ) from error
                remaining_s = deadline_s - RealClock().now_s()
                if remaining_s <= 0:
                    raise RunFileError(
                        f"{self.frames_path}: {self._counters().in_flight} frames still "
                        f"unwritten after {timeout_s} s"
                    )
                self._cond.wait(min(remaining_s, _DRAIN_POLL_S))
            self._raise_if_failed()
            now_s = self._clock.now_s()
            reports: list[tuple[str, str]] = []
            if self._unreported:
                self._burst_open = False
                reports.append((EVENT_FRAMES_DROPPED, self._take_report(now_s, "at close")))
            counters = self._counters()
        if counters.dropped:
            reports.append(
                (
                    EVENT_FRAMES_DROPPED,
                    f"total: {counters.dropped} of {counters.offered} offered frames dropped",
                )
            )
        reports.append(
            (
                EVENT_STREAM_CLOSED,
                f"offered {counters.offered}, written {counters.written}, "
                f"dropped {counters.dropped}",
            )
        )
        for kind, text in reports:
            self._writer.event(now_s, self._source, kind, text)
        return counters

    def __enter__(self) -> FrameStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
