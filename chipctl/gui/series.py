"""Curves with days of samples, drawn at the resolution of the screen (no Qt here).

A live plot of a week-long run must not redraw a million points per curve at every update
(pyqtgraph needs ~110 ms for that; perf-limits §5) nor keep every sample of every quantity in
memory for a week. :class:`EnvelopeSeries` keeps:

- the most recent samples (the *tail*, at most ``tail_limit`` of them) exactly;
- for everything since the start, min/max summaries: level 1 holds one bin per
  :data:`BIN` samples, each higher level one bin per :data:`FACTOR` bins of the level below.
  A million samples cost ~16 k level-1 bins (5 numbers each), not 16 MB of raw data;
- optionally a *detail* window of raw samples read back from the run file, for a zoom into
  old data that has left the tail (:meth:`EnvelopeSeries.set_detail`).

:meth:`EnvelopeSeries.envelope` answers "what to draw between ``t0`` and ``t1`` on ``width_px``
pixels" with at most a few points per pixel: the coarsest summary level that still has a bin
per pixel, plus the raw tail decimated to the same resolution; raw points when they are few.
A min/max envelope keeps every spike visible (an average would hide a pressure peak). The
cost is proportional to the pixels drawn, not to the samples held.

Samples must arrive in time order (telemetry does); NaN values are kept as gaps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["BIN", "FACTOR", "Envelope", "EnvelopeSeries", "minmax_decimate"]

FloatArray = npt.NDArray[np.float64]

#: Raw samples per level-1 summary bin.
BIN = 64
#: Bins of one level merged into one bin of the next.
FACTOR = 8
#: Summary levels above the raw samples (level 4 bins hold 64 * 8**3 = 32768 samples).
LEVELS = 4
#: Raw samples kept in memory by default (a month of 10 s telemetry).
DEFAULT_TAIL = 262_144
#: Fewer raw samples than this many per pixel are drawn as they are.
RAW_PER_PX = 4


@dataclass(frozen=True)
class Envelope:
    """What to draw: points in time order, and whether finer data would change the picture.

    Args:
        t_s: x coordinates (a min/max pair shares its bin's time).
        y: y values (NaN: a gap).
        need_detail: the time range whose raw samples are neither in memory nor in the detail
            window, while the view is fine enough to show them: read them from the run file
            and give them to :meth:`EnvelopeSeries.set_detail`. None when nothing is missing.
    """

    t_s: FloatArray
    y: FloatArray
    need_detail: tuple[float, float] | None = None


def _empty() -> FloatArray:
    return np.empty(0, dtype=np.float64)


def minmax_decimate(t_s: FloatArray, y: FloatArray, n_bins: int) -> tuple[FloatArray, FloatArray]:
    """Reduce samples to at most ``n_bins`` min/max pairs (2 points per bin).

    Args:
        t_s: sample times, sorted.
        y: sample values.
        n_bins: the number of bins wanted (>= 1).

    Returns:
        (t, y) with each bin's centre time twice and its min then max; NaN-only bins give NaN.
    """
    n = len(t_s)
    if n <= 2 * n_bins:
        return t_s, y
    per = -(-n // n_bins)
    whole = (n // per) * per
    tt = t_s[:whole].reshape(-1, per)
    yy = y[:whole].reshape(-1, per)
    t_mid = 0.5 * (tt[:, 0] + tt[:, -1])
    lo = np.fmin.reduce(yy, axis=1)
    hi = np.fmax.reduce(yy, axis=1)
    if whole < n:
        t_mid = np.append(t_mid, 0.5 * (t_s[whole] + t_s[-1]))
        lo = np.append(lo, np.fmin.reduce(y[whole:]))
        hi = np.append(hi, np.fmax.reduce(y[whole:]))
    return np.repeat(t_mid, 2), np.column_stack((lo, hi)).ravel()


class _Level:
    """One summary level: per bin, first and last sample time, min and max value."""

    def __init__(self) -> None:
        self.t_lo = _empty()
        self.t_hi = _empty()
        self.y_min = _empty()
        self.y_max = _empty()
        self.n = 0  # bins in use (arrays grow by doubling)

    def append(self, t_lo: FloatArray, t_hi: FloatArray, lo: FloatArray, hi: FloatArray) -> None:
        k = len(t_lo)
        if self.n + k > len(self.t_lo):
            size = max(1024, 2 * (self.n + k))
            for name in ("t_lo", "t_hi", "y_min", "y_max"):
                old = getattr(self, name)
                new = np.empty(size, dtype=np.float64)
                new[: self.n] = old[: self.n]
                setattr(self, name, new)
        sl = slice(self.n, self.n + k)
        self.t_lo[sl], self.t_hi[sl], self.y_min[sl], self.y_max[sl] = t_lo, t_hi, lo, hi
        self.n += k

    def view(self) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        n = self.n
        return self.t_lo[:n], self.t_hi[:n], self.y_min[:n], self.y_max[:n]

    def bins_in(self, t0_s: float, t1_s: float) -> tuple[int, int]:
        """Return the index range of the bins overlapping [t0_s, t1_s], one more each side."""
        n = self.n
        i0 = max(int(np.searchsorted(self.t_hi[:n], t0_s, "left")) - 1, 0)
        i1 = min(int(np.searchsorted(self.t_lo[:n], t1_s, "right")) + 1, n)
        return i0, i1

    def nbytes(self) -> int:
        return 4 * 8 * len(self.t_lo)


class EnvelopeSeries:
    """One curve: a bounded raw tail, min/max summaries of all samples, an optional detail.

    Args:
        tail_limit: raw samples kept in memory (older ones live on in the summaries and in
            the run file).
    """

    def __init__(self, tail_limit: int = DEFAULT_TAIL) -> None:
        """Start empty."""
        if tail_limit < BIN * FACTOR ** (LEVELS - 1):
            raise ValueError(f"tail_limit must be >= {BIN * FACTOR ** (LEVELS - 1)}")
        self.tail_limit = tail_limit
        self._t = np.empty(2 * tail_limit, dtype=np.float64)
        self._y = np.empty(2 * tail_limit, dtype=np.float64)
        self._start = 0  # first valid tail index in the buffers
        self._stop = 0
        self.n_total = 0  # samples ever appended
        self._levels = [_Level() for _ in range(LEVELS)]
        # samples (raw, or lower-level bins) not yet summarised at each level
        self._pending = [0] * LEVELS
        self._detail: tuple[FloatArray, FloatArray] | None = None
        self._detail_covers = (np.inf, -np.inf)
        self.t_first_s = float("nan")
        self.t_last_s = float("nan")

    # -- feeding -----------------------------------------------------------------------

    def extend(self, t_s: Any, y: Any) -> None:
        """Append samples (sorted by time, after every earlier one)."""
        t_arr = np.asarray(t_s, dtype=np.float64).ravel()
        y_arr = np.asarray(y, dtype=np.float64).ravel()
        if len(t_arr) != len(y_arr):
            raise ValueError(f"{len(t_arr)} times but {len(y_arr)} values")
        if not len(t_arr):
            return
        step = self.tail_limit - BIN  # unsummarised samples always stay in the tail
        for i in range(0, len(t_arr), step):
            self._extend(t_arr[i : i + step], y_arr[i : i + step])

    def append(self, t_s: float, y: float) -> None:
        """Append one sample."""
        self.extend((t_s,), (y,))

    def _extend(self, t_arr: FloatArray, y_arr: FloatArray) -> None:
        k = len(t_arr)
        if self._stop + k > len(self._t):
            keep = min(self._stop - self._start, self.tail_limit)
            src = slice(self._stop - keep, self._stop)
            self._t[:keep] = self._t[src]
            self._y[:keep] = self._y[src]
            self._start, self._stop = 0, keep
        self._t[self._stop : self._stop + k] = t_arr
        self._y[self._stop : self._stop + k] = y_arr
        self._stop += k
        if self._stop - self._start > self.tail_limit:
            self._start = self._stop - self.tail_limit
        if self.n_total == 0:
            self.t_first_s = float(t_arr[0])
        self.n_total += k
        self.t_last_s = float(t_arr[-1])
        self._pending[0] += k
        self._summarise()

    def _summarise(self) -> None:
        """Fold complete groups of raw samples (and of bins) into the summary levels."""
        whole = (self._pending[0] // BIN) * BIN
        if whole:
            t, y = self.tail()
            tt = t[len(t) - self._pending[0] :][:whole].reshape(-1, BIN)
            yy = y[len(y) - self._pending[0] :][:whole].reshape(-1, BIN)
            self._levels[0].append(
                tt[:, 0].copy(),
                tt[:, -1].copy(),
                np.fmin.reduce(yy, axis=1),
                np.fmax.reduce(yy, axis=1),
            )
            self._pending[0] -= whole
            if LEVELS > 1:
                self._pending[1] += whole // BIN
        for k in range(1, LEVELS):
            whole = (self._pending[k] // FACTOR) * FACTOR
            if not whole:
                continue
            below = self._levels[k - 1]
            first = below.n - self._pending[k]
            sl = slice(first, first + whole)
            self._levels[k].append(
                below.t_lo[sl][::FACTOR].copy(),
                below.t_hi[sl][FACTOR - 1 :: FACTOR].copy(),
                np.fmin.reduce(below.y_min[sl].reshape(-1, FACTOR), axis=1),
                np.fmax.reduce(below.y_max[sl].reshape(-1, FACTOR), axis=1),
            )
            self._pending[k] -= whole
            if k + 1 < LEVELS:
                self._pending[k + 1] += whole // FACTOR

    def set_detail(self, t_s: Any, y: Any, covers: tuple[float, float] | None = None) -> None:
        """Keep raw samples read back from the run file, to draw a zoom into old data.

        Args:
            t_s: the samples' times (sorted).
            y: their values.
            covers: the time range that was read (every sample in it is given); default:
                from the first to the last sample.
        """
        t = np.asarray(t_s, dtype=np.float64)
        if covers is None:
            covers = (float(t[0]), float(t[-1])) if len(t) else (np.inf, -np.inf)
        self._detail = (t, np.asarray(y, dtype=np.float64))
        self._detail_covers = covers

    def clear_detail(self) -> None:
        """Drop the detail window."""
        self._detail = None

    # -- reading -----------------------------------------------------------------------

    def tail(self) -> tuple[FloatArray, FloatArray]:
        """Return the raw samples still in memory (views; do not modify)."""
        sl = slice(self._start, self._stop)
        return self._t[sl], self._y[sl]

    def nbytes(self) -> int:
        """Return the memory held (buffers and summaries)."""
        return self._t.nbytes + self._y.nbytes + sum(lv.nbytes() for lv in self._levels)

    def envelope(self, t0_s: float, t1_s: float, width_px: int) -> Envelope:
        """Return what to draw for the time range ``[t0_s, t1_s]`` on ``width_px`` pixels.

        Points just outside the range are included so lines run to the plot's edges.
        """
        width_px = max(int(width_px), 1)
        if self.n_total == 0 or not t1_s >= t0_s:
            return Envelope(_empty(), _empty())
        tail_t, tail_y = self.tail()
        tail_complete = len(tail_t) == self.n_total
        # the coarsest summary level that still has a bin per pixel
        for level in reversed(self._levels):
            i0, i1 = level.bins_in(t0_s, t1_s)
            if i1 - i0 >= width_px:
                return self._summary(level, i0, i1, t0_s, t1_s, width_px)
        # few samples in range: draw them raw, from the tail, the detail, or ask for them
        if tail_complete or t0_s >= tail_t[0]:
            return self._from_raw(tail_t, tail_y, t0_s, t1_s, width_px)
        detail = self._detail
        end_s = min(t1_s, float(tail_t[0]))
        start_s = max(t0_s, self.t_first_s)
        if detail is not None and len(detail[0]):
            covered_lo, covered_hi = self._detail_covers
            if covered_lo <= start_s and covered_hi >= end_s:
                return self._from_raw(detail[0], detail[1], t0_s, t1_s, width_px, tail=True)
        level = self._levels[0]
        i0, i1 = level.bins_in(t0_s, t1_s)
        coarse = self._summary(level, i0, i1, t0_s, t1_s, width_px)
        if i1 - i0 >= width_px // RAW_PER_PX:
            return coarse  # nearly a bin per pixel already: raw data would not show more
        return Envelope(coarse.t_s, coarse.y, (start_s, end_s))

    def _summary(
        self, level: _Level, i0: int, i1: int, t0_s: float, t1_s: float, width_px: int
    ) -> Envelope:
        """Bins ``i0:i1`` of ``level``, then the raw tail not yet summarised there."""
        t_lo, t_hi, lo, hi = level.view()
        b_lo, b_hi, b_min, b_max = t_lo[i0:i1], t_hi[i0:i1], lo[i0:i1], hi[i0:i1]
        group = -(-len(b_lo) // width_px)  # up to FACTOR bins per pixel: merge them
        if group > 1:
            whole = (len(b_lo) // group) * group
            merged = [
                b_lo[:whole:group],
                b_hi[group - 1 : whole : group],
                np.fmin.reduce(b_min[:whole].reshape(-1, group), axis=1),
                np.fmax.reduce(b_max[:whole].reshape(-1, group), axis=1),
            ]
            if whole < len(b_lo):
                rest = slice(whole, None)
                merged = [
                    np.append(merged[0], b_lo[rest][0]),
                    np.append(merged[1], b_hi[rest][-1]),
                    np.append(merged[2], np.fmin.reduce(b_min[rest])),
                    np.append(merged[3], np.fmax.reduce(b_max[rest])),
                ]
            b_lo, b_hi, b_min, b_max = merged
        t_mid = 0.5 * (b_lo + b_hi)
        out_t = np.repeat(t_mid, 2)
        out_y = np.column_stack((b_min, b_max)).ravel()
        covered_s = float(t_hi[i1 - 1]) if i1 > i0 else -np.inf
        tail_t, tail_y = self.tail()
        if covered_s < t1_s and len(tail_t):
            j0 = max(int(np.searchsorted(tail_t, max(covered_s, t0_s), "right")) - 1, 0)
            if covered_s > -np.inf:
                j0 = int(np.searchsorted(tail_t, covered_s, "right"))
            j1 = int(np.searchsorted(tail_t, t1_s, "right")) + 1
            sub_t, sub_y = tail_t[j0:j1], tail_y[j0:j1]
            if len(sub_t):
                span = max(t1_s - t0_s, 1e-12)
                bins = max(int(width_px * (sub_t[-1] - sub_t[0]) / span) + 1, 1)
                dt, dy = minmax_decimate(sub_t, sub_y, bins)
                out_t = np.concatenate((out_t, dt))
                out_y = np.concatenate((out_y, dy))
        return Envelope(out_t, out_y)

    def _from_raw(
        self,
        t: FloatArray,
        y: FloatArray,
        t0_s: float,
        t1_s: float,
        width_px: int,
        *,
        tail: bool = False,
    ) -> Envelope:
        """Raw samples in range (one beyond each edge), decimated if more than the pixels."""
        j0 = max(int(np.searchsorted(t, t0_s, "left")) - 1, 0)
        j1 = min(int(np.searchsorted(t, t1_s, "right")) + 1, len(t))
        sub_t, sub_y = t[j0:j1], y[j0:j1]
        if tail and len(sub_t):
            tail_t, tail_y = self.tail()
            k = int(np.searchsorted(tail_t, sub_t[-1], "right"))
            j = int(np.searchsorted(tail_t, t1_s, "right")) + 1
            sub_t = np.concatenate((sub_t, tail_t[k:j]))
            sub_y = np.concatenate((sub_y, tail_y[k:j]))
        if len(sub_t) > RAW_PER_PX * width_px:
            sub_t, sub_y = minmax_decimate(sub_t, sub_y, width_px)
        return Envelope(np.array(sub_t), np.array(sub_y))
