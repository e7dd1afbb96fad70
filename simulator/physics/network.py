"""Lumped RC network description and its exact (exponential) step propagator.

Model (domain reference 8.1, [D] from the Kirchhoff analogy [V, R2]): node ``i`` has a
gauge pressure ``P_i`` (kPa) and a compliance ``C_i`` (uL/kPa); edge ``e`` from ``a`` to
``b`` carries ``Q_e = (P_a - P_b) / R_e`` (uL/s, ``R_e`` in kPa s/uL); the ground node
``"atm"`` is the outlet at atmospheric pressure. With source flows ``q`` (uL/s) at nodes:

    C dP/dt = -G P + B q,        G = A^T diag(1/R) A   (A: edge-node incidence)

With ``D = C^-1/2`` the matrix ``S = D G D`` is symmetric positive semi-definite, so
``S = U diag(lambda) U^T`` (``numpy.linalg.eigh``) and, for ``q`` constant over a step
``dt``, the solution is exact:

    P1      = D U e^{-lambda dt} U^T D^-1 P0 + D U f U^T D B q
    int P   = D U f U^T D^-1 P0 + D U h U^T D B q
    f = (1 - e^{-lambda dt}) / lambda,   h = (dt - f) / lambda

so steps far longer than the fastest time constant (``tau = R C``, section 1.6) are
stable and exact for piecewise-constant pump flows. Edge volumes over the step are
``diag(1/R) A int P``. Everything is folded into one matrix, so a step is one mat-vec.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

__all__ = ["GROUND", "ChamberPort", "Edge", "InletPort", "NetworkSpec", "RCPropagator"]

#: Name of the ground (atmospheric) node; it has no pressure unknown.
GROUND = "atm"

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class Edge:
    """A resistive connection ``upstream -> downstream`` (positive flow direction).

    Attributes:
        name: unique edge name.
        upstream: upstream node name.
        downstream: downstream node name (``GROUND`` for atmosphere).
        resistance_kpa_s_ul: hydraulic resistance in kPa s/uL (1 kPa s/uL = 1e12 Pa s/m^3).
    """

    name: str
    upstream: str
    downstream: str
    resistance_kpa_s_ul: float


@dataclass(frozen=True)
class InletPort:
    """Where a syringe pump feeds the network.

    Attributes:
        name: inlet name (e.g. ``"drug"``).
        node: node at the syringe outlet (holds syringe + tubing compliance).
        line_edge: the tubing edge from that node into the chip.
        dead_volume_ul: liquid volume of the line from syringe to chip port (plug-flow delay).
        chip_path_volume_ul: liquid volume from the end of the dead volume (a chamber's
            entry) to the outlet node; a bubble travels ``dead + chip path`` to reach it.
    """

    name: str
    node: str
    line_edge: str
    dead_volume_ul: float
    chip_path_volume_ul: float


@dataclass(frozen=True)
class ChamberPort:
    """A culture chamber: a node of the network fed through one edge.

    Attributes:
        node: chamber node name.
        inflow_edge: the edge that feeds it.
        volume_ul: well-mixed liquid volume (CSTR volume) in uL.
        wall_shear_pa_per_ul_min: ``tau_w / Q`` for the chamber floor, in Pa per uL/min.
    """

    node: str
    inflow_edge: str
    volume_ul: float
    wall_shear_pa_per_ul_min: float


@dataclass(frozen=True)
class NetworkSpec:
    """A lumped RC network with its roles (inlets, chambers, outlet sensor).

    Attributes:
        nodes: node names (``GROUND`` excluded).
        compliance_ul_kpa: compliance per node in uL/kPa (all > 0).
        edges: resistive edges.
        inlets: pump inlets.
        chambers: culture chambers, in order.
        outlet_edge: the edge to atmosphere that carries the outlet flow (sensor place).
        outlet_sensor_volume_ul: liquid volume from the outlet node to the flow sensor.
        burst_pressure_kpa: pressure rating of the chip nodes (bond failure above it).
        chip_nodes: nodes that belong to the chip (checked against the burst pressure).
    """

    nodes: tuple[str, ...]
    compliance_ul_kpa: tuple[float, ...]
    edges: tuple[Edge, ...]
    inlets: tuple[InletPort, ...]
    chambers: tuple[ChamberPort, ...]
    outlet_edge: str
    outlet_sensor_volume_ul: float = 0.0
    burst_pressure_kpa: float = float("inf")
    chip_nodes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        """Check names and values once, so the solvers can trust them."""
        if len(self.nodes) != len(self.compliance_ul_kpa):
            raise ValueError("one compliance per node is needed")
        if len(set(self.nodes)) != len(self.nodes) or GROUND in self.nodes:
            raise ValueError("node names must be unique and not 'atm'")
        if any(not c > 0.0 for c in self.compliance_ul_kpa):
            raise ValueError("every node needs a positive compliance")
        known = set(self.nodes) | {GROUND}
        names = [e.name for e in self.edges]
        if len(set(names)) != len(names):
            raise ValueError("edge names must be unique")
        for e in self.edges:
            if e.upstream not in known or e.downstream not in known or e.upstream == e.downstream:
                raise ValueError(f"edge {e.name!r} connects unknown or identical nodes")
            if not e.resistance_kpa_s_ul > 0.0:
                raise ValueError(f"edge {e.name!r} needs a positive resistance")
        edge_names = set(names)
        for port in self.inlets:
            if port.node not in self.nodes or port.line_edge not in edge_names:
                raise ValueError(f"inlet {port.name!r} refers to an unknown node or edge")
        for ch in self.chambers:
            if ch.node not in self.nodes or ch.inflow_edge not in edge_names:
                raise ValueError(f"chamber {ch.node!r} refers to an unknown node or edge")
        if self.outlet_edge not in edge_names:
            raise ValueError("unknown outlet edge")

    def node_index(self, name: str) -> int:
        """Return the index of node ``name``."""
        return self.nodes.index(name)

    def edge_index(self, name: str) -> int:
        """Return the index of edge ``name``."""
        return [e.name for e in self.edges].index(name)


class RCPropagator:
    """Exact step matrices for one fixed set of resistances and compliances.

    Args:
        nodes: node names.
        compliance_ul_kpa: compliance per node in uL/kPa.
        edges: edges (base edges then any leak edges).
        source_nodes: nodes where the pump flows enter, in the order of the input vector.
    """

    def __init__(
        self,
        nodes: Sequence[str],
        compliance_ul_kpa: FloatArray,
        edges: Sequence[Edge],
        source_nodes: Sequence[str],
    ) -> None:
        """Build the conductance matrix and diagonalise the symmetric form once."""
        index = {name: i for i, name in enumerate(nodes)}
        n, m = len(nodes), len(edges)
        self.n_nodes = n
        self.n_edges = m
        self.n_sources = len(source_nodes)
        incidence = np.zeros((m, n))
        for k, e in enumerate(edges):
            if e.upstream != GROUND:
                incidence[k, index[e.upstream]] += 1.0
            if e.downstream != GROUND:
                incidence[k, index[e.downstream]] -= 1.0
        conductance = 1.0 / np.array([e.resistance_kpa_s_ul for e in edges], dtype=float)
        #: rows map node pressures (kPa) to edge flows (uL/s).
        self.flow_matrix: FloatArray = conductance[:, None] * incidence
        g_matrix = incidence.T @ self.flow_matrix
        self._d = 1.0 / np.sqrt(compliance_ul_kpa)
        s_matrix = self._d[:, None] * g_matrix * self._d[None, :]
        eigenvalues, self._u = np.linalg.eigh(0.5 * (s_matrix + s_matrix.T))
        self._lambda = np.clip(eigenvalues, 0.0, None)
        b_matrix = np.zeros((n, self.n_sources))
        for j, name in enumerate(source_nodes):
            b_matrix[index[name], j] = 1.0
        self._ut_db = self._u.T @ (self._d[:, None] * b_matrix)
        self._ut_dinv = self._u.T * (1.0 / self._d)[None, :]
        self._du = self._d[:, None] * self._u
        self._cache: dict[float, FloatArray] = {}

    @property
    def slowest_time_constant_s(self) -> float:
        """Longest time constant ``1/lambda_min`` of the network (inf if it has a floating part)."""
        lam = float(np.min(self._lambda))
        return float("inf") if lam <= 0.0 else 1.0 / lam

    def step_matrix(self, dt_s: float) -> FloatArray:
        """Return ``M`` with ``[P1; edge volumes] = M @ [P0; q]`` for a step of ``dt_s``.

        ``P`` in kPa, ``q`` in uL/s, edge volumes in uL (signed, positive downstream).
        """
        cached = self._cache.get(dt_s)
        if cached is not None:
            return cached
        x = self._lambda * dt_s
        decay = np.exp(-x)
        small = x < 1e-4  # series below: avoids cancellation in x + expm1(-x)
        lam_safe = np.where(small, 1.0, self._lambda)
        f = np.where(small, dt_s * (1.0 - x / 2.0 + x * x / 6.0), -np.expm1(-x) / lam_safe)
        h = np.where(
            small,
            dt_s * dt_s * (0.5 - x / 6.0 + x * x / 24.0),
            (x + np.expm1(-x)) / (lam_safe * lam_safe),
        )
        phi = self._du @ (decay[:, None] * self._ut_dinv)
        gam = self._du @ (f[:, None] * self._ut_db)
        psi = self._du @ (f[:, None] * self._ut_dinv)
        lam_int = self._du @ (h[:, None] * self._ut_db)
        top = np.hstack([phi, gam])
        bottom = self.flow_matrix @ np.hstack([psi, lam_int])
        matrix = np.ascontiguousarray(np.vstack([top, bottom]))
        if len(self._cache) >= 32:
            self._cache.clear()
        self._cache[dt_s] = matrix
        return matrix

    def steady_state_kpa(self, source_flows_ul_s: FloatArray) -> FloatArray:
        """Return the steady pressures for constant source flows (least squares if floating)."""
        inv = np.where(
            self._lambda > 0.0, 1.0 / np.where(self._lambda > 0.0, self._lambda, 1.0), 0.0
        )
        result: FloatArray = self._du @ (inv * (self._ut_db @ source_flows_ul_s))
        return result
