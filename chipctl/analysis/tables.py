"""The analysis tables of the run file: their schema, declaration and rows.

Two tables (run-file *tables*: a group of equal-length 1-D columns, each with ``units``;
see :mod:`chipctl.runfile.layout`), written live by :class:`chipctl.analysis.live.
LiveAnalysis` and recomputed by :func:`chipctl.analysis.images.analyze_images`::

    /analysis/tumoroids    one row per tumoroid per position per time point
        t_s              s      run time of the brightfield frame measured
        t_point_s        s      the time point (nominal run time of the imaging round)
        position         text   the imaged position ("chamber 1" ... "chamber 8")
        track_id         1      the tumoroid's id, stable across time points of a position
        area_um2         um^2   projected area
        eq_diameter_um   um     equivalent diameter 2 sqrt(A / pi)
        volume_um3       um^3   sphere-equivalent volume (pi / 6) d^3
        circularity      1      4 pi A / P^2 (1 = disc)
        centroid_x_um    um     centroid, from the frame's left edge
        centroid_y_um    um     centroid, from the frame's top edge
        live_area_um2    um^2   live-stained (calcein) area; NaN without a live frame
        dead_area_um2    um^2   dead-stained (EthD-1) area; NaN without a dead frame
        live_fraction    1      live / (live + dead) area; NaN without both stains

    /analysis/chambers     one row per position per time point
        t_s              s      run time of the brightfield frame measured
        t_point_s        s      the time point
        position         text   the imaged position
        n_tumoroids      1      tumoroids measured (those wholly inside the frame)
        total_area_um2   um^2   their total projected area
        total_volume_um3 um^3   their total sphere-equivalent volume
        mean_diameter_um um     their mean equivalent diameter (NaN if none)
        live_fraction    1      sum live / sum (live + dead) area (NaN without both stains)
        growth_rate_per_h 1/h   slope of ln(total volume) over the recent time points
                                (default: the last 12 h, at least 3 points; NaN before)

Rows of one time point are appended together once the time point's frames of that
position are analysed; text columns are fixed-length UTF-8 (:data:`POSITION_BYTES`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

import numpy as np
import numpy.typing as npt

from chipctl.runfile import layout

__all__ = [
    "CHAMBERS",
    "CHAMBER_COLUMNS",
    "POSITION_BYTES",
    "TUMOROIDS",
    "TUMOROID_COLUMNS",
    "ChamberRow",
    "TableWriter",
    "TumoroidRow",
    "chamber_columns",
    "declare_tables",
    "tumoroid_columns",
]

TUMOROIDS: Final = f"{layout.ANALYSIS_GROUP}/tumoroids"
CHAMBERS: Final = f"{layout.ANALYSIS_GROUP}/chambers"
#: Width of the ``position`` text column, UTF-8 bytes.
POSITION_BYTES: Final = 64

_F8 = np.dtype(np.float64)
_I8 = np.dtype(np.int64)

#: ``/analysis/tumoroids``: column -> (dtype, units).
TUMOROID_COLUMNS: Final[Mapping[str, tuple[np.dtype[Any], str]]] = {
    "t_s": (_F8, "s"),
    "t_point_s": (_F8, "s"),
    "position": (layout.utf8(POSITION_BYTES), ""),
    "track_id": (_I8, "1"),
    "area_um2": (_F8, "um^2"),
    "eq_diameter_um": (_F8, "um"),
    "volume_um3": (_F8, "um^3"),
    "circularity": (_F8, "1"),
    "centroid_x_um": (_F8, "um"),
    "centroid_y_um": (_F8, "um"),
    "live_area_um2": (_F8, "um^2"),
    "dead_area_um2": (_F8, "um^2"),
    "live_fraction": (_F8, "1"),
}

#: ``/analysis/chambers``: column -> (dtype, units).
CHAMBER_COLUMNS: Final[Mapping[str, tuple[np.dtype[Any], str]]] = {
    "t_s": (_F8, "s"),
    "t_point_s": (_F8, "s"),
    "position": (layout.utf8(POSITION_BYTES), ""),
    "n_tumoroids": (_I8, "1"),
    "total_area_um2": (_F8, "um^2"),
    "total_volume_um3": (_F8, "um^3"),
    "mean_diameter_um": (_F8, "um"),
    "live_fraction": (_F8, "1"),
    "growth_rate_per_h": (_F8, "1/h"),
}

#: Rows per chunk: a 72 h run of 8 chambers x 20 tumoroids x 73 points is ~12 000 rows.
_TUMOROID_CHUNK_ROWS: Final = 1024
_CHAMBER_CHUNK_ROWS: Final = 256


class TableWriter(Protocol):
    """What the analysis needs of a run-file writer (:class:`chipctl.runfile.RunFileWriter`)."""

    def declare_table(
        self,
        path: str,
        columns: Mapping[str, tuple[npt.DTypeLike, str]],
        *,
        chunk_rows: int | None = None,
    ) -> None:
        """Declare a table before the file opens."""

    def append_rows(self, path: str, rows: Mapping[str, npt.ArrayLike]) -> None:
        """Append rows, given column by column (thread-safe, never blocks)."""

    def event(self, t_s: float, source: str, kind: str, message: str) -> None:
        """Record an event."""


@dataclass(frozen=True)
class TumoroidRow:
    """One row of ``/analysis/tumoroids`` (fields as the columns)."""

    t_s: float
    t_point_s: float
    position: str
    track_id: int
    area_um2: float
    eq_diameter_um: float
    volume_um3: float
    circularity: float
    centroid_x_um: float
    centroid_y_um: float
    live_area_um2: float
    dead_area_um2: float
    live_fraction: float


@dataclass(frozen=True)
class ChamberRow:
    """One row of ``/analysis/chambers`` (fields as the columns)."""

    t_s: float
    t_point_s: float
    position: str
    n_tumoroids: int
    total_area_um2: float
    total_volume_um3: float
    mean_diameter_um: float
    live_fraction: float
    growth_rate_per_h: float


def declare_tables(writer: TableWriter) -> None:
    """Declare both analysis tables on a writer (before its ``open``: SWMR).

    Raises:
        chipctl.errors.RunFileError: the writer is already open.
        ValueError: the tables are already declared.
    """
    writer.declare_table(TUMOROIDS, TUMOROID_COLUMNS, chunk_rows=_TUMOROID_CHUNK_ROWS)
    writer.declare_table(CHAMBERS, CHAMBER_COLUMNS, chunk_rows=_CHAMBER_CHUNK_ROWS)


def _columns(
    rows: Sequence[Any], schema: Mapping[str, tuple[np.dtype[Any], str]]
) -> dict[str, np.ndarray[Any, Any]]:
    out: dict[str, np.ndarray[Any, Any]] = {}
    for name, (dtype, _) in schema.items():
        values = [getattr(r, name) for r in rows]
        out[name] = np.array(values, dtype=object if dtype.kind == "S" else dtype)
    return out


def tumoroid_columns(rows: Sequence[TumoroidRow]) -> dict[str, np.ndarray[Any, Any]]:
    """Return tumoroid rows as columns (text as ``str`` objects, as the reader returns it)."""
    return _columns(rows, TUMOROID_COLUMNS)


def chamber_columns(rows: Sequence[ChamberRow]) -> dict[str, np.ndarray[Any, Any]]:
    """Return chamber rows as columns (text as ``str`` objects, as the reader returns it)."""
    return _columns(rows, CHAMBER_COLUMNS)
