"""Tumoroid growth: Gompertz kinetics, oxygen-limited necrotic core, fibroblast modifiers.

All functions are pure and vectorised over tumoroids (numpy arrays in, arrays out).
References are to the domain reference (``shared/reference/domain-reference.md``).

Growth (domain reference 2.1, 8.3 "alternative simple mode", [V, R61]): each tumoroid's
drug-free volume follows the time-form Gompertz curve

    V(t) = V0 * exp[(r / rho) * (1 - exp(-rho * a))],   a = max(0, t - t_lag)

so its specific growth rate is ``g(a) = d ln V / dt = r * exp(-rho * a)``. The plateau
``V0 * exp(r / rho)`` stands for the oxygen/nutrient limit of a large spheroid
(the 12-day spheroid of about 1 mm, [V, R70]). Drugs and fibroblasts multiply ``g`` (see
:mod:`simulator.biology.drugs`); multiplying a specific rate by a constant ``m`` multiplies
``ln(V(t1)/V(t0))`` by ``m`` over any interval, which is what makes planted GR values exact.

Necrotic core (domain reference 2.3, [D]): with zero-order O2 consumption the diffusion
limit is ``R_l = sqrt(6 D c0 / a)``; a sphere larger than ``R_l`` has an anoxic core of
radius ``r_n`` solving ``R^2 - 3 r_n^2 + 2 r_n^3 / R = R_l^2``. The anoxic radius is used as
the necrotic radius (the reference's "use the anoxic radius as the necrosis driver").
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "O2_CONSUMPTION_AMOL_CELL_S",
    "O2_DIFFUSIVITY_M2_S",
    "O2_SURFACE_MOL_M3",
    "TUMOUR_CELL_DENSITY_PER_M3",
    "caf_ec50_factor",
    "caf_gr_inf_shift",
    "caf_growth_factor",
    "diffusion_limit_um",
    "gompertz_log_growth",
    "gompertz_rho_per_s",
    "gompertz_volume_um3",
    "necrotic_radius_um",
    "radius_um",
    "sphere_volume_um3",
]

FloatArray = NDArray[np.float64]

#: O2 diffusivity in tissue, 2e-9 m^2/s [L, domain reference 2.3].
O2_DIFFUSIVITY_M2_S = 2.0e-9
#: O2 at the spheroid surface, 0.19 mol/m^3 (1.0 mM/atm x 0.186 atm at 37 degC) [L/D, 2.3].
O2_SURFACE_MOL_M3 = 0.19
#: Oxygen consumption rate per cell, 50 amol/cell/s [D, R72 range < 1 to > 350].
O2_CONSUMPTION_AMOL_CELL_S = 50.0
#: Tumour cell packing, 1e15 cells/m^3 (one cell per 1000 um^3) [D from R70, 8.3].
TUMOUR_CELL_DENSITY_PER_M3 = 1.0e15


def sphere_volume_um3(radius_um: FloatArray) -> FloatArray:
    """Volume of a sphere, ``V = 4/3 pi R^3`` (um -> um^3)."""
    return (4.0 / 3.0) * np.pi * np.asarray(radius_um, dtype=np.float64) ** 3


def radius_um(volume_um3: FloatArray) -> FloatArray:
    """Radius of the sphere of volume ``volume_um3``: ``R = (3 V / 4 pi)^(1/3)``."""
    v = np.maximum(np.asarray(volume_um3, dtype=np.float64), 0.0)
    return np.cbrt(3.0 * v / (4.0 * np.pi))


def diffusion_limit_um(
    diffusivity_m2_s: float = O2_DIFFUSIVITY_M2_S,
    surface_mol_m3: float = O2_SURFACE_MOL_M3,
    consumption_amol_cell_s: float = O2_CONSUMPTION_AMOL_CELL_S,
    cell_density_per_m3: float = TUMOUR_CELL_DENSITY_PER_M3,
) -> float:
    """Oxygen diffusion limit ``R_l = sqrt(6 D c0 / a)`` with ``a = OCR * rho_cell``.

    Domain reference 2.3 [D]: the defaults (D 2e-9 m^2/s, c0 0.19 mol/m^3, OCR 50
    amol/cell/s, 1e15 cells/m^3) give R_l = 214 um, i.e. a core above ~430 um diameter,
    consistent with the 400-600 um critical size [V, R69].

    Args:
        diffusivity_m2_s: O2 diffusivity D in m^2/s.
        surface_mol_m3: O2 concentration c0 at the surface in mol/m^3.
        consumption_amol_cell_s: oxygen consumption rate per cell in amol/s.
        cell_density_per_m3: cells per m^3.

    Returns:
        R_l in um.
    """
    a_mol_m3_s = consumption_amol_cell_s * 1e-18 * cell_density_per_m3
    return math.sqrt(6.0 * diffusivity_m2_s * surface_mol_m3 / a_mol_m3_s) * 1e6


def necrotic_radius_um(radius: FloatArray, limit_um: float) -> FloatArray:
    """Anoxic (necrotic) core radius ``r_n`` of spheres of radius ``radius`` (um).

    Solves ``R^2 - 3 r_n^2 + 2 r_n^3 / R = R_l^2`` for ``0 <= r_n < R`` (domain reference
    2.3 [D]); ``r_n = 0`` when ``R <= R_l``. The left side decreases monotonically in
    ``r_n`` on ``[0, R]`` (derivative ``6 r_n (r_n/R - 1)``), so bisection is exact to
    ~1e-12 R after 40 halvings. Table check: R_l 214 um, 600 um diameter -> 296 um core.

    Args:
        radius: sphere radii R in um.
        limit_um: diffusion limit R_l in um.

    Returns:
        Core radii in um (same shape as ``radius``).
    """
    r = np.asarray(radius, dtype=np.float64)
    out = np.zeros_like(r)
    big = r > limit_um
    if not np.any(big):
        return out
    rb = r[big]
    lo = np.zeros_like(rb)
    hi = rb.copy()
    target = limit_um**2
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        f = rb**2 - 3.0 * mid**2 + 2.0 * mid**3 / rb - target
        above = f > 0.0
        lo = np.where(above, mid, lo)
        hi = np.where(above, hi, mid)
    out[big] = 0.5 * (lo + hi)
    return out


def gompertz_rho_per_s(
    rate_per_s: FloatArray, v0_um3: FloatArray, vmax_um3: FloatArray | float
) -> FloatArray:
    """Gompertz deceleration ``rho = r / ln(Vmax / V0)`` giving plateau ``Vmax``."""
    ratio = np.maximum(np.asarray(vmax_um3) / np.asarray(v0_um3), 1.0 + 1e-9)
    return np.asarray(rate_per_s, dtype=np.float64) / np.log(ratio)


def gompertz_log_growth(
    rate_per_s: FloatArray, rho_per_s: FloatArray, age0_s: FloatArray, age1_s: FloatArray
) -> FloatArray:
    """Integral of the Gompertz specific rate over growth ages ``[a0, a1]``.

    ``G = integral r exp(-rho a) da = (r / rho) (exp(-rho a0) - exp(-rho a1))``, with
    ages clipped at 0 (dormant before the lag [V trend R64]). ``ln V`` grows by exactly
    ``m * G`` over an interval with a constant rate multiplier ``m``.
    """
    a0 = np.maximum(age0_s, 0.0)
    a1 = np.maximum(age1_s, 0.0)
    rho = np.asarray(rho_per_s, dtype=np.float64)
    result: FloatArray = (rate_per_s / rho) * (np.exp(-rho * a0) - np.exp(-rho * a1))
    return result


def gompertz_volume_um3(
    v0_um3: FloatArray, rate_per_s: FloatArray, rho_per_s: FloatArray, age_s: FloatArray
) -> FloatArray:
    """Analytic Gompertz ``V = V0 exp[(r/rho)(1 - exp(-rho a))]`` ([V, R61]), a >= 0."""
    zero = np.zeros_like(np.asarray(age_s, dtype=np.float64))
    result: FloatArray = v0_um3 * np.exp(gompertz_log_growth(rate_per_s, rho_per_s, zero, age_s))
    return result


def _saturation(caf_ratio: FloatArray | float) -> FloatArray:
    f = np.maximum(np.asarray(caf_ratio, dtype=np.float64), 0.0)
    result: FloatArray = f / (1.0 + f)
    return result


def caf_growth_factor(caf_ratio: FloatArray | float, boost: float = 0.3) -> FloatArray:
    """Growth-rate multiplier of fibroblasts, ``m_CAF = 1 + g f / (1 + f)``.

    ``f`` is the CAF : tumour cell ratio, ``g`` = 0.3 (up to 1.3x faster growth)
    [A, 8.3 / 8.6, cf. 1.5x diameter change with fibroblasts V, R53].
    """
    result: FloatArray = 1.0 + boost * _saturation(caf_ratio)
    return result


def caf_ec50_factor(caf_ratio: FloatArray | float, shift: float = 2.0) -> FloatArray:
    """Potency shift of fibroblasts, ``EC50 * (1 + s f / (1 + f))``, s = 2 (max 3x).

    [A, 8.3 / 8.6, calibrated to the 6-26 percentage-point viability shifts of V, R51.]
    """
    result: FloatArray = 1.0 + shift * _saturation(caf_ratio)
    return result


def caf_gr_inf_shift(caf_ratio: FloatArray | float, shift: float = 0.15) -> FloatArray:
    """Raise of ``GR_inf`` by fibroblasts, ``+ 0.15 f / (1 + f)`` [A, 8.3, R51]."""
    result: FloatArray = shift * _saturation(caf_ratio)
    return result
