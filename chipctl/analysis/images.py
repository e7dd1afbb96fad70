"""Analyse every stored frame of a run file (what ``chipctl analyze`` recomputes).

:func:`analyze_images` reads the frame stacks of a run (:mod:`chipctl.runfile.images`),
and feeds them, position by position and in time order, to the same
:class:`chipctl.analysis.live.Pipeline` that :class:`~chipctl.analysis.live.LiveAnalysis`
runs during the run, so the tables it returns have the columns of ``/analysis/tumoroids``
and ``/analysis/chambers`` (:mod:`chipctl.analysis.tables`) and, for the frames the live
analysis did not skip, the same values. Frames are read one at a time, so memory stays at
a few frames whatever the run's size.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from chipctl.analysis import tables
from chipctl.analysis.live import AnalysisParams, ChamberResult, Pipeline
from chipctl.analysis.segment import channel_role
from chipctl.chip import chamber_of
from chipctl.runfile.images import COL_EXPOSURE_MS, COL_T, COL_T_POINT, image_stacks
from chipctl.runfile.reader import RunFile

__all__ = ["AnalysisTables", "StoredFrame", "analyze_images"]


@dataclass(frozen=True)
class StoredFrame:
    """Where and when a stored frame was taken (the pipeline's view of a metadata row)."""

    position: str
    channel: str
    index: int
    t_s: float
    t_point_s: float
    pixel_size_um: float | None
    exposure_ms: float | None


@dataclass(frozen=True)
class AnalysisTables:
    """The recomputed analysis tables, as column name -> 1-D numpy array.

    Attributes:
        tumoroids: the columns of ``/analysis/tumoroids`` (``position`` as ``str``).
        chambers: the columns of ``/analysis/chambers`` (``position`` as ``str``).
        frames: frames analysed.
        unmatched_stain_frames: stain frames without a brightfield frame in their time
            point (not analysed).
    """

    tumoroids: dict[str, np.ndarray[Any, Any]]
    chambers: dict[str, np.ndarray[Any, Any]]
    frames: int
    unmatched_stain_frames: int


def _finite(value: Any) -> float | None:
    v = float(value)
    return v if math.isfinite(v) else None


def analyze_images(
    run: RunFile,
    params: AnalysisParams | None = None,
    *,
    positions: Sequence[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> AnalysisTables:
    """Segment, track and measure every stored frame of a run (see the module docstring).

    Args:
        run: an open run file (finished, or live as of its snapshot).
        params: analysis parameters (the defaults are the live analysis's).
        positions: only these positions (default: every position with frames).
        progress: called with (frames done, frames in all) after each frame.

    Returns:
        The tables, rows in the order of their brightfield frames' times (the order the
        live analysis writes them in); empty, with every column, when the run has no
        brightfield frames.

    Raises:
        ValueError: a frame that cannot be analysed (for example without a pixel size
            and no ``params.pixel_size_um``), naming its position, channel and time.
    """
    frames: list[tuple[tuple[str, float, str, float, int, str], StoredFrame]] = []
    paths: dict[tuple[str, str], str] = {}
    for stack in image_stacks(run):
        if positions is not None and stack.position not in positions:
            continue
        if channel_role(stack.channel) is None or stack.n_frames == 0:
            continue
        meta = run.table(stack.meta_path)
        paths[(stack.position, stack.channel)] = stack.frames_path
        exposure = meta.get(COL_EXPOSURE_MS)
        for i in range(stack.n_frames):
            record = StoredFrame(
                position=stack.position,
                channel=stack.channel,
                index=i,
                t_s=float(meta[COL_T][i]),
                t_point_s=float(meta[COL_T_POINT][i]),
                pixel_size_um=stack.pixel_size_um,
                exposure_ms=None if exposure is None else _finite(exposure[i]),
            )
            chamber = chamber_of(record.position)
            key = (chamber, record.t_point_s, record.position, record.t_s, i, record.channel)
            frames.append((key, record))
    # chamber by chamber, each time point's fields together (each position in time order)
    frames.sort(key=lambda k: k[0])
    pipeline = Pipeline(None, params, {record.position for _, record in frames})
    results: list[ChamberResult] = []
    current: str | None = None
    for done, (key, record) in enumerate(frames, start=1):
        if key[0] != current:
            results.extend(pipeline.flush())
            current = key[0]
        pixels = run.frames(paths[(record.position, record.channel)])[record.index]
        results.extend(pipeline.add(record, pixels, record.exposure_ms))
        if progress is not None:
            progress(done, len(frames))
    results.extend(pipeline.flush())
    # the order the live analysis writes them in: by brightfield frame time
    results.sort(key=lambda r: (r.chamber.t_s, r.chamber.position))
    tumoroid_rows = [row for result in results for row in result.tumoroids]
    chamber_rows = [result.chamber for result in results]
    return AnalysisTables(
        tumoroids=tables.tumoroid_columns(tumoroid_rows),
        chambers=tables.chamber_columns(chamber_rows),
        frames=len(frames),
        unmatched_stain_frames=pipeline.unmatched_stain_frames,
    )
