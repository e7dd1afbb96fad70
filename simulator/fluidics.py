"""The hydraulic network component: syringe pumps driving a lumped RC chip network.

Each world step (after the pumps have stepped):

1. read every attached pump's ``last_step_displaced_ul`` and treat ``volume / dt`` as a
   constant source flow at its syringe node over the step;
2. advance node pressures with the exact exponential propagator of
   :mod:`simulator.physics.network` (``C dP/dt = -G P + B q``), so the start-up lag
   ``tau = R C`` (domain reference 1.6, 8.1) is right for any step length;
3. integrate every edge's volume over the step (exact), for volume accounting and for
   drug transport;
4. write the syringe-node pressure back to each pump's ``back_pressure_kpa`` (a pump
   stalls when its force limit is exceeded).

When pump flows are unchanged and pressures have settled, the network is at steady state
and a step costs a few float operations (no matrix work); volumes are then integrated
lazily. Faults (domain reference 8.1, 8.5): clog (an edge resistance grows
exponentially), leak (a shunt from a node to air), air bubble (added compliance ``V_b /
P_abs`` travelling with the flow, a flow transient when it is compressed or released, and
``air_in_line`` while it passes the outlet sensor), and bond failure (a leak opens at a
chip node whose pressure exceeds the chip's burst pressure).

Volume accounting: ``pumped = outlet + leaked + held`` where held ``= sum C_i P_i``
(including bubbles); bubbles are gas from outside (outgassing, fittings), not pumped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from simulator.physics.network import GROUND, Edge, NetworkSpec, RCPropagator
from simulator.world import SyringeMechanics

__all__ = ["Bubble", "EdgeFlowSensor", "FluidicNetwork", "OutletFlowSensor"]

FloatArray = NDArray[np.float64]

#: Atmospheric pressure in kPa, for bubble compliance V_b / P_abs [V, R2].
_P_ABS_KPA = 101.325
#: Relative change of a clogging resistance that triggers a new propagator.
_CLOG_REBUILD_STEP = 0.01


@dataclass
class Bubble:
    """An air bubble travelling through the network.

    Attributes:
        inlet: the inlet line it entered.
        volume_ul: gas volume at atmospheric pressure, uL.
        compliance_ul_kpa: ``V_b / P_abs`` in uL/kPa.
        node: index of the node holding its compliance.
        stage: ``"line"`` (inlet tubing and chip), ``"outlet"`` (to the sensor),
            ``"sensor"`` (passing the sensor).
        travelled_ul: liquid volume that has flowed past it in this stage, uL.
    """

    inlet: int
    volume_ul: float
    compliance_ul_kpa: float
    node: int
    stage: str = "line"
    travelled_ul: float = 0.0


class EdgeFlowSensor:
    """A :class:`simulator.world.FlowSource` at one edge of the network (an in-line sensor).

    On the outlet edge it also reports a passing bubble (``air_in_line``) and the outflow
    pulse when the bubble leaves; elsewhere bubbles are not tracked past it.
    """

    def __init__(self, network: FluidicNetwork, edge: str) -> None:
        """Read the flow of ``edge`` in ``network``."""
        network.resistance_kpa_s_ul(edge)  # raises KeyError for an unknown edge
        self._network = network
        self.edge = edge
        self._is_outlet = edge == network.spec.outlet_edge

    def true_flow_ul_min(self) -> float:
        """Return the true flow through the sensor in uL/min (signed)."""
        if self._is_outlet:
            return self._network.outlet_flow_ul_min()
        return self._network.edge_flow_ul_min(self.edge)

    def air_in_line(self) -> bool:
        """Tell whether a bubble is passing the sensor (outlet sensor only)."""
        return self._is_outlet and self._network.air_in_line()


#: The outlet sensor is an :class:`EdgeFlowSensor` on the outlet edge.
OutletFlowSensor = EdgeFlowSensor


class FluidicNetwork:
    """Lumped RC hydraulics of chip, tubing and syringes (a world ``Component``).

    Args:
        spec: the network (see :meth:`simulator.chip.ReferenceChip.network`).
        delamination_leak_kpa_s_ul: resistance of the leak that opens where a chip node
            exceeds ``spec.burst_pressure_kpa`` [A].
    """

    def __init__(self, spec: NetworkSpec, *, delamination_leak_kpa_s_ul: float = 1.0) -> None:
        """Start at rest (all gauge pressures zero)."""
        self.spec = spec
        self.delamination_leak_kpa_s_ul = delamination_leak_kpa_s_ul
        self._n = len(spec.nodes)
        self._m = len(spec.edges)
        self._node_index = {name: i for i, name in enumerate(spec.nodes)}
        self._edge_index = {e.name: k for k, e in enumerate(spec.edges)}
        self.inlet_names: tuple[str, ...] = tuple(p.name for p in spec.inlets)
        self._inlet_nodes = [self._node_index[p.node] for p in spec.inlets]
        self._line_edges = [self._edge_index[p.line_edge] for p in spec.inlets]
        self._line_rows = [self._n + k for k in self._line_edges]
        # The chip is checked for bond failure only when a syringe (upstream of every chip
        # node, so at the highest pressure) exceeds half the rating: a cheap gate.
        self._burst_gate_kpa = 0.5 * spec.burst_pressure_kpa
        self._outlet_edge = self._edge_index[spec.outlet_edge]
        self._chamber_edges = np.array(
            [self._edge_index[c.inflow_edge] for c in spec.chambers], dtype=int
        )
        self._shear_per_ul_min = np.array([c.wall_shear_pa_per_ul_min for c in spec.chambers])
        self._chip_nodes = np.array([self._node_index[name] for name in spec.chip_nodes], dtype=int)
        self._pumps: list[SyringeMechanics | None] = [None] * len(spec.inlets)
        self._base_compliance = np.array(spec.compliance_ul_kpa, dtype=float)
        self._compliance = self._base_compliance.copy()
        self._factors = np.ones(self._m)
        self._built_factors = np.ones(self._m)
        self._clogs: dict[int, tuple[float, float]] = {}
        self._leaks: dict[int, float] = {}
        self.bubbles: list[Bubble] = []
        #: Nodes where the bond failed (over burst pressure), in order of failure.
        self.delaminated_nodes: list[str] = []
        #: Physical events ``(t_s, kind, where)`` for biology, alarms and tests: kinds
        #: ``"bubble_through_chip"`` (a bubble swept through the chambers; detachment risk,
        #: domain reference 1.8), ``"bubble_at_sensor"``, ``"bubble_gone"``, ``"delamination"``.
        self.events: list[tuple[float, str, str]] = []
        self._p = np.zeros(self._n)
        self._x = np.zeros(self._n + len(spec.inlets))
        self._cum_edge_ul = np.zeros(self._m)
        self._leaked_ul = 0.0
        self._released_ul = 0.0
        self._pumped_ul = 0.0
        self._pulse_ul_s = 0.0
        self._rates = [0.0] * len(spec.inlets)
        self._steady = False
        self._target_kpa: FloatArray | None = None
        self._target_prop: RCPropagator | None = None
        self._steady_since_s = 0.0
        self._steady_edge_ul_s = np.zeros(self._m)
        self._steady_leak_ul_s = 0.0
        self._steady_line_ul_s = [0.0] * len(spec.inlets)
        self._steady_outlet_ul_s = 0.0
        self._syringe_kpa = [0.0] * len(spec.inlets)
        #: Volume that entered each inlet's tubing during the last step, uL (inlet order).
        self.last_step_line_volumes_ul: list[float] = [0.0] * len(spec.inlets)
        self.t_s: float | None = None
        self._dirty = True
        self._prop = self._build()
        #: The :class:`simulator.world.FlowSource` of the outlet flow sensor.
        self.outlet_sensor = EdgeFlowSensor(self, spec.outlet_edge)

    # --- wiring -------------------------------------------------------------------------

    def flow_source(self, edge: str) -> EdgeFlowSensor:
        """Return a :class:`simulator.world.FlowSource` for a flow sensor placed on ``edge``."""
        return EdgeFlowSensor(self, edge)

    def attach_pump(self, inlet: str, pump: SyringeMechanics) -> None:
        """Connect ``pump`` to ``inlet``; its displaced volume drives that syringe node."""
        self._pumps[self._inlet(inlet)] = pump
        pump.back_pressure_kpa = self._syringe_kpa[self._inlet(inlet)]

    # --- the world's step ---------------------------------------------------------------

    def step(self, t0_s: float, t1_s: float) -> None:
        """Advance pressures and volumes from ``t0_s`` to ``t1_s`` (world Component)."""
        dt_s = t1_s - t0_s
        if self.t_s is None:
            self._steady_since_s = t0_s
        if self._clogs:
            self._grow_clogs(dt_s)
        vols = [0.0 if pump is None else pump.last_step_displaced_ul for pump in self._pumps]
        self._pumped_ul += sum(vols)
        rates = [vol / dt_s for vol in vols]
        same = rates == self._rates
        self._rates = rates
        if self._steady and same and not self._dirty:
            lines = self.last_step_line_volumes_ul
            for i, flow in enumerate(self._steady_line_ul_s):
                lines[i] = flow * dt_s
            outlet_ul = self._steady_outlet_ul_s * dt_s
            self._pulse_ul_s = 0.0
        else:
            outlet_ul = self._full_step(t0_s, dt_s, same)
        self.t_s = t1_s
        if self.bubbles:
            self._move_bubbles(outlet_ul, dt_s)
        for pump, p_kpa in zip(self._pumps, self._syringe_kpa):
            if pump is not None:
                pump.back_pressure_kpa = p_kpa

    def _full_step(self, t0_s: float, dt_s: float, same_rates: bool) -> float:
        if self._steady:
            self._sync(t0_s)
            self._steady = False
        if self._dirty:
            self._prop = self._build()
        matrix = self._prop.step_matrix(dt_s)
        n = self._n
        x, y = self._x, self._y
        x[:n] = self._p
        x[n:] = self._rates
        np.dot(matrix, x, out=y)
        self._cum_edge_ul += self._y_edges
        if self._leaks:
            self._leaked_ul += float(self._y_leaks.sum())
        scalars: list[float] = y[self._scalar_rows].tolist()
        self.last_step_line_volumes_ul[:] = scalars[:-1]
        outlet_ul = scalars[-1]
        self._p = self._y_p
        self._pulse_ul_s = 0.0
        if not same_rates:
            self._target_kpa = None
        elif self._target_kpa is None or self._target_prop is not self._prop:
            self._target_kpa = self._prop.steady_state_kpa(np.array(self._rates))
            self._target_prop = self._prop
        elif (
            float(np.max(np.abs(self._p - self._target_kpa)))
            <= 1e-10 * float(np.max(np.abs(self._target_kpa))) + 1e-14
        ):
            self._enter_steady(t0_s + dt_s)
        self._syringe_kpa = self._p[self._inlet_nodes].tolist()
        if max(self._syringe_kpa) > self._burst_gate_kpa:
            self._check_burst()
        return outlet_ul

    def _enter_steady(self, t_s: float) -> None:
        p_ss = self._prop.steady_state_kpa(np.array(self._rates))
        self._p = p_ss.copy()
        flows = self._prop.flow_matrix @ p_ss
        self._steady = True
        self._steady_since_s = t_s
        self._steady_edge_ul_s = flows[: self._m].copy()
        self._steady_leak_ul_s = float(flows[self._m :].sum())
        self._steady_line_ul_s = [float(flows[k]) for k in self._line_edges]
        self._steady_outlet_ul_s = float(flows[self._outlet_edge])

    def _sync(self, t_s: float) -> None:
        """Bring lazily integrated steady-state volumes up to ``t_s``."""
        if self._steady:
            span_s = t_s - self._steady_since_s
            if span_s > 0.0:
                self._cum_edge_ul += self._steady_edge_ul_s * span_s
                self._leaked_ul += self._steady_leak_ul_s * span_s
                self._steady_since_s = t_s

    def _build(self) -> RCPropagator:
        edges = [
            Edge(e.name, e.upstream, e.downstream, e.resistance_kpa_s_ul * float(f))
            for e, f in zip(self.spec.edges, self._factors)
        ]
        edges += [
            Edge(f"leak:{node}", self.spec.nodes[node], GROUND, r)
            for node, r in self._leaks.items()
        ]
        self._built_factors = self._factors.copy()
        self._dirty = False
        # Output buffer of the step mat-vec: [P1 | base edge volumes | leak volumes].
        n, m = self._n, self._m
        self._y = np.zeros(n + len(edges))
        self._y_p, self._y_edges, self._y_leaks = self._y[:n], self._y[n : n + m], self._y[n + m :]
        self._scalar_rows = np.array([*self._line_rows, n + self._outlet_edge], dtype=int)
        return RCPropagator(
            self.spec.nodes, self._compliance, edges, [p.node for p in self.spec.inlets]
        )

    def _invalidate(self) -> None:
        if self.t_s is not None:
            self._sync(self.t_s)
        self._steady = False
        self._dirty = True

    # --- faults -------------------------------------------------------------------------

    def start_clog(self, edge: str, doubling_time_s: float, max_factor: float = 1e4) -> None:
        """Let ``edge``'s resistance grow as ``R0 2^(t/doubling_time_s)``, up to ``max_factor R0``.

        Models progressive occlusion (debris, gel collapse, kink) [A, 8.1 "clog (R ramps)"].
        The propagator is rebuilt each time the resistance has grown by 1 %.
        """
        if doubling_time_s <= 0.0 or max_factor < 1.0:
            raise ValueError("doubling_time_s must be > 0 and max_factor >= 1")
        self._clogs[self._edge(edge)] = (doubling_time_s, max_factor)

    def clear_clog(self, edge: str) -> None:
        """Stop a clog and restore the edge's original resistance."""
        k = self._edge(edge)
        self._clogs.pop(k, None)
        self._factors[k] = 1.0
        self._invalidate()

    def set_resistance_factor(self, edge: str, factor: float) -> None:
        """Multiply ``edge``'s design resistance by ``factor`` from now on (a lodged bubble)."""
        if not factor > 0.0:
            raise ValueError("factor must be positive")
        self._factors[self._edge(edge)] = factor
        self._invalidate()

    def resistance_kpa_s_ul(self, edge: str) -> float:
        """Return ``edge``'s present resistance in kPa s/uL."""
        k = self._edge(edge)
        return self.spec.edges[k].resistance_kpa_s_ul * float(self._factors[k])

    def _grow_clogs(self, dt_s: float) -> None:
        for k, (doubling_s, max_factor) in self._clogs.items():
            self._factors[k] = min(max_factor, self._factors[k] * 2.0 ** (dt_s / doubling_s))
            if self._factors[k] > self._built_factors[k] * (1.0 + _CLOG_REBUILD_STEP) or (
                self._factors[k] == max_factor and self._built_factors[k] != max_factor
            ):
                self._invalidate()

    def start_leak(self, node: str, resistance_kpa_s_ul: float) -> None:
        """Open a leak from ``node`` to air: lost flow ``P_node / resistance`` [A, 8.1]."""
        if not resistance_kpa_s_ul > 0.0:
            raise ValueError("leak resistance must be positive")
        self._leaks[self._node(node)] = resistance_kpa_s_ul
        self._invalidate()

    def stop_leak(self, node: str) -> None:
        """Close the leak at ``node``."""
        self._leaks.pop(self._node(node), None)
        self._invalidate()

    def inject_bubble(self, inlet: str, volume_ul: float) -> None:
        """Let an air bubble of ``volume_ul`` (at 1 atm) enter ``inlet``'s line at the syringe.

        Its compliance ``V_b / P_abs`` [V, R2] joins the syringe node; it is compressed to
        the node pressure at once (the liquid volume is conserved, so pressure and flow dip
        and then recover with the larger ``tau = R C``). It travels with the line flow
        through the line's dead volume and the chip path, then sits in the outlet channel
        until it reaches the sensor, sets :meth:`air_in_line` while its own volume passes,
        and leaves (releasing its compression as an outflow pulse).
        """
        if not volume_ul > 0.0:
            raise ValueError("bubble volume must be positive")
        i = self._inlet(inlet)
        bubble = Bubble(i, volume_ul, volume_ul / _P_ABS_KPA, self._inlet_nodes[i])
        self._add_compliance(bubble.node, bubble.compliance_ul_kpa, held_ul=0.0)
        self.bubbles.append(bubble)

    def _add_compliance(self, node: int, compliance_ul_kpa: float, held_ul: float) -> None:
        c_old = self._compliance[node]
        self._p[node] = (c_old * self._p[node] + held_ul) / (c_old + compliance_ul_kpa)
        self._compliance[node] = c_old + compliance_ul_kpa
        self._invalidate()

    def _remove_compliance(self, node: int, compliance_ul_kpa: float) -> float:
        held_ul = compliance_ul_kpa * float(self._p[node])
        self._compliance[node] = max(
            self._compliance[node] - compliance_ul_kpa, self._base_compliance[node]
        )
        self._invalidate()
        return held_ul

    def _move_bubbles(self, outlet_ul: float, dt_s: float) -> None:
        outlet_node = self._node(self.spec.edges[self._outlet_edge].upstream)
        for bubble in list(self.bubbles):
            if bubble.stage == "line":
                port = self.spec.inlets[bubble.inlet]
                bubble.travelled_ul = max(
                    0.0, bubble.travelled_ul + self.last_step_line_volumes_ul[bubble.inlet]
                )
                if bubble.travelled_ul >= port.dead_volume_ul + port.chip_path_volume_ul:
                    held_ul = self._remove_compliance(bubble.node, bubble.compliance_ul_kpa)
                    bubble.node, bubble.stage, bubble.travelled_ul = outlet_node, "outlet", 0.0
                    self._add_compliance(outlet_node, bubble.compliance_ul_kpa, held_ul)
                    self._event("bubble_through_chip", port.name)
            elif bubble.stage == "outlet":
                bubble.travelled_ul = max(0.0, bubble.travelled_ul + outlet_ul)
                if bubble.travelled_ul >= self.spec.outlet_sensor_volume_ul:
                    bubble.stage, bubble.travelled_ul = "sensor", 0.0
                    self._event("bubble_at_sensor", self.spec.outlet_edge)
            else:
                bubble.travelled_ul = max(0.0, bubble.travelled_ul + outlet_ul)
                if bubble.travelled_ul >= bubble.volume_ul:
                    released_ul = self._remove_compliance(bubble.node, bubble.compliance_ul_kpa)
                    self._released_ul += released_ul
                    self._pulse_ul_s = released_ul / dt_s
                    self.bubbles.remove(bubble)
                    self._event("bubble_gone", self.spec.outlet_edge)

    def _event(self, kind: str, where: str) -> None:
        self.events.append((self.t_s if self.t_s is not None else 0.0, kind, where))

    def _check_burst(self) -> None:
        pressures = self._p[self._chip_nodes]
        worst = int(np.argmax(pressures))
        if pressures[worst] > self.spec.burst_pressure_kpa:
            node = int(self._chip_nodes[worst])
            if node not in self._leaks:
                self.delaminated_nodes.append(self.spec.nodes[node])
                self._event("delamination", self.spec.nodes[node])
                self._leaks[node] = self.delamination_leak_kpa_s_ul
                self._invalidate()

    # --- readings -----------------------------------------------------------------------

    def pressure_kpa(self, node: str) -> float:
        """Return the gauge pressure of ``node`` in kPa."""
        return float(self._p[self._node(node)])

    def pressures_kpa(self) -> dict[str, float]:
        """Return every node's gauge pressure in kPa."""
        return {name: float(p) for name, p in zip(self.spec.nodes, self._p)}

    def inlet_pressure_kpa(self, inlet: str) -> float:
        """Return the pressure at ``inlet``'s syringe outlet in kPa (what the pump feels)."""
        return float(self._p[self._inlet_nodes[self._inlet(inlet)]])

    def edge_flow_ul_min(self, edge: str) -> float:
        """Return the present flow through ``edge`` in uL/min (``(P_up - P_down) / R``)."""
        k = self._edge(edge)
        return float(self._prop.flow_matrix[k] @ self._p) * 60.0

    def edge_flows_ul_min(self) -> FloatArray:
        """Return the present flow of every base edge in uL/min (spec edge order)."""
        result: FloatArray = (self._prop.flow_matrix[: self._m] @ self._p) * 60.0
        return result

    def chamber_flows_ul_min(self) -> FloatArray:
        """Return the present flow into each chamber in uL/min."""
        result: FloatArray = (self._prop.flow_matrix[self._chamber_edges] @ self._p) * 60.0
        return result

    def chamber_wall_shear_pa(self) -> FloatArray:
        """Return each chamber's floor wall shear ``6 mu Q / (w h^2)`` (1.4) in Pa."""
        result: FloatArray = self.chamber_flows_ul_min() * self._shear_per_ul_min
        return result

    def outlet_flow_ul_min(self) -> float:
        """Return the outlet flow in uL/min, plus a passing bubble's release pulse."""
        return self.edge_flow_ul_min(self.spec.outlet_edge) + self._pulse_ul_s * 60.0

    def air_in_line(self) -> bool:
        """Tell whether a bubble is passing the outlet sensor."""
        return any(b.stage == "sensor" for b in self.bubbles)

    def edge_volumes_ul(self) -> FloatArray:
        """Return the volume that has flowed through each base edge since the start, uL."""
        if self.t_s is not None:
            self._sync(self.t_s)
        return self._cum_edge_ul.copy()

    @property
    def slowest_time_constant_s(self) -> float:
        """Longest time constant of the present network, s."""
        if self._dirty:
            self._prop = self._build()
        return self._prop.slowest_time_constant_s

    # --- volume accounting --------------------------------------------------------------

    @property
    def pumped_volume_ul(self) -> float:
        """Total volume displaced by all pumps, uL."""
        return self._pumped_ul

    @property
    def outlet_volume_ul(self) -> float:
        """Total volume out through the outlet (including bubble releases), uL."""
        return float(self.edge_volumes_ul()[self._outlet_edge]) + self._released_ul

    @property
    def leaked_volume_ul(self) -> float:
        """Total volume lost through leaks, uL."""
        if self.t_s is not None:
            self._sync(self.t_s)
        return self._leaked_ul

    @property
    def held_volume_ul(self) -> float:
        """Liquid stored in the compliances, ``sum C_i P_i``, uL."""
        return float(self._compliance @ self._p)

    # --- helpers ------------------------------------------------------------------------

    def _inlet(self, inlet: str) -> int:
        try:
            return self.inlet_names.index(inlet)
        except ValueError:
            raise KeyError(
                f"unknown inlet {inlet!r}; known: {', '.join(self.inlet_names)}"
            ) from None

    def _node(self, node: str) -> int:
        try:
            return self._node_index[node]
        except KeyError:
            raise KeyError(f"unknown node {node!r}") from None

    def _edge(self, edge: str) -> int:
        try:
            return self._edge_index[edge]
        except KeyError:
            raise KeyError(f"unknown edge {edge!r}") from None
