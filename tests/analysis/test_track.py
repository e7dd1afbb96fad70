"""Tracking tumoroids across time points of one position."""

from __future__ import annotations

import numpy as np
import pytest

from chipctl.analysis.metrics import tumoroid_metrics
from chipctl.analysis.segment import segment_brightfield
from chipctl.analysis.track import Tracker
from tests.analysis import DAY_S, HOUR_S, Scene


def _update(tracker, points):
    xy = np.array([p[:2] for p in points], dtype=float).reshape(-1, 2)
    area = np.array([np.pi * p[2] ** 2 for p in points], dtype=float)
    return tracker.update(xy[:, 0], xy[:, 1], area).tolist()


def test_ids_follow_tumoroids_that_jitter_and_grow_whatever_the_order_found():
    tracker = Tracker()
    first = [(100, 100, 40), (400, 120, 60), (250, 500, 50)]
    assert _update(tracker, first) == [1, 2, 3]
    later = [(255, 498, 55), (103, 96, 43), (396, 125, 64)]  # found in another order
    assert _update(tracker, later) == [3, 1, 2]


def test_a_tumoroid_does_not_take_its_neighbours_id():
    tracker = Tracker()
    _update(tracker, [(100, 100, 60), (200, 100, 60)])  # two close neighbours
    # both shift right: the left one is now nearer the right one's old place (40 um) than
    # its own (60 um); nearest-first would give it id 2 and the right one a new id, the
    # one-to-one assignment keeps both
    assert _update(tracker, [(160, 100, 60), (250, 100, 60)]) == [1, 2]


def test_new_tumoroids_get_new_ids_and_ids_are_never_reused():
    tracker = Tracker(max_gap=0)
    assert _update(tracker, [(100, 100, 40)]) == [1]
    assert _update(tracker, [(100, 100, 40), (600, 600, 40)]) == [1, 2]
    assert _update(tracker, [(600, 600, 40)]) == [2]  # 1 missed, and max_gap 0 ends it
    assert _update(tracker, [(100, 100, 40), (600, 600, 40)]) == [3, 2]
    assert tracker.n_tracks == 3


def test_a_tumoroid_missed_for_max_gap_time_points_keeps_its_id():
    tracker = Tracker(max_gap=2)
    _update(tracker, [(100, 100, 40), (600, 600, 40)])
    _update(tracker, [(600, 600, 40)])
    _update(tracker, [(600, 600, 40)])
    assert _update(tracker, [(100, 100, 40), (600, 600, 40)]) == [1, 2]
    for _ in range(3):
        _update(tracker, [(600, 600, 40)])
    assert _update(tracker, [(100, 100, 40), (600, 600, 40)]) == [3, 2]


def test_far_jumps_are_not_matched():
    tracker = Tracker()
    _update(tracker, [(100, 100, 30)])
    assert _update(tracker, [(170, 100, 30)]) == [2]  # 70 um away: the discs do not overlap


def test_empty_time_points_and_bad_input():
    tracker = Tracker()
    assert _update(tracker, []) == []
    assert _update(tracker, [(1, 1, 20)]) == [1]
    with pytest.raises(ValueError, match="one length"):
        tracker.update(np.zeros(2), np.zeros(3), np.zeros(2))
    with pytest.raises(ValueError, match="max_gap"):
        Tracker(max_gap=-1)


def test_tracks_on_the_simulator_keep_each_true_tumoroid():
    """Over a day of growth, each track id stays on one true tumoroid."""
    scene = Scene(seed=21)
    tracker = Tracker()
    identity: dict[int, int] = {}
    for k in range(4):
        scene.advance_to(1 * DAY_S + 8 * k * HOUR_S)
        frame = scene.snap(5, "brightfield")
        truth = scene.scope.truth_masks("brightfield")
        seg = segment_brightfield(frame, scene.pixel_size_um)
        m = tumoroid_metrics(seg)
        ids = tracker.update(m.centroid_x_um, m.centroid_y_um, m.area_um2)
        for label, track in enumerate(ids, start=1):
            box, mask = seg.mask(label)
            true = int(np.bincount(truth[box][mask]).argmax())
            assert identity.setdefault(int(track), true) == true
    assert tracker.n_tracks == len(identity) >= 5
