"""Drug transport: plug-flow delay in the inlet lines, mixing on chip, well-mixed chambers.

Model (domain reference 1.9, 1.10, 8.2):

* **Inlet lines** are plug-flow delays indexed by volume [D, 1.9]: what enters a line
  when ``V_in`` uL have entered it reaches the chip when ``V_in + V_dead`` have entered,
  whatever the flow history (so the arrival delay is ``V_dead / Q`` at constant flow
  and correct when the flow changes). Taylor-Aris broadening is neglected (sigma about
  1 cm over a 50 cm line for small molecules, 1.9).
* **On-chip mixing**: each chamber receives the flow-weighted mix of the inlets computed
  from the network's actual mean flows (:mod:`simulator.physics.mixing`), so dilution
  fractions follow the actual flow ratio.
* **Chambers** are CSTRs with optional first-order loss to PDMS [L, 1.9; 8.2]:
  ``dC/dt = (Q/V)(C_in - C) - k_PDMS C``. Over an interval with constant ``C_in`` the
  exact solution is ``C = C_ss + (C0 - C_ss) exp(-a t)``, ``a = Q/V + k``,
  ``C_ss = (Q/V) C_in / a``; with ``k = 0`` it depends only on the volume that flowed
  (``exp(-int Q dt / V)``), so using the interval's mean flow is exact.

Updates happen at most every ``max_transport_step_s``, at every front arrival (the
interval is split at the arrival time, interpolated within the world step) and whenever
a reading is requested, so readings are always current.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from simulator.fluidics import FluidicNetwork
from simulator.physics.mixing import MixingSolver

__all__ = ["DelayLine", "DrugTransport", "pdms_loss_rate_per_s"]

FloatArray = NDArray[np.float64]

#: Shortest interval between two kept samples of :meth:`DrugTransport.history`, s. Chambers
#: are updated at every poll of a run (every few seconds); keeping each update would grow
#: the history by ~1.5 MB per simulated day and slowed a 14-day soak by ~20 % by its end.
HISTORY_STEP_S = 30.0
#: logP below which < 10 % is absorbed into PDMS, and above which > 90 % is [V, R25].
_LOG_P_LOW, _LOG_P_HIGH = 2.47, 2.62


def pdms_loss_rate_per_s(log_p: float, residence_time_s: float) -> float:
    """First-order PDMS loss rate reproducing the steady loss measured by Wang et al. 2012.

    Wang et al. found < 10 % absorption for logP < 2.47 and > 90 % for logP > 2.62 [V, R25].
    The steady loss fraction ``L`` is taken as 5 % below 2.47, 95 % above 2.62 and linear
    in between [A]; a CSTR with residence time ``tau`` keeps ``1 / (1 + k tau)`` of its
    inlet concentration, so ``k = L / ((1 - L) tau)``. Antibodies and ADCs do not
    partition into bulk PDMS (use 0) [L, 1.10]; thermoplastic chips: 0 [V, R21].

    Args:
        log_p: octanol-water partition coefficient (log10).
        residence_time_s: chamber residence time ``V / Q`` in s at the intended flow.

    Returns:
        Loss rate constant in 1/s.
    """
    if log_p <= _LOG_P_LOW:
        loss = 0.05
    elif log_p >= _LOG_P_HIGH:
        loss = 0.95
    else:
        loss = 0.05 + 0.9 * (log_p - _LOG_P_LOW) / (_LOG_P_HIGH - _LOG_P_LOW)
    return loss / ((1.0 - loss) * residence_time_s)


@dataclass
class _Front:
    entry_ul: float
    contents_nm: dict[str, float]


class DelayLine:
    """A plug-flow line indexed by the cumulative volume that entered it.

    Args:
        dead_volume_ul: line volume from syringe to chip, uL.
    """

    def __init__(self, dead_volume_ul: float) -> None:
        """Start primed with plain medium (no species)."""
        self.dead_volume_ul = dead_volume_ul
        #: Cumulative volume that has entered the line, uL (falls when flow reverses).
        self.volume_ul = 0.0
        #: Contents arriving at the chip now (species -> nM).
        self.outlet_contents_nm: dict[str, float] = {}
        #: Line volume at which the next front arrives (inf if none is on the way).
        self.next_arrival_ul = float("inf")
        self._fronts: list[_Front] = []

    def _update_next(self) -> None:
        self.next_arrival_ul = (
            self._fronts[0].entry_ul + self.dead_volume_ul if self._fronts else float("inf")
        )

    def push(self, contents_nm: Mapping[str, float], *, primed: bool = False) -> None:
        """Fill from the syringe with ``contents_nm`` from now on (``primed``: the whole line)."""
        contents = {k: float(v) for k, v in contents_nm.items()}
        if primed:
            self._fronts.clear()
            self.outlet_contents_nm = contents
        else:
            while self._fronts and self._fronts[-1].entry_ul >= self.volume_ul:
                self._fronts.pop()
            self._fronts.append(_Front(self.volume_ul, contents))
        self._update_next()

    def pop_arrived(self) -> dict[str, float]:
        """Make the next front the line's outlet contents and return them."""
        front = self._fronts.pop(0)
        self.outlet_contents_nm = front.contents_nm
        self._update_next()
        return front.contents_nm


class DrugTransport:
    """Species concentrations along lines and in every chamber (a world ``Component``).

    Register it after the :class:`~simulator.fluidics.FluidicNetwork` it reads.

    Args:
        fluidics: the hydraulic network (for line and chamber flows).
        max_transport_step_s: longest interval between chamber updates, s (chamber
            residence times are minutes to hours, 1.3).
    """

    def __init__(self, fluidics: FluidicNetwork, *, max_transport_step_s: float = 60.0) -> None:
        """Start with every line and chamber free of drug."""
        spec = fluidics.spec
        self._fluidics = fluidics
        self.max_transport_step_s = max_transport_step_s
        self.inlet_names = fluidics.inlet_names
        self._lines = [DelayLine(port.dead_volume_ul) for port in spec.inlets]
        self._mixing = MixingSolver(spec, [port.node for port in spec.inlets])
        node_index = {name: i for i, name in enumerate(spec.nodes)}
        edge_index = {e.name: k for k, e in enumerate(spec.edges)}
        self._chamber_nodes = np.array([node_index[c.node] for c in spec.chambers], dtype=int)
        self._inflow_edges = np.array([edge_index[c.inflow_edge] for c in spec.chambers], dtype=int)
        self._feed_nodes = np.array(
            [node_index[spec.edges[k].upstream] for k in self._inflow_edges], dtype=int
        )
        self._volumes_ul = np.array([c.volume_ul for c in spec.chambers], dtype=float)
        outlet_node = spec.edges[edge_index[spec.outlet_edge]].upstream
        self._effluent_edges = [
            (k, node_index.get(e.upstream, -1))
            for k, e in enumerate(spec.edges)
            if e.downstream == outlet_node
        ]
        n_in, n_ch = len(spec.inlets), len(spec.chambers)
        self.species: list[str] = []
        self._loss_per_s = np.zeros(0)
        self._conc_nm = np.zeros((0, n_ch))
        self._line_end_nm = np.zeros((n_in, 0))
        self._fractions = np.zeros((len(spec.nodes), n_in))
        self._mean_flows_ul_s = np.zeros(len(spec.edges))
        self._mixed = False
        self._t_done_s: float | None = None
        self._t_now_s: float | None = None
        self._snapshot_ul = np.zeros(len(spec.edges))
        self._history_t_s: list[float] = []
        self._history_nm: list[FloatArray] = []
        #: Front arrivals at the chip: (time s, inlet, contents nM), for GR t0 bookkeeping.
        self.arrivals: list[tuple[float, str, dict[str, float]]] = []

    # --- set-up -------------------------------------------------------------------------

    def set_species(self, name: str, *, pdms_loss_rate_per_s: float = 0.0) -> None:
        """Declare ``name`` with its first-order PDMS loss rate in 1/s (0: no loss)."""
        if pdms_loss_rate_per_s < 0.0:
            raise ValueError("loss rate must be >= 0")
        self._species_index(name)
        self._flush_to_now()
        self._loss_per_s[self.species.index(name)] = pdms_loss_rate_per_s

    def set_inlet_contents(
        self, inlet: str, contents_nm: Mapping[str, float], *, primed: bool = False
    ) -> None:
        """Declare what the syringe on ``inlet`` holds from now on (species -> stock conc, nM).

        The new liquid enters the line now and reaches the chip one dead volume later.
        With ``primed=True`` the whole line already holds it (it arrives at the chip now).
        An empty mapping means drug-free medium.
        """
        i = self._inlet(inlet)
        for name in contents_nm:
            self._species_index(name)
        self._flush_to_now()
        self._lines[i].push(contents_nm, primed=primed)
        if primed:
            self._set_line_end(i, self._lines[i].outlet_contents_nm)

    # --- the world's step ---------------------------------------------------------------

    def step(self, t0_s: float, t1_s: float) -> None:
        """Advance line fronts and chamber concentrations to ``t1_s`` (world Component)."""
        if self._t_done_s is None:
            self._t_done_s = t0_s
            self._snapshot_ul = self._fluidics.edge_volumes_ul()
        self._t_now_s = t1_s
        for line, dv in zip(self._lines, self._fluidics.last_step_line_volumes_ul):
            line.volume_ul += dv
            if line.volume_ul >= line.next_arrival_ul:
                self._arrive(line, dv, t0_s, t1_s)
        if t1_s - self._t_done_s >= self.max_transport_step_s:
            self._flush(t1_s)

    def _arrive(self, line: DelayLine, dv: float, t0_s: float, t1_s: float) -> None:
        """Handle fronts reaching the chip during the step ``t0_s .. t1_s``."""
        i = self._lines.index(line)
        before_ul = line.volume_ul - dv
        while line.volume_ul >= line.next_arrival_ul:
            frac = (line.next_arrival_ul - before_ul) / dv if dv > 0.0 else 1.0
            t_arrival_s = t0_s + min(max(frac, 0.0), 1.0) * (t1_s - t0_s)
            self._flush(t_arrival_s)
            contents = line.pop_arrived()
            self._set_line_end(i, contents)
            self.arrivals.append((t_arrival_s, self.inlet_names[i], dict(contents)))

    def _flush_to_now(self) -> None:
        if self._t_now_s is not None:
            self._flush(self._t_now_s)

    def _flush(self, t_end_s: float) -> None:
        """Integrate chambers from the last update to ``t_end_s`` (<= present time)."""
        t_done_s, t_now_s = self._t_done_s, self._t_now_s
        if t_done_s is None or t_now_s is None or t_end_s <= t_done_s:
            return
        cum_now = self._fluidics.edge_volumes_ul()
        share = (t_end_s - t_done_s) / (t_now_s - t_done_s)
        cum_end = self._snapshot_ul + (cum_now - self._snapshot_ul) * share
        dt_s = t_end_s - t_done_s
        flows = (cum_end - self._snapshot_ul) / dt_s
        previous = self._mean_flows_ul_s
        self._mean_flows_ul_s = flows
        if np.max(np.abs(flows - previous)) > 1e-9 * np.max(np.abs(flows)) or not self._mixed:
            self._fractions = self._mixing.fractions(flows)
            self._mixed = True
        if self.species:
            c_in = self._fractions[self._feed_nodes] @ self._line_end_nm  # (chambers, species)
            rate = np.maximum(flows[self._inflow_edges], 0.0) / self._volumes_ul
            a = rate[None, :] + self._loss_per_s[:, None]
            safe_a = np.where(a > 0.0, a, 1.0)
            c_ss = np.where(a > 0.0, rate[None, :] * c_in.T / safe_a, self._conc_nm)
            self._conc_nm = c_ss + (self._conc_nm - c_ss) * np.exp(-a * dt_s)
        self._snapshot_ul = cum_end
        self._t_done_s = t_end_s
        # keep a sample at least every HISTORY_STEP_S; the newest one is always the present
        if len(self._history_t_s) >= 2 and t_end_s - self._history_t_s[-2] < HISTORY_STEP_S:
            self._history_t_s[-1] = t_end_s
            self._history_nm[-1] = self._conc_nm.copy()
        else:
            self._history_t_s.append(t_end_s)
            self._history_nm.append(self._conc_nm.copy())

    # --- readings -----------------------------------------------------------------------

    def chamber_concentrations_nm(self, species: str) -> FloatArray:
        """Return the present concentration of ``species`` in each chamber, nM."""
        self._flush_to_now()
        if species not in self.species:
            return np.zeros(len(self._volumes_ul))
        result: FloatArray = self._conc_nm[self.species.index(species)].copy()
        return result

    def chamber_inlet_fractions(self) -> FloatArray:
        """Return (chambers x inlets): each inlet's share of the fluid feeding each chamber.

        Computed from the mean flows of the latest update interval.
        """
        self._flush_to_now()
        result: FloatArray = self._fractions[self._feed_nodes].copy()
        return result

    def chamber_drug_fractions(self, inlet: str = "drug") -> FloatArray:
        """Return each chamber's feed concentration as a fraction of ``inlet``'s concentration."""
        return self.chamber_inlet_fractions()[:, self._inlet(inlet)]

    def line_end_concentration_nm(self, inlet: str, species: str) -> float:
        """Return the concentration arriving at the chip from ``inlet``'s line, nM."""
        return self._lines[self._inlet(inlet)].outlet_contents_nm.get(species, 0.0)

    def line_volume_ul(self, inlet: str) -> float:
        """Return the cumulative volume that has entered ``inlet``'s line, uL."""
        return self._lines[self._inlet(inlet)].volume_ul

    def effluent_concentration_nm(self, species: str) -> float:
        """Return the outlet concentration (flow-weighted mix of chambers and bypass), nM."""
        self._flush_to_now()
        if species not in self.species:
            return 0.0
        s = self.species.index(species)
        chamber_of_node = {int(node): k for k, node in enumerate(self._chamber_nodes)}
        total_ul_s, mass = 0.0, 0.0
        for k, node in self._effluent_edges:
            q = float(self._mean_flows_ul_s[k])
            if q <= 0.0 or node < 0:
                continue
            if node in chamber_of_node:
                c = float(self._conc_nm[s, chamber_of_node[node]])
            else:
                c = float(self._fractions[node] @ self._line_end_nm[:, s])
            total_ul_s += q
            mass += q * c
        return mass / total_ul_s if total_ul_s > 0.0 else 0.0

    def history(self, species: str) -> tuple[FloatArray, FloatArray]:
        """Return ``(t_s, conc_nm)``: update times and chamber concentrations (times x chambers).

        Samples are :data:`HISTORY_STEP_S` to ``HISTORY_STEP_S + max_transport_step_s``
        apart, the last one at the latest update; between samples the concentration
        followed the exponential CSTR solution (a linear interpolation of the samples is
        close, not exact, around a front's arrival).
        """
        self._flush_to_now()
        t_s = np.array(self._history_t_s, dtype=float)
        conc = np.zeros((len(t_s), len(self._volumes_ul)))
        if species in self.species:
            s = self.species.index(species)
            for row, snapshot in enumerate(self._history_nm):
                if s < snapshot.shape[0]:
                    conc[row] = snapshot[s]
        return t_s, conc

    def concentration_at_nm(self, species: str, t_s: float) -> FloatArray:
        """Return each chamber's concentration at past time ``t_s`` (linear between samples), nM."""
        times, conc = self.history(species)
        if times.size == 0:
            return np.zeros(len(self._volumes_ul))
        return np.array([np.interp(t_s, times, conc[:, k]) for k in range(conc.shape[1])])

    # --- helpers ------------------------------------------------------------------------

    def _species_index(self, name: str) -> int:
        if name not in self.species:
            self.species.append(name)
            self._loss_per_s = np.append(self._loss_per_s, 0.0)
            self._conc_nm = np.vstack([self._conc_nm, np.zeros((1, self._conc_nm.shape[1]))])
            self._line_end_nm = np.hstack(
                [self._line_end_nm, np.zeros((self._line_end_nm.shape[0], 1))]
            )
            for i, line in enumerate(self._lines):
                self._line_end_nm[i, -1] = line.outlet_contents_nm.get(name, 0.0)
        return self.species.index(name)

    def _set_line_end(self, inlet: int, contents_nm: Mapping[str, float]) -> None:
        for name in contents_nm:
            self._species_index(name)
        for s, name in enumerate(self.species):
            self._line_end_nm[inlet, s] = contents_nm.get(name, 0.0)

    def _inlet(self, inlet: str) -> int:
        try:
            return self.inlet_names.index(inlet)
        except ValueError:
            raise KeyError(
                f"unknown inlet {inlet!r}; known: {', '.join(self.inlet_names)}"
            ) from None
