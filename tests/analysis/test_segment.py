"""Brightfield segmentation and live/dead stain measurement."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.draw import disk, line

from chipctl.analysis.segment import (
    BrightfieldParams,
    StainParams,
    StainSignal,
    channel_role,
    live_dead_areas,
    measure_stain,
    segment_brightfield,
)
from tests.analysis import DAY_S, Scene, match_truth

PX = 3.25


def _field(shape=(256, 256), level=20000.0, seed=0):
    """Flat gel with 2 % noise and a slow illumination falloff."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    falloff = 1.0 - 0.15 * ((yy - shape[0] / 2) ** 2 + (xx - shape[1] / 2) ** 2) / shape[0] ** 2
    return level * falloff * (1.0 + 0.02 * rng.standard_normal(shape))


def _dark_disc(image, centre, radius_px, contrast=0.5):
    rr, cc = disk(centre, radius_px, shape=image.shape)
    image[rr, cc] *= 1.0 - contrast


# -- synthetic frames: what is and is not a tumoroid ----------------------------------------


def test_dark_discs_are_found_with_their_area():
    image = _field()
    _dark_disc(image, (80, 80), 20)
    _dark_disc(image, (170, 160), 12, contrast=0.35)
    seg = segment_brightfield(image.astype(np.uint16), PX)
    assert seg.n == 2
    areas = sorted(np.bincount(seg.labels.ravel())[1:])
    true = sorted(len(disk((0, 0), r)[0]) for r in (12, 20))
    assert areas == pytest.approx(true, rel=0.05)
    box, mask = seg.mask(1)
    assert mask.sum() == (seg.labels == 1).sum()
    assert seg.labels[box][mask].min() == 1


def test_border_objects_small_objects_and_lines_are_not_tumoroids():
    image = _field()
    _dark_disc(image, (5, 128), 20)  # cut by the frame border
    _dark_disc(image, (200, 60), 3)  # 20 um: below the 30 um minimum
    rr, cc = line(150, 10, 150, 240)  # a chamber wall: long, dark, 4 px wide
    for d in range(-2, 2):
        image[rr + d, cc] *= 0.45
    rr, cc = line(40, 200, 120, 230)  # a thin dark fibroblast
    image[rr, cc] *= 0.8
    seg = segment_brightfield(image, PX)
    assert seg.n == 0
    kept = segment_brightfield(image, PX, BrightfieldParams(exclude_border=False))
    assert kept.n >= 1  # the border tumoroid is there when asked for
    assert kept.labels[5, 128] > 0


def test_blank_and_uniform_frames_give_no_tumoroids():
    assert segment_brightfield(np.zeros((64, 64), np.uint16), PX).n == 0
    assert segment_brightfield(np.full((64, 64), 500, np.uint16), PX).n == 0


@pytest.mark.parametrize(
    ("frame", "pixel", "message"),
    [
        (np.zeros((4, 4, 3)), PX, "2-D image"),
        (np.zeros((64, 64)), 0.0, "pixel_size_um must be > 0"),
        (np.zeros((64, 64)), math.nan, "pixel_size_um must be > 0"),
    ],
)
def test_bad_frames_are_one_line_errors(frame, pixel, message):
    with pytest.raises(ValueError, match=message) as info:
        segment_brightfield(frame, pixel)
    assert "\n" not in str(info.value)


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="threshold_contrast < seed_contrast"):
        BrightfieldParams(threshold_contrast=0.4, seed_contrast=0.3)
    with pytest.raises(ValueError, match="ring_um"):
        StainParams(ring_um=(10.0, 5.0))


def test_channel_roles():
    assert channel_role("Brightfield") == "brightfield"
    assert channel_role("calcein") == "live"
    assert channel_role("EthD-1") == "dead"
    assert channel_role("uv") is None


# -- the simulator -------------------------------------------------------------------------


def test_every_tumoroid_in_a_simulated_field_is_found_and_nothing_else():
    scene = Scene(seed=11)
    scene.advance_to(2 * DAY_S)
    for chamber in (2, 7):
        frame = scene.snap(chamber, "brightfield")
        truth = scene.scope.truth_masks("brightfield")
        seg = segment_brightfield(frame, scene.pixel_size_um)
        matches = match_truth(seg.labels, truth, scene.pixel_size_um)
        assert matches, "the field should hold tumoroids"
        assert all(m.jaccard > 0.85 for m in matches)
        # every object found is a true tumoroid
        found = set(np.unique(seg.labels[truth > 0])) - {0}
        assert found == set(range(1, seg.n + 1))
        assert seg.n == len(matches)


@pytest.mark.parametrize("dz_um", [-60.0, 60.0])
def test_segmentation_holds_out_of_focus(dz_um):
    scene = Scene(seed=12)
    scene.advance_to(1 * DAY_S)
    frame = scene.snap(4, "brightfield", dz_um=dz_um)
    seg = segment_brightfield(frame, scene.pixel_size_um)
    matches = match_truth(seg.labels, scene.scope.truth_masks("brightfield"), scene.pixel_size_um)
    jaccard = [m.jaccard for m in matches]
    print(
        f"\ndz {dz_um:+.0f} um: {len(jaccard)} tumoroids, median Jaccard {np.median(jaccard):.3f}"
    )
    assert np.median(jaccard) >= 0.9


# -- stains --------------------------------------------------------------------------------


def _stained(scene, chamber):
    bf = scene.snap(chamber, "brightfield")
    truth = scene.scope.truth_masks("brightfield")
    true = scene.scope.truth_tumoroids()
    seg = segment_brightfield(bf, scene.pixel_size_um)
    live = measure_stain(scene.snap(chamber, "live"), seg, exposure_ms=80.0)
    dead = measure_stain(scene.snap(chamber, "dead"), seg, exposure_ms=800.0)
    return seg, truth, true, live, dead


def test_live_fraction_follows_the_true_viability_across_a_dose_series():
    scene = Scene(seed=13, drug="mmae")
    scene.advance_to(3 * DAY_S)
    errors, fractions = [], []
    for chamber in (1, 5, 8):
        seg, truth, true, live, dead = _stained(scene, chamber)
        areas = live_dead_areas(live, dead, seg.pixel_size_um)
        assert len(areas) == seg.n
        for label, area in enumerate(areas, start=1):
            box, mask = seg.mask(label)
            true_label = np.bincount(truth[box][mask]).argmax()
            assert true_label > 0
            errors.append(area.live_fraction - true.live_fraction[true_label - 1])
            assert area.live_area_um2 + area.dead_area_um2 <= mask.sum() * PX**2 * (1 + 1e-9)
        fractions.append(np.median([a.live_fraction for a in areas]))
    print(
        f"\nlive fraction error: median {np.median(errors):+.3f}, "
        f"max |.| {np.abs(errors).max():.3f}"
    )
    assert fractions[0] > 0.95  # the control is alive
    assert fractions[0] > fractions[1] > fractions[2]  # and the drug kills with dose
    assert np.abs(errors).max() < 0.1


def test_one_stain_gives_its_area_and_no_live_fraction():
    scene = Scene(seed=13)
    scene.advance_to(1 * DAY_S)
    seg, _, _, live, _ = _stained(scene, 3)
    areas = live_dead_areas(live, None, seg.pixel_size_um)
    whole = np.bincount(seg.labels.ravel())[1:] * PX**2
    for area, total in zip(areas, whole):
        assert math.isnan(area.live_fraction) and math.isnan(area.dead_area_um2)
        assert 0.6 * total < area.live_area_um2 <= total * (1 + 1e-9)
    assert live_dead_areas(None, None, PX) == []


def test_brighter_dead_stain_lowers_the_live_fraction():
    signal = (np.full(100, 10.0, np.float32),)
    live = StainSignal(signal, (1.0,), exposure_ms=10.0)
    dead = StainSignal(signal, (1.0,), exposure_ms=10.0)
    (even,) = live_dead_areas(live, dead, 1.0)
    (bright,) = live_dead_areas(live, dead, 1.0, StainParams(dead_brightness=3.0))
    assert even.live_fraction == pytest.approx(0.5)
    assert even.live_area_um2 == pytest.approx(50.0)
    assert bright.live_fraction == pytest.approx(0.75)
    long_dead = StainSignal(signal, (1.0,), exposure_ms=30.0)
    (longer,) = live_dead_areas(live, long_dead, 1.0)
    assert longer.live_fraction == pytest.approx(0.75)


def test_a_stain_frame_of_another_shape_is_refused():
    seg = segment_brightfield(np.zeros((64, 64)), PX)
    with pytest.raises(ValueError, match="does not match the brightfield frame"):
        measure_stain(np.zeros((32, 32)), seg)
