"""Telemetry history read from a run file, for the plots (no Qt here).

Opening a finished run (or following a long live one) must not load every column into
memory: :func:`load_series` reads each plotted column in chunks into an
:class:`~chipctl.gui.series.EnvelopeSeries` (summaries plus a bounded raw tail), and
:func:`read_detail` reads back just the raw samples of a zoomed-in time range. Both are
meant for a worker thread: they do HDF5 I/O, which must stay off the GUI thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from chipctl.gui.curves import classify
from chipctl.gui.series import EnvelopeSeries
from chipctl.runfile import layout
from chipctl.runfile.reader import RunFile

__all__ = ["CHUNK_ROWS", "SeriesKey", "load_series", "plotted_columns", "read_detail"]

#: Rows read per HDF5 access when loading a column.
CHUNK_ROWS = 262_144

SeriesKey = tuple[str, str]
FloatArray = npt.NDArray[np.float64]


def plotted_columns(run: RunFile) -> list[SeriesKey]:
    """Return the (device, quantity) pairs of ``run`` that the plots show."""
    devices = run.telemetry_devices()
    keys: list[SeriesKey] = []
    for device in devices:
        for quantity in run.units(device):
            if quantity != layout.TIME_COLUMN and classify(device, quantity, devices):
                keys.append((device, quantity))
    return keys


def _column(run: RunFile, device: str, quantity: str) -> Any:
    """Return one telemetry column as an h5py dataset (read lazily)."""
    return run.frames(f"{layout.telemetry_path(device)}/{quantity}")


def _length(run: RunFile, device: str) -> int:
    """Return the device table's row count in the snapshot (columns cut to the shortest)."""
    columns = list(run.units(device))
    return min(len(_column(run, device, c)) for c in columns) if columns else 0


def load_series(
    run: RunFile,
    keys: list[SeriesKey] | None = None,
    *,
    tail_limit: int | None = None,
    cancelled: Callable[[], bool] = lambda: False,
) -> dict[SeriesKey, EnvelopeSeries]:
    """Read the plotted telemetry of ``run`` into envelope series, chunk by chunk.

    Args:
        run: an open run file (finished, or live as of its snapshot).
        keys: the (device, quantity) pairs to read (default: :func:`plotted_columns`).
        tail_limit: raw samples each series keeps (default: the series' default).
        cancelled: polled between chunks; loading stops early when it returns True.
    """
    wanted = plotted_columns(run) if keys is None else keys
    by_device: dict[str, list[str]] = {}
    for device, quantity in wanted:
        by_device.setdefault(device, []).append(quantity)
    out: dict[SeriesKey, EnvelopeSeries] = {}
    for device, quantities in by_device.items():
        n = _length(run, device)
        t_ds = _column(run, device, layout.TIME_COLUMN)
        columns = {q: _column(run, device, q) for q in quantities}
        series = {
            q: EnvelopeSeries() if tail_limit is None else EnvelopeSeries(tail_limit)
            for q in quantities
        }
        for start in range(0, n, CHUNK_ROWS):
            if cancelled():
                return out
            stop = min(start + CHUNK_ROWS, n)
            t = np.asarray(t_ds[start:stop], dtype=np.float64)
            for q, ds in columns.items():
                series[q].extend(t, np.asarray(ds[start:stop], dtype=np.float64))
        for q in quantities:
            out[(device, q)] = series[q]
    return out


def read_detail(
    run: RunFile, device: str, quantity: str, t0_s: float, t1_s: float, *, margin: float = 0.5
) -> tuple[FloatArray, FloatArray, tuple[float, float]]:
    """Return the raw samples of one quantity around ``t0_s``..``t1_s``, and the range read.

    The range is widened by ``margin`` of its span on each side, so small pans stay within
    what was read; every sample within the returned range is in the arrays.
    """
    span = max(t1_s - t0_s, 0.0)
    lo_s, hi_s = t0_s - margin * span, t1_s + margin * span
    n = _length(run, device)
    t_ds = _column(run, device, layout.TIME_COLUMN)
    i0 = _bisect(t_ds, lo_s, n)
    i1 = min(_bisect(t_ds, hi_s, n) + 1, n)
    t = np.asarray(t_ds[i0:i1], dtype=np.float64)
    y = np.asarray(_column(run, device, quantity)[i0:i1], dtype=np.float64)
    return t, y, (lo_s, hi_s)


def _bisect(ds: Any, t_s: float, n: int) -> int:
    """Return the first row index whose time is >= ``t_s`` (binary search on the file)."""
    lo, hi = 0, n
    while hi - lo > 4096:
        mid = (lo + hi) // 2
        if float(ds[mid]) < t_s:
            lo = mid + 1
        else:
            hi = mid
    block = np.asarray(ds[lo:hi], dtype=np.float64)
    return lo + int(np.searchsorted(block, t_s, "left"))
