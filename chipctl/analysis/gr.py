"""GR metrics (Hafner, Niepel, Chung & Sorger 2016) and dose-response fits with intervals.

Definitions (domain reference 2.7, [V, R56, R57]); ``x`` is the viable amount of a chamber
(total tumoroid volume, or volume x live fraction when a viability stain exists):

* growth-rate inhibition at the readout time ``T`` with ``x0`` the amount when the drug
  reached the chamber: ``GR(c) = 2^(log2(x(c,T)/x(c,t0)) / log2(x_ctrl(T)/x_ctrl(t0))) - 1``
  (1 no effect, 0 cytostasis, < 0 net death, -1 everything gone);
* time-resolved ``GR(c, t)`` over a window ``t - dt .. t + dt`` (the same formula on the
  window's fold changes), for effects that change over time (delayed kill, adaptation);
* the fit ``GR(c) = GR_inf + (1 - GR_inf) / (1 + (c / GEC50)^h)`` with ``h`` in [0.1, 5],
  ``GR_inf`` in [-1, 1] and ``GEC50`` in [0.01 min c, 100 max c]; an F-test (p < 0.05)
  decides between the sigmoid and a flat line;
* ``GR50`` from the fit (infinite when the curve never reaches 0.5), ``GR_max`` the lowest
  GR among the two highest tested concentrations, ``GR_AOC`` the trapezoidal area over the
  GR points on log10(c) divided by the log10 range;
* ``x`` per chamber is the *typical tumoroid*: the geometric mean of the tracked
  tumoroids' own fold changes ``x_j(T) / x_j(t0)`` (a tumoroid with less than
  :data:`AMOUNT_FLOOR` of its start amount left counts as that floor, so a dead one stays
  finite), i.e. single-organoid kinetics (domain reference 8.7 step 2, [V, R117]). Every
  chamber holds a different handful of tumoroids with lognormal growth rates and dormancy
  lags; the chamber total is dominated by its few largest tumoroids, and its fold change
  scatters about 1.4x more between chambers than the geometric mean does on the
  simulated reference patient. With a single amount per chamber (no tracks) the same
  formula is the plain pooled fold change;
* the untreated reference ``x_ctrl`` is the control chambers' fold change *pooled* with
  every treated chamber the data say is untreated: after a first fit against the control
  alone, each treated chamber on the fit's plateau (fitted GR >= :data:`PLATEAU_GR`)
  contributes the untreated doublings its growth implies (``log2 fold / log2(1 + GR)``),
  and when no dose dependence is found (flat fit) every chamber does, unless the flat
  level lies more than :data:`NO_EFFECT_Z` standard deviations of the chambers' scatter
  below 1 (a uniform effect at every tested concentration, not a control that grew by
  chance). The mean of those doublings is the reference for the final fit. On a chip each
  concentration and the control are one chamber of ~40 tumoroids, so one control chamber
  that grew faster or slower by chance shifts every GR value; on 60 simulated patients
  (whole-chamber truth) pooling brought GR_max within 0.1 of the planted value for 59
  instead of 52. Without dose dependence GR_max is the flat fit's level (about 1), not the
  lowest of two noisy chambers;
* the same code on relative growth ``(x(c,T)/x(c,t0)) / (x_ctrl(T)/x_ctrl(t0))`` gives
  ``IC50`` and ``E_max`` (relative amount at the highest concentrations, 1 = no effect).
  Relative growth, not the plain endpoint ratio ``x(c)/x_ctrl``, because every chamber of
  a chip holds different tumoroids: endpoint ratios would mostly measure the seeding.

Confidence intervals come from a seeded bootstrap: tumoroids are resampled with
replacement within every chamber (the control included) when per-tumoroid amounts exist,
because the tumoroids sampled into each chamber are the main source of error on a chip
(each chamber holds a few dozen tumoroids of lognormal growth rates); otherwise the fit's
residuals are resampled. Intervals are percentile intervals (2.5 / 97.5 %).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize, stats

from chipctl.analysis.exposure import ChamberExposure
from chipctl.chip import chamber_of

__all__ = [
    "F_TEST_ALPHA",
    "chamber_fold",
    "AMOUNT_FLOOR",
    "ChamberAmounts",
    "Verdict",
    "format_conc",
    "format_interval",
    "format_number",
    "verdict",
    "CurveFit",
    "DoseResponse",
    "Interval",
    "dose_response",
    "fit_curve",
    "gr_aoc",
    "gr_max",
    "gr_values",
    "lowest_at_top",
    "relative_growth",
    "time_resolved_gr",
]

FloatArray = NDArray[np.float64]

#: Significance level of the F-test sigmoid vs flat [V, R57].
F_TEST_ALPHA: Final = 0.05
#: Bounds of the Hill coefficient [V, R57].
HILL_BOUNDS: Final = (0.1, 5.0)
#: GEC50 bounds as multiples of the lowest and highest tested concentration [V, R57].
EC50_RANGE: Final = (0.01, 100.0)
#: Bounds of GR_inf [V, R57]; relative growth uses [0, 1] for E_inf.
GR_INF_BOUNDS: Final = (-1.0, 1.0)
E_INF_BOUNDS: Final = (0.0, 1.0)
#: A control that grew less than this many doublings leaves GR undefined.
MIN_CONTROL_DOUBLINGS: Final = 0.05
#: Below one control doubling GR is ill-conditioned: flagged (domain reference 8.7 step 6).
QC_CONTROL_DOUBLINGS: Final = 1.0
#: A tumoroid with less than this fraction of its start amount left counts as this fraction.
AMOUNT_FLOOR: Final = 0.01
#: A treated chamber whose fitted GR is at least this is on the untreated plateau, so its
#: growth also estimates the untreated growth (the pooled reference, module docstring).
PLATEAU_GR: Final = 0.9
#: A flat fit is "no effect" (every chamber joins the reference) unless its level is more
#: than this many standard deviations of the chambers' scatter below 1.
NO_EFFECT_Z: Final = 3.0


def gr_values(fold: ArrayLike, fold_control: float) -> FloatArray:
    """Return GR from fold changes ``x(T)/x(t0)`` of treated chambers and of the control.

    Args:
        fold: treated fold changes (0 allowed: everything gone gives GR = -1).
        fold_control: the control's fold change; must exceed 1 (a control that did not
            grow leaves GR undefined, and every value is NaN).
    """
    f = np.asarray(fold, dtype=np.float64)
    if not (math.isfinite(fold_control) and fold_control > 1.0):
        return np.full(f.shape, math.nan)
    with np.errstate(divide="ignore"):
        exponent = np.log2(np.maximum(f, 0.0)) / math.log2(fold_control)
    result: FloatArray = np.exp2(exponent) - 1.0
    return result


def relative_growth(fold: ArrayLike, fold_control: float) -> FloatArray:
    """Return relative growth ``fold / fold_control`` (1 = grew like the control)."""
    f = np.asarray(fold, dtype=np.float64)
    if not (math.isfinite(fold_control) and fold_control > 0.0):
        return np.full(f.shape, math.nan)
    result: FloatArray = f / fold_control
    return result


def time_resolved_gr(
    t_s: ArrayLike, x: ArrayLike, x_control: ArrayLike, half_window_s: float
) -> FloatArray:
    """Return GR(c, t) over ``t - dt .. t + dt`` at every sample time (Hafner 2016).

    ``GR(t) = 2^(log2(x(t+dt)/x(t-dt)) / log2(xc(t+dt)/xc(t-dt))) - 1``, with both series
    interpolated log-linearly in time. NaN where the window leaves the series or the control
    grew less than :data:`MIN_CONTROL_DOUBLINGS` in it.

    Args:
        t_s: sample times (increasing), shared by both series.
        x: the treated amounts.
        x_control: the control amounts.
        half_window_s: ``dt``.
    """
    t = np.asarray(t_s, dtype=np.float64)
    with np.errstate(divide="ignore"):
        lx = np.log2(np.maximum(np.asarray(x, dtype=np.float64), 0.0))
        lc = np.log2(np.maximum(np.asarray(x_control, dtype=np.float64), 0.0))
    out = np.full(t.shape, math.nan)
    if t.size < 2:
        return out
    lo, hi = t - half_window_s, t + half_window_s
    inside = (lo >= t[0]) & (hi <= t[-1])
    dx = np.interp(hi, t, lx) - np.interp(lo, t, lx)
    dc = np.interp(hi, t, lc) - np.interp(lo, t, lc)
    ok = inside & (dc >= MIN_CONTROL_DOUBLINGS) & np.isfinite(dc)
    with np.errstate(invalid="ignore"):
        out[ok] = np.exp2(dx[ok] / dc[ok]) - 1.0
    return out


# -- curve fitting --------------------------------------------------------------------------


@dataclass(frozen=True)
class CurveFit:
    """A fitted ``y = y_inf + (1 - y_inf) / (1 + (c / ec50)^h)``, or a flat line.

    Attributes:
        y_inf: the plateau at high concentration (the flat line's value if not sigmoid).
        ec50_nm: the half-effect concentration (NaN for a flat line).
        hill: the Hill coefficient (NaN for a flat line).
        sigmoid: True if the F-test preferred the sigmoid (p < alpha).
        p_value: the F-test's p value (NaN when too few points to test).
        rss: residual sum of squares of the chosen model.
        n_points: points fitted.
    """

    y_inf: float
    ec50_nm: float
    hill: float
    sigmoid: bool
    p_value: float
    rss: float
    n_points: int

    def __call__(self, conc_nm: ArrayLike) -> FloatArray:
        """Evaluate the curve at concentrations in nM."""
        c = np.maximum(np.asarray(conc_nm, dtype=np.float64), 0.0)
        if not self.sigmoid:
            return np.full(c.shape, self.y_inf)
        result: FloatArray = _sigmoid(c, self.y_inf, self.ec50_nm, self.hill)
        return result

    def crossing_nm(self, level: float) -> float:
        """Return the concentration where the curve falls to ``level``.

        ``inf`` if it never gets there; ``0.0`` for a flat line already below ``level``
        (effective at every tested concentration).
        """
        if not self.sigmoid:
            return math.inf if self.y_inf >= level else 0.0
        if self.y_inf >= level or level >= 1.0:
            return math.inf
        base = (1.0 - self.y_inf) / (level - self.y_inf) - 1.0
        return float(self.ec50_nm * base ** (1.0 / self.hill))


def _sigmoid(c: FloatArray, y_inf: float, ec50: float, hill: float) -> FloatArray:
    with np.errstate(over="ignore", divide="ignore"):
        result: FloatArray = y_inf + (1.0 - y_inf) / (1.0 + (c / ec50) ** hill)
    return result


def fit_curve(
    conc_nm: ArrayLike,
    y: ArrayLike,
    *,
    inf_bounds: tuple[float, float] = GR_INF_BOUNDS,
    alpha: float = F_TEST_ALPHA,
) -> CurveFit:
    """Fit the 3-parameter log-logistic curve (top fixed at 1) and F-test it against flat.

    A coarse grid over (log EC50, h), with ``y_inf`` solved in closed form at each node,
    picks the start; a bounded least-squares fit refines it. The grid makes the fit
    deterministic and keeps it out of the local minima that single starts fall into on
    8-point curves.

    Args:
        conc_nm: concentrations (> 0; non-finite points are dropped).
        y: GR values or relative growth.
        inf_bounds: bounds of ``y_inf``.
        alpha: F-test level.

    Raises:
        ValueError: fewer than two usable points.
    """
    c = np.asarray(conc_nm, dtype=np.float64)
    v = np.asarray(y, dtype=np.float64)
    ok = np.isfinite(c) & np.isfinite(v) & (c > 0.0)
    c, v = c[ok], v[ok]
    n = int(c.size)
    if n < 2:
        raise ValueError(f"a dose-response fit needs at least 2 points, got {n}")
    mean = float(np.mean(v))
    rss_flat = float(np.sum((v - mean) ** 2))
    lo_ec = math.log10(EC50_RANGE[0] * float(np.min(c)))
    hi_ec = math.log10(EC50_RANGE[1] * float(np.max(c)))
    y_lo, y_hi = inf_bounds
    log_c = np.log10(c)

    # Coarse grid: for fixed (ec50, h) the model is linear in y_inf: y - s = y_inf (1 - s).
    grid_ec = np.linspace(lo_ec, hi_ec, 48)
    grid_h = np.geomspace(HILL_BOUNDS[0], HILL_BOUNDS[1], 16)
    z = (log_c[None, None, :] - grid_ec[:, None, None]) * grid_h[None, :, None]
    s = 1.0 / (1.0 + np.power(10.0, np.clip(z, -300.0, 300.0)))
    w = 1.0 - s
    denom = np.sum(w * w, axis=2)
    num = np.sum(w * (v[None, None, :] - s), axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        y_inf = np.where(denom > 1e-12, num / denom, mean)
    y_inf = np.clip(y_inf, y_lo, y_hi)
    rss_grid = np.sum((y_inf[:, :, None] + (1.0 - y_inf[:, :, None]) * s - v) ** 2, axis=2)
    i, j = np.unravel_index(int(np.argmin(rss_grid)), rss_grid.shape)
    start = np.array([y_inf[i, j], grid_ec[i], math.log10(grid_h[j])])

    def residuals(p: FloatArray) -> FloatArray:
        z = np.clip((log_c - p[1]) * 10.0 ** p[2], -300.0, 300.0)
        result: FloatArray = p[0] + (1.0 - p[0]) / (1.0 + np.power(10.0, z)) - v
        return result

    lower = np.array([y_lo, lo_ec, math.log10(HILL_BOUNDS[0])])
    upper = np.array([y_hi, hi_ec, math.log10(HILL_BOUNDS[1])])
    start = np.clip(start, lower + 1e-12, upper - 1e-12)
    best = optimize.least_squares(residuals, start, bounds=(lower, upper), method="trf")
    p = best.x
    rss = float(np.sum(residuals(p) ** 2))
    if rss > float(rss_grid[i, j]):
        p, rss = start, float(rss_grid[i, j])
    if n < 4:
        p_value = math.nan
    elif rss <= 1e-300:
        p_value = 0.0 if rss_flat > 1e-300 else 1.0
    else:
        f_stat = ((rss_flat - rss) / 2.0) / (rss / (n - 3))
        p_value = float(stats.f.sf(max(f_stat, 0.0), 2, n - 3))
    sigmoid = n < 4 or p_value < alpha
    if not sigmoid:
        return CurveFit(mean, math.nan, math.nan, False, p_value, rss_flat, n)
    return CurveFit(
        y_inf=float(p[0]),
        ec50_nm=float(10.0 ** p[1]),
        hill=float(10.0 ** p[2]),
        sigmoid=True,
        p_value=p_value,
        rss=rss,
        n_points=n,
    )


def lowest_at_top(conc_nm: ArrayLike, y: ArrayLike) -> float:
    """Return the lowest value among the two highest tested concentrations (GR_max, E_max)."""
    c = np.asarray(conc_nm, dtype=np.float64)
    v = np.asarray(y, dtype=np.float64)
    ok = np.isfinite(c) & np.isfinite(v)
    c, v = c[ok], v[ok]
    if c.size == 0:
        return math.nan
    top = np.unique(c)[-2:]
    return float(np.min(v[np.isin(c, top)]))


def gr_max(conc_nm: ArrayLike, gr: ArrayLike) -> float:
    """Return GR_max: the lowest GR among the two highest tested concentrations [V, R57]."""
    return lowest_at_top(conc_nm, gr)


def gr_aoc(conc_nm: ArrayLike, gr: ArrayLike) -> float:
    """Return GR_AOC: trapezoidal area over the GR points on log10(c), per log10 unit.

    Points at the same concentration are averaged first. NaN with fewer than two distinct
    concentrations.
    """
    c = np.asarray(conc_nm, dtype=np.float64)
    v = np.asarray(gr, dtype=np.float64)
    ok = np.isfinite(c) & np.isfinite(v) & (c > 0.0)
    c, v = c[ok], v[ok]
    levels = np.unique(c)
    if levels.size < 2:
        return math.nan
    means = np.array([np.mean(v[c == level]) for level in levels])
    x = np.log10(levels)
    area = float(np.trapezoid(1.0 - means, x))
    return area / float(x[-1] - x[0])


# -- per-chamber amounts and the dose-response with intervals -------------------------------


def chamber_fold(x0_um3: ArrayLike, x1_um3: ArrayLike) -> float:
    """Return the geometric-mean fold change of paired amounts (see the module docstring).

    Pairs without a positive start amount or a finite end amount are left out; NaN if none
    is left.
    """
    x0 = np.asarray(x0_um3, dtype=np.float64)
    x1 = np.asarray(x1_um3, dtype=np.float64)
    ok = np.isfinite(x0) & (x0 > 0.0) & np.isfinite(x1)
    if not ok.any():
        return math.nan
    ratio = np.maximum(x1[ok], AMOUNT_FLOOR * x0[ok]) / x0[ok]
    return float(np.exp2(np.mean(np.log2(ratio))))


@dataclass(frozen=True)
class ChamberAmounts:
    """Viable amounts of one chamber at the drug's arrival (``x0``) and at the readout.

    Per tumoroid (tracked) when known, so the bootstrap can resample tumoroids; a single
    element each when only the chamber total is known. A tumoroid present at one time only
    has 0 at the other.

    Attributes:
        position: the chamber's name.
        conc_nm: the concentration it received (exposure-averaged), nM.
        x0_um3: amounts at the drug's arrival.
        x1_um3: amounts at the readout.
    """

    position: str
    conc_nm: float
    x0_um3: FloatArray
    x1_um3: FloatArray

    @property
    def fold(self) -> float:
        """Return the chamber's fold change (:func:`chamber_fold`)."""
        return chamber_fold(self.x0_um3, self.x1_um3)


@dataclass(frozen=True)
class Interval:
    """A percentile confidence interval (``low``, ``high``); NaN when not computed."""

    low: float = math.nan
    high: float = math.nan


@dataclass(frozen=True)
class DoseResponse:
    """GR and relative-growth dose-response of one drug, with bootstrap intervals.

    Attributes:
        species: the drug.
        positions: the treated chambers, in the order of the arrays.
        conc_nm: their concentrations.
        fold: their fold changes ``x(T) / x(t0)``.
        gr: their GR values.
        relative: their relative growth.
        control: the control chambers.
        control_fold: the control's fold change (pooled over control chambers).
        reference_fold: the untreated fold change GR is computed against: the control's,
            pooled with the treated chambers on the untreated plateau (module docstring).
        reference: the treated chambers pooled into the reference.
        fit: the GR fit.
        gr50_nm: GR50 (inf: never reaches 0.5; 0: below every tested concentration).
        gr_max: GR_max.
        gr_aoc: GR_AOC.
        relative_fit: the relative-growth fit.
        ic50_nm: IC50 from relative growth.
        e_max: E_max: the lowest relative growth among the two highest concentrations.
        ci: 95 % intervals by metric name (``gr50_nm``, ``gr_max``, ``gr_aoc``,
            ``gr_inf``, ``gec50_nm``, ``hill``, ``ic50_nm``, ``e_max``).
        band_conc_nm: concentrations of the fit's confidence band.
        band_low: the band's lower edge (2.5 % of the bootstrap curves).
        band_high: the band's upper edge (97.5 %).
        n_boot: bootstrap replicates.
        ci_method: ``"tumoroids"``, ``"residuals"`` or ``"none"``.
    """

    species: str
    positions: tuple[str, ...]
    conc_nm: FloatArray
    fold: FloatArray
    gr: FloatArray
    relative: FloatArray
    control: tuple[str, ...]
    control_fold: float
    reference_fold: float
    reference: tuple[str, ...]
    fit: CurveFit
    gr50_nm: float
    gr_max: float
    gr_aoc: float
    relative_fit: CurveFit
    ic50_nm: float
    e_max: float
    ci: dict[str, Interval] = field(default_factory=dict)
    band_conc_nm: FloatArray = field(default_factory=lambda: np.zeros(0))
    band_low: FloatArray = field(default_factory=lambda: np.zeros(0))
    band_high: FloatArray = field(default_factory=lambda: np.zeros(0))
    n_boot: int = 0
    ci_method: str = "none"


@dataclass(frozen=True)
class _Point:
    gr50_nm: float
    gr_max: float
    gr_aoc: float
    gr_inf: float
    gec50_nm: float
    hill: float
    ic50_nm: float
    e_max: float
    fit: CurveFit
    relative_fit: CurveFit
    gr: FloatArray
    relative: FloatArray
    control_fold: float
    pooled: tuple[int, ...] = ()


def _evaluate(conc: FloatArray, folds: FloatArray, control_fold: float) -> _Point:
    """GR metrics against the pooled untreated reference (see the module docstring).

    ``control_fold`` is the control chambers' fold change; the returned point's
    ``control_fold`` is the reference actually used, and ``pooled`` the treated chambers
    (indices) that joined it.
    """
    first = _evaluate_against(conc, folds, control_fold)
    log_k = np.log2(np.maximum(folds, 1e-300))
    estimates = [math.log2(control_fold)]
    if first.fit.sigmoid:
        fitted = first.fit(conc)
        pooled = tuple(
            i
            for i, g in enumerate(fitted)
            if g >= PLATEAU_GR and math.isfinite(float(log_k[i])) and folds[i] > 1.0
        )
        estimates += [float(log_k[i] / math.log2(1.0 + fitted[i])) for i in pooled]
    else:
        gr = first.gr[np.isfinite(first.gr)]
        spread = float(np.std(gr, ddof=1)) if gr.size > 1 else math.inf
        level = float(np.mean(gr)) if gr.size else math.nan
        no_effect = 1.0 - level <= NO_EFFECT_Z * spread * math.sqrt(1.0 + 1.0 / max(gr.size, 1))
        pooled = tuple(i for i in range(folds.size) if math.isfinite(float(log_k[i])))
        pooled = pooled if no_effect else ()
        estimates += [float(log_k[i]) for i in pooled]
    if not pooled:
        return first
    reference = float(np.exp2(np.mean(estimates)))
    if not reference > 2.0**MIN_CONTROL_DOUBLINGS:
        return first
    point = _evaluate_against(conc, folds, reference)
    if not point.fit.sigmoid:  # no dose dependence: GR_max is the flat fit's level
        point = replace(point, gr_max=lowest_at_top(conc, point.fit(conc)))
    return replace(point, pooled=pooled)


def _evaluate_against(conc: FloatArray, folds: FloatArray, control_fold: float) -> _Point:
    gr = gr_values(folds, control_fold)
    rel = relative_growth(folds, control_fold)
    fit = fit_curve(conc, gr, inf_bounds=GR_INF_BOUNDS)
    rfit = fit_curve(conc, rel, inf_bounds=E_INF_BOUNDS)
    return _Point(
        gr50_nm=fit.crossing_nm(0.5),
        gr_max=gr_max(conc, gr),
        gr_aoc=gr_aoc(conc, gr),
        gr_inf=fit.y_inf,
        gec50_nm=fit.ec50_nm,
        hill=fit.hill,
        ic50_nm=rfit.crossing_nm(0.5),
        e_max=lowest_at_top(conc, rel),
        fit=fit,
        relative_fit=rfit,
        gr=gr,
        relative=rel,
        control_fold=control_fold,
    )


def _pooled_fold(chambers: Sequence[ChamberAmounts]) -> float:
    return chamber_fold(
        np.concatenate([ch.x0_um3 for ch in chambers]),
        np.concatenate([ch.x1_um3 for ch in chambers]),
    )


_METRICS: Final = ("gr50_nm", "gr_max", "gr_aoc", "gr_inf", "gec50_nm", "hill", "ic50_nm", "e_max")


def _percentile_interval(values: Sequence[float]) -> Interval:
    """2.5 / 97.5 % order statistics; works with infinite values (GR50 = inf)."""
    v = np.sort(np.asarray([x for x in values if not math.isnan(x)], dtype=np.float64))
    if v.size < 10:
        return Interval()
    lo = v[math.floor(0.025 * (v.size - 1))]
    hi = v[math.ceil(0.975 * (v.size - 1))]
    return Interval(float(lo), float(hi))


def dose_response(
    species: str,
    treated: Sequence[ChamberAmounts],
    control: Sequence[ChamberAmounts],
    *,
    n_boot: int = 500,
    rng: np.random.Generator | None = None,
) -> DoseResponse:
    """Compute GR values, fits and metrics of one drug, with bootstrap intervals.

    Args:
        species: the drug's name.
        treated: the treated chambers (their concentrations must be > 0).
        control: the control chambers, pooled into one untreated reference.
        n_boot: bootstrap replicates (0: no intervals).
        rng: the generator for the bootstrap (seeded by the caller, for reproducible
            reports); a generator seeded with 0 if omitted.

    Raises:
        ValueError: no control, fewer than two treated chambers, or a control that did
            not grow (GR undefined), with a message naming what.
    """
    if not control:
        raise ValueError(f"{species}: no control chamber")
    if len(treated) < 2:
        raise ValueError(f"{species}: need at least 2 treated chambers, got {len(treated)}")
    conc = np.array([ch.conc_nm for ch in treated], dtype=np.float64)
    folds = np.array([ch.fold for ch in treated], dtype=np.float64)
    control_fold = _pooled_fold(control)
    if not (math.isfinite(control_fold) and control_fold > 2.0**MIN_CONTROL_DOUBLINGS):
        names = ", ".join(ch.position for ch in control)
        raise ValueError(
            f"{species}: the control ({names}) did not grow (fold change {control_fold:.3g}); "
            "GR is undefined"
        )
    point = _evaluate(conc, folds, control_fold)
    rng = np.random.default_rng(0) if rng is None else rng
    samples: list[_Point] = []
    method = "none"
    if n_boot > 0:
        per_tumoroid = all(ch.x0_um3.size >= 3 for ch in [*treated, *control])
        method = "tumoroids" if per_tumoroid else "residuals"
        draw: Callable[[np.random.Generator], _Point | None]
        if per_tumoroid:
            draw = _tumoroid_resampler(conc, treated, control)
        else:
            draw = _residual_resampler(conc, point, point.control_fold)
        for _ in range(n_boot):
            sample = draw(rng)
            if sample is not None:
                samples.append(sample)
    ci = {
        metric: _percentile_interval([getattr(s, metric) for s in samples]) for metric in _METRICS
    }
    positive = conc[conc > 0.0]
    band_c = np.geomspace(float(positive.min()) / 3.0, float(positive.max()) * 3.0, 80)
    if len(samples) >= 10:
        curves = np.array([s.fit(band_c) for s in samples])
        band_lo = np.quantile(curves, 0.025, axis=0)
        band_hi = np.quantile(curves, 0.975, axis=0)
    else:
        band_lo = band_hi = np.full(band_c.shape, math.nan)
    return DoseResponse(
        species=species,
        positions=tuple(ch.position for ch in treated),
        conc_nm=conc,
        fold=folds,
        gr=point.gr,
        relative=point.relative,
        control=tuple(ch.position for ch in control),
        control_fold=control_fold,
        reference_fold=point.control_fold,
        reference=tuple(treated[i].position for i in point.pooled),
        fit=point.fit,
        gr50_nm=point.gr50_nm,
        gr_max=point.gr_max,
        gr_aoc=point.gr_aoc,
        relative_fit=point.relative_fit,
        ic50_nm=point.ic50_nm,
        e_max=point.e_max,
        ci=ci,
        band_conc_nm=band_c,
        band_low=band_lo,
        band_high=band_hi,
        n_boot=len(samples),
        ci_method=method,
    )


def _tumoroid_resampler(
    conc: FloatArray, treated: Sequence[ChamberAmounts], control: Sequence[ChamberAmounts]
) -> Callable[[np.random.Generator], _Point | None]:
    def resample(ch: ChamberAmounts, rng: np.random.Generator) -> tuple[FloatArray, FloatArray]:
        idx = rng.integers(0, ch.x0_um3.size, ch.x0_um3.size)
        return ch.x0_um3[idx], ch.x1_um3[idx]

    def draw(rng: np.random.Generator) -> _Point | None:
        folds = np.array([chamber_fold(*resample(ch, rng)) for ch in treated])
        pairs = [resample(ch, rng) for ch in control]
        fold_c = chamber_fold(
            np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs])
        )
        if not (math.isfinite(fold_c) and fold_c > 2.0**MIN_CONTROL_DOUBLINGS):
            return None
        try:
            return _evaluate(conc, folds, fold_c)
        except ValueError:
            return None

    return draw


def _residual_resampler(
    conc: FloatArray, point: _Point, control_fold: float
) -> Callable[[np.random.Generator], _Point | None]:
    fitted = point.fit(conc)
    residuals = point.gr - fitted
    residuals = residuals[np.isfinite(residuals)]
    log_c = math.log2(control_fold)

    def draw(rng: np.random.Generator) -> _Point | None:
        if residuals.size == 0:
            return None
        gr = fitted + rng.choice(residuals, size=fitted.size, replace=True)
        # back to fold changes, so GR and relative growth stay consistent
        folds = np.exp2(np.log2(np.maximum(gr + 1.0, 1e-12)) * log_c)
        try:
            return _evaluate(conc, folds, control_fold)
        except ValueError:
            return None

    return draw


# -- from the analysis tables ---------------------------------------------------------------

Columns = Mapping[str, NDArray[Any]]


#: A tumoroid's identity: its field (position) and its track id there.
TrackKey = tuple[str, int]


def _rows(table: Columns, chamber: str) -> dict[str, NDArray[Any]]:
    """Return the rows of every field of ``chamber``."""
    positions = np.asarray(table["position"]).astype(str)
    keep = np.array([chamber_of(p) == chamber for p in positions], dtype=bool)
    return {name: np.asarray(col)[keep] for name, col in table.items()}


def _track_keys(rows: Mapping[str, NDArray[Any]]) -> list[TrackKey]:
    """Return the rows' tumoroid identities (tracks are numbered per field)."""
    fields = np.asarray(rows["position"]).astype(str)
    tracks = np.asarray(rows["track_id"]).astype(np.int64)
    return [(str(f), int(t)) for f, t in zip(fields, tracks)]


def _amount(rows: Mapping[str, NDArray[Any]], viable: bool) -> FloatArray:
    volume = np.asarray(rows["volume_um3"], dtype=np.float64)
    if not viable or "live_fraction" not in rows:
        return volume
    live = np.asarray(rows["live_fraction"], dtype=np.float64)
    result: FloatArray = np.where(np.isfinite(live), volume * np.clip(live, 0.0, 1.0), volume)
    return result


def _time_points(rows: Mapping[str, NDArray[Any]]) -> tuple[FloatArray, FloatArray]:
    """Return the position's time points and the mean frame time of each."""
    tp = np.asarray(rows["t_point_s"], dtype=np.float64)
    points = np.unique(tp)
    times = np.array([float(np.mean(np.asarray(rows["t_s"])[tp == p])) for p in points])
    return points, times


def track_amounts(
    tumoroids: Columns, position: str, t_s: float, *, viable: bool = False
) -> dict[TrackKey, float]:
    """Return each tracked tumoroid's amount at ``t_s``, interpolated between time points.

    Log-linear interpolation in time between the bracketing time points (a tumoroid seen
    at only one of them keeps that value); before the first time point, the first one's
    amounts; after the last, the last one's.

    Args:
        tumoroids: the ``/analysis/tumoroids`` columns.
        position: the chamber (all its fields).
        t_s: the run time.
        viable: multiply by the live fraction where one was measured.
    """
    rows = _rows(tumoroids, position)
    if rows["t_s"].size == 0:
        return {}
    points, times = _time_points(rows)
    tp = np.asarray(rows["t_point_s"], dtype=np.float64)
    keys = _track_keys(rows)
    amount = _amount(rows, viable)

    def at(point: float) -> dict[TrackKey, float]:
        return {k: float(v) for k, v, p in zip(keys, amount, tp) if p == point}

    i = int(np.searchsorted(times, t_s, side="right"))
    if i == 0:
        return at(points[0])
    if i >= points.size:
        return at(points[-1])
    before, after = at(points[i - 1]), at(points[i])
    w = (t_s - times[i - 1]) / (times[i] - times[i - 1])
    out: dict[TrackKey, float] = {}
    for track in set(before) | set(after):
        a, b = before.get(track), after.get(track)
        if a is None or b is None:
            out[track] = float(a if b is None else b)  # type: ignore[arg-type]
        elif a > 0.0 and b > 0.0:
            out[track] = float(math.exp((1.0 - w) * math.log(a) + w * math.log(b)))
        else:
            out[track] = float((1.0 - w) * a + w * b)
    return out


def growth_series(tumoroids: Columns, position: str, t0_s: float) -> tuple[FloatArray, FloatArray]:
    """Return ``(t_s, log2 fold)``: the typical tumoroid's brightfield growth since ``t0_s``.

    At every time point, the mean over tracked tumoroids of ``log2(V(t) / V(t0))`` (floored
    as in :func:`chamber_fold`), for tumoroids seen at ``t0_s`` and at that time point.
    """
    rows = _rows(tumoroids, position)
    ref = track_amounts(tumoroids, position, t0_s)
    if not ref:
        return np.zeros(0), np.zeros(0)
    points, times = _time_points(rows)
    tp = np.asarray(rows["t_point_s"], dtype=np.float64)
    keys = _track_keys(rows)
    volume = np.asarray(rows["volume_um3"], dtype=np.float64)
    out = np.full(points.size, math.nan)
    for i, point in enumerate(points):
        x0, x1 = [], []
        for track, v, p in zip(keys, volume, tp):
            if p != point:
                continue
            v0 = ref.get(track)
            if v0 is not None and v0 > 0.0:
                x0.append(v0)
                x1.append(v)
        if x0:
            out[i] = math.log2(chamber_fold(x0, x1))
    return times, out


def readout_point(tumoroids: Columns, positions: Sequence[str]) -> tuple[float, bool]:
    """Return the readout time point and whether it has a viability stain.

    The last time point measured in every one of ``positions``; the last such time point
    with a live fraction wins (a viability endpoint is the better readout, 8.7 step 3).

    Raises:
        ValueError: no time point common to all positions.
    """
    common: set[float] | None = None
    stained: set[float] = set()
    for position in positions:
        rows = _rows(tumoroids, position)
        points = {float(p) for p in np.asarray(rows["t_point_s"], dtype=np.float64)}
        common = points if common is None else common & points
        if "live_fraction" in rows:
            live = np.asarray(rows["live_fraction"], dtype=np.float64)
            tp = np.asarray(rows["t_point_s"], dtype=np.float64)
            stained |= {float(p) for p in tp[np.isfinite(live)]}
    if not common:
        raise ValueError(f"no time point was measured in every chamber of {', '.join(positions)}")
    with_stain = [p for p in common if p in stained]
    if with_stain:
        return max(with_stain), True
    return max(common), False


def chamber_amounts(
    tumoroids: Columns,
    position: str,
    conc_nm: float,
    t0_s: float,
    readout_t_point_s: float,
    *,
    viable: bool,
) -> tuple[ChamberAmounts, int]:
    """Return a chamber's paired tumoroid amounts (``t0_s`` -> readout) and tracks lost.

    Tracks seen at ``t0_s`` but not at the readout are left out (death and a lost track
    look alike; they are counted for QC), as are tracks that appear later.
    """
    rows = _rows(tumoroids, position)
    start = track_amounts(tumoroids, position, t0_s)
    tp = np.asarray(rows["t_point_s"], dtype=np.float64)
    sel = tp == readout_t_point_s
    readout = {k: v[sel] for k, v in rows.items()}
    end = dict(zip(_track_keys(readout), (float(v) for v in _amount(readout, viable))))
    paired = sorted(set(start) & set(end))
    lost = len(set(start) - set(end))
    x0 = np.array([start[k] for k in paired], dtype=np.float64)
    x1 = np.array([end[k] for k in paired], dtype=np.float64)
    return ChamberAmounts(position, conc_nm, x0, x1), lost


@dataclass(frozen=True)
class DrugAnalysis:
    """Everything the readout says about one drug on one chip.

    Attributes:
        species: the drug.
        t0_s: the drug's arrival at the chambers (``x0`` time).
        t1_s: the readout time (mean frame time of the readout time point).
        readout_t_point_s: the readout time point.
        on_s: how long the drug was on between ``t0_s`` and the readout.
        viable: the readout amounts include a measured live fraction.
        response: GR values, fits, metrics and intervals.
        brightfield: with a viability stain, the same from brightfield volume alone.
        excluded: chambers left out.
        control_conc_nm: the concentration the control chambers received (0 if drug-free).
        control_gr: the fitted GR at the control's concentration: how far the "untreated"
            reference is from untreated (1.0: not at all).
        gr50_control_corrected_nm: GR50 after correcting for ``control_gr``.
        series: per chamber, ``(t_s, log2 fold)`` of the typical tumoroid since ``t0_s``.
        time_resolved: per treated chamber, ``(t_s, GR(t))`` over a sliding window.
        time_window_s: that window's full width.
        n_tumoroids: per chamber, tumoroids paired between ``t0_s`` and the readout.
        lost_fraction: per chamber, the share of tumoroids seen at ``t0_s`` but not at the
            readout.
        qc: warnings for the reader, one line each.
    """

    species: str
    t0_s: float
    t1_s: float
    readout_t_point_s: float
    on_s: float
    viable: bool
    response: DoseResponse
    brightfield: DoseResponse | None
    excluded: tuple[str, ...]
    control_conc_nm: float
    control_gr: float
    gr50_control_corrected_nm: float
    series: dict[str, tuple[FloatArray, FloatArray]]
    time_resolved: dict[str, tuple[FloatArray, FloatArray]]
    time_window_s: float
    n_tumoroids: dict[str, int]
    lost_fraction: dict[str, float]
    qc: tuple[str, ...]


#: Sliding window of the time-resolved GR (full width).
TIME_WINDOW_S: Final = 24.0 * 3600.0
#: Stain and brightfield GR_max further apart than this are flagged.
QC_READOUT_GAP: Final = 0.3
#: Tumoroid loss above this share of a chamber is flagged (domain reference 8.7 step 6).
QC_LOST_FRACTION: Final = 0.3


def analyse_drug(
    exposure: ChamberExposure,
    tumoroids: Columns,
    *,
    control: Sequence[str],
    exclude: Sequence[str] = (),
    n_boot: int = 500,
    rng: np.random.Generator | None = None,
) -> DrugAnalysis:
    """Compute one drug's GR analysis from the tumoroid table and the delivered exposure.

    ``x0`` is taken when the drug reached the chambers (``exposure.arrival_s``), not when a
    pump switched; each chamber's concentration is the one it received while the drug was
    on, between then and the readout (:meth:`ChamberExposure.effective_nm`).

    Args:
        exposure: the drug's delivered concentration per chamber.
        tumoroids: the ``/analysis/tumoroids`` columns.
        control: the chambers used as the untreated reference.
        exclude: chambers left out.
        n_boot: bootstrap replicates.
        rng: bootstrap generator (seeded by the caller).

    Raises:
        ValueError: nothing to analyse (the drug never arrived, no control, too few
            chambers, the control did not grow), with a message naming what.
    """
    species = exposure.species
    positions = exposure.positions
    t0_s = exposure.arrival_s
    if not math.isfinite(t0_s):
        raise ValueError(f"{species}: the drug never reached the chambers")
    unknown = [p for p in [*control, *exclude] if p not in positions]
    if unknown:
        raise ValueError(f"{species}: unknown chamber(s) {', '.join(unknown)}")
    used = [p for p in positions if p not in exclude]
    controls = [p for p in control if p not in exclude]
    if not controls:
        raise ValueError(f"{species}: every control chamber is excluded")
    measured = {chamber_of(str(p)) for p in np.asarray(tumoroids["position"]).astype(str)}
    missing = [p for p in used if p not in measured]
    if missing:
        raise ValueError(f"{species}: no tumoroids measured in {', '.join(missing)}")
    point, viable = readout_point(tumoroids, used)
    rows = _rows(tumoroids, controls[0])
    tp = np.asarray(rows["t_point_s"], dtype=np.float64)
    t1_s = float(np.mean(np.asarray(rows["t_s"], dtype=np.float64)[tp == point]))
    if not t1_s > t0_s:
        raise ValueError(f"{species}: the readout ({t1_s:.0f} s) is not after the drug's arrival")
    conc = dict(zip(positions, (float(c) for c in exposure.effective_nm(t0_s, t1_s))))
    amounts: dict[str, ChamberAmounts] = {}
    lost: dict[str, float] = {}
    for p in used:
        amounts[p], n_lost = chamber_amounts(tumoroids, p, conc[p], t0_s, point, viable=viable)
        n_start = amounts[p].x0_um3.size + n_lost
        lost[p] = n_lost / n_start if n_start else math.nan
    treated = [amounts[p] for p in used if p not in controls]
    response = dose_response(
        species, treated, [amounts[p] for p in controls], n_boot=n_boot, rng=rng
    )
    brightfield = None
    if viable:  # the same readout without the stain, to show what the stain changed
        bf = {p: chamber_amounts(tumoroids, p, conc[p], t0_s, point, viable=False)[0] for p in used}
        try:
            brightfield = dose_response(
                species,
                [bf[p] for p in used if p not in controls],
                [bf[p] for p in controls],
                n_boot=n_boot,
                rng=np.random.default_rng(rng.integers(2**62) if rng is not None else 1),
            )
        except ValueError:
            brightfield = None
    series = {p: growth_series(tumoroids, p, t0_s) for p in used}
    time_resolved = _time_resolved(series, treated, controls)
    control_conc = float(np.mean([conc[p] for p in controls]))
    control_gr, corrected = _control_bias(response, control_conc)
    qc = _qc(response, lost, control_conc, control_gr, viable)
    if brightfield is not None and abs(brightfield.gr_max - response.gr_max) > QC_READOUT_GAP:
        qc += (
            f"GRmax is {response.gr_max:.2f} from the viability stain but "
            f"{brightfield.gr_max:.2f} from brightfield volume: dead or dying tissue still "
            "occupies volume, or the stain readout is off; compare both",
        )
    return DrugAnalysis(
        species=species,
        t0_s=t0_s,
        t1_s=t1_s,
        readout_t_point_s=point,
        on_s=exposure.on_time_s(t0_s, t1_s),
        viable=viable,
        response=response,
        brightfield=brightfield,
        excluded=tuple(p for p in positions if p in exclude),
        control_conc_nm=control_conc,
        control_gr=control_gr,
        gr50_control_corrected_nm=corrected,
        series=series,
        time_resolved=time_resolved,
        time_window_s=TIME_WINDOW_S,
        n_tumoroids={p: int(amounts[p].x0_um3.size) for p in used},
        lost_fraction=lost,
        qc=qc,
    )


def _time_resolved(
    series: Mapping[str, tuple[FloatArray, FloatArray]],
    treated: Sequence[ChamberAmounts],
    controls: Sequence[str],
) -> dict[str, tuple[FloatArray, FloatArray]]:
    t_ref, _ = series[controls[0]]
    if t_ref.size < 2:
        return {}
    ctrl = np.nanmean(
        np.vstack([np.interp(t_ref, *series[p]) for p in controls if series[p][0].size]), axis=0
    )
    out: dict[str, tuple[FloatArray, FloatArray]] = {}
    for ch in treated:
        t, log_fold = series[ch.position]
        if t.size < 2:
            continue
        x = np.exp2(np.interp(t_ref, t, log_fold))
        out[ch.position] = (
            t_ref,
            time_resolved_gr(t_ref, x, np.exp2(ctrl), TIME_WINDOW_S / 2.0),
        )
    return out


def _control_bias(response: DoseResponse, control_conc_nm: float) -> tuple[float, float]:
    """Return the fitted GR at the control's concentration, and GR50 corrected for it.

    If the control grew at ``log2(1 + g)`` of the untreated rate, every measured GR value
    ``G`` stands for a true ``2^(log2(1 + G) log2(1 + g)) - 1``; refitting those gives the
    corrected GR50.
    """
    if control_conc_nm <= 0.0 or not response.fit.sigmoid:
        return 1.0, response.gr50_nm
    g = float(response.fit(np.array([control_conc_nm]))[0])
    if not -1.0 < g < 1.0:
        return g, response.gr50_nm
    scale = math.log2(1.0 + g)
    true_gr = np.exp2(np.log2(np.maximum(response.gr + 1.0, 1e-12)) * scale) - 1.0
    try:
        corrected = fit_curve(response.conc_nm, true_gr).crossing_nm(0.5)
    except ValueError:
        corrected = math.nan
    return g, corrected


def _qc(
    response: DoseResponse,
    lost: Mapping[str, float],
    control_conc_nm: float,
    control_gr: float,
    viable: bool,
) -> tuple[str, ...]:
    qc: list[str] = []
    reference = response.reference_fold
    doublings = math.log2(reference) if reference > 0 else math.nan
    if not doublings >= QC_CONTROL_DOUBLINGS:
        qc.append(
            f"the untreated reference grew {doublings:.2f} doublings "
            f"(< {QC_CONTROL_DOUBLINGS:g}): "
            "GR values are ill-conditioned"
        )
    for p, share in lost.items():
        if share > QC_LOST_FRACTION:
            qc.append(f"{p}: {share:.0%} of its tumoroids were not found at the readout")
    if control_conc_nm > 0.0:
        where = (
            f"where the fit puts GR at {control_gr:.3f}"
            if response.fit.sigmoid
            else "the fit is flat, so no bias can be estimated"
        )
        qc.append(
            f"the control ({', '.join(response.control)}) is not drug-free: it received "
            f"{control_conc_nm:.3g} nM; {where}"
        )
    if not viable:
        qc.append("no viability stain at the readout: brightfield volume counts dead tissue")
    return tuple(qc)


@dataclass(frozen=True)
class RunAnalysis:
    """The dose-response readout of a whole run.

    Attributes:
        exposures: every species' delivered exposure.
        drugs: the analysis of every species that could be analysed.
        control: the control chambers used.
        exclude: the chambers left out.
        control_assumed: True if the protocol named no control and the least-exposed
            chamber was taken.
        problems: one line per species that could not be analysed, saying why.
    """

    exposures: tuple[ChamberExposure, ...]
    drugs: tuple[DrugAnalysis, ...]
    control: tuple[str, ...]
    exclude: tuple[str, ...]
    control_assumed: bool
    problems: tuple[str, ...]


def analyse_run(
    exposures: Sequence[ChamberExposure],
    tumoroids: Columns,
    *,
    control: Sequence[str] = (),
    exclude: Sequence[str] = (),
    n_boot: int = 500,
    seed: int = 0,
) -> RunAnalysis:
    """Analyse every drug of a run; a drug that cannot be analysed becomes a problem line.

    Args:
        exposures: the delivered exposures (:func:`chipctl.analysis.exposure.
            exposure_from_run`).
        tumoroids: the ``/analysis/tumoroids`` columns.
        control: control chambers (the protocol's ``[chambers] control``); if empty, the
            chamber with the lowest nominal exposure of all drugs is used, and says so.
        exclude: chambers to leave out.
        n_boot: bootstrap replicates per drug.
        seed: the bootstrap's seed (same seed, same intervals).
    """
    assumed = False
    chosen = tuple(control)
    if not chosen and exposures:
        totals = np.sum(
            [e.nominal_nm / max(float(e.nominal_nm.max()), 1e-300) for e in exposures], 0
        )
        candidates = [
            (float(v), p) for v, p in zip(totals, exposures[0].positions) if p not in exclude
        ]
        if candidates:
            chosen = (min(candidates)[1],)
            assumed = True
    drugs: list[DrugAnalysis] = []
    problems: list[str] = []
    for number, exposure in enumerate(exposures):
        try:
            drugs.append(
                analyse_drug(
                    exposure,
                    tumoroids,
                    control=chosen,
                    exclude=exclude,
                    n_boot=n_boot,
                    rng=np.random.default_rng([seed, number]),
                )
            )
        except ValueError as exc:
            problems.append(str(exc))
    return RunAnalysis(
        exposures=tuple(exposures),
        drugs=tuple(drugs),
        control=chosen,
        exclude=tuple(exclude),
        control_assumed=assumed,
        problems=tuple(problems),
    )


# -- in words ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """What a drug did, in words.

    Attributes:
        label: ``"cytotoxic"``, ``"cytostatic"``, ``"partial growth inhibition"``,
            ``"weak growth inhibition"`` or ``"no significant effect"``.
        sentence: the headline, e.g. ``"t-vc-mmae: GR50 3.1 nM [2.4-4.0], GR_max -0.4:
            cytotoxic at <= 20 nM"``.
    """

    label: str
    sentence: str


def format_number(value: float) -> str:
    """Return a number with two significant digits (three from 10), ``inf`` or ``n/a``."""
    if math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.2g}" if abs(value) < 10 else f"{value:.3g}"


def format_conc(value_nm: float, lowest_nm: float, highest_nm: float) -> str:
    """Return a concentration; infinite and zero become ``> highest`` and ``< lowest``."""
    if math.isnan(value_nm):
        return "n/a"
    if value_nm == math.inf:
        return f">{format_number(highest_nm)} nM"
    if value_nm <= 0.0:
        return f"<{format_number(lowest_nm)} nM"
    return f"{format_number(value_nm)} nM"


def format_interval(ci: Interval, fmt: Callable[[float], str]) -> str:
    """Return ``" [low-high]"`` formatted by ``fmt``, or ``""`` without an interval.

    A bound that is negative or open (``">20.1 nM"``) is joined with ``" to "``, so that
    ``[-0.03 to 0.12]`` and ``[11.4 nM to >20.1 nM]`` cannot be misread as a minus or an
    arrow.
    """
    if math.isnan(ci.low) or math.isnan(ci.high):
        return ""
    low, high = fmt(ci.low), fmt(ci.high)
    if low == high:
        return ""
    plain = not any(text.startswith(("-", "<", ">")) for text in (low, high))
    return f" [{low}-{high}]" if plain else f" [{low} to {high}]"


def verdict(response: DoseResponse) -> Verdict:
    """Classify a drug's effect from its fit and GR_max, and write the headline.

    The class follows GR's own scale [V, R57]: GR_max below -0.1 is net killing
    (cytotoxic), within +-0.1 of 0 growth stopped (cytostatic), up to 0.5 partial and
    above it weak growth inhibition; a flat fit (F-test p >= 0.05) is no significant effect.
    """
    c = response.conc_nm
    lo, hi = float(np.min(c)), float(np.max(c))
    gmax = response.gr_max
    if not response.fit.sigmoid:
        label = "no significant effect"
    elif gmax < -0.1:
        label = "cytotoxic"
    elif gmax <= 0.1:
        label = "cytostatic"
    elif gmax <= 0.5:
        label = "partial growth inhibition"
    else:
        label = "weak growth inhibition"
    gr50 = format_conc(response.gr50_nm, lo, hi)
    gr50_ci = format_interval(
        response.ci.get("gr50_nm", Interval()), lambda v: format_conc(v, lo, hi)
    )
    gmax_ci = format_interval(response.ci.get("gr_max", Interval()), lambda v: f"{v:.2f}")
    where = (
        f"up to {format_number(hi)} nM"
        if label == "no significant effect"
        else f"at <= {format_number(hi)} nM"
    )
    sentence = (
        f"{response.species}: GR50 {gr50}{gr50_ci.replace(' nM', '')}, "
        f"GRmax {gmax:.2f}{gmax_ci}: {label} {where}"
    )
    return Verdict(label, sentence)
