"""GR values, fits, metrics and intervals: on synthetic data with planted parameters."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import optimize

from chipctl.analysis.exposure import ChamberExposure
from chipctl.analysis.gr import (
    ChamberAmounts,
    analyse_drug,
    analyse_run,
    chamber_fold,
    dose_response,
    fit_curve,
    gr_aoc,
    gr_max,
    gr_values,
    time_resolved_gr,
    verdict,
)
from chipctl.runfile import open_run

H = 3600.0
LADDER_NM = 100.0 * 10.0 ** (-0.5 * np.arange(8))  # 100 nM ... 0.03 nM, half-log steps


def planted_gr(conc_nm, gr_inf, gec50_nm, hill):
    c = np.asarray(conc_nm, dtype=float)
    return gr_inf + (1.0 - gr_inf) / (1.0 + (c / gec50_nm) ** hill)


def crossing_nm(gr_inf, gec50_nm, hill, level=0.5):
    """Where the planted curve crosses ``level``, found numerically (not by the GR50 formula)."""
    return optimize.brentq(
        lambda lc: planted_gr(10.0**lc, gr_inf, gec50_nm, hill) - level, -6.0, 6.0, xtol=1e-12
    )


# -- GR values -------------------------------------------------------------------------------


def test_gr_anchor_points_of_the_definition():
    # the control doubled twice: a treated chamber that doubled twice has GR 1, one that did not
    # grow GR 0, one that lost everything GR -1, and one that doubled once 2^(1/2) - 1
    gr = gr_values([4.0, 1.0, 0.0, 2.0], 4.0)
    assert gr == pytest.approx([1.0, 0.0, -1.0, math.sqrt(2.0) - 1.0])


def test_gr_is_undefined_when_the_control_did_not_grow():
    assert np.isnan(gr_values([2.0], 1.0)).all()
    assert np.isnan(gr_values([2.0], 0.8)).all()


def test_chamber_fold_is_the_geometric_mean_of_tumoroid_folds_with_a_floor():
    # folds 2 and 8 -> geometric mean 4; a tumoroid gone to nothing counts as 1 % of its start
    assert chamber_fold([1.0, 10.0], [2.0, 80.0]) == pytest.approx(4.0)
    assert chamber_fold([1.0], [0.0]) == pytest.approx(0.01)
    # a tumoroid without a start amount cannot have a fold change and is left out
    assert chamber_fold([0.0, 1.0], [5.0, 3.0]) == pytest.approx(3.0)


def test_time_resolved_gr_recovers_a_constant_effect():
    t = np.arange(0.0, 96.0 * H, H)
    k0 = math.log(2.0) / (30 * H)
    gr_true = 0.3
    control = np.exp(k0 * t)
    treated = np.exp(k0 * math.log2(1.0 + gr_true) * t)
    gr = time_resolved_gr(t, treated, control, 12 * H)
    inside = np.isfinite(gr)
    assert inside.sum() == t.size - 24  # 12 h at each end leave the series
    assert gr[inside] == pytest.approx(gr_true, abs=1e-9)


# -- fits and metrics ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("gr_inf", "gec50_nm", "hill"), [(-0.4, 1.0, 1.5), (0.2, 3.0, 0.8), (-0.9, 0.1, 3.0)]
)
def test_fit_recovers_a_planted_curve(gr_inf, gec50_nm, hill):
    gr = planted_gr(LADDER_NM, gr_inf, gec50_nm, hill)
    fit = fit_curve(LADDER_NM, gr)
    assert fit.sigmoid
    assert fit.y_inf == pytest.approx(gr_inf, abs=1e-3)
    assert fit.ec50_nm == pytest.approx(gec50_nm, rel=1e-3)
    assert fit.hill == pytest.approx(hill, rel=1e-3)
    assert math.log10(fit.crossing_nm(0.5)) == pytest.approx(
        crossing_nm(gr_inf, gec50_nm, hill), abs=1e-3
    )


def test_a_curve_that_never_reaches_half_has_an_infinite_gr50():
    gr = planted_gr(LADDER_NM, 0.6, 1.0, 2.0)
    fit = fit_curve(LADDER_NM, gr)
    assert fit.sigmoid and fit.crossing_nm(0.5) == math.inf


def test_noise_without_effect_is_a_flat_fit():
    rng = np.random.default_rng(7)
    gr = 0.95 + rng.normal(0.0, 0.03, LADDER_NM.size)
    fit = fit_curve(LADDER_NM, gr)
    assert not fit.sigmoid
    assert fit.p_value >= 0.05
    assert fit.crossing_nm(0.5) == math.inf
    assert fit(LADDER_NM) == pytest.approx(np.full(8, np.mean(gr)))


def test_gr_max_is_the_lowest_of_the_two_highest_concentrations():
    conc = np.array([1.0, 3.0, 10.0, 30.0])
    assert gr_max(conc, [0.9, -0.5, 0.1, 0.2]) == pytest.approx(0.1)
    assert gr_max(conc, [0.9, 0.5, 0.3, -0.2]) == pytest.approx(-0.2)


def test_gr_aoc_of_flat_and_linear_curves():
    conc = 10.0 ** np.linspace(-2, 2, 9)
    assert gr_aoc(conc, np.full(9, 0.25)) == pytest.approx(0.75)
    # GR falling linearly in log10(c) from 1 to -1: the area over it is 1 per log unit
    assert gr_aoc(conc, np.linspace(1.0, -1.0, 9)) == pytest.approx(1.0)


# -- dose response with intervals, on synthetic tumoroids ------------------------------------


def synthetic_chambers(gr_inf, gec50_nm, hill, *, n=60, seed=0, control_conc=0.0):
    """Tumoroids with their own untreated growth (lognormal), responding to a planted GR curve.

    A tumoroid with untreated log2 fold ``L`` has ``L log2(1 + GR(c))`` in a chamber at ``c``
    (the GR model of Hafner et al.: the specific growth rate is scaled, 2.7).
    """
    rng = np.random.default_rng(seed)
    chambers = []
    concs = [*LADDER_NM[:7], control_conc]
    for k, c in enumerate(concs):
        x0 = 1e6 * np.exp(rng.normal(0.0, 0.5, n))
        doublings = rng.lognormal(math.log(1.2), 0.25, n)
        g = planted_gr(c, gr_inf, gec50_nm, hill) if c > 0 else 1.0
        x1 = x0 * np.exp2(doublings * np.log2(1.0 + max(g, -0.999)))
        chambers.append(ChamberAmounts(f"chamber {k + 1}", float(c), x0, x1))
    return chambers[:7], chambers[7:]


@pytest.mark.parametrize(
    ("gr_inf", "gec50_nm", "hill", "seed"), [(-0.4, 1.0, 1.5, 1), (0.1, 5.0, 1.0, 2)]
)
def test_dose_response_recovers_planted_metrics_within_the_issue_bounds(
    gr_inf, gec50_nm, hill, seed
):
    treated, control = synthetic_chambers(gr_inf, gec50_nm, hill, seed=seed)
    result = dose_response("drug", treated, control, n_boot=200, rng=np.random.default_rng(3))
    gr50_true = 10.0 ** crossing_nm(gr_inf, gec50_nm, hill)
    gr_max_true = float(np.min(planted_gr(LADDER_NM[:2], gr_inf, gec50_nm, hill)))
    assert result.ci_method == "tumoroids"
    assert abs(math.log(result.gr50_nm / gr50_true)) < math.log(1.5)
    assert abs(result.gr_max - gr_max_true) < 0.1
    low, high = result.ci["gr50_nm"].low, result.ci["gr50_nm"].high
    assert low <= gr50_true <= high
    assert result.ci["gr_max"].low <= gr_max_true <= result.ci["gr_max"].high
    # the intervals are informative, not the whole range
    assert high / low < 10.0


def _scaled(chambers, factor):
    """The same chambers with every end amount's growth scaled: a control that grew more."""
    return [
        ChamberAmounts(
            ch.position, ch.conc_nm, ch.x0_um3, ch.x0_um3 * (ch.x1_um3 / ch.x0_um3) ** factor
        )
        for ch in chambers
    ]


def heterogeneous_chambers(n=40, seed=7, spread=0.8):
    """No drug; tumoroids as heterogeneous as the simulator's (dormancy lags: a lognormal
    spread of 0.8 in doublings), so chambers of 40 differ by ~10 % in typical growth."""
    rng = np.random.default_rng(seed)
    chambers = []
    for k, c in enumerate([*LADDER_NM[:7], 0.0]):
        x0 = 1e6 * np.exp(rng.normal(0.0, 0.5, n))
        x1 = x0 * np.exp2(rng.lognormal(math.log(1.2), spread, n))
        chambers.append(ChamberAmounts(f"chamber {k + 1}", float(c), x0, x1))
    return chambers[:7], chambers[7:]


def test_a_control_that_grew_faster_by_chance_does_not_fake_an_effect():
    """No drug effect; the control chamber grew 15 % more doublings than it would have."""
    treated, control = heterogeneous_chambers()
    outlier = _scaled(control, 1.15)
    alone = gr_values([ch.fold for ch in treated[:2]], outlier[0].fold)
    assert min(alone) < 0.8  # against the control alone: a fake partial inhibition
    result = dose_response("inert", treated, outlier, n_boot=0)
    assert not result.fit.sigmoid
    assert result.gr50_nm == math.inf
    assert result.gr_max == pytest.approx(1.0, abs=0.1)
    assert result.reference == tuple(ch.position for ch in treated)  # every chamber pooled
    assert math.log2(result.reference_fold) < math.log2(result.control_fold)
    assert verdict(result).label == "no significant effect"


def test_a_uniform_effect_at_every_concentration_is_not_pooled_away():
    """Cytostatic at every tested concentration (GEC50 far below the ladder): GR ~ 0."""
    treated, control = synthetic_chambers(0.0, 1e-4, 3.0, n=40, seed=8)
    result = dose_response("potent", treated, control, n_boot=0)
    assert result.reference == ()  # the control stays the only untreated reference
    assert result.reference_fold == result.control_fold
    assert result.gr_max == pytest.approx(0.0, abs=0.1)


def test_chambers_on_the_untreated_plateau_join_the_reference():
    treated, control = synthetic_chambers(-0.4, 10.0, 1.5, n=40, seed=9)
    outlier = _scaled(control, 0.9)  # the control grew slower by chance
    result = dose_response("drug", treated, outlier, n_boot=0)
    plateau = {ch.position for ch in treated if ch.conc_nm <= 1.0}  # planted GR > 0.95
    assert len(plateau) == 3 and plateau <= set(result.reference)
    assert not {"chamber 1", "chamber 2"} & set(result.reference)  # high doses act
    gr50_true = 10.0 ** crossing_nm(-0.4, 10.0, 1.5)
    assert abs(math.log(result.gr50_nm / gr50_true)) < math.log(1.5)


def test_bootstrap_is_reproducible_with_its_seed():
    treated, control = synthetic_chambers(-0.2, 2.0, 1.2, n=30, seed=5)
    a = dose_response("d", treated, control, n_boot=60, rng=np.random.default_rng(11))
    b = dose_response("d", treated, control, n_boot=60, rng=np.random.default_rng(11))
    c = dose_response("d", treated, control, n_boot=60, rng=np.random.default_rng(12))
    assert a.ci == b.ci
    assert a.ci != c.ci


def test_single_totals_fall_back_to_residual_bootstrap():
    treated, control = synthetic_chambers(-0.2, 2.0, 1.2, n=1, seed=5)
    result = dose_response("d", treated, control, n_boot=50)
    assert result.ci_method == "residuals"
    assert result.n_boot > 0


def test_a_control_that_did_not_grow_is_refused_in_one_line():
    treated, control = synthetic_chambers(-0.2, 2.0, 1.2, n=10)
    flat = [ChamberAmounts("chamber 8", 0.0, control[0].x0_um3, control[0].x0_um3)]
    with pytest.raises(ValueError, match=r"control \(chamber 8\) did not grow") as info:
        dose_response("d", treated, flat)
    assert "\n" not in str(info.value)


# -- from a tumoroid table and an exposure ---------------------------------------------------


def synthetic_run(*, arrival_s, gr_curve, readout_s=48 * H, n=25, stain=True, seed=0):
    """A tumoroid table and an exposure: untreated growth until the drug arrives, then GR.

    Tumoroids differ in size but share one growth rate, so chambers differ only by the drug
    and every GR value is exact.
    """
    rng = np.random.default_rng(seed)
    positions = tuple(f"chamber {k}" for k in range(1, 9))
    nominal = np.array([*LADDER_NM[:7], 0.0])
    grid = np.arange(0.0, readout_s + 1.0, 60.0)
    conc = np.where(grid[:, None] >= arrival_s, nominal[None, :], 0.0)
    exposure = ChamberExposure(
        species="drug",
        positions=positions,
        t_s=grid,
        conc_nm=conc,
        nominal_nm=nominal,
        arrival_s=arrival_s,
        front_s=arrival_s,
        off_design_s=0.0,
    )
    points = np.arange(0.0, readout_s + 1.0, 4 * H)
    columns = {k: [] for k in ("t_s", "t_point_s", "position", "track_id", "volume_um3")}
    columns["live_fraction"] = []
    k0 = math.log(2.0) / (24 * H)
    for k, position in enumerate(positions):
        g = planted_gr(nominal[k], *gr_curve) if nominal[k] > 0 else 1.0
        m = math.log2(1.0 + g)
        v0 = 1e6 * np.exp(rng.normal(0.0, 0.4, n))
        rate = k0
        for tp in points:
            t = tp + 5.0 * k  # each chamber is imaged a little later in the round
            before = min(t, arrival_s)
            after = max(t - arrival_s, 0.0)
            volume = v0 * np.exp(rate * (before + m * after))
            columns["t_s"] += [t] * n
            columns["t_point_s"] += [tp] * n
            columns["position"] += [position] * n
            columns["track_id"] += list(range(n))
            columns["volume_um3"] += list(volume)
            live = 1.0 if stain and tp == points[-1] else math.nan
            columns["live_fraction"] += [live] * n
    table = {k: np.array(v, dtype=object if k == "position" else float) for k, v in columns.items()}
    return exposure, table


def test_gr_of_a_run_starts_at_the_drug_arrival_not_at_the_start():
    curve = (-0.3, 1.0, 1.5)
    exposure, table = synthetic_run(arrival_s=12 * H, gr_curve=curve)
    result = analyse_drug(exposure, table, control=["chamber 8"], n_boot=0)
    expected = planted_gr(LADDER_NM[:7], *curve)
    # exact but for the seconds between the chambers' frames of a time point
    assert result.response.gr == pytest.approx(expected, abs=1e-3)
    assert result.t0_s == 12 * H
    assert result.viable  # the last time point carries a live fraction
    assert result.control_conc_nm == 0.0
    assert not any("not drug-free" in line for line in result.qc)


def test_excluded_chambers_are_left_out_and_the_control_may_receive_drug():
    curve = (-0.3, 1.0, 1.5)
    exposure, table = synthetic_run(arrival_s=2 * H, gr_curve=curve)
    result = analyse_drug(
        exposure, table, control=["chamber 7"], exclude=["chamber 8", "chamber 3"], n_boot=0
    )
    assert result.response.positions == (
        "chamber 1",
        "chamber 2",
        "chamber 4",
        "chamber 5",
        "chamber 6",
    )
    assert result.excluded == ("chamber 3", "chamber 8")
    assert result.control_conc_nm == pytest.approx(LADDER_NM[6])
    assert any("not drug-free" in line for line in result.qc)


def test_a_brightfield_only_readout_is_flagged():
    exposure, table = synthetic_run(arrival_s=2 * H, gr_curve=(-0.3, 1.0, 1.5), stain=False)
    result = analyse_drug(exposure, table, control=["chamber 8"], n_boot=0)
    assert not result.viable
    assert any("no viability stain" in line for line in result.qc)


def test_analyse_run_assumes_the_least_exposed_chamber_as_control_and_says_so():
    exposure, table = synthetic_run(arrival_s=2 * H, gr_curve=(-0.3, 1.0, 1.5))
    run = analyse_run([exposure], table, n_boot=0)
    assert run.control == ("chamber 8",) and run.control_assumed
    assert len(run.drugs) == 1 and not run.problems


def test_a_drug_that_never_arrived_is_a_problem_line_not_an_exception():
    exposure, table = synthetic_run(arrival_s=2 * H, gr_curve=(-0.3, 1.0, 1.5))
    never = ChamberExposure(
        "drug",
        exposure.positions,
        exposure.t_s,
        exposure.conc_nm * 0.0,
        exposure.nominal_nm,
        math.nan,
        math.nan,
        0.0,
    )
    run = analyse_run([never], table, control=["chamber 8"], n_boot=0)
    assert not run.drugs
    assert run.problems == ("drug: the drug never reached the chambers",)


@pytest.mark.parametrize(
    ("curve", "label"),
    [
        ((-0.6, 1.0, 1.5), "cytotoxic"),
        ((0.0, 1.0, 1.5), "cytostatic"),
        ((0.35, 1.0, 1.5), "partial growth inhibition"),
    ],
)
def test_verdict_words(curve, label):
    exposure, table = synthetic_run(arrival_s=2 * H, gr_curve=curve)
    result = analyse_drug(exposure, table, control=["chamber 8"], n_boot=0)
    words = verdict(result.response)
    assert words.label == label
    assert words.sentence.startswith("drug: GR50 ")
    assert words.sentence.endswith(f"{label} at <= 100 nM")


# -- on a simulated run: the chain from frames to GR against the simulator's truth -----------


@pytest.mark.slow
def test_gr_from_images_matches_the_simulated_tumoroids(tmp_path_factory):
    """Frames -> tumoroid table -> x0 at arrival -> GR, against the simulated tumoroids.

    The truth is the simulator's own tumoroids in each imaged field (same seed, same
    delivered concentrations as recorded by the simulated chip), so what is compared is the
    analysis chain, not the luck of which tumoroids a field happens to hold.
    """
    from chipctl.analysis.exposure import exposure_from_run
    from tests.analysis.planted import resimulate
    from tests.analysis.test_cli_analysis import shared_run

    path = shared_run(tmp_path_factory)
    seed = 8
    with open_run(path) as run:
        tumoroids = run.table("/analysis/tumoroids")
        _, (exposure,) = exposure_from_run(run)
        chip = run.telemetry("chip")
        frame_um = run.frames("/images/chamber 1b/brightfield").shape[1] * 3.25
    result = analyse_drug(exposure, tumoroids, control=["chamber 8"], n_boot=0)
    t_truth = chip["t_s"]
    per_chamber = np.array([chip[f"c_t_vc_mmae_chamber{k}_nm"] for k in range(1, 9)])
    now = {"t": 0.0}

    def delivered():
        return {"t-vc-mmae": np.array([np.interp(now["t"], t_truth, c) for c in per_chamber])}

    bio, state = resimulate(seed, delivered, now, (result.t0_s, result.t1_s))
    start, end = state[result.t0_s], state[result.t1_s]
    # tumoroids wholly inside one of the chamber's three fields (chamber 10 mm long)
    step_um = max(10000.0 / 3.0, frame_um)
    centres_um = 5000.0 + step_um * np.array([-1.0, 0.0, 1.0])
    gap_um = np.min(np.abs(bio.y_um[:, None] - centres_um[None, :]), axis=1)
    inside = gap_um < frame_um / 2.0 - end.radius_um
    assert inside.sum() > 8 * 30  # most of the 8 x ~40 tumoroids are seen
    folds = {}
    for k in range(8):
        sel = (start.chamber == k) & inside
        folds[f"chamber {k + 1}"] = chamber_fold(
            start.live_volume_um3[sel], end.live_volume_um3[sel]
        )
    truth_gr = gr_values([folds[p] for p in result.response.positions], folds["chamber 8"])
    assert result.viable
    assert result.response.control_fold == pytest.approx(folds["chamber 8"], rel=0.03)
    # the image chain: GR against the control alone (the readout then pools the control
    # with the chambers on the untreated plateau; tested on synthetic chambers above)
    measured_gr = gr_values(result.response.fold, result.response.control_fold)
    assert measured_gr == pytest.approx(truth_gr, abs=0.05)
    # and the exposure the GR is plotted against is what the simulated chambers received
    assert result.response.conc_nm == pytest.approx(20.0 * 10.0 ** (-0.5 * np.arange(7)), rel=0.02)


def test_intervals_with_a_negative_or_open_bound_cannot_be_misread():
    from chipctl.analysis.gr import Interval, format_interval

    def plain(v):
        return f"{v:.2g}"

    assert format_interval(Interval(2.4, 4.0), plain) == " [2.4-4]"
    assert format_interval(Interval(-0.26, -0.08), plain) == " [-0.26 to -0.08]"
    assert format_interval(Interval(11.4, 30.0), lambda v: ">20" if v > 20 else plain(v)) == (
        " [11 to >20]"
    )
    assert format_interval(Interval(math.nan, 1.0), plain) == ""
