"""Hydraulic resistance, compliance, wall shear and unit conversions (pure functions).

Every function works in SI units (m, Pa, s, m^3) and says so in its name; the network
models in :mod:`simulator.fluidics` work in the instrument units uL, kPa and s, and
convert with the helpers at the end of this module. Citations ``[R#]`` and evidence tags
([V] read in source, [L] literature, [D] derived, [A] assumption) refer to
``shared/reference/domain-reference.md`` (section 1 and 7).
"""

from __future__ import annotations

import math

__all__ = [
    "AIR_ABSOLUTE_PRESSURE_PA",
    "MEDIUM_VISCOSITY_PA_S",
    "PDMS_YOUNGS_MODULUS_PA",
    "PTFE_YOUNGS_MODULUS_PA",
    "WATER_COMPRESSIBILITY_1_PA",
    "circular_wall_shear_pa",
    "darcy_resistance_pa_s_m3",
    "gas_compliance_m3_pa",
    "kpa_s_ul_to_pa_s_m3",
    "liquid_compliance_m3_pa",
    "m3_pa_to_ul_kpa",
    "m3_s_to_ul_min",
    "pa_s_m3_to_kpa_s_ul",
    "pa_to_dyn_cm2",
    "pdms_channel_compliance_m3_pa",
    "rectangular_channel_resistance_approx_pa_s_m3",
    "rectangular_channel_resistance_pa_s_m3",
    "rectangular_wall_shear_pa",
    "syringe_compliance_m3_pa",
    "tube_compliance_m3_pa",
    "tube_resistance_pa_s_m3",
    "tube_volume_ul",
    "ul_kpa_to_m3_pa",
    "ul_min_to_m3_s",
]

#: Culture medium at 37 degC, 0.78 mPa s [L, R31, R32] (domain reference 8.1).
MEDIUM_VISCOSITY_PA_S = 0.78e-3
#: Water compressibility 4.6e-5 bar^-1 = 4.6e-10 Pa^-1 [V, R2] (domain reference 1.6).
WATER_COMPRESSIBILITY_1_PA = 4.6e-10
#: Atmospheric absolute pressure used for bubble compliance V_b / P_abs [V, R2], [D].
AIR_ABSOLUTE_PRESSURE_PA = 101_325.0
#: PTFE tubing Young's modulus 0.5 GPa [L] (domain reference 1.6, 8.1).
PTFE_YOUNGS_MODULUS_PA = 0.5e9
#: PDMS (Sylgard 184, 10:1) Young's modulus, about 1-2 MPa [L]; 1.5 MPa used.
PDMS_YOUNGS_MODULUS_PA = 1.5e6


def tube_resistance_pa_s_m3(
    length_m: float, inner_diameter_m: float, viscosity_pa_s: float
) -> float:
    """Hagen-Poiseuille resistance of a circular tube.

    ``R = 8 mu L / (pi r^4) = 128 mu L / (pi d^4)`` [V, R3, R2; Bruus 2008, R4].

    Args:
        length_m: tube length in m.
        inner_diameter_m: inner diameter in m.
        viscosity_pa_s: dynamic viscosity in Pa s.

    Returns:
        Hydraulic resistance in Pa s/m^3 (so that dP [Pa] = R Q [m^3/s]).
    """
    _check_positive(
        length_m=length_m, inner_diameter_m=inner_diameter_m, viscosity_pa_s=viscosity_pa_s
    )
    radius_m = inner_diameter_m / 2.0
    return 8.0 * viscosity_pa_s * length_m / (math.pi * radius_m**4)


def rectangular_channel_resistance_pa_s_m3(
    length_m: float,
    width_m: float,
    height_m: float,
    viscosity_pa_s: float,
    *,
    n_terms: int = 50,
) -> float:
    """Resistance of a rectangular channel from the exact Fourier series.

    ``R = 12 mu L / (w h^3) * [1 - (192 h)/(pi^5 w) * sum_{n odd} n^-5 tanh(n pi w / 2h)]^-1``
    with ``h <= w`` (the two sides are swapped if needed) [V, R1 one-term form; series from
    Bruus 2008, R4, L].

    Args:
        length_m: channel length in m.
        width_m: channel width in m.
        height_m: channel height in m.
        viscosity_pa_s: dynamic viscosity in Pa s.
        n_terms: number of odd terms of the series (50 is exact to double precision).

    Returns:
        Hydraulic resistance in Pa s/m^3.
    """
    _check_positive(
        length_m=length_m, width_m=width_m, height_m=height_m, viscosity_pa_s=viscosity_pa_s
    )
    w_m, h_m = max(width_m, height_m), min(width_m, height_m)
    series = 0.0
    for k in range(n_terms):
        n = 2 * k + 1
        series += math.tanh(n * math.pi * w_m / (2.0 * h_m)) / n**5
    correction = 1.0 - 192.0 * h_m / (math.pi**5 * w_m) * series
    return 12.0 * viscosity_pa_s * length_m / (w_m * h_m**3 * correction)


def rectangular_channel_resistance_approx_pa_s_m3(
    length_m: float, width_m: float, height_m: float, viscosity_pa_s: float
) -> float:
    """Closed-form approximation ``R = 12 mu L / [w h^3 (1 - 0.630 h/w)]`` [V, R2].

    Within 0.15 % of the series for ``h/w <= 0.5``, +14 % at ``h/w = 1`` [D]; prefer
    :func:`rectangular_channel_resistance_pa_s_m3` for square-ish channels.

    Args:
        length_m: channel length in m.
        width_m: channel width in m.
        height_m: channel height in m.
        viscosity_pa_s: dynamic viscosity in Pa s.

    Returns:
        Hydraulic resistance in Pa s/m^3.
    """
    _check_positive(
        length_m=length_m, width_m=width_m, height_m=height_m, viscosity_pa_s=viscosity_pa_s
    )
    w_m, h_m = max(width_m, height_m), min(width_m, height_m)
    return 12.0 * viscosity_pa_s * length_m / (w_m * h_m**3 * (1.0 - 0.630 * h_m / w_m))


def darcy_resistance_pa_s_m3(
    length_m: float, area_m2: float, permeability_m2: float, viscosity_pa_s: float
) -> float:
    """Resistance of a porous hydrogel plug (Darcy flow): ``R = mu L / (k A)`` [V, R30].

    Args:
        length_m: length of gel along the flow in m.
        area_m2: cross-section in m^2.
        permeability_m2: hydraulic permeability in m^2 (collagen 1e-12, fibrin 5.7e-13 [V, R30]).
        viscosity_pa_s: dynamic viscosity in Pa s.

    Returns:
        Hydraulic resistance in Pa s/m^3.
    """
    _check_positive(
        length_m=length_m,
        area_m2=area_m2,
        permeability_m2=permeability_m2,
        viscosity_pa_s=viscosity_pa_s,
    )
    return viscosity_pa_s * length_m / (permeability_m2 * area_m2)


def tube_volume_ul(length_m: float, inner_diameter_m: float) -> float:
    """Liquid volume of a tube, ``V = pi d^2 L / 4``, in uL (1 uL = 1e-9 m^3).

    Args:
        length_m: tube length in m.
        inner_diameter_m: inner diameter in m.
    """
    return math.pi * inner_diameter_m**2 / 4.0 * length_m * 1e9


def tube_compliance_m3_pa(
    length_m: float, inner_diameter_m: float, wall_thickness_m: float, youngs_modulus_pa: float
) -> float:
    """Wall compliance of a thin-walled elastic tube, ``C = 2 pi r^3 L / (E t)`` [D, section 1.6].

    PTFE (E = 0.5 GPa) gives about 4e-16 m^3/Pa per metre at 0.5 mm ID; silicone or
    Tygon (E = 1-5 MPa) is about 1e3 times more compliant [L E-values].

    Args:
        length_m: tube length in m.
        inner_diameter_m: inner diameter in m.
        wall_thickness_m: wall thickness in m.
        youngs_modulus_pa: Young's modulus of the wall in Pa.

    Returns:
        Compliance dV/dP in m^3/Pa.
    """
    _check_positive(
        length_m=length_m,
        inner_diameter_m=inner_diameter_m,
        wall_thickness_m=wall_thickness_m,
        youngs_modulus_pa=youngs_modulus_pa,
    )
    radius_m = inner_diameter_m / 2.0
    return 2.0 * math.pi * radius_m**3 * length_m / (youngs_modulus_pa * wall_thickness_m)


def liquid_compliance_m3_pa(
    volume_m3: float, compressibility_1_pa: float = WATER_COMPRESSIBILITY_1_PA
) -> float:
    """Compressibility of a liquid volume, ``C = kappa V`` [V, R2].

    10 mL of water gives 4.6e-15 m^3/Pa (domain reference 1.6, [D]).

    Args:
        volume_m3: liquid volume in m^3.
        compressibility_1_pa: isothermal compressibility in 1/Pa (water 4.6e-10 [V, R2]).

    Returns:
        Compliance in m^3/Pa.
    """
    return compressibility_1_pa * volume_m3


def gas_compliance_m3_pa(
    gas_volume_m3: float, absolute_pressure_pa: float = AIR_ABSOLUTE_PRESSURE_PA
) -> float:
    """Isothermal compliance of trapped gas, ``C = V_b / P_abs`` [V, R2], [D].

    A 1 uL bubble at 1 atm gives about 1e-14 m^3/Pa (domain reference 1.6).

    Args:
        gas_volume_m3: bubble volume in m^3.
        absolute_pressure_pa: absolute pressure of the gas in Pa.

    Returns:
        Compliance in m^3/Pa.
    """
    return gas_volume_m3 / absolute_pressure_pa


def syringe_compliance_m3_pa(
    fill_volume_m3: float, stopper_compliance_m3_pa: float = 1.0e-14
) -> float:
    """Lumped compliance of a filled syringe: liquid compressibility plus plunger stopper.

    ``C_syr = kappa_water V_fill + C_stopper`` (domain reference 8.1 "syringe/plunger
    lumped C_syr"). The elastomer stopper of a plastic syringe dominates; its default
    1e-14 m^3/Pa (0.01 uL/kPa) is an assumption [A] to be tuned against a measured
    start-up curve (tau = R C, section 1.6).

    Args:
        fill_volume_m3: liquid in the syringe in m^3.
        stopper_compliance_m3_pa: compliance of the plunger seal in m^3/Pa.

    Returns:
        Compliance in m^3/Pa.
    """
    return liquid_compliance_m3_pa(fill_volume_m3) + stopper_compliance_m3_pa


def pdms_channel_compliance_m3_pa(
    width_m: float,
    length_m: float,
    youngs_modulus_pa: float = PDMS_YOUNGS_MODULUS_PA,
    alpha: float = 0.5,
) -> float:
    """Ceiling compliance of a shallow channel moulded in thick PDMS.

    The ceiling deflects ``delta = alpha P w / E`` (Gervais et al., Lab Chip 6:500, 2006 [L];
    the domain reference notes the bulging qualitatively [V, R130]); with a parabolic
    cross profile the volume gain is ``(2/3) delta w L``, so ``C = (2/3) alpha w^2 L / E``.

    Args:
        width_m: channel or chamber width in m.
        length_m: length in m.
        youngs_modulus_pa: PDMS Young's modulus in Pa.
        alpha: dimensionless deflection coefficient (order 1, [L]).

    Returns:
        Compliance in m^3/Pa.
    """
    _check_positive(
        width_m=width_m, length_m=length_m, youngs_modulus_pa=youngs_modulus_pa, alpha=alpha
    )
    return 2.0 / 3.0 * alpha * width_m**2 * length_m / youngs_modulus_pa


def rectangular_wall_shear_pa(
    flow_m3_s: float, width_m: float, height_m: float, viscosity_pa_s: float
) -> float:
    """Wall shear stress in a wide rectangular channel, ``tau_w = 6 mu Q / (w h^2)`` [L, Bruus].

    Args:
        flow_m3_s: volumetric flow in m^3/s (sign kept).
        width_m: channel width in m (the wide side).
        height_m: channel height in m (the short side).
        viscosity_pa_s: dynamic viscosity in Pa s.

    Returns:
        Wall shear stress in Pa (1 Pa = 10 dyn/cm^2).
    """
    return 6.0 * viscosity_pa_s * flow_m3_s / (width_m * height_m**2)


def circular_wall_shear_pa(
    flow_m3_s: float, inner_diameter_m: float, viscosity_pa_s: float
) -> float:
    """Wall shear stress in a circular tube, ``tau_w = 4 mu Q / (pi r^3)`` [L].

    Args:
        flow_m3_s: volumetric flow in m^3/s.
        inner_diameter_m: inner diameter in m.
        viscosity_pa_s: dynamic viscosity in Pa s.

    Returns:
        Wall shear stress in Pa.
    """
    radius_m = inner_diameter_m / 2.0
    return 4.0 * viscosity_pa_s * flow_m3_s / (math.pi * radius_m**3)


# --- unit conversions -------------------------------------------------------------------


def ul_min_to_m3_s(flow_ul_min: float) -> float:
    """Convert uL/min to m^3/s (1 uL/min = 1e-9 m^3 / 60 s)."""
    return flow_ul_min * 1e-9 / 60.0


def m3_s_to_ul_min(flow_m3_s: float) -> float:
    """Convert m^3/s to uL/min."""
    return flow_m3_s * 60.0 * 1e9


def pa_s_m3_to_kpa_s_ul(resistance_pa_s_m3: float) -> float:
    """Convert Pa s/m^3 to kPa s/uL (1 kPa s/uL = 1e12 Pa s/m^3)."""
    return resistance_pa_s_m3 * 1e-12


def kpa_s_ul_to_pa_s_m3(resistance_kpa_s_ul: float) -> float:
    """Convert kPa s/uL to Pa s/m^3."""
    return resistance_kpa_s_ul * 1e12


def m3_pa_to_ul_kpa(compliance_m3_pa: float) -> float:
    """Convert m^3/Pa to uL/kPa (1 uL/kPa = 1e-12 m^3/Pa)."""
    return compliance_m3_pa * 1e12


def ul_kpa_to_m3_pa(compliance_ul_kpa: float) -> float:
    """Convert uL/kPa to m^3/Pa."""
    return compliance_ul_kpa * 1e-12


def pa_to_dyn_cm2(stress_pa: float) -> float:
    """Convert Pa to dyn/cm^2 (1 Pa = 10 dyn/cm^2 [V, R6])."""
    return stress_pa * 10.0


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if not value > 0.0:
            raise ValueError(f"{name} must be positive, got {value!r}")
