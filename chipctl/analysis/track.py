"""The same tumoroid across the time points of one position: stable track ids.

Tumoroids in gel barely move, and the stage returns to each named position to within a
few um, so a tumoroid is where it was, a little bigger or smaller. Each time point, the
tumoroids found are matched one-to-one to the tracks by nearest centroid among the pairs
whose equivalent discs overlap (centre distance below the sum of the radii), solved as an
assignment problem (:func:`scipy.optimize.linear_sum_assignment`) on the distance divided
by that sum, so a tumoroid never takes a neighbour's id because of the order it was found
in. A track not matched stays open for ``max_gap`` time points (a tumoroid missed once,
for instance by a bubble or a focus slip, keeps its id when it reappears); a tumoroid not
matched starts a new track. Ids start at 1 per position and are never reused.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import linear_sum_assignment

__all__ = ["Tracker"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@dataclass
class _Track:
    track_id: int
    x_um: float
    y_um: float
    radius_um: float
    last_seen: int


class Tracker:
    """Track ids for the tumoroids of one position, one time point after another.

    Args:
        max_gap: time points a track may go unmatched and still be continued.
    """

    def __init__(self, max_gap: int = 2) -> None:
        """Start with no tracks."""
        if max_gap < 0:
            raise ValueError(f"max_gap must be >= 0, got {max_gap}")
        self.max_gap = int(max_gap)
        self._tracks: list[_Track] = []
        self._next_id = 1
        self._step = -1

    @property
    def n_tracks(self) -> int:
        """Tracks started so far."""
        return self._next_id - 1

    def update(self, x_um: FloatArray, y_um: FloatArray, area_um2: FloatArray) -> IntArray:
        """Match one time point's tumoroids to the tracks; return their track ids.

        Args:
            x_um: centroids along the frame's columns.
            y_um: centroids along the frame's rows.
            area_um2: projected areas (their equivalent radii set the overlap test).

        Returns:
            The track id of each tumoroid, in input order.

        Raises:
            ValueError: arrays of different lengths.
        """
        x = np.asarray(x_um, dtype=np.float64)
        y = np.asarray(y_um, dtype=np.float64)
        radius = np.sqrt(np.asarray(area_um2, dtype=np.float64) / np.pi)
        if not x.shape == y.shape == radius.shape or x.ndim != 1:
            raise ValueError("x_um, y_um and area_um2 must be 1-D arrays of one length")
        self._step += 1
        live = [t for t in self._tracks if self._step - t.last_seen <= self.max_gap + 1]
        self._tracks = live
        ids = np.zeros(x.size, dtype=np.int64)
        matched = np.zeros(x.size, dtype=bool)
        if live and x.size:
            tx = np.array([t.x_um for t in live])
            ty = np.array([t.y_um for t in live])
            tr = np.array([t.radius_um for t in live])
            dist = np.hypot(tx[:, None] - x[None, :], ty[:, None] - y[None, :])
            reach = tr[:, None] + radius[None, :]
            cost = np.where(dist < reach, dist / np.maximum(reach, 1e-9), 2.0)
            rows, cols = linear_sum_assignment(cost)
            for r, c in zip(rows, cols):
                if cost[r, c] >= 1.0:
                    continue
                track = live[r]
                track.x_um, track.y_um = float(x[c]), float(y[c])
                track.radius_um = float(radius[c])
                track.last_seen = self._step
                ids[c] = track.track_id
                matched[c] = True
        for c in np.flatnonzero(~matched):
            track = _Track(self._next_id, float(x[c]), float(y[c]), float(radius[c]), self._step)
            self._next_id += 1
            self._tracks.append(track)
            ids[c] = track.track_id
        return ids
