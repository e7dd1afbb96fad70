"""The pump implementations the contract suite runs over: driver + its independent emulator.

Each entry says how to build the emulator (device side, from ``simulator``) and the driver
(host side, from ``drivers``), and the emulator's fault hooks. Adding a pump to chipctl means
adding it here; the whole contract then runs over it, in-process and through a PTY.

Pumps differ in physical nature, and the contract states that difference here instead of
weakening a test for every pump:

- ``syringe`` and ``scale``: the contract's volumes and rates are written for a 10 mL syringe
  on a continuous pump (microlitres per minute). A stroke pump such as the Cavro, whose
  slowest plunger speed is 5 half-steps/s, cannot run that slowly with a 10 mL syringe; it
  gets a 1 mL syringe and every contract volume and rate times ``scale``. Durations stay
  the same, so each test checks the same kinematics.
- ``prepare``: what an operator does after ``connect()`` before pumping. A Cavro must be
  initialised (error 7 otherwise) and starts empty, so its ``prepare`` initialises, fills
  the syringe from the input port, and connects again, which clears the counters as on a
  fresh connection.
- ``finite_stroke``: the driver knows how much liquid (and how much stroke) is left and
  refuses a move beyond it; a continuous pump's driver cannot know (its limit is the
  pump's own end-of-travel stall).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from drivers.cavro.pump import CavroPump
from drivers.clock import Clock
from drivers.harvard.pump import HarvardPump
from drivers.newera.pump import NewEraPump
from drivers.roles import Syringe, SyringePump
from drivers.syringes import lookup_syringe
from drivers.transport import Transport
from simulator.devices.cavro import SimCavro
from simulator.devices.harvard import SimHarvardPump
from simulator.devices.newera import SimNewEraBus, SimNewEraPump
from simulator.world import World

from .harness import KnownBug

#: The syringe the contract's volumes and rates were written for.
CONTRACT_SYRINGE = lookup_syringe("BD Plastipak 10 mL")


def _nothing(pump: SyringePump) -> None:
    return None


@dataclass(frozen=True)
class PumpImpl:
    """One driver/emulator pair, and what is physically particular about it.

    Attributes:
        make_emulator: builds the device side in ``world``.
        make_driver: builds the (unconnected) driver on a transport.
        inject_stall: makes the emulated motor stall now.
        true_delivered_ul: the net volume the emulated plunger pushed into the line to the
            chip since connect, as the emulator's mechanics count it (the truth the
            driver's counters are checked against).
        prepare: run after ``connect()``: bring the pump to "idle, ready to pump, counters
            at zero" (default: nothing to do).
        syringe: the syringe mounted for the contract.
        scale: factor applied to every contract volume and rate.
        finite_stroke: the driver tracks the syringe's contents and refuses moves beyond
            its stroke (before moving).
        known_bugs: contract tests this pair fails because of a reported driver or
            emulator bug, by test name (or ``"<name>[<link>]"``), with the bug; they run
            as xfail(strict=True).
    """

    make_emulator: Callable[[World], Any]
    make_driver: Callable[[Transport, Clock, Syringe], SyringePump]
    inject_stall: Callable[[Any], None]
    true_delivered_ul: Callable[[Any], float]
    prepare: Callable[[SyringePump], None] = _nothing
    syringe: Syringe = CONTRACT_SYRINGE
    scale: float = 1.0
    finite_stroke: bool = False
    #: Relative accuracy of a volume moved at a set rate for a set time: the Cavro's plunger
    #: moves in whole increments at quantised speeds, continuous pumps do not.
    timed_volume_rel: float = 1e-3
    known_bugs: dict[str, KnownBug] = field(default_factory=dict)


def _harvard(model: str) -> PumpImpl:
    return PumpImpl(
        make_emulator=lambda world: SimHarvardPump(world, model=model),
        make_driver=lambda transport, clock, syringe: HarvardPump(
            transport, name="pump", syringe=syringe, model=model, clock=clock
        ),
        inject_stall=lambda emulator: emulator.inject_stall(),
        true_delivered_ul=lambda emulator: emulator.infused_ul - emulator.withdrawn_ul,
    )


#: The New Era pump sits at a non-zero address on a daisy-chain bus emulator, so the
#: contract also covers addressing (the driver's default address is 0).
_NEWERA_ADDRESS = 3


def _newera(*, safe_mode: bool) -> PumpImpl:
    return PumpImpl(
        make_emulator=lambda world: SimNewEraBus(
            [SimNewEraPump(world, address=_NEWERA_ADDRESS, model="NE-1000")]
        ),
        make_driver=lambda transport, clock, syringe: NewEraPump(
            transport,
            name="pump",
            syringe=syringe,
            address=_NEWERA_ADDRESS,
            clock=clock,
            model="NE-1000",
            safe_mode=safe_mode,
            safe_timeout_s=10,
        ),
        inject_stall=lambda bus: bus.pumps[_NEWERA_ADDRESS].inject_stall(),
        true_delivered_ul=lambda bus: (
            bus.pumps[_NEWERA_ADDRESS].infused_ul - bus.pumps[_NEWERA_ADDRESS].withdrawn_ul
        ),
    )


#: Valve ports of the Cavro in the contract: liquid comes from the reservoir on port 1 and
#: goes to the chip on port 2 (``output_port``); init pushes the syringe out of port 6.
_CAVRO_INPUT_PORT = 1
_CAVRO_OUTPUT_PORT = 2
_CAVRO_SYRINGE = lookup_syringe("Hamilton Gastight 1 mL")


#: Found by this contract; reported to the lead.


def _cavro_prepare(pump: SyringePump) -> None:
    """Initialise, fill the syringe at full speed, and start the counters from zero."""
    assert isinstance(pump, CavroPump)
    pump.initialize()
    pump.aspirate(pump.syringe.volume_ul, pump.rate_range_ul_min()[1], _CAVRO_INPUT_PORT)
    pump.wait_until_ready(timeout_s=10.0)
    pump.connect()


def _cavro() -> PumpImpl:
    return PumpImpl(
        make_emulator=lambda world: SimCavro(
            world,
            model="XLP6000",
            n_ports=6,
            syringe_volume_ul=_CAVRO_SYRINGE.volume_ul,
            chip_port=_CAVRO_OUTPUT_PORT,
        ),
        make_driver=lambda transport, clock, syringe: CavroPump(
            transport,
            name="pump",
            syringe=syringe,
            clock=clock,
            model="XLP6000",
            n_ports=6,
            output_port=_CAVRO_OUTPUT_PORT,
            input_port=_CAVRO_INPUT_PORT,
        ),
        inject_stall=lambda emulator: emulator.inject_overload(),
        # Only what goes through the chip port counts: filling from the reservoir and the
        # init's push to waste do not.
        true_delivered_ul=lambda emulator: emulator.chip_displaced_ul,
        prepare=_cavro_prepare,
        syringe=_CAVRO_SYRINGE,
        scale=10.0,
        finite_stroke=True,
        timed_volume_rel=1e-2,
    )


PUMP_IMPLS: dict[str, PumpImpl] = {
    "harvard-phd-ultra": _harvard("phd-ultra"),
    "harvard-elite": _harvard("elite"),
    "harvard-legato": _harvard("legato"),
    "newera-ne1000-basic": _newera(safe_mode=False),
    "newera-ne1000-safe": _newera(safe_mode=True),
    "cavro-xlp6000": _cavro(),
}
