"""The tumoroid population of a chip: a :class:`simulator.world.World` component.

One agent per tumoroid (domain reference 8.3). State per tumoroid, volumes in um^3:
proliferating volume ``P`` (follows the Gompertz specific rate of
:mod:`simulator.biology.growth`, multiplied by the fibroblast and cytostatic factors),
three damaged compartments ``D1..D3`` (alive, not growing; Simeoni transit), dead debris
``X`` (lysed at ``k_lys = ln2 / 2 d`` [A, 8.3]), and per ADC the occupancy, internalised
ADC and free payload per cell. Per chamber and drug, the effect-site concentration.

Per sub-step ``dt`` with constant exposure (zero-order hold) the update is exact for
the linear parts::

    C_e   <- C + (C_e - C) exp(-k_e0 dt)
    P     <- P exp(m_CAF m_drug G) ,  G = integral of r exp(-rho a) over the step
    kill  =  P (1 - exp(-k_kill dt))  -> D1 ;  D_i -> D_(i+1) -> X  at  k1
    X     <- X exp(-k_lys dt)

with ``m_drug = 1 + sum_i (log2(1 + GR_i(C_e,i)) - 1)`` over cytostatic drugs and
``k_kill = sum_i k_kill,i`` over cytotoxic drugs and ADCs (independent hazards) [A]. Volume
lost by a negative ``m_drug`` (GR < 0) becomes debris.

Derived quantities: total ``V = P + sum D + X`` and radius ``R = (3V / 4 pi)^(1/3)``;
anoxic core ``r_n(R)`` (diffusion limit ``R_l``); the core is filled first by debris, the
rest of it by necrotic cells taken from the living volume:
``V_live = max(P + sum D - max(V_core - X, 0), 0)``.

Register the population after the drug-transport component, so that the exposure it
samples is the transport's state at the end of the world step. The exposure callable is
sampled once per integration call and held over the whole interval being integrated
(so give the world a ``max_step_s`` of minutes when drugs change); integration is
deferred until
``min_step_s`` of world time has accumulated, or until a truth accessor needs the state
(:meth:`Biology.sync`), so the frequent tiny world steps of pump exchanges stay cheap.
The state is deterministic for the generator it was seeded from: randomness is used only
at construction (and for the fibroblast layout, from a seed drawn at construction).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from simulator.biology import growth
from simulator.biology.drugs import (
    AVOGADRO_NM_UM3,
    DAY_S,
    AdcDrug,
    CytostaticDrug,
    Drug,
    GRParams,
    growth_multiplier,
    hill,
)
from simulator.biology.layout import ChamberLayout

__all__ = ["Biology", "Exposure", "FibroblastLayout", "SeedingParams", "TumoroidTruth"]

FloatArray = NDArray[np.float64]
#: Drug name -> concentration per chamber in nM, at the world's current time.
Exposure = Callable[[], Mapping[str, NDArray[np.float64]]]

#: Dead-debris lysis rate, ln2 / 2 d [A, 8.3].
LYSIS_PER_S = math.log(2.0) / (2.0 * DAY_S)
#: Cells per um^3 (1e15 cells/m^3 [D, R70]).
CELLS_PER_UM3 = growth.TUMOUR_CELL_DENSITY_PER_M3 * 1e-18


@dataclass(frozen=True)
class SeedingParams:
    """How tumoroids are seeded (per patient); defaults from domain reference 8.3 / 8.6.

    Attributes:
        tumoroids_per_chamber: 40 (20-60 [A, 8.6]).
        diameter_median_um: initial diameter median, 120 um [A, 8.6].
        diameter_sigma_log: lognormal sigma of the diameter, 0.3 [A, 8.6].
        doubling_median_s: PDO doubling time median, 3.5 d [A, trend V R64, R77].
        doubling_sigma_log: lognormal sigma of the doubling time, 0.4 [A, 8.3].
        lag_max_s: dormancy lag ~ U(0, lag_max), 2 d [A, 8.3, trend V R64].
        plateau_diameter_um: Gompertz plateau diameter, 1000 um (12-day spheroid ~1 mm,
            [V, R70]); sets ``rho = r / ln(Vmax / V0)`` per tumoroid.
        antigen_positive_fraction: fraction of HER2+ tumoroids (ADC targets) [A].
        min_spacing_um: minimal centre distance in the chamber plane [A].
        wall_margin_um: minimal distance of a centre from the chamber walls [A].
    """

    tumoroids_per_chamber: int = 40
    diameter_median_um: float = 120.0
    diameter_sigma_log: float = 0.3
    doubling_median_s: float = 3.5 * DAY_S
    doubling_sigma_log: float = 0.4
    lag_max_s: float = 2.0 * DAY_S
    plateau_diameter_um: float = 1000.0
    antigen_positive_fraction: float = 1.0
    min_spacing_um: float = 250.0
    wall_margin_um: float = 150.0


@dataclass(frozen=True)
class TumoroidTruth:
    """Ground truth of every tumoroid at :attr:`t_s` (arrays indexed by global index).

    For tests and analysis validation only: analysis code must never read it.

    Attributes:
        t_s: world time of the state.
        chamber: chamber index.
        ident: id within the chamber.
        x_um: chamber-local position across the chamber.
        y_um: chamber-local position along the chamber.
        z_um: height above the chamber floor.
        radius_um: outer radius.
        necrotic_radius_um: anoxic/necrotic core radius.
        volume_um3: total volume (what brightfield sees).
        live_volume_um3: living volume (proliferating + damaged, outside the core).
        live_fraction: ``live_volume / volume``.
        dead_fraction: ``1 - live_fraction``.
        untreated_volume_um3: the same tumoroid's drug-free (counterfactual) volume.
        antigen_positive: HER2+ (ADC target).
        state: "dormant", "growing", "arrested", "dying" or "dead".
    """

    t_s: float
    chamber: NDArray[np.int64]
    ident: NDArray[np.int64]
    x_um: FloatArray
    y_um: FloatArray
    z_um: FloatArray
    radius_um: FloatArray
    necrotic_radius_um: FloatArray
    volume_um3: FloatArray
    live_volume_um3: FloatArray
    live_fraction: FloatArray
    dead_fraction: FloatArray
    untreated_volume_um3: FloatArray
    antigen_positive: NDArray[np.bool_]
    state: NDArray[np.str_]

    def __len__(self) -> int:
        """Number of tumoroids."""
        return int(self.chamber.size)


@dataclass(frozen=True)
class FibroblastLayout:
    """Fibroblasts of one chamber (chamber-local um), for rendering and truth.

    Attributes:
        x_um: positions across the chamber.
        y_um: positions along the chamber.
        z_um: heights in the gel.
        angle_rad: orientation of the long axis.
        length_um: cell length (40-120 um, elongated CAFs [A]).
    """

    x_um: FloatArray
    y_um: FloatArray
    z_um: FloatArray
    angle_rad: FloatArray
    length_um: FloatArray


class Biology:
    """Tumoroids, fibroblasts and drug effects in every chamber of a chip.

    Args:
        exposure: returns drug name -> nM per chamber at the world's current time; missing
            names mean 0.
        drugs: drug models; names are exposure keys.
        rng: the generator all tumoroid draws come from.
        layout: chamber geometry.
        seeding: seeding distributions.
        caf_ratio: CAF : tumour cell ratio per chamber (f in the modifiers of
            :mod:`simulator.biology.growth`), default 1.0 each [A, 0.5-2 in 2.4].
        t_seed_s: world time of seeding (growth age 0 before each tumoroid's lag).
        o2_limit_um: diffusion limit R_l; default from :func:`growth.diffusion_limit_um`.
        max_substep_s: longest integration sub-step (10 min [8, "1-10 min"]).
        min_step_s: world time accumulated before integrating.
    """

    def __init__(
        self,
        exposure: Exposure,
        drugs: Sequence[Drug],
        rng: np.random.Generator,
        *,
        layout: ChamberLayout | None = None,
        seeding: SeedingParams | None = None,
        caf_ratio: Sequence[float] | None = None,
        t_seed_s: float = 0.0,
        o2_limit_um: float | None = None,
        max_substep_s: float = 600.0,
        min_step_s: float = 60.0,
    ) -> None:
        """Seed the tumoroids (all random draws happen here)."""
        self.layout = layout or ChamberLayout()
        self.seeding = seeding or SeedingParams()
        n_ch = self.layout.n_chambers
        ratios = [1.0] * n_ch if caf_ratio is None else [float(f) for f in caf_ratio]
        if len(ratios) != n_ch:
            raise ValueError(f"caf_ratio needs {n_ch} values, got {len(ratios)}")
        self.caf_ratio: tuple[float, ...] = tuple(ratios)
        names = [d.name for d in drugs]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate drug names in {names}")
        self.drugs: dict[str, Drug] = {d.name: d for d in drugs}
        self._exposure = exposure
        self.o2_limit_um = growth.diffusion_limit_um() if o2_limit_um is None else o2_limit_um
        self.max_substep_s = max_substep_s
        self.min_step_s = min_step_s
        self.t_seed_s = t_seed_s
        self.t_s = t_seed_s
        self._target_s = t_seed_s
        self._seed_tumoroids(rng)
        self._fibroblast_seed = int(rng.integers(2**62))
        self._fibroblasts: dict[int, FibroblastLayout] = {}
        n = self.chamber.size
        self._prolif = self.v0_um3.copy()
        self._damaged = np.zeros((3, n))
        self._debris = np.zeros(n)
        self._m_caf = growth.caf_growth_factor(np.asarray(self.caf_ratio))[self.chamber]
        self._ec50_factor_ch = growth.caf_ec50_factor(np.asarray(self.caf_ratio))
        self._gr_shift_ch = growth.caf_gr_inf_shift(np.asarray(self.caf_ratio))
        self._effect_nm = {name: np.zeros(n_ch) for name in self.drugs}
        self._adc = {
            name: np.zeros((3, n)) for name, d in self.drugs.items() if isinstance(d, AdcDrug)
        }
        self._last_m = np.ones(n)
        self._last_kill = np.zeros(n)
        self._pairs = self._neighbour_pairs()
        self._gr_by_chamber = {
            name: self.effective_gr_params(name)
            for name, d in self.drugs.items()
            if isinstance(d, CytostaticDrug)
        }
        #: Free-form description of how this population was made (e.g. the patient).
        self.metadata: dict[str, object] = {}

    # ---- seeding -------------------------------------------------------------------

    def _seed_tumoroids(self, rng: np.random.Generator) -> None:
        s, lay = self.seeding, self.layout
        n_per = s.tumoroids_per_chamber
        chambers, idents, pos = [], [], []
        for k in range(lay.n_chambers):
            placed: list[tuple[float, float]] = []
            for _ in range(200 * n_per):
                if len(placed) == n_per:
                    break
                x = rng.uniform(s.wall_margin_um, lay.width_um - s.wall_margin_um)
                y = rng.uniform(s.wall_margin_um, lay.length_um - s.wall_margin_um)
                if all((x - a) ** 2 + (y - b) ** 2 >= s.min_spacing_um**2 for a, b in placed):
                    placed.append((x, y))
            if len(placed) < n_per:
                raise ValueError(f"cannot place {n_per} tumoroids {s.min_spacing_um} um apart")
            for i, (x, y) in enumerate(placed):
                chambers.append(k)
                idents.append(i)
                pos.append((x, y))
        n = len(chambers)
        self.chamber = np.asarray(chambers, dtype=np.int64)
        self.ident = np.asarray(idents, dtype=np.int64)
        xy = np.asarray(pos, dtype=np.float64).reshape(-1, 2)
        self.x_um = xy[:, 0].copy()
        self.y_um = xy[:, 1].copy()
        d0 = s.diameter_median_um * np.exp(s.diameter_sigma_log * rng.standard_normal(n))
        r0 = 0.5 * d0
        zmax = lay.gel_height_um
        self.z_um = np.clip(rng.uniform(0.3, 0.7, n) * zmax, 0.0, zmax)
        self.v0_um3 = growth.sphere_volume_um3(r0)
        td = s.doubling_median_s * np.exp(s.doubling_sigma_log * rng.standard_normal(n))
        self.rate_per_s = math.log(2.0) / td
        vmax = growth.sphere_volume_um3(np.asarray(s.plateau_diameter_um / 2.0))
        self.rho_per_s = growth.gompertz_rho_per_s(self.rate_per_s, self.v0_um3, vmax)
        self.lag_s = rng.uniform(0.0, s.lag_max_s, n)
        self.antigen_positive = rng.random(n) < s.antigen_positive_fraction

    def _neighbour_pairs(self) -> tuple[NDArray[np.int64], NDArray[np.int64], FloatArray]:
        radius = max(
            (d.bystander_radius_um for d in self.drugs.values() if isinstance(d, AdcDrug)),
            default=0.0,
        )
        src: list[NDArray[np.int64]] = []
        dst: list[NDArray[np.int64]] = []
        dist: list[FloatArray] = []
        if radius > 0.0:
            for k in range(self.layout.n_chambers):
                idx = np.flatnonzero(self.chamber == k)
                dx = self.x_um[idx, None] - self.x_um[None, idx]
                dy = self.y_um[idx, None] - self.y_um[None, idx]
                dz = self.z_um[idx, None] - self.z_um[None, idx]
                d = np.sqrt(dx**2 + dy**2 + dz**2)
                i, j = np.nonzero((d <= radius) & (d > 0.0))
                src.append(idx[i])
                dst.append(idx[j])
                dist.append(d[i, j])
        if not src:
            return (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
        return (np.concatenate(src), np.concatenate(dst), np.concatenate(dist))

    # ---- time ----------------------------------------------------------------------

    def step(self, t0_s: float, t1_s: float) -> None:
        """World component hook: integrate once ``min_step_s`` has accumulated."""
        self._target_s = max(self._target_s, t1_s)
        if self._target_s - self.t_s >= self.min_step_s:
            self.sync()

    def sync(self) -> None:
        """Integrate up to the latest time the world was stepped to."""
        if self._target_s <= self.t_s:
            return
        conc = self._exposure()
        n_ch = self.layout.n_chambers
        c_by_drug = {}
        for name in self.drugs:
            c = np.asarray(conc.get(name, np.zeros(n_ch)), dtype=np.float64)
            if c.shape != (n_ch,):
                raise ValueError(f"exposure[{name!r}] must have shape ({n_ch},), got {c.shape}")
            c_by_drug[name] = c
        while self.t_s < self._target_s:
            dt = min(self.max_substep_s, self._target_s - self.t_s)
            self._substep(dt, c_by_drug)
            self.t_s = self._target_s if dt >= self._target_s - self.t_s else self.t_s + dt

    def _substep(self, dt_s: float, c_by_drug: Mapping[str, FloatArray]) -> None:
        ch = self.chamber
        m_drug = np.ones(ch.size)
        kill = np.zeros(ch.size)
        for name, drug in self.drugs.items():
            c = c_by_drug[name]
            if isinstance(drug, AdcDrug):
                kill += self._adc_kill(drug, c[ch], dt_s)
                continue
            ce = self._effect_nm[name]
            ce[:] = c + (ce - c) * math.exp(-drug.ke0_per_s * dt_s)
            if isinstance(drug, CytostaticDrug):
                gr = self._gr_by_chamber[name]
                m_ch = np.array([float(growth_multiplier(g.gr(x))) for g, x in zip(gr, ce)])
                m_drug += m_ch[ch] - 1.0
            else:
                e_ch = hill(ce, drug.ec50_nm * self._ec50_factor_ch, drug.hill)
                kill += drug.kill_max_per_s * e_ch[ch]
        self._last_m, self._last_kill = m_drug, kill
        age0 = self.t_s - self.t_seed_s - self.lag_s
        g = growth.gompertz_log_growth(self.rate_per_s, self.rho_per_s, age0, age0 + dt_s)
        grown = self._prolif * np.exp(self._m_caf * m_drug * g)
        self._debris += np.maximum(self._prolif - grown, 0.0)
        killed = grown * -np.expm1(-kill * dt_s)
        self._prolif = grown - killed
        k1 = self._transit_per_s()
        moved = self._damaged * -math.expm1(-k1 * dt_s)
        self._damaged[0] += killed - moved[0]
        self._damaged[1] += moved[0] - moved[1]
        self._damaged[2] += moved[1] - moved[2]
        self._debris = (self._debris + moved[2]) * math.exp(-LYSIS_PER_S * dt_s)

    def _transit_per_s(self) -> float:
        rates = [d.transit_per_s for d in self.drugs.values() if not isinstance(d, CytostaticDrug)]
        return float(np.mean(rates)) if rates else 1.0 / DAY_S

    def _adc_kill(self, drug: AdcDrug, c_nm: FloatArray, dt_s: float) -> FloatArray:
        state = self._adc[drug.name]
        theta, internal, payload = state
        rtot = np.where(self.antigen_positive, drug.receptors_per_cell, 0.0)
        kon_c = drug.kon_per_nm_s * c_nm
        k_bind = kon_c + drug.koff_per_s + drug.k_int_per_s
        theta_ss = kon_c / k_bind
        theta[:] = theta_ss + (theta - theta_ss) * np.exp(-k_bind * dt_s)
        i_ss = drug.k_int_per_s * theta * rtot / drug.k_deg_per_s
        internal[:] = i_ss + (internal - i_ss) * math.exp(-drug.k_deg_per_s * dt_s)
        p_ss = drug.dar * drug.k_deg_per_s * internal / drug.k_out_per_s
        payload[:] = p_ss + (payload - p_ss) * math.exp(-drug.k_out_per_s * dt_s)
        factor = self._ec50_factor_ch[self.chamber]
        e_in = hill(payload, drug.payload_ec50_per_cell * factor, drug.hill)
        c_bys = self.bystander_nm(drug.name)
        e_bys = hill(c_bys, drug.payload_ec50_nm * factor, drug.hill)
        result: FloatArray = drug.kill_max_per_s * (1.0 - (1.0 - e_in) * (1.0 - e_bys))
        return result

    def bystander_nm(self, drug_name: str) -> FloatArray:
        """Free payload concentration at each tumoroid from its neighbours' efflux, nM.

        ``c_j = sum_i k_out P_i N_live,i / (4 pi D max(d_ij, R_i))`` over same-chamber
        neighbours within the bystander radius [D]; ``N_live = V_live * 1e-3 cells/um^3``.
        """
        drug = self.drugs[drug_name]
        n = self.chamber.size
        if not isinstance(drug, AdcDrug) or self._pairs[0].size == 0:
            return np.zeros(n)
        src, dst, dist = self._pairs
        near = dist <= drug.bystander_radius_um
        src, dst, dist = src[near], dst[near], dist[near]
        _, live, _, radius = self._volumes()
        flux = drug.k_out_per_s * self._adc[drug_name][2] * live * CELLS_PER_UM3
        d_eff = np.maximum(dist, radius[src])
        molecules_um3 = flux[src] / (4.0 * math.pi * drug.payload_diffusivity_um2_s * d_eff)
        summed = np.bincount(dst, weights=molecules_um3, minlength=n)
        result: FloatArray = summed.astype(np.float64) / AVOGADRO_NM_UM3
        return result

    # ---- derived state and truth --------------------------------------------------

    def _volumes(self) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        total = self._prolif + self._damaged.sum(axis=0) + self._debris
        radius = growth.radius_um(total)
        core_r = growth.necrotic_radius_um(radius, self.o2_limit_um)
        core_v = growth.sphere_volume_um3(core_r)
        alive = self._prolif + self._damaged.sum(axis=0)
        live = np.maximum(alive - np.maximum(core_v - self._debris, 0.0), 0.0)
        return total, live, core_r, radius

    def untreated_volume_um3(self) -> FloatArray:
        """Each tumoroid's drug-free volume now: ``V0 exp(m_CAF G(0, age))`` (analytic)."""
        self.sync()
        age = self.t_s - self.t_seed_s - self.lag_s
        g = growth.gompertz_log_growth(self.rate_per_s, self.rho_per_s, np.zeros_like(age), age)
        result: FloatArray = self.v0_um3 * np.exp(self._m_caf * g)
        return result

    def tumoroids(self) -> TumoroidTruth:
        """Ground truth of every tumoroid now (tests and analysis validation only)."""
        self.sync()
        total, live, core_r, radius = self._volumes()
        live_frac = np.where(total > 0.0, live / np.maximum(total, 1e-300), 0.0)
        age = self.t_s - self.t_seed_s - self.lag_s
        alive = self._prolif + self._damaged.sum(axis=0)
        state = np.full(total.size, "growing", dtype="<U8")
        state[age <= 0.0] = "dormant"
        state[(self._last_m * self._m_caf <= 0.05) & (age > 0.0)] = "arrested"
        state[self._damaged.sum(axis=0) > 0.1 * np.maximum(alive, 1e-300)] = "dying"
        state[live_frac < 0.02] = "dead"
        return TumoroidTruth(
            t_s=self.t_s,
            chamber=self.chamber.copy(),
            ident=self.ident.copy(),
            x_um=self.x_um.copy(),
            y_um=self.y_um.copy(),
            z_um=self.z_um.copy(),
            radius_um=radius,
            necrotic_radius_um=core_r,
            volume_um3=total,
            live_volume_um3=live,
            live_fraction=live_frac,
            dead_fraction=1.0 - live_frac,
            untreated_volume_um3=self.untreated_volume_um3(),
            antigen_positive=self.antigen_positive.copy(),
            state=state,
        )

    def effective_gr_params(self, drug_name: str) -> list[GRParams]:
        """Planted GR curve of a cytostatic drug as each chamber experiences it.

        Fibroblasts shift it: ``GEC50 * (1 + 2 f/(1+f))``, ``GR_inf + 0.15 f/(1+f)``
        (capped at 1) [A, 8.3].
        """
        drug = self.drugs[drug_name]
        if not isinstance(drug, CytostaticDrug):
            raise TypeError(f"{drug_name!r} is not a cytostatic drug")
        return [
            GRParams(
                gr_inf=min(1.0, drug.gr.gr_inf + float(shift)),
                gec50_nm=drug.gr.gec50_nm * float(factor),
                hill=drug.gr.hill,
            )
            for factor, shift in zip(self._ec50_factor_ch, self._gr_shift_ch)
        ]

    def effective_ec50_nm(self, drug_name: str) -> FloatArray:
        """EC50 (GEC50 for cytostatic drugs) per chamber after the fibroblast shift, nM."""
        drug = self.drugs[drug_name]
        base = drug.gr.gec50_nm if isinstance(drug, CytostaticDrug) else drug.ec50_nm
        result: FloatArray = base * self._ec50_factor_ch
        return result

    def planted(self) -> dict[str, Drug]:
        """The planted drug models (parameters without fibroblasts), by name."""
        return dict(self.drugs)

    def fibroblasts(self, chamber: int) -> FibroblastLayout:
        """Fibroblast layout of a chamber (drawn once, deterministically, on first use).

        Count = ``f * N_tumour`` (tumour cells at seeding, 1e-3 cells/um^3); CAFs are
        uniform in the gel, randomly oriented, 40-120 um long [A].
        """
        if chamber not in self._fibroblasts:
            rng = np.random.default_rng([self._fibroblast_seed, chamber])
            cells = float(np.sum(self.v0_um3[self.chamber == chamber])) * CELLS_PER_UM3
            n = round(self.caf_ratio[chamber] * cells)
            lay = self.layout
            self._fibroblasts[chamber] = FibroblastLayout(
                x_um=rng.uniform(0.0, lay.width_um, n),
                y_um=rng.uniform(0.0, lay.length_um, n),
                z_um=rng.uniform(0.0, lay.gel_height_um, n),
                angle_rad=rng.uniform(0.0, math.pi, n),
                length_um=rng.uniform(40.0, 120.0, n),
            )
        return self._fibroblasts[chamber]
