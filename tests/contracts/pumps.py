"""The pump implementations the contract suite runs over: driver + its independent emulator.

Each entry says how to build the emulator (device side, from ``simulator``) and the driver
(host side, from ``drivers``), and the emulator's fault hooks. Adding a pump to chipctl means
adding it here; the whole contract then runs over it, in-process and through a PTY.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from drivers.clock import Clock
from drivers.harvard.pump import HarvardPump
from drivers.roles import Syringe, SyringePump
from drivers.transport import Transport
from simulator.devices.harvard import SimHarvardPump
from simulator.world import World


@dataclass(frozen=True)
class PumpImpl:
    """One driver/emulator pair."""

    make_emulator: Callable[[World], Any]
    make_driver: Callable[[Transport, Clock, Syringe], SyringePump]
    inject_stall: Callable[[Any], None]
    prepare: Callable[[SyringePump], None] = lambda pump: None


def _harvard(model: str) -> PumpImpl:
    return PumpImpl(
        make_emulator=lambda world: SimHarvardPump(world, model=model),
        make_driver=lambda transport, clock, syringe: HarvardPump(
            transport, name="pump", syringe=syringe, model=model, clock=clock
        ),
        inject_stall=lambda emulator: emulator.inject_stall(),
    )


PUMP_IMPLS: dict[str, PumpImpl] = {
    "harvard-phd-ultra": _harvard("phd-ultra"),
    "harvard-elite": _harvard("elite"),
    "harvard-legato": _harvard("legato"),
}
