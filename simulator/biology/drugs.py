"""Drug classes and their pharmacodynamic models (domain reference 2.5-2.7, 8.3).

Three classes, each a frozen dataclass holding its planted parameters:

* :class:`CytostaticDrug` -- growth-rate inhibition defined in GR terms,
  ``GR(c) = GR_inf + (1 - GR_inf) / (1 + (c / GEC50)^h)`` ([V, R57]). GR maps to the
  specific growth rate by ``k(c) = k(0) * log2(1 + GR(c))`` ([D, 2.7 "simulator
  inversion"]); because ``k(0)`` is the drug-free Gompertz specific rate of the same
  tumoroid, ``2^(ln(x(c,t1)/x(c,t0)) / ln(x_ctrl(t1)/x_ctrl(t0))) - 1 = GR(c)`` holds
  exactly for every interval over which the effect-site concentration is constant.
* :class:`CytotoxicDrug` -- delayed death (Simeoni et al. 2004, [V, R65]): proliferating
  volume moves into damaged compartments at ``k_kill(c) = k_max * c^h / (EC50^h + c^h)``,
  passes three transit compartments at ``k1`` each (mean time to death ``3 / k1``) and
  dies.
* :class:`AdcDrug` -- antibody-drug conjugate ([V, R37, R38, R43]): receptor binding,
  internalisation, lysosomal payload release (DAR payloads per antibody), payload efflux;
  the intracellular payload kills through a Hill function, and the effluxed membrane-
  permeant payload kills neighbours within a radius (bystander effect, [V, R38, R39]).

Every drug has an effect-site lag ``dC_e/dt = k_e0 (C - C_e)`` ([L, 2.5], k_e0 = ln2/6 h
[A, 8.6]) except the ADC, whose binding/internalisation chain is its lag.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "AVOGADRO_NM_UM3",
    "AdcDrug",
    "CytostaticDrug",
    "CytotoxicDrug",
    "Drug",
    "GRParams",
    "HOUR_S",
    "DAY_S",
    "growth_multiplier",
    "hill",
]

FloatArray = NDArray[np.float64]

HOUR_S = 3600.0
DAY_S = 86400.0
#: Molecules per um^3 at 1 nM: 6.022e23 / mol * 1e-9 mol/L / 1e15 um^3/L.
AVOGADRO_NM_UM3 = 0.6022
#: Effect-site equilibration, k_e0 = ln2 / 6 h [A, 8.6].
DEFAULT_KE0_PER_S = math.log(2.0) / (6.0 * HOUR_S)
#: Simeoni transit rate k1 = 1 / day, three compartments [A, structure V R65, 8.6].
DEFAULT_TRANSIT_PER_S = 1.0 / DAY_S


def hill(conc: FloatArray, ec50: FloatArray | float, h: float) -> FloatArray:
    """Fractional effect ``c^h / (EC50^h + c^h)`` in [0, 1] ([V, R57], 2.5)."""
    c = np.maximum(np.asarray(conc, dtype=np.float64), 0.0)
    x = (c / np.asarray(ec50, dtype=np.float64)) ** h
    result: FloatArray = x / (1.0 + x)
    return result


def growth_multiplier(gr: FloatArray) -> FloatArray:
    """Specific-rate multiplier ``m = log2(1 + GR)`` ([D, 2.7]); GR clipped at -0.999."""
    result: FloatArray = np.log2(1.0 + np.maximum(np.asarray(gr, dtype=np.float64), -0.999))
    return result


@dataclass(frozen=True)
class GRParams:
    """A GR dose-response curve ``GR(c) = GR_inf + (1 - GR_inf) / (1 + (c/GEC50)^h)``.

    Attributes:
        gr_inf: GR at infinite concentration, in [-1, 1].
        gec50_nm: concentration of half effect, nM.
        hill: Hill coefficient h_GR.
    """

    gr_inf: float
    gec50_nm: float
    hill: float

    def gr(self, conc_nm: FloatArray | float) -> FloatArray:
        """Evaluate GR at concentrations in nM."""
        c = np.maximum(np.asarray(conc_nm, dtype=np.float64), 0.0)
        result: FloatArray = self.gr_inf + (1.0 - self.gr_inf) / (
            1.0 + (c / self.gec50_nm) ** self.hill
        )
        return result

    def gr50_nm(self) -> float:
        """GR50 = GEC50 [(1 - GR_inf)/(0.5 - GR_inf) - 1]^(1/h) ([V, R57]); inf if never 0.5."""
        if self.gr_inf >= 0.5:
            return math.inf
        base = (1.0 - self.gr_inf) / (0.5 - self.gr_inf) - 1.0
        return float(self.gec50_nm * base ** (1.0 / self.hill))


@dataclass(frozen=True)
class CytostaticDrug:
    """Growth-rate inhibitor (e.g. naked trastuzumab, [L/A, 2.6]).

    Effect: the tumoroid's specific growth rate is multiplied by ``log2(1 + GR(C_e))``.

    Attributes:
        name: key in the exposure mapping.
        gr: planted GR curve (without fibroblasts; see ``caf_*`` in
            :mod:`simulator.biology.growth` for the per-chamber shift).
        ke0_per_s: effect-site rate constant, 1/s.
    """

    name: str
    gr: GRParams
    ke0_per_s: float = DEFAULT_KE0_PER_S


@dataclass(frozen=True)
class CytotoxicDrug:
    """Antimitotic with delayed death (free MMAE, paclitaxel; Simeoni transit, [V, R65]).

    ``dP/dt = g P - k_kill(C_e) P``; ``dD1/dt = k_kill P - k1 D1``; ``dD2/dt = k1 (D1 - D2)``;
    ``dD3/dt = k1 (D2 - D3)``; dead debris gains ``k1 D3``.

    Attributes:
        name: key in the exposure mapping.
        ec50_nm: concentration of half-maximal kill rate, nM.
        hill: Hill coefficient.
        kill_max_per_s: maximal transfer rate into the damaged compartments, 1/s
            (1.5 / day [A]).
        transit_per_s: transit rate k1 between damaged compartments, 1/s (1 / day [A]).
        ke0_per_s: effect-site rate constant, 1/s.
    """

    name: str
    ec50_nm: float
    hill: float = 1.5
    kill_max_per_s: float = 1.5 / DAY_S
    transit_per_s: float = DEFAULT_TRANSIT_PER_S
    ke0_per_s: float = DEFAULT_KE0_PER_S


@dataclass(frozen=True)
class AdcDrug:
    """Antibody-drug conjugate with bystander payload (T-vc-MMAE, [V, R37, R38, R43]).

    Per cell of an antigen-positive tumoroid (receptor occupancy ``theta``, internalised
    ADC ``I`` and free intracellular payload ``P`` in molecules/cell), at ADC conc. ``c``:

    * ``dtheta/dt = k_on c (1 - theta) - (k_off + k_int) theta`` (receptors recycle);
    * ``dI/dt = k_int theta R_tot - k_deg I``;
    * ``dP/dt = DAR k_deg I - k_out P``;
    * kill rate ``k_max * [1 - (1 - E_in)(1 - E_bys)]`` with ``E_in = hill(P, P50, h)`` and
      ``E_bys = hill(c_bys, EC50_payload, h)``.

    ``P50`` is set so that the steady state at ``c = ec50_nm`` is half-maximal, so the
    planted ADC EC50 is the steady-state EC50 of the kill rate. Bystander concentration
    at a neighbour at distance ``d`` (same chamber, ``d <= bystander_radius_um``) from a
    steady point source: ``c_bys = sum J_i / (4 pi D max(d, R_i))`` with the efflux
    ``J_i = k_out P_i N_live,i`` molecules/s [D].

    Attributes:
        name: key in the exposure mapping (ADC concentration, nM).
        ec50_nm: steady-state EC50 of the kill rate, nM (50 ng/mL = 0.34 nM [L, R45]).
        hill: Hill coefficient [A].
        kill_max_per_s: maximal kill rate, 1/s (1.5/day [A]).
        transit_per_s: Simeoni transit rate, 1/s.
        kd_nm: receptor affinity, nM (1 nM [L, 0.1-5]).
        kon_per_nm_s: association rate, 1/(nM s) (1e5 /M/s [L]).
        receptors_per_cell: HER2 per antigen-positive cell (1e6 [L, 8.3]).
        internalisation_half_life_s: 10 h [V, R37].
        degradation_half_life_s: 20 h [V, R37].
        efflux_half_life_s: 5 h for membrane-permeant MMAE [A, 8.3].
        dar: drug-antibody ratio, 3.5 [V, R43].
        payload_ec50_nm: free payload EC50 for bystander kill, 0.5 nM (MMAE [L, R41]).
        bystander_radius_um: neighbours farther than this are unaffected, 300 um [A].
        payload_diffusivity_um2_s: small-molecule diffusivity in gel, 500 um^2/s [L, 8.2].
    """

    name: str
    ec50_nm: float = 0.34
    hill: float = 1.5
    kill_max_per_s: float = 1.5 / DAY_S
    transit_per_s: float = DEFAULT_TRANSIT_PER_S
    kd_nm: float = 1.0
    kon_per_nm_s: float = 1e-4
    receptors_per_cell: float = 1e6
    internalisation_half_life_s: float = 10.0 * HOUR_S
    degradation_half_life_s: float = 20.0 * HOUR_S
    efflux_half_life_s: float = 5.0 * HOUR_S
    dar: float = 3.5
    payload_ec50_nm: float = 0.5
    bystander_radius_um: float = 300.0
    payload_diffusivity_um2_s: float = 500.0

    @property
    def k_int_per_s(self) -> float:
        """Internalisation rate, ln2 / t_half."""
        return math.log(2.0) / self.internalisation_half_life_s

    @property
    def k_deg_per_s(self) -> float:
        """Lysosomal degradation (payload release) rate, ln2 / t_half."""
        return math.log(2.0) / self.degradation_half_life_s

    @property
    def k_out_per_s(self) -> float:
        """Payload efflux rate, ln2 / t_half."""
        return math.log(2.0) / self.efflux_half_life_s

    @property
    def koff_per_s(self) -> float:
        """Dissociation rate ``k_off = Kd * k_on``."""
        return self.kd_nm * self.kon_per_nm_s

    def steady_payload_per_cell(self, conc_nm: float) -> float:
        """Steady-state payload ``DAR k_int theta_ss R_tot / k_out`` at ADC conc. ``c``."""
        kon_c = self.kon_per_nm_s * conc_nm
        theta = kon_c / (kon_c + self.koff_per_s + self.k_int_per_s)
        return self.dar * self.k_int_per_s * theta * self.receptors_per_cell / self.k_out_per_s

    @property
    def payload_ec50_per_cell(self) -> float:
        """Intracellular payload of half-maximal kill, molecules/cell (P50)."""
        return self.steady_payload_per_cell(self.ec50_nm)


Drug = CytostaticDrug | CytotoxicDrug | AdcDrug
