"""Design of a serial-dilution ladder that gives log-spaced drug fractions.

Topology (the chip designer's calculation; the fluidics then only sees resistances):

* the drug inlet feeds mixing node ``mix:0``; the medium (diluent) inlet feeds a manifold;
* stage ``k >= 1``: ``mix:k`` receives the transfer stream from ``mix:k-1`` (fraction
  ``f_{k-1}``) and a diluent stream ``D_k`` from the manifold, so
  ``f_k = f_{k-1} T_{k-1} / (T_{k-1} + D_k)``, i.e. ``D_k = T_{k-1} (f_{k-1}/f_k - 1)``;
* every ``mix:k`` feeds chamber ``k`` through a restrictor; ``mix:0`` also sends its
  surplus drug stream through a bypass to the outlet, so every chamber gets the same flow;
* chambers and bypass drain to one outlet node, then through the outlet tubing to air.

At equal inlet flows ``q`` the design fixes the chamber flow ``c`` and transfer flows
``T_k`` from mass balance (``T_k = T_{k-1} f_{k-1}/f_k - c``, ``T_{n-1} = 0``,
``sum D_k = q``), chooses node pressures (manifold ``p``, mixing nodes falling linearly
from ``hi p`` to ``lo p``), and sets every resistance as ``R = dP / Q`` [D]. The network is
linear, so at any equal rates the fractions are exactly ``f_k`` and at unequal rates they
follow from the network's own mixing (:mod:`simulator.physics.mixing`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["LadderDesign", "design_serial_dilution"]


@dataclass(frozen=True)
class LadderDesign:
    """Resistances of a serial-dilution ladder (kPa s/uL) and its design point.

    Attributes:
        fractions: drug fraction of each chamber at equal inlet flows.
        diluent_kpa_s_ul: manifold -> ``mix:k`` for ``k = 1..n-1``.
        transfer_kpa_s_ul: ``mix:k`` -> ``mix:k+1`` for ``k = 0..n-2``.
        restrictor_kpa_s_ul: ``mix:k`` -> chamber ``k`` for ``k = 0..n-1``.
        bypass_kpa_s_ul: ``mix:0`` -> outlet node.
        chamber_flow_per_inlet_flow: chamber flow / each inlet's flow at equal rates.
        bypass_flow_per_inlet_flow: bypass flow / each inlet's flow at equal rates.
    """

    fractions: tuple[float, ...]
    diluent_kpa_s_ul: tuple[float, ...]
    transfer_kpa_s_ul: tuple[float, ...]
    restrictor_kpa_s_ul: tuple[float, ...]
    bypass_kpa_s_ul: float
    chamber_flow_per_inlet_flow: float
    bypass_flow_per_inlet_flow: float


def design_serial_dilution(
    *,
    n_chambers: int,
    dilution_ratio: float,
    design_inlet_flow_ul_s: float,
    manifold_pressure_kpa: float,
    chamber_resistance_kpa_s_ul: float,
    outlet_resistance_kpa_s_ul: float,
    mix_pressure_span: tuple[float, float] = (0.8, 0.4),
) -> LadderDesign:
    """Compute ladder resistances for fractions ``f_k = dilution_ratio**k``.

    Args:
        n_chambers: number of chambers (>= 2).
        dilution_ratio: ``f_k / f_{k-1}``, in (0, 1) (``10**-0.5`` = half-log steps).
        design_inlet_flow_ul_s: flow of each of the two inlets at the design point, uL/s.
        manifold_pressure_kpa: manifold pressure at the design point, kPa.
        chamber_resistance_kpa_s_ul: resistance of each chamber (chamber to outlet node).
        outlet_resistance_kpa_s_ul: resistance of outlet node to atmosphere.
        mix_pressure_span: pressures of ``mix:0`` and ``mix:n-1`` as fractions of the
            manifold pressure (mixing-node pressures fall linearly in between).

    Returns:
        The ladder design.

    Raises:
        ValueError: if the design point cannot be realised with positive resistances.
    """
    if n_chambers < 2 or not 0.0 < dilution_ratio < 1.0:
        raise ValueError("need n_chambers >= 2 and 0 < dilution_ratio < 1")
    n, q = n_chambers, design_inlet_flow_ul_s
    f = dilution_ratio ** np.arange(n)
    g = f[:-1] / f[1:]
    # T_k = a_k t + b_k c with t = T_0 and c the chamber flow.
    a, b = np.ones(n), np.zeros(n)
    for k in range(1, n):
        a[k], b[k] = a[k - 1] * g[k - 1], b[k - 1] * g[k - 1] - 1.0
    system = np.array([[a[-1], b[-1]], [np.sum((g - 1.0) * a[:-1]), np.sum((g - 1.0) * b[:-1])]])
    t0, c = np.linalg.solve(system, np.array([0.0, q]))
    transfer = a * t0 + b * c
    diluent = transfer[:-1] * (g - 1.0)
    bypass = q - t0 - c
    if bypass < 0.0 or np.any(transfer[:-1] <= 0.0) or c <= 0.0:
        raise ValueError("no positive-flow ladder for this ratio and chamber count")
    hi, lo = mix_pressure_span
    p_mix = manifold_pressure_kpa * np.linspace(hi, lo, n)
    p_out = outlet_resistance_kpa_s_ul * 2.0 * q
    p_chamber = p_out + chamber_resistance_kpa_s_ul * c
    if not (manifold_pressure_kpa > p_mix[0] > p_mix[-1] > p_chamber):
        raise ValueError(
            "design pressures must fall from manifold to chambers; raise manifold pressure"
        )
    return LadderDesign(
        fractions=tuple(float(x) for x in f),
        diluent_kpa_s_ul=tuple(float(x) for x in (manifold_pressure_kpa - p_mix[1:]) / diluent),
        transfer_kpa_s_ul=tuple(float(x) for x in (p_mix[:-1] - p_mix[1:]) / transfer[:-1]),
        restrictor_kpa_s_ul=tuple(float(x) for x in (p_mix - p_chamber) / c),
        bypass_kpa_s_ul=float((p_mix[0] - p_out) / bypass) if bypass > 0.0 else 1e12,
        chamber_flow_per_inlet_flow=float(c / q),
        bypass_flow_per_inlet_flow=float(bypass / q),
    )
