"""Tumoroid biology: growth, necrotic core, drug classes, fibroblasts, truth, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest

from simulator.biology import (
    AdcDrug,
    Biology,
    CytostaticDrug,
    CytotoxicDrug,
    GRParams,
    SeedingParams,
    build_reference_biology,
    growth,
)
from simulator.world import World

DAY = 86400.0
HOUR = 3600.0
N_CH = 8


class Dosing:
    """A mutable constant-per-chamber exposure (nM), like the drug-transport model's."""

    def __init__(self, **conc_nm: list[float]) -> None:
        self.conc = {name: np.asarray(c, dtype=float) for name, c in conc_nm.items()}

    def __call__(self) -> dict[str, np.ndarray]:
        return self.conc


def _world(bio_factory, *, max_step_s=HOUR):
    world = World(0, max_step_s=max_step_s)
    bio = bio_factory()
    world.add(bio)
    world.advance_to(0.0)
    return world, bio


def _bio(drugs, exposure, *, seed=1, caf=None, **seeding):
    defaults = {"lag_max_s": 0.0}
    defaults.update(seeding)
    return Biology(
        exposure,
        drugs,
        np.random.default_rng(seed),
        seeding=SeedingParams(**defaults),
        caf_ratio=[0.0] * N_CH if caf is None else caf,
    )


# ---- growth and necrotic core ---------------------------------------------------------


def test_diffusion_limit_and_core_table_from_the_reference():
    r_l = growth.diffusion_limit_um()
    assert r_l == pytest.approx(214, abs=1)
    # domain reference 2.3 table: R_l 214 um -> 500/600/800 um spheres: 170/296/517 um cores
    cores = 2 * growth.necrotic_radius_um(np.array([150.0, 250.0, 300.0, 400.0]), 214.0)
    assert cores[0] == 0.0
    assert cores[1:] == pytest.approx([170, 296, 517], abs=3)
    # R_l 151 um: 400 um sphere -> 181 um core
    assert 2 * growth.necrotic_radius_um(np.array([200.0]), 151.0)[0] == pytest.approx(181, abs=3)


def test_drug_free_growth_matches_the_analytic_gompertz_curve():
    caf = [0.0, 0.5, 1.0, 2.0, 0.0, 0.5, 1.0, 2.0]
    world, bio = _world(lambda: _bio([], Dosing(), caf=caf, lag_max_s=2 * DAY))
    for t_end in (0.5 * DAY, 3 * DAY, 10 * DAY):
        world.advance_to(t_end)
        truth = bio.tumoroids()
        # independent analytic form: V0 exp[(m r / rho)(1 - exp(-rho a))], a = t - lag
        f = np.asarray(caf)[bio.chamber]
        m_caf = 1 + 0.3 * f / (1 + f)
        age = np.maximum(t_end - bio.lag_s, 0.0)
        r, rho = bio.rate_per_s, bio.rho_per_s
        expected = bio.v0_um3 * np.exp(m_caf * r / rho * (1 - np.exp(-rho * age)))
        np.testing.assert_allclose(truth.volume_um3, expected, rtol=1e-9)
        np.testing.assert_allclose(truth.untreated_volume_um3, expected, rtol=1e-9)
    # the plateau is the 1 mm spheroid (without fibroblasts)
    vmax = growth.sphere_volume_um3(np.array(500.0))
    np.testing.assert_allclose(bio.v0_um3 * np.exp(bio.rate_per_s / bio.rho_per_s), vmax)
    assert set(truth.state) <= {"growing"}


def test_integration_does_not_depend_on_the_world_step():
    coarse_world, coarse = _world(lambda: _bio([], Dosing()), max_step_s=math.inf)
    fine_world, fine = _world(lambda: _bio([], Dosing()), max_step_s=97.0)
    coarse_world.advance_to(2 * DAY)
    fine_world.advance_to(2 * DAY)
    np.testing.assert_allclose(coarse.tumoroids().volume_um3, fine.tumoroids().volume_um3)


def test_large_tumoroids_get_a_necrotic_core_and_lose_live_fraction():
    world, bio = _world(lambda: _bio([], Dosing(), diameter_median_um=300.0))
    world.advance_to(8 * DAY)
    t = bio.tumoroids()
    big = t.radius_um > 250
    assert big.any()
    assert np.all(t.necrotic_radius_um[big] > 0)
    assert np.all(t.live_fraction[big] < 1)
    small = t.radius_um < 200
    assert np.all(t.necrotic_radius_um[small] == 0)
    np.testing.assert_allclose(
        t.necrotic_radius_um, growth.necrotic_radius_um(t.radius_um, bio.o2_limit_um)
    )


# ---- cytostatic: planted GR curve ----------------------------------------------------

CONC = [0.0, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0]


@pytest.mark.parametrize("gr_inf", [0.4, -0.4])
def test_planted_gr_curve_is_what_each_chamber_experiences(gr_inf):
    planted = GRParams(gr_inf=gr_inf, gec50_nm=3.0, hill=1.5)
    # fast effect site so that the exposure is the effect from the start
    drug = CytostaticDrug("cs", planted, ke0_per_s=1.0)
    caf = [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 2.0, 2.0]
    world, bio = _world(lambda: _bio([drug], Dosing(cs=CONC), caf=caf))
    world.advance_to(1 * HOUR)
    v0, c0 = bio.tumoroids().live_volume_um3, bio.untreated_volume_um3()
    world.advance_to(4 * DAY)
    t = bio.tumoroids()
    # the viable amount is the living volume; a necrotic core (in the few large starters)
    # is dead by definition and not part of the drug response
    no_core = t.necrotic_radius_um == 0
    assert no_core.mean() > 0.9
    gr_each = 2 ** (np.log(t.live_volume_um3 / v0) / np.log(t.untreated_volume_um3 / c0)) - 1
    effective = bio.effective_gr_params("cs")
    for k in range(N_CH):
        expected = float(effective[k].gr(CONC[k]))
        np.testing.assert_allclose(gr_each[(bio.chamber == k) & no_core], expected, atol=1e-9)
    # chambers without fibroblasts experience exactly the planted curve
    for k in range(4):
        assert effective[k] == planted
        assert float(planted.gr(CONC[k])) == pytest.approx(np.median(gr_each[bio.chamber == k]))


def test_pooled_chamber_gr_is_exact_for_a_homogeneous_population():
    planted = GRParams(gr_inf=0.1, gec50_nm=3.0, hill=2.0)
    drug = CytostaticDrug("cs", planted, ke0_per_s=1.0)
    world, bio = _world(
        lambda: _bio([drug], Dosing(cs=CONC), diameter_sigma_log=0.0, doubling_sigma_log=0.0)
    )
    world.advance_to(HOUR)
    x0 = np.bincount(bio.chamber, bio.tumoroids().live_volume_um3)
    ctrl0 = np.bincount(bio.chamber, bio.untreated_volume_um3())
    world.advance_to(5 * DAY)
    x = np.bincount(bio.chamber, bio.tumoroids().live_volume_um3)
    ctrl = np.bincount(bio.chamber, bio.untreated_volume_um3())
    gr = 2 ** (np.log2(x / x0) / np.log2(ctrl / ctrl0)) - 1
    np.testing.assert_allclose(gr, planted.gr(np.asarray(CONC)), atol=1e-9)
    assert gr[0] == pytest.approx(1.0)


def test_gr50_formula():
    p = GRParams(gr_inf=-0.2, gec50_nm=2.0, hill=1.3)
    assert float(p.gr(p.gr50_nm())) == pytest.approx(0.5)
    assert GRParams(0.6, 1.0, 1.0).gr50_nm() == math.inf


def test_effect_site_delays_the_cytostatic_effect():
    drug = CytostaticDrug("cs", GRParams(0.0, 1.0, 2.0))  # k_e0 = ln2 / 6 h
    world, bio = _world(lambda: _bio([drug], Dosing(cs=[0, 1000, 0, 0, 0, 0, 0, 0])))
    world.advance_to(HOUR)
    assert bio._effect_nm["cs"][1] == pytest.approx(1000 * (1 - 2 ** (-1 / 6)), rel=1e-6)
    world.advance_to(3 * DAY)
    t = bio.tumoroids()
    one = t.chamber == 1
    assert np.all(t.state[one] == "arrested")
    assert np.all(t.live_volume_um3[one] < t.untreated_volume_um3[one])


# ---- cytotoxic, ADC, fibroblasts, regrowth --------------------------------------------


def test_cytotoxic_death_is_delayed():
    drug = CytotoxicDrug("ctx", ec50_nm=1.0)
    world, bio = _world(lambda: _bio([drug], Dosing(ctx=[0, 100, 0, 0, 0, 0, 0, 0])))
    ratio = []
    dead = []
    for t_end in (6 * HOUR, 12 * HOUR, 4 * DAY):
        world.advance_to(t_end)
        t = bio.tumoroids()
        one = t.chamber == 1
        ratio.append(t.live_volume_um3[one].sum() / t.untreated_volume_um3[one].sum())
        dead.append(float(np.mean(t.dead_fraction[one])))
    assert dead[0] < 0.005 and dead[1] < 0.02  # damaged cells are still alive
    assert ratio[1] > 0.9
    assert dead[2] > 0.3 and ratio[2] < 0.3
    untreated = bio.tumoroids()
    assert np.all(untreated.dead_fraction[untreated.chamber == 0] < 1e-12)
    assert "dying" in set(untreated.state[untreated.chamber == 1])


def _adc_run(radius_um):
    adc = AdcDrug("adc", bystander_radius_um=radius_um)
    dosing = Dosing(adc=[0, 10, 10, 10, 10, 10, 10, 10])
    world, bio = _world(
        lambda: _bio(
            [adc],
            dosing,
            seed=5,
            antigen_positive_fraction=0.5,
            tumoroids_per_chamber=60,
            min_spacing_um=160.0,
        )
    )
    world.advance_to(1 * DAY)
    bystander_day1 = bio.bystander_nm("adc")
    world.advance_to(5 * DAY)
    return bio, bio.tumoroids(), bystander_day1


def _has_positive_neighbour(t, radius_um):
    xyz = np.stack([t.x_um, t.y_um, t.z_um], axis=1)
    d = np.linalg.norm(xyz[:, None, :] - xyz[None, :, :], axis=2)
    same = t.chamber[:, None] == t.chamber[None, :]
    near_pos = same & (d <= radius_um) & (d > 0) & t.antigen_positive[None, :]
    return near_pos.any(axis=1)


def test_adc_kills_antigen_positive_and_bystanders():
    radius = 400.0
    _, t, bystander = _adc_run(radius)
    _, t_none, bystander_none = _adc_run(1e-6)
    treated = t.chamber > 0
    pos, neg = treated & t.antigen_positive, treated & ~t.antigen_positive
    rel = t.live_volume_um3 / t.untreated_volume_um3
    rel_none = t_none.live_volume_um3 / t_none.untreated_volume_um3
    # antigen-positive tumoroids are killed through the internalised payload
    assert np.median(rel[pos]) < 0.5
    # without bystander payload antigen-negative tumoroids are untouched ...
    assert np.all(bystander_none == 0)
    np.testing.assert_allclose(rel_none[neg], 1.0, rtol=1e-9)
    # ... with it, those next to antigen-positive neighbours die too, the others do not
    exposed = neg & _has_positive_neighbour(t, radius)
    assert exposed.sum() >= 10
    assert np.all(bystander[exposed] > 0)
    assert np.median(rel[exposed]) < 0.95
    assert np.min(rel[exposed]) < 0.6
    # the more payload a tumoroid received, the more it lost
    order = np.argsort(bystander[exposed])
    low_half, high_half = np.array_split(rel[exposed][order], 2)
    assert np.mean(high_half) < np.mean(low_half)
    far = neg & ~_has_positive_neighbour(t, radius)
    assert far.sum() >= 5
    assert np.all(bystander[far] == 0)
    np.testing.assert_allclose(rel[far], 1.0, rtol=1e-9)
    np.testing.assert_allclose(rel[t.chamber == 0], 1.0, rtol=1e-9)


def test_fibroblasts_speed_growth_and_protect_against_drugs():
    drug = CytotoxicDrug("ctx", ec50_nm=1.0)
    caf = [0.0, 2.0, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0]
    world, bio = _world(lambda: _bio([drug], Dosing(ctx=[0, 0, 1, 1, 0, 0, 0, 0]), caf=caf))
    world.advance_to(HOUR)
    v_start = bio.tumoroids().live_volume_um3
    world.advance_to(4 * DAY)
    t = bio.tumoroids()
    log_growth = np.log(t.untreated_volume_um3 / v_start)
    per_rate = log_growth / np.log(bio.untreated_volume_um3() / v_start)
    assert per_rate == pytest.approx(1.0)
    # growth: same tumoroid rate draws, 1 + 0.3 * 2/3 = 1.2x faster with f = 2
    speed = np.log(t.untreated_volume_um3 / bio.v0_um3) / (bio.rate_per_s * 4 * DAY)
    assert np.median(speed[bio.chamber == 1]) > 1.15 * np.median(speed[bio.chamber == 0])
    rel = t.live_volume_um3 / t.untreated_volume_um3
    assert np.median(rel[bio.chamber == 3]) > np.median(rel[bio.chamber == 2]) + 0.15
    np.testing.assert_allclose(bio.effective_ec50_nm("ctx")[[0, 1]], [1.0, 1.0 + 2 * 2 / 3])


def test_regrowth_after_the_drug_is_withdrawn():
    drug = CytotoxicDrug("ctx", ec50_nm=1.0)
    dosing = Dosing(ctx=[0, 10, 0, 0, 0, 0, 0, 0])
    world, bio = _world(lambda: _bio([drug], dosing))
    live = []
    for day in range(1, 21):
        if day == 4:  # exposure stops at day 3
            dosing.conc["ctx"] = np.zeros(N_CH)
        world.advance_to(day * DAY)
        t = bio.tumoroids()
        live.append(t.live_volume_um3[t.chamber == 1].sum())
    # damaged cells keep dying for ~3/k1 after the effect site has washed out, then the
    # survivors regrow at the specific rate of an untreated tumoroid of the same age
    low = int(np.argmin(live))
    assert 5 <= low < 14
    assert live[low] < 0.1 * live[0]
    assert live[-1] > 1.5 * live[low]
    assert np.all(np.diff(live[low:]) > 0)
    t = bio.tumoroids()
    assert np.all(t.state[t.chamber == 1] == "growing")


# ---- determinism and the reference patient ---------------------------------------------


def _reference_truth(seed):
    world = World(123)
    dosing = Dosing(**{"t-vc-mmae": [0, 0.1, 0.3, 1, 3, 10, 30, 100]})
    bio = build_reference_biology(world, dosing, seed=seed)
    world.advance_to(0.0)
    world.advance_to(3 * DAY)
    return bio, bio.tumoroids()


def test_same_seed_same_world_other_seed_other_patient():
    bio_a, a = _reference_truth(7)
    bio_b, b = _reference_truth(7)
    _, c = _reference_truth(8)
    for field in ("x_um", "y_um", "radius_um", "live_fraction", "volume_um3"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert bio_a.metadata["patient"] == bio_b.metadata["patient"]
    assert not np.array_equal(a.radius_um, c.radius_um)
    fa, fb = bio_a.fibroblasts(3), bio_b.fibroblasts(3)
    np.testing.assert_array_equal(fa.x_um, fb.x_um)


def test_reference_biology_truth_accessors():
    bio, t = _reference_truth(11)
    assert len(t) == 8 * 40
    assert set(np.unique(t.chamber)) == set(range(8))
    for k in range(8):
        assert sorted(t.ident[t.chamber == k]) == list(range(40))
    assert np.all((t.x_um > 0) & (t.x_um < 2000) & (t.y_um > 0) & (t.y_um < 10000))
    assert np.all((t.live_fraction >= 0) & (t.live_fraction <= 1))
    np.testing.assert_allclose(t.live_fraction + t.dead_fraction, 1.0)
    assert set(bio.planted()) == {"trastuzumab", "paclitaxel", "mmae", "t-vc-mmae"}
    fib = bio.fibroblasts(0)
    cells = bio.v0_um3[bio.chamber == 0].sum() * 1e-3
    assert fib.x_um.size == round(bio.caf_ratio[0] * cells)


def test_bad_exposure_shape_is_rejected():
    world, _ = _world(lambda: _bio([CytotoxicDrug("x", 1.0)], Dosing(x=[1.0, 2.0])))
    with pytest.raises(ValueError, match="shape"):
        world.advance_to(DAY)
