"""Per-tumoroid and per-chamber metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.draw import disk, ellipse

from chipctl.analysis.metrics import (
    GrowthHistory,
    chamber_metrics,
    growth_rate_per_h,
    tumoroid_metrics,
)
from chipctl.analysis.segment import LiveDeadArea, Segmentation

PX = 2.0


def _segmentation(*shapes):
    labels = np.zeros((300, 300), np.int32)
    for label, (rr, cc) in enumerate(shapes, start=1):
        labels[rr, cc] = label
    slices = tuple((slice(r.min(), r.max() + 1), slice(c.min(), c.max() + 1)) for r, c in shapes)
    return Segmentation(labels, len(shapes), PX, slices)


def test_a_disc_measures_as_a_disc_and_a_sphere():
    rr, cc = disk((100.0, 60.0), 30)
    m = tumoroid_metrics(_segmentation((rr, cc)))
    area_um2 = rr.size * PX**2
    assert m.area_um2[0] == pytest.approx(area_um2)
    # the pixel area of a digital disc of radius 30 px is pi r^2 to 0.5 %
    assert m.eq_diameter_um[0] == pytest.approx(2 * 30 * PX, rel=0.005)
    assert m.volume_um3[0] == pytest.approx(math.pi / 6 * m.eq_diameter_um[0] ** 3)
    assert m.circularity[0] == pytest.approx(1.0, abs=0.02)
    # centroid in um from the frame's corner: pixel (60, 100) has its centre at 60.5 px
    assert m.centroid_x_um[0] == pytest.approx(60.5 * PX, abs=0.01)
    assert m.centroid_y_um[0] == pytest.approx(100.5 * PX, abs=0.01)


def test_elongated_shapes_are_less_circular():
    round_ = tumoroid_metrics(_segmentation(disk((80, 80), 25)))
    long_ = tumoroid_metrics(_segmentation(ellipse(200, 150, 15, 60)))
    # an ellipse of axes 4:1 has 4 pi A / P^2 = 0.56 (Ramanujan's perimeter)
    assert long_.circularity[0] == pytest.approx(0.56, abs=0.04)
    assert long_.circularity[0] < round_.circularity[0]


def test_no_tumoroids():
    m = tumoroid_metrics(_segmentation())
    assert len(m) == 0
    c = chamber_metrics(m, [], math.nan)
    assert c.n_tumoroids == 0 and c.total_volume_um3 == 0.0
    assert math.isnan(c.mean_diameter_um) and math.isnan(c.live_fraction)


def test_chamber_sums_and_pooled_live_fraction():
    m = tumoroid_metrics(_segmentation(disk((60, 60), 20), disk((200, 200), 40)))
    areas = [LiveDeadArea(100.0, 300.0, 0.25), LiveDeadArea(900.0, 100.0, 0.9)]
    c = chamber_metrics(m, areas, 0.01)
    assert c.n_tumoroids == 2
    assert c.total_area_um2 == pytest.approx(m.area_um2.sum())
    assert c.total_volume_um3 == pytest.approx(m.volume_um3.sum())
    assert c.mean_diameter_um == pytest.approx(m.eq_diameter_um.mean())
    assert c.live_fraction == pytest.approx(1000.0 / 1400.0)  # pooled, not averaged
    assert c.growth_rate_per_h == 0.01
    one_stain = [LiveDeadArea(100.0, math.nan, math.nan)] * 2
    assert math.isnan(chamber_metrics(m, one_stain, 0.0).live_fraction)


def test_growth_rate_is_the_exponential_rate():
    rate_per_h = math.log(2) / 84.0  # doubling in 3.5 days
    t_s = np.arange(0, 13) * 3600.0
    volume = 1e6 * np.exp(rate_per_h * t_s / 3600.0)
    got = growth_rate_per_h(t_s, volume, window_s=12 * 3600.0, min_points=3)
    assert got == pytest.approx(rate_per_h, rel=1e-9)
    # only the window counts: a change of pace before it is forgotten
    volume[:6] *= 0.5
    got = growth_rate_per_h(t_s, volume, window_s=6 * 3600.0, min_points=3)
    assert got == pytest.approx(rate_per_h, rel=1e-9)


def test_growth_rate_needs_enough_points():
    assert math.isnan(growth_rate_per_h([], [], window_s=3600.0, min_points=3))
    assert math.isnan(growth_rate_per_h([0.0, 3600.0], [1.0, 2.0], window_s=1e5, min_points=3))
    assert math.isnan(
        growth_rate_per_h([0.0, 0.0, 0.0], [1.0, 2.0, 3.0], window_s=1e5, min_points=3)
    )
    # zero volume (every tumoroid gone) is skipped, not log(0)
    assert growth_rate_per_h(
        [0.0, 3600.0, 7200.0, 10800.0], [0.0, 1.0, 2.0, 4.0], window_s=1e5, min_points=3
    ) == pytest.approx(math.log(2), rel=1e-9)


def test_growth_history_rolls_its_window():
    history = GrowthHistory(window_s=2 * 3600.0, min_points=3)
    rates = [history.add(k * 3600.0, 2.0**k) for k in range(3)]
    assert math.isnan(rates[0]) and math.isnan(rates[1])
    assert rates[2] == pytest.approx(math.log(2))
    # window 1..3 h: ln V = ln2, 2 ln2, 2 ln2 -> least-squares slope ln2 / 2 per hour
    assert history.add(3 * 3600.0, 4.0) == pytest.approx(math.log(2) / 2)
    with pytest.raises(ValueError, match="growth window"):
        GrowthHistory(window_s=0.0, min_points=3)
