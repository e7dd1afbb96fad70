"""Tumoroid analysis while a run acquires: the per-frame pipeline and its worker thread.

:class:`Pipeline` turns frames into results, with no threads: it segments each brightfield
frame, measures each stain frame inside the brightfield outlines of the same position and
time point, and when the time point of a position is complete it tracks the tumoroids
and computes their metrics. When every field of a chamber (positions ``"chamber 3a"``,
``"chamber 3b"``... see :func:`chipctl.chip.field_name`; a one-field chamber is its own
position) is in, it sums them into the chamber's metrics and returns a
:class:`ChamberResult`: the chamber's row is for the whole chamber, its tumoroids keep
their field as ``position`` (tracks are per field).
:func:`chipctl.analysis.images.analyze_images` feeds it the stored frames of a finished run;
:class:`LiveAnalysis` feeds it frames as they are taken. Same code, same numbers.

**Time points.** A frame belongs to the time point ``(position, t_point_s)``. The
acquisition images one position at a time, all its channels, then moves on, so a time point
of a position is complete when every channel the analysis was told about has arrived,
when a frame of another time point or position arrives, or at :meth:`Pipeline.flush`
(:meth:`LiveAnalysis.end_time_point`, :meth:`LiveAnalysis.stop`). A chamber's time point
is complete when all its fields among the positions to analyse are, when a field of
another chamber or time point completes, or at a flush (fields of a chamber are imaged one
after the other: the microscope's positions are in chamber order). Stain frames wait for
their time point's brightfield frame (any channel order works); stain frames of a time
point without one are not analysed (counted in :attr:`Pipeline.unmatched_stain_frames`):
image brightfield with the stains.

**Thread topology of** :class:`LiveAnalysis`:

* the **engine thread** calls :meth:`LiveAnalysis.on_frame` (an
  :attr:`chipctl.acquisition.Acquisition.frame_listeners` entry) right after the frame went
  to the run-file writer. It appends a reference to the frame (no copy: the acquisition
  never reuses a frame array) to a bounded queue under a lock and returns, in a few
  microseconds. When ``max_queued_frames`` frames are waiting it drops the frame instead,
  and counts it (:meth:`LiveAnalysis.stats`): analysis never slows acquisition, and the
  frame is in the run file for ``chipctl analyze``. Under the virtual clock, frames come
  as fast as the simulator renders them, faster than they are analysed, and which ones
  are dropped would depend on the computer's speed; there ``wait_when_full=True`` makes
  ``on_frame`` wait for room instead (nothing real waits on a virtual clock), so the same
  seed gives the same ``/analysis`` tables.
* **one worker thread** (``analysis:<run file name>``) runs the :class:`Pipeline`, appends
  each result's rows to ``/analysis/tumoroids`` and ``/analysis/chambers`` (the writer's
  ``append_rows`` is thread-safe and never blocks), publishes the chamber values for
  :meth:`LiveAnalysis.latest` and calls ``on_result`` (for the GUI bridge; keep it short).
  An analysis error (a frame it cannot read, a failing ``on_result``) is counted,
  recorded as an ``/events`` row (the first :data:`MAX_ERROR_EVENTS`), and the worker goes
  on with the next frame.
* **any thread** may call :meth:`~LiveAnalysis.latest` and :meth:`~LiveAnalysis.stats`
  (both copy under a lock).

Lifecycle: construct, :meth:`~LiveAnalysis.declare` before the writer's ``open`` (SWMR:
tables are created up front), :meth:`~LiveAnalysis.start`, then frames; at the end
:meth:`~LiveAnalysis.stop` (drains the queue) before the writer's ``close``.

Values for protocols: :meth:`LiveAnalysis.latest` maps ``"<chamber>.<metric>"`` to the
newest value, e.g. ``"chamber 3.growth_rate_per_h"``, for the metrics of
``/analysis/chambers`` (``t_s``, ``t_point_s``, ``n_tumoroids``, ``total_area_um2``,
``total_volume_um3``, ``mean_diameter_um``, ``live_fraction``, ``growth_rate_per_h``).
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

import numpy as np
from numpy.typing import NDArray

from chipctl.analysis import metrics as met
from chipctl.analysis import segment as seg
from chipctl.analysis import tables
from chipctl.analysis.track import Tracker
from chipctl.chip import chamber_of

__all__ = [
    "AnalysisParams",
    "ChamberResult",
    "FrameLike",
    "LiveAnalysis",
    "LiveStats",
    "Pipeline",
]

#: Source name of the analysis's rows in ``/events``.
EVENT_SOURCE: Final = "analysis"
#: Errors recorded as events; later ones are only counted (a broken callback or a
#: failing disk must not flood the event table).
MAX_ERROR_EVENTS: Final = 20


class FrameLike(Protocol):
    """What the pipeline needs to know of a frame.

    :class:`chipctl.acquisition.FrameRecord` has it; so has
    :class:`chipctl.analysis.images.StoredFrame`.
    """

    @property
    def position(self) -> str:
        """The imaged position."""

    @property
    def channel(self) -> str:
        """The channel preset name."""

    @property
    def t_s(self) -> float:
        """Run time of the exposure."""

    @property
    def t_point_s(self) -> float:
        """The time point the frame belongs to."""

    @property
    def pixel_size_um(self) -> float | None:
        """The pixel at the sample, if known."""


@dataclass(frozen=True)
class AnalysisParams:
    """Everything that sets the analysis's numbers.

    Attributes:
        brightfield: segmentation parameters.
        stain: stain measurement parameters.
        max_track_gap: time points a tumoroid may be missed and keep its track id.
        growth_window_h: how far back the growth rate looks.
        growth_min_points: fewest time points that give a growth rate.
        pixel_size_um: pixel size for frames that do not carry one (None: such frames
            are an error).
    """

    brightfield: seg.BrightfieldParams = field(default_factory=seg.BrightfieldParams)
    stain: seg.StainParams = field(default_factory=seg.StainParams)
    max_track_gap: int = 2
    growth_window_h: float = 12.0
    growth_min_points: int = 3
    pixel_size_um: float | None = None


@dataclass(frozen=True)
class ChamberResult:
    """One chamber at one time point: its row and the rows of its tumoroids in every field."""

    chamber: tables.ChamberRow
    tumoroids: tuple[tables.TumoroidRow, ...]

    def values(self) -> dict[str, float]:
        """The chamber's numbers keyed ``"<position>.<metric>"``, as in ``latest()``."""
        row = self.chamber
        return {
            f"{row.position}.{name}": float(getattr(row, name))
            for name in tables.CHAMBER_COLUMNS
            if name != "position"
        }


@dataclass
class _Pending:
    role: str
    frame: FrameLike
    pixels: NDArray[Any]
    exposure_ms: float | None


@dataclass
class _OpenPoint:
    """The frames of one position and time point analysed so far."""

    position: str
    t_point_s: float
    t_s: float = math.nan
    segmentation: seg.Segmentation | None = None
    stains: dict[str, seg.StainSignal] = field(default_factory=dict)
    pending: list[_Pending] = field(default_factory=list)
    roles: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class _Field:
    """One position (a field of a chamber) at one time point, measured."""

    position: str
    t_s: float
    tumoroids: met.TumoroidMetrics
    areas: tuple[seg.LiveDeadArea, ...]  # one per tumoroid (NaN without stains)
    rows: tuple[tables.TumoroidRow, ...]


@dataclass
class _Pool:
    """The fields of one chamber measured so far at one time point."""

    chamber: str
    t_point_s: float
    fields: list[_Field] = field(default_factory=list)

    @property
    def positions(self) -> set[str]:
        """The fields already in."""
        return {f.position for f in self.fields}


class Pipeline:
    """Frames in, chamber results out (see the module docstring). Not thread-safe.

    Args:
        channels: the channels that make up a complete time point (unknown names are
            ignored); None: time points complete only when another begins, or at
            :meth:`flush`.
        params: analysis parameters.
        positions: the positions that will be imaged; a chamber's time point is complete
            as soon as all of its fields among them are in. None (or a field missing):
            when a field of another chamber or time point comes, or at :meth:`flush`.
    """

    def __init__(
        self,
        channels: Iterable[str] | None = None,
        params: AnalysisParams | None = None,
        positions: Iterable[str] | None = None,
    ) -> None:
        """Start with no positions seen."""
        self.params = params or AnalysisParams()
        roles = {seg.channel_role(c) for c in channels} if channels is not None else set()
        self._complete = frozenset(r for r in roles if r is not None)
        self._fields_of: dict[str, set[str]] = {}
        for position in positions or ():
            self._fields_of.setdefault(chamber_of(position), set()).add(position)
        self._trackers: dict[str, Tracker] = {}
        self._growth: dict[str, met.GrowthHistory] = {}
        self._pools: dict[str, _Pool] = {}
        self._open: dict[str, _OpenPoint] = {}
        #: frames whose channel is neither brightfield nor a known stain
        self.ignored_frames = 0
        #: stain frames of a time point without a brightfield frame
        self.unmatched_stain_frames = 0

    def add(
        self, frame: FrameLike, pixels: NDArray[Any], exposure_ms: float | None = None
    ) -> list[ChamberResult]:
        """Analyse one frame; return the results of the time points it completed.

        Args:
            frame: where and when the frame was taken.
            pixels: the frame.
            exposure_ms: its exposure (stains: their signal is divided by it).

        Raises:
            ValueError: a frame that cannot be analysed (not 2-D, no pixel size, a stain
                frame of another shape than its brightfield frame); one line naming the
                position and channel.
        """
        role = seg.channel_role(frame.channel)
        if role is None:
            self.ignored_frames += 1
            return []
        done = [
            result
            for position, point in list(self._open.items())
            if position != frame.position or point.t_point_s != frame.t_point_s
            for result in self._close(position)
        ]
        point = self._open.get(frame.position)
        if point is not None and role in point.roles:
            # a channel again in the same time point: a new round of imaging
            done += self._close(frame.position)
            point = None
        if point is None:
            point = _OpenPoint(frame.position, float(frame.t_point_s))
            self._open[frame.position] = point
        point.roles.add(role)
        try:
            self._take(point, _Pending(role, frame, pixels, exposure_ms))
        except ValueError as exc:
            raise ValueError(
                f"{frame.position} / {frame.channel} at {frame.t_s:g} s: {exc}"
            ) from None
        if self._complete and self._complete <= point.roles:
            done += self._close(frame.position)
        return done

    def flush(self) -> list[ChamberResult]:
        """Complete every open time point of every chamber; return their results."""
        done = [r for p in list(self._open) for r in self._close(p)]
        return done + [self._close_pool(c) for c in list(self._pools)]

    def _pixel_size(self, frame: FrameLike) -> float:
        px = frame.pixel_size_um
        if px is None or not math.isfinite(px):
            px = self.params.pixel_size_um
        if px is None:
            raise ValueError("the pixel size is unknown (give AnalysisParams.pixel_size_um)")
        return float(px)

    def _take(self, point: _OpenPoint, item: _Pending) -> None:
        if item.role == "brightfield":
            point.segmentation = seg.segment_brightfield(
                item.pixels, self._pixel_size(item.frame), self.params.brightfield
            )
            point.t_s = float(item.frame.t_s)
            pending, point.pending = point.pending, []
            for stain in pending:
                self._take(point, stain)
        elif point.segmentation is None:
            point.pending.append(item)
        else:
            point.stains[item.role] = seg.measure_stain(
                item.pixels,
                point.segmentation,
                exposure_ms=item.exposure_ms,
                params=self.params.stain,
            )

    def _close(self, position: str) -> list[ChamberResult]:
        """Measure one position's time point; return the chamber results it completed."""
        point = self._open.pop(position)
        if point.segmentation is None:
            self.unmatched_stain_frames += len(point.pending)
            return []
        measured = self._measure(point)
        chamber = chamber_of(position)
        done = [
            self._close_pool(c)
            for c, pool in list(self._pools.items())
            if c != chamber or pool.t_point_s != point.t_point_s or position in pool.positions
        ]
        pool = self._pools.setdefault(chamber, _Pool(chamber, point.t_point_s))
        pool.fields.append(measured)
        # a position that is not a field is the whole chamber
        expected = self._fields_of.get(chamber) or ({chamber} if chamber == position else None)
        if expected and expected <= pool.positions:
            done.append(self._close_pool(chamber))
        return done

    def _measure(self, point: _OpenPoint) -> _Field:
        """Track and measure the tumoroids of one position's time point."""
        segmentation = point.segmentation
        assert segmentation is not None
        tracker = self._trackers.get(point.position)
        if tracker is None:
            tracker = self._trackers[point.position] = Tracker(self.params.max_track_gap)
        tm = met.tumoroid_metrics(segmentation)
        ids = tracker.update(tm.centroid_x_um, tm.centroid_y_um, tm.area_um2)
        areas = seg.live_dead_areas(
            point.stains.get("live"),
            point.stains.get("dead"),
            segmentation.pixel_size_um,
            self.params.stain,
        )
        if not areas:
            areas = [seg.LiveDeadArea(math.nan, math.nan, math.nan)] * segmentation.n
        rows = tuple(
            tables.TumoroidRow(
                t_s=point.t_s,
                t_point_s=point.t_point_s,
                position=point.position,
                track_id=int(ids[i]),
                area_um2=float(tm.area_um2[i]),
                eq_diameter_um=float(tm.eq_diameter_um[i]),
                volume_um3=float(tm.volume_um3[i]),
                circularity=float(tm.circularity[i]),
                centroid_x_um=float(tm.centroid_x_um[i]),
                centroid_y_um=float(tm.centroid_y_um[i]),
                live_area_um2=areas[i].live_area_um2,
                dead_area_um2=areas[i].dead_area_um2,
                live_fraction=areas[i].live_fraction,
            )
            for i in np.argsort(ids, kind="stable")
        )
        return _Field(point.position, point.t_s, tm, tuple(areas), rows)

    def _close_pool(self, chamber: str) -> ChamberResult:
        """Sum up one chamber's fields at one time point into its row."""
        pool = self._pools.pop(chamber)
        tm = met.concat_tumoroids([f.tumoroids for f in pool.fields])
        areas = [a for f in pool.fields for a in f.areas]
        t_s = float(np.mean([f.t_s for f in pool.fields]))
        growth = self._growth.get(chamber)
        if growth is None:
            growth = self._growth[chamber] = met.GrowthHistory(
                self.params.growth_window_h * 3600.0, self.params.growth_min_points
            )
        rate = growth.add(t_s, float(tm.volume_um3.sum()), pool.t_point_s)
        cm = met.chamber_metrics(tm, areas, rate)
        row = tables.ChamberRow(
            t_s=t_s,
            t_point_s=pool.t_point_s,
            position=chamber,
            n_tumoroids=cm.n_tumoroids,
            total_area_um2=cm.total_area_um2,
            total_volume_um3=cm.total_volume_um3,
            mean_diameter_um=cm.mean_diameter_um,
            live_fraction=cm.live_fraction,
            growth_rate_per_h=cm.growth_rate_per_h,
        )
        return ChamberResult(row, tuple(r for f in pool.fields for r in f.rows))


# ---- live ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LiveStats:
    """Counters of a :class:`LiveAnalysis`.

    Attributes:
        received: frames given to :meth:`LiveAnalysis.on_frame`.
        skipped: frames dropped because the queue was full (or left at a timed-out stop).
        analysed: frames the pipeline took.
        ignored: frames of other positions or channels, and stain frames without a
            brightfield frame in their time point.
        errors: frames the analysis failed on, and failed row appends or ``on_result``
            calls (the first :data:`MAX_ERROR_EVENTS` recorded in ``/events``).
        results: chamber results produced.
        queued: frames waiting now.
        last_error: the last error's message ("" if none).
    """

    received: int
    skipped: int
    analysed: int
    ignored: int
    errors: int
    results: int
    queued: int
    last_error: str


#: How often a producer waiting for room checks that the worker is still alive.
_WAIT_CHECK_S: Final = 1.0
_FLUSH: Final = "flush"
_STOP: Final = "stop"


class LiveAnalysis:
    """Analyse frames on one worker thread while the run acquires (module docstring).

    Args:
        writer: the run file's writer (a :class:`chipctl.runfile.RunFileWriter`; tables
            are declared and appended, and errors recorded, through it).
        positions: the positions to analyse (frames of others are ignored).
        channels: the channels imaged; brightfield plus any of live/dead (other channels
            are ignored). They define a complete time point.
        on_result: called on the worker thread with each :class:`ChamberResult`.
        params: analysis parameters.
        exposure_ms: exposure per channel, for frames whose record has no
            ``exposure_ms``.
        max_queued_frames: frames that may wait; more are skipped.
        wait_when_full: wait for room instead of skipping (for virtual-clock runs only:
            it slows acquisition down to the analysis's pace).
    """

    def __init__(
        self,
        writer: tables.TableWriter,
        positions: Sequence[str],
        channels: Sequence[str],
        *,
        on_result: Callable[[ChamberResult], None] | None = None,
        params: AnalysisParams | None = None,
        exposure_ms: Mapping[str, float] | None = None,
        max_queued_frames: int = 32,
        wait_when_full: bool = False,
    ) -> None:
        """Set up; nothing runs until :meth:`start`."""
        if max_queued_frames < 1:
            raise ValueError(f"max_queued_frames must be >= 1, got {max_queued_frames}")
        self.writer = writer
        self.positions = tuple(positions)
        self.channels = tuple(channels)
        self.on_result = on_result
        self.pipeline = Pipeline(self.channels, params, self.positions)
        self._exposure_ms = dict(exposure_ms or {})
        self._max_queued = int(max_queued_frames)
        self._wait_when_full = bool(wait_when_full)
        self._wanted = frozenset(self.positions)
        self._cond = threading.Condition()
        self._items: deque[tuple[str, Any, Any]] = deque()
        self._queued_frames = 0
        self._latest: dict[str, float] = {}
        self._counts = dict.fromkeys(
            ("received", "skipped", "analysed", "ignored", "errors", "results"), 0
        )
        self._last_error = ""
        self._abandon = False
        self._last_t_s = math.nan  # worker thread: the newest frame's run time, for events
        self._thread: threading.Thread | None = None

    def declare(self) -> None:
        """Declare the analysis tables (before the writer's ``open``)."""
        tables.declare_tables(self.writer)

    def start(self) -> None:
        """Start the worker thread (once)."""
        if self._thread is not None:
            raise RuntimeError("LiveAnalysis.start() called twice")
        path = getattr(self.writer, "path", None)
        name = f"analysis:{path.name}" if isinstance(path, Path) else "analysis"
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # -- engine thread -----------------------------------------------------------------

    def on_frame(self, record: FrameLike, pixels: NDArray[Any]) -> None:
        """Queue one frame for analysis; if the queue is full, skip it (or wait for room).

        Without ``wait_when_full`` it never waits: a few microseconds under a lock.

        Args:
            record: where and when (a :class:`chipctl.acquisition.FrameRecord`).
            pixels: the frame; kept by reference until analysed, so it must not change.
        """
        with self._cond:
            self._counts["received"] += 1
            while (
                self._wait_when_full
                and self._queued_frames >= self._max_queued
                and not self._abandon
                and self._thread is not None
                and self._thread.is_alive()
            ):
                self._cond.wait(_WAIT_CHECK_S)
            if self._queued_frames >= self._max_queued or self._abandon:
                self._counts["skipped"] += 1
                return
            self._items.append(("frame", record, pixels))
            self._queued_frames += 1
            self._cond.notify_all()

    def end_time_point(self) -> None:
        """Say that the current time point is over, so its last position's results come now.

        Without this call, the last position of a time point completes when the next
        time point begins (or at :meth:`stop`) unless all of :attr:`channels` were imaged.
        Never waits and is never dropped.
        """
        self._put((_FLUSH, None, None))

    # -- any thread ---------------------------------------------------------------------

    def latest(self) -> dict[str, float]:
        """The newest chamber values, keyed ``"<position>.<metric>"`` (a copy)."""
        with self._cond:
            return dict(self._latest)

    def stats(self) -> LiveStats:
        """The counters (a snapshot)."""
        with self._cond:
            c = self._counts
            return LiveStats(
                received=c["received"],
                skipped=c["skipped"],
                analysed=c["analysed"],
                ignored=c["ignored"]
                + self.pipeline.ignored_frames
                + self.pipeline.unmatched_stain_frames,
                errors=c["errors"],
                results=c["results"],
                queued=self._queued_frames,
                last_error=self._last_error,
            )

    def stop(self, timeout_s: float = 60.0) -> bool:
        """Analyse what is queued, complete the open time points, end the worker.

        Call before the writer's ``close`` (the rows go through it).

        Args:
            timeout_s: how long to wait for the queue to drain; frames still queued then
                are skipped (counted) and the worker ends after its current frame.

        Returns:
            True if every queued frame was analysed.
        """
        thread = self._thread
        if thread is None:
            return True
        self._put((_STOP, None, None))
        thread.join(timeout_s)
        if not thread.is_alive():
            return True
        with self._cond:
            self._abandon = True
            self._cond.notify_all()
        thread.join(timeout_s)
        return False

    # -- worker thread ------------------------------------------------------------------

    def _put(self, item: tuple[str, Any, Any]) -> None:
        with self._cond:
            self._items.append(item)
            self._cond.notify_all()

    def _next(self) -> tuple[str, Any, Any]:
        with self._cond:
            while not self._items:
                self._cond.wait()
            item = self._items.popleft()
            if item[0] == "frame":
                self._queued_frames -= 1
                self._cond.notify_all()  # room for a producer waiting (wait_when_full)
                if self._abandon:
                    self._counts["skipped"] += 1
                    return ("skip", None, None)
            return item

    def _run(self) -> None:
        while True:
            kind, record, pixels = self._next()
            if kind == "frame":
                self._analyse(record, pixels)
            elif kind in (_FLUSH, _STOP):
                self._publish(self._guard(self._last_t_s, self.pipeline.flush))
                if kind == _STOP:
                    return

    def _analyse(self, record: FrameLike, pixels: NDArray[Any]) -> None:
        if record.position not in self._wanted:
            with self._cond:
                self._counts["ignored"] += 1
            return
        exposure = getattr(record, "exposure_ms", None)
        if exposure is None:
            exposure = self._exposure_ms.get(record.channel)
        self._last_t_s = float(record.t_s)
        results = self._guard(self._last_t_s, lambda: self.pipeline.add(record, pixels, exposure))
        with self._cond:
            self._counts["analysed"] += 1
        self._publish(results)

    def _guard(self, t_s: float, work: Callable[[], list[ChamberResult]]) -> list[ChamberResult]:
        try:
            return work()
        except Exception as exc:  # one bad frame must not end live analysis
            self._error(t_s, f"{type(exc).__name__}: {exc}")
            return []

    def _error(self, t_s: float, message: str) -> None:
        with self._cond:
            self._counts["errors"] += 1
            self._last_error = message
            n = self._counts["errors"]
        if n > MAX_ERROR_EVENTS:
            return
        if n == MAX_ERROR_EVENTS:
            message += f" (further analysis errors are counted, not recorded: {n} so far)"
        try:
            self.writer.event(t_s, EVENT_SOURCE, "error", message)
        except Exception:  # the writer is failing or closed: the counter still says it
            pass

    def _publish(self, results: list[ChamberResult]) -> None:
        for result in results:
            try:
                if result.tumoroids:
                    self.writer.append_rows(
                        tables.TUMOROIDS, tables.tumoroid_columns(result.tumoroids)
                    )
                self.writer.append_rows(tables.CHAMBERS, tables.chamber_columns([result.chamber]))
            except Exception as exc:
                message = f"cannot write analysis rows: {type(exc).__name__}: {exc}"
                self._error(result.chamber.t_s, message)
            with self._cond:
                self._latest.update(result.values())
                self._counts["results"] += 1
            if self.on_result is not None:
                try:
                    self.on_result(result)
                except Exception as exc:
                    self._error(
                        result.chamber.t_s, f"on_result failed: {type(exc).__name__}: {exc}"
                    )
