"""Simulated microscope: geometry, camera statistics, optics, truth masks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from simulator.biology import Biology, SeedingParams, build_reference_biology
from simulator.microscope import Appearance, CameraParams, Objective, SimMicroscope
from simulator.world import World

DAY = 86400.0
FLAT = Appearance(texture_amplitude=0.0)


def _empty_biology() -> Biology:
    return Biology(
        lambda: {},
        [],
        np.random.default_rng(0),
        seeding=SeedingParams(tumoroids_per_chamber=0),
        caf_ratio=[0.0] * 8,
    )


def _flat_scope(**camera) -> SimMicroscope:
    """Clear gel, no texture, no fibroblasts, no tumoroids, no vignetting: a flat field."""
    cam = CameraParams(sensor_shape=(256, 256), vignetting_corner=1.0, **camera)
    scope = SimMicroscope(_empty_biology(), seed=1, camera=cam, appearance=FLAT)
    x, y, z = scope.chamber_positions_um()[2]
    scope.move_to(x, y, z)
    return scope


def _grown_scope(seed=3, days=3.0, **kwargs):
    world = World(0)
    bio = build_reference_biology(world, lambda: {}, seed=seed)
    world.advance_to(0.0)
    world.advance_to(days * DAY)
    scope = SimMicroscope(bio, seed=2, **kwargs)
    return bio, scope


def _goto_largest(bio, scope, chamber=0):
    t = bio.tumoroids()
    sel = np.flatnonzero(t.chamber == chamber)
    i = sel[np.argmax(t.radius_um[sel])]
    x0, y0 = bio.layout.origin_um(chamber)
    scope.move_to(x0 + t.x_um[i], y0 + t.y_um[i], scope.focus_z_um)
    return i


# ---- geometry ---------------------------------------------------------------------------


def test_pixel_size_fov_and_depth_of_field():
    _, scope = _grown_scope()
    assert scope.pixel_size_um == pytest.approx(1.625)  # 6.5 um / 4x
    assert scope.field_of_view_um() == pytest.approx((3328.0, 3328.0))
    assert scope.depth_of_field_um == pytest.approx(45.0, abs=1.0)
    ten_x = SimMicroscope(_empty_biology(), objective=Objective(10.0, 0.3))
    assert ten_x.pixel_size_um == pytest.approx(0.65)


def test_chamber_positions_are_inside_the_chambers():
    scope = _flat_scope()
    positions = scope.chamber_positions_um()
    assert len(positions) == 8
    xs = [p[0] for p in positions]
    assert np.all(np.diff(xs) == pytest.approx(3000.0))
    assert positions[0][0] == pytest.approx(-10500.0)
    scope.move_to(*positions[5])
    assert scope.position_um() == positions[5]
    offset = scope.camera.offset_adu
    gel = scope.snap(roi=(100, 100, 48, 48), noise=False).astype(float) - offset
    scope.move_to(positions[5][0] + 1500.0, positions[5][1])  # between chambers: PDMS
    pdms = scope.snap(roi=(100, 100, 48, 48), noise=False).astype(float) - offset
    assert pdms.mean() / gel.mean() == pytest.approx(FLAT.pdms_transmission, abs=0.002)
    scope.move_to(positions[5][0] + 1000.0, positions[5][1])  # on the wall
    wall = scope.snap(roi=(100, 100, 56, 56), noise=False).astype(float) - offset
    assert wall.mean(axis=0).min() / gel.mean() == pytest.approx(FLAT.wall_transmission, abs=0.01)


# ---- camera statistics ----------------------------------------------------------------


def test_background_level_scales_with_exposure_and_gain():
    scope = _flat_scope()
    offset = scope.camera.offset_adu
    base = scope.snap(exposure_ms=5.0, noise=False).mean() - offset
    # 2000 photons/px/ms x QE 0.8 x 5 ms / 0.5 e-/ADU (+ dark current)
    assert base == pytest.approx(2000 * 0.8 * 5 / 0.5, rel=1e-3)
    assert scope.snap(exposure_ms=10.0, noise=False).mean() - offset == pytest.approx(
        2 * base, rel=1e-3
    )
    assert scope.snap(exposure_ms=5.0, gain=1.5, noise=False).mean() - offset == pytest.approx(
        1.5 * base, rel=1e-3
    )
    noisy = scope.snap(exposure_ms=5.0).astype(float)
    assert noisy.mean() - offset == pytest.approx(base, rel=2e-3)


@pytest.mark.parametrize("gain", [1.0, 2.0])
def test_noise_variance_follows_shot_and_read_noise(gain):
    scope = _flat_scope()
    k = gain / scope.camera.e_per_adu  # ADU per electron
    sigma_e = scope.camera.read_noise_e
    means, variances = [], []
    for exposure_ms in (0.002, 0.01, 0.1, 1.0, 4.0):
        frames = np.stack([scope.snap(exposure_ms=exposure_ms, gain=gain) for _ in range(3)])
        adu = frames.astype(float) - scope.camera.offset_adu
        means.append(adu.mean())
        variances.append(adu.var(axis=(1, 2)).mean())
    for m, v in zip(means, variances):
        electrons = m / k
        expected = k**2 * (electrons + sigma_e**2) + 1 / 12  # + quantisation
        assert v == pytest.approx(expected, rel=0.05), (m, v, expected)
    slope = np.polyfit(means[1:], variances[1:], 1)[0]
    assert slope == pytest.approx(k, rel=0.03)


def test_low_signal_pixels_are_poisson():
    scope = _flat_scope(read_noise_e=0.0)
    k = 1.0 / scope.camera.e_per_adu
    frame = scope.snap(exposure_ms=0.001).astype(float) - scope.camera.offset_adu
    electrons = np.round(frame / k)
    # 2000 x 0.8 x 0.001 = 1.6 e- mean: integer counts with Poisson variance
    assert electrons.mean() == pytest.approx(1.6, rel=0.03)
    assert electrons.var() == pytest.approx(1.6, rel=0.05)
    assert (electrons == 0).mean() == pytest.approx(math.exp(-1.6), rel=0.05)


@pytest.mark.parametrize("bit_depth", [8, 12, 16])
def test_saturation_at_bit_depth(bit_depth):
    scope = _flat_scope()
    top = 2**bit_depth - 1
    frame = scope.snap(exposure_ms=1000.0, gain=4.0, bit_depth=bit_depth)
    assert frame.dtype == np.uint16
    assert frame.max() == top and frame.min() == top
    dim = scope.snap(exposure_ms=1.0, bit_depth=bit_depth, noise=False)
    expected = (100 + 2000 * 0.8 * 1.0 / 0.5) / 2 ** (16 - bit_depth)
    assert dim.mean() == pytest.approx(expected, abs=0.6)


def test_full_well_limits_the_signal_at_unit_gain():
    scope = _flat_scope()
    frame = scope.snap(exposure_ms=1000.0, noise=False)
    assert frame.max() == round(100 + 30000 / 0.5)


def test_vignetting_falloff():
    cam = CameraParams(sensor_shape=(512, 512), vignetting_corner=0.8)
    scope = SimMicroscope(_empty_biology(), camera=cam, appearance=FLAT)
    scope.move_to(*scope.chamber_positions_um()[1])
    # 512 px x 1.625 um = 832 um field, inside the 2 mm chamber
    frame = scope.snap(exposure_ms=5.0, noise=False).astype(float) - cam.offset_adu
    centre = frame[254:258, 254:258].mean()
    assert frame[0, 0] / centre == pytest.approx(0.8, abs=0.005)
    assert frame[256, 0] / centre == pytest.approx(1 / (1 + (0.8**-0.5 - 1) / 2) ** 2, abs=0.01)
    assert frame[256, 0] / centre > frame[0, 0] / centre


def test_defocus_reduces_high_frequency_energy():
    bio, scope = _grown_scope(camera=CameraParams(sensor_shape=(512, 512)))
    _goto_largest(bio, scope)
    x, y, z = scope.position_um()

    def hf_energy(img):
        a = img.astype(float)
        lap = 4 * a[1:-1, 1:-1] - a[:-2, 1:-1] - a[2:, 1:-1] - a[1:-1, :-2] - a[1:-1, 2:]
        return float(np.mean(lap**2))

    focused = hf_energy(scope.snap(noise=False))
    scope.move_to(x, y, z + 150.0)
    slightly = hf_energy(scope.snap(noise=False))
    scope.move_to(x, y, z + 400.0)
    far = hf_energy(scope.snap(noise=False))
    assert slightly < 0.7 * focused
    assert far < 0.3 * focused
    scope.move_to(x, y, z)
    live_focused = scope.snap("live", 100.0, noise=False)
    scope.move_to(x, y, z + 400.0)
    live_far = scope.snap("live", 100.0, noise=False)
    assert hf_energy(live_far) < 0.3 * hf_energy(live_focused)
    # blur redistributes light, it does not remove it
    assert live_far.astype(float).sum() == pytest.approx(live_focused.astype(float).sum(), rel=0.02)


# ---- ROI and binning ------------------------------------------------------------------


def test_roi_and_binning_shapes_and_sums():
    bio, scope = _grown_scope(camera=CameraParams(sensor_shape=(512, 512)))
    _goto_largest(bio, scope)
    offset = scope.camera.offset_adu
    full = scope.snap(exposure_ms=2.0, noise=False).astype(float)
    roi = (64, 32, 200, 120)
    part = scope.snap(exposure_ms=2.0, roi=roi, noise=False).astype(float)
    assert part.shape == (120, 200)
    np.testing.assert_allclose(part, full[32:152, 64:264], atol=1.0)
    # 2 ms: the 2x2 sums stay below the 16-bit ceiling
    binned = scope.snap(exposure_ms=2.0, binning=2, noise=False).astype(float)
    assert binned.shape == (256, 256)
    sums = (full - offset).reshape(256, 2, 256, 2).sum(axis=(1, 3))
    np.testing.assert_allclose(binned - offset, sums, atol=2.5)
    b4 = scope.snap(exposure_ms=1.0, roi=(0, 0, 256, 128), binning=4)
    assert b4.shape == (32, 64)
    assert scope.truth_masks().shape == (32, 64)
    with pytest.raises(ValueError, match="divisible"):
        scope.snap(roi=(0, 0, 30, 30), binning=4)
    with pytest.raises(ValueError, match="outside"):
        scope.snap(roi=(500, 0, 30, 30))
    with pytest.raises(ValueError, match="bit_depth"):
        scope.snap(bit_depth=10)
    with pytest.raises(ValueError, match="channel"):
        scope.snap("uv")


# ---- scene content and ground truth ----------------------------------------------------


def test_thresholded_tumoroid_area_matches_the_truth_mask():
    cam = CameraParams(sensor_shape=(1024, 1024), vignetting_corner=1.0)
    bio, scope = _grown_scope(seed=4, days=4.0, camera=cam, appearance=FLAT)
    _goto_largest(bio, scope, chamber=2)
    _, y, z = scope.position_um()
    scope.move_to(bio.layout.centre_um(2)[0], y, z)
    # a 975 um wide ROI inside the 2 mm chamber: no walls in the field
    roi = (212, 0, 600, 1024)
    img = scope.snap(exposure_ms=5.0, roi=roi, noise=False).astype(float) - cam.offset_adu
    mask = scope.truth_masks("brightfield")
    labels = np.unique(mask[mask > 0])
    assert labels.size >= 3
    gel = np.median(img[mask == 0])
    edge_level = gel * (1 + math.exp(-scope.appearance.edge_absorbance)) / 2
    area_img = np.count_nonzero(img < edge_level)
    area_truth = np.count_nonzero(mask)
    assert area_img == pytest.approx(area_truth, rel=0.02)
    # and per object, against the truth radius
    t = scope.truth_tumoroids()
    for label in labels:
        idx = label - 1
        full = np.count_nonzero(mask == label)
        disc = math.pi * (t.radius_um[idx] / scope.pixel_size_um) ** 2
        if full > 0.99 * disc:  # not cut by the border
            assert full == pytest.approx(disc, rel=0.02)


def test_truth_labels_match_positions_and_the_image():
    bio, scope = _grown_scope(camera=CameraParams(sensor_shape=(1024, 1024)))
    i = _goto_largest(bio, scope, chamber=1)
    img = scope.snap(exposure_ms=5.0)
    mask = scope.truth_masks()
    names = scope.truth_labels()
    assert names[i + 1] == (1, int(bio.ident[i]))
    rows, cols = np.nonzero(mask == i + 1)
    assert rows.mean() == pytest.approx(511.5, abs=1.0)  # the stage is centred on it
    assert cols.mean() == pytest.approx(511.5, abs=1.0)
    assert img[mask > 0].mean() < 0.8 * img[mask == 0].mean()  # tumoroids are dark


def test_live_and_dead_stains_follow_the_truth():
    world = World(0)
    conc = {"mmae": np.array([0, 0, 0, 0, 0, 0, 0, 50.0])}
    bio = build_reference_biology(world, lambda: conc, seed=3)
    world.advance_to(0.0)
    world.advance_to(5 * DAY)
    cam = CameraParams(sensor_shape=(1024, 1024))
    scope = SimMicroscope(bio, camera=cam)
    signals = {}
    for chamber in (0, 7):
        _goto_largest(bio, scope, chamber=chamber)
        live = scope.snap("live", 100.0, noise=False).astype(float)
        mask = scope.truth_masks("brightfield")
        dead = scope.snap("dead", 100.0, noise=False).astype(float)
        signals[chamber] = (live[mask > 0].mean(), dead[mask > 0].mean())
    t = bio.tumoroids()
    assert np.mean(t.live_fraction[t.chamber == 7]) < 0.5 * np.mean(t.live_fraction[t.chamber == 0])
    assert signals[7][0] < 0.5 * signals[0][0]  # less calcein
    assert signals[7][1] > 2.0 * signals[0][1]  # more EthD-1
    assert scope.truth_masks("dead").max() > 0


def test_same_seed_same_frames():
    frames = []
    for _ in range(2):
        bio, scope = _grown_scope(camera=CameraParams(sensor_shape=(256, 256)))
        _goto_largest(bio, scope)
        frames.append([scope.snap(), scope.snap("live", 50.0)])
    np.testing.assert_array_equal(frames[0][0], frames[1][0])
    np.testing.assert_array_equal(frames[0][1], frames[1][1])
    assert not np.array_equal(frames[0][0], scope.snap())  # fresh noise each frame


def test_digitize_accepts_slightly_negative_mean_signal_from_blur_ringing():
    from simulator.microscope.camera import CameraParams, NormalBank, digitize

    camera = CameraParams(sensor_shape=(64, 64))
    signal = np.full((64, 64), 5.0, dtype=np.float32)
    signal[10:20, 10:20] = -1e-3  # what an FFT blur leaves near a sharp dark edge
    rng = np.random.default_rng(0)
    bank = NormalBank(rng, 64 * 64)
    frame = digitize(signal, camera, gain=1.0, binning=1, bit_depth=16, bank=bank, rng=rng)
    assert frame.shape == (64, 64) and frame.min() >= 0
