"""The simulated world: shared state that every emulated device lives in.

The simulator owns no clock (DESIGN.md, "Time"). The world is advanced to the times it
is handed: the in-process transport calls an emulator's ``advance_to(now)`` before every
exchange, the emulator forwards to :meth:`World.advance_to`, and the world steps every
registered :class:`Component` from its current time to the new one, in order, in steps
no longer than ``max_step_s``. So all devices and models see one consistent timeline, and
the same seed and the same sequence of commands give the same world.

Components are the emulated devices' mechanics (a plunger moving) and the physical models
(hydraulics, drug transport, biology) added by later layers.
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np

__all__ = ["Component", "FlowSource", "SyringeMechanics", "World"]


class Component(Protocol):
    """Anything whose state evolves with time in the world."""

    def step(self, t0_s: float, t1_s: float) -> None:
        """Advance this component's state from ``t0_s`` to ``t1_s`` (``t1_s > t0_s``)."""
        ...


class World:
    """A timeline shared by components, with a seeded random generator.

    Args:
        seed: seeds :attr:`rng`; the same seed gives the same world.
        max_step_s: the longest single integration step handed to components.
    """

    def __init__(self, seed: int = 0, *, max_step_s: float = math.inf) -> None:
        """Create an empty world; its time starts at the first :meth:`advance_to`."""
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.max_step_s = max_step_s
        self.t_s: float | None = None
        self._components: list[Component] = []

    def add(self, component: Component) -> None:
        """Register ``component``; it is stepped after those added before it."""
        self._components.append(component)

    def advance_to(self, t_s: float) -> None:
        """Step every component up to ``t_s``; earlier or equal times do nothing."""
        if self.t_s is None:
            self.t_s = t_s
            return
        while self.t_s < t_s:
            t1_s = min(t_s, self.t_s + self.max_step_s)
            for component in self._components:
                component.step(self.t_s, t1_s)
            self.t_s = t1_s


class SyringeMechanics(Protocol):
    """What the hydraulics needs of an emulated syringe pump (implemented by each emulator).

    The pump steps before the hydraulics in the world's component order; after its step it
    publishes the volume it displaced, and the hydraulics answers with the pressure at the
    syringe outlet, which the pump compares with its force limit (and stalls above it).
    """

    #: Volume pushed out of the syringe into the connected line during the last step, in uL
    #: (negative when withdrawing; only volume that goes through the line connected to the
    #: chip counts, e.g. a Cavro counts its chip port only).
    last_step_displaced_ul: float
    #: Gauge pressure at the syringe outlet in kPa, written by the hydraulics each step.
    back_pressure_kpa: float


class FlowSource(Protocol):
    """What an emulated flow sensor reads: the true flow at its place in the network."""

    def true_flow_ul_min(self) -> float:
        """Return the true volumetric flow through the sensor (uL/min, signed)."""
        ...

    def air_in_line(self) -> bool:
        """Tell whether a bubble is passing the sensor."""
        ...
