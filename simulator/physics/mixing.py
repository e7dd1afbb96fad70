"""Steady mixing in a channel network: which fraction of each node's fluid came from which inlet.

Model [D]: junctions mix completely (at the flows of these chips the mixing channels are
long compared with the lateral diffusion length, domain reference 1.9), so the fluid
leaving node ``j`` is the flow-weighted mean of the streams entering it:

    F_j * sum_{e into j} |Q_e|  =  sum_{e into j} |Q_e| F_{source(e)}

where "into" follows the actual sign of each edge flow. Syringe nodes are the sources
(``F = unit vector`` of their inlet) and atmosphere entering backwards through the outlet
carries nothing. Flows in a passive resistor network run from high to low pressure, so
the graph of actual flows has no cycles and the system has a unique solution; a node with
no inflow (stagnant) is given ``F = 0``. Source fractions are linear weights, so the
concentration of any species at a node is ``F_j @ c_line_end``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from simulator.physics.network import GROUND, NetworkSpec

__all__ = ["MixingSolver"]

FloatArray = NDArray[np.float64]


class MixingSolver:
    """Solve inlet source fractions for all nodes of one network, at any edge flows.

    Args:
        spec: the network (its base edges, in order).
        source_nodes: the syringe node of each inlet, in inlet order.
    """

    def __init__(self, spec: NetworkSpec, source_nodes: Sequence[str]) -> None:
        """Index the edges once (one-hot edge-node matrices for both edge ends)."""
        index = {name: i for i, name in enumerate(spec.nodes)}
        n, m = len(spec.nodes), len(spec.edges)
        self._n = n
        self._up = np.zeros((m, n))
        self._down = np.zeros((m, n))
        for k, e in enumerate(spec.edges):
            if e.upstream != GROUND:
                self._up[k, index[e.upstream]] = 1.0
            if e.downstream != GROUND:
                self._down[k, index[e.downstream]] = 1.0
        self._sources = np.array([index[name] for name in source_nodes], dtype=int)
        self._rhs = np.zeros((n, len(self._sources)))
        self._rhs[self._sources, np.arange(len(self._sources))] = 1.0

    def fractions(self, edge_flows_ul_s: FloatArray) -> FloatArray:
        """Return ``F`` (n_nodes x n_inlets): the share of each inlet's fluid at each node.

        Args:
            edge_flows_ul_s: flow of every base edge in uL/s (signed, positive downstream).
        """
        q = np.asarray(edge_flows_ul_s, dtype=float)
        forward = np.maximum(q, 0.0)[:, None]
        backward = np.maximum(-q, 0.0)[:, None]
        # into[j, i]: flow delivered from node i into node j (either edge direction).
        into = self._down.T @ (forward * self._up) + self._up.T @ (backward * self._down)
        inflow = (self._down * forward + self._up * backward).sum(axis=0)
        # Below 1e-15 uL/s (3 uL per 100 000 years) a node counts as stagnant.
        fixed = inflow <= max(1e-12 * float(np.abs(q).max(initial=0.0)), 1e-15)
        fixed[self._sources] = True
        matrix = np.diag(np.where(fixed, 1.0, inflow)) - np.where(fixed[:, None], 0.0, into)
        rhs = np.where(fixed[:, None], 0.0, self._rhs)
        rhs[self._sources] = self._rhs[self._sources]
        result: FloatArray = np.clip(np.linalg.solve(matrix, rhs), 0.0, 1.0)
        return result
