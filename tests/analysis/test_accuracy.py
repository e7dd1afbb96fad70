"""Accuracy on simulator ground truth, with seeds never used to tune the analysis.

Issue #7 asks, at the default noise level and focus: a median Jaccard index >= 0.90 against
the true masks, and area errors <= 5 % for tumoroids over 100 um. The measured figures are
printed (run with ``-s``). Tumoroids cut by the frame border are left out on both sides
(the analysis does not report them: their size is unknown).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.segmentation import clear_border

from chipctl.analysis.live import Pipeline
from chipctl.analysis.segment import segment_brightfield
from tests.analysis import DAY_S, EXPOSURE_MS, HOUR_S, Scene, match_truth

#: Seeds drawn for this test only; the analysis was tuned on others.
SEEDS = (9001, 9002, 9003)


@pytest.mark.slow
def test_segmentation_accuracy_on_ground_truth():
    jaccard, area_error, diameter = [], [], []
    frames = 0
    for seed in SEEDS:
        for drug in (None, "paclitaxel"):  # growing, and dying (darker) tumoroids
            scene = Scene(seed, drug=drug)
            for day in (1.0, 3.0):
                scene.advance_to(day * DAY_S)
                for chamber in (1, 4, 8):
                    frame = scene.snap(chamber, "brightfield")
                    truth = scene.scope.truth_masks("brightfield")
                    seg = segment_brightfield(frame, scene.pixel_size_um)
                    frames += 1
                    for m in match_truth(seg.labels, truth, scene.pixel_size_um):
                        jaccard.append(m.jaccard)
                        area_error.append(m.area_error)
                        diameter.append(m.diameter_um)
    j = np.array(jaccard)
    err = np.abs(np.array(area_error))
    big = np.array(diameter) > 100.0
    print(
        f"\nsegmentation vs truth, {frames} frames, {j.size} tumoroids (seeds {SEEDS}):"
        f"\n  Jaccard: median {np.median(j):.3f}, 5th percentile {np.percentile(j, 5):.3f}, "
        f"min {j.min():.3f}; missed {int((j == 0).sum())}"
        f"\n  area error, {int(big.sum())} tumoroids over 100 um: "
        f"median {np.median(err[big]):.2%}, "
        f"95th percentile {np.percentile(err[big], 95):.2%}, max {err[big].max():.2%}"
    )
    assert j.size >= 100
    assert np.median(j) >= 0.90
    assert np.all(np.isfinite(err[big])) and err[big].max() <= 0.05


@pytest.mark.slow
def test_live_fraction_and_growth_rate_against_truth():
    """Stained endpoint: live fraction per tumoroid; time-lapse: the chamber growth rate."""
    seed = SEEDS[0]
    # live fraction across a dose series, at day 3
    scene = Scene(seed, drug="paclitaxel")
    scene.advance_to(3 * DAY_S)
    pipeline = Pipeline(["brightfield", "live", "dead"])
    errors = []
    for chamber in (1, 3, 5, 7):
        results = []
        for channel in ("brightfield", "live", "dead"):
            frame = scene.snap(chamber, channel)
            if channel == "brightfield":
                truth = scene.scope.truth_masks("brightfield")
                true = scene.scope.truth_tumoroids()
            results += pipeline.add(scene.record(chamber, channel), frame, EXPOSURE_MS[channel])
        (result,) = results
        for row in result.tumoroids:
            col = int(row.centroid_x_um / scene.pixel_size_um)
            label = truth[int(row.centroid_y_um / scene.pixel_size_um), col]
            errors.append(row.live_fraction - true.live_fraction[label - 1])
    errors_a = np.array(errors)
    print(
        f"\nlive fraction vs truth, {errors_a.size} tumoroids, paclitaxel series day 3: "
        f"median error {np.median(errors_a):+.3f}, max |error| {np.abs(errors_a).max():.3f}"
    )
    assert np.abs(errors_a).max() < 0.1

    # growth rate of an untreated chamber, 4-hourly, against the truth's over the same window
    scene = Scene(seed)
    pipeline = Pipeline(["brightfield"])
    t_h, true_volume = [], []
    for k in range(7):
        scene.advance_to(1.5 * DAY_S + 4 * k * HOUR_S)
        (result,) = pipeline.add(scene.record(3, "brightfield"), scene.snap(3, "brightfield"))
        in_view = np.unique(clear_border(scene.scope.truth_masks("brightfield")))[1:]
        radius = scene.biology.tumoroids().radius_um[in_view - 1]
        t_h.append(scene.t_s / HOUR_S)
        true_volume.append(float((4.0 / 3.0 * np.pi * radius**3).sum()))
    recent = slice(-4, None)  # the analysis's window: the last 12 h, 4 time points
    true_rate = float(np.polyfit(t_h[recent], np.log(true_volume[recent]), 1)[0])
    measured = result.chamber.growth_rate_per_h
    print(
        f"growth rate, chamber 3, last 12 h: measured {measured:.5f} /h, true {true_rate:.5f} /h "
        f"(doubling {math.log(2) / measured / 24:.2f} d vs {math.log(2) / true_rate / 24:.2f} d)"
    )
    assert measured == pytest.approx(true_rate, rel=0.1)
