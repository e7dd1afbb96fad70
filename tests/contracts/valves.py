"""The valve implementations the contract suite runs over: driver + its independent emulator.

Each entry builds the emulator (device side, from ``simulator``) and the driver (host side,
from ``drivers``), and says how to reach the emulator's physical state (where the rotor
really is, a jam) and the driver's cached position. Adding a valve to chipctl means adding
it here; the whole contract then runs over it, in-process and through a PTY.

- IDEX MX Series II / Titan EZ (:class:`~drivers.idex.valve.IdexValve` on
  :class:`~simulator.devices.idex.SimIdexValve`): a stand-alone 10-position selector.
- Cavro distribution valve (:class:`~drivers.cavro.valve.CavroValve`, a view of a
  :class:`~drivers.cavro.pump.CavroPump`, on :class:`~simulator.devices.cavro.SimCavro`): the
  pump owns the link, so ``prepare`` connects the pump, and initialises it, because a
  Cavro valve refuses to turn before initialisation (error 7).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from drivers.cavro.pump import CavroPump
from drivers.cavro.valve import CavroValve
from drivers.clock import Clock
from drivers.idex.valve import IdexValve
from drivers.roles import Valve
from drivers.syringes import lookup_syringe
from drivers.transport import Transport
from simulator.devices.cavro import SimCavro
from simulator.devices.idex import SimIdexValve
from simulator.world import World

from .harness import KnownBug


def _nothing(valve: Valve) -> None:
    return None


@dataclass(frozen=True)
class ValveImpl:
    """One driver/emulator pair.

    Attributes:
        make_emulator: builds the device side in ``world``.
        make_driver: builds the (unconnected) driver on a transport.
        true_position: where the emulated rotor really is.
        move_behind_the_back: turns the emulated rotor to a position without the driver
            (someone at the front panel, a power-on homing).
        inject_jam: makes the next valve move fail in the mechanism.
        cached_position: the position the driver last read (no I/O).
        prepare: run after ``connect()`` to make the valve ready to turn.
        baudrate: the link's line speed.
        known_bugs: contract tests this pair fails because of a reported bug, by test
            name (or ``"<name>[<link>]"``); they run as xfail(strict=True).
    """

    make_emulator: Callable[[World], Any]
    make_driver: Callable[[Transport, Clock], Valve]
    true_position: Callable[[Any], int]
    move_behind_the_back: Callable[[Any, int], None]
    inject_jam: Callable[[Any], None]
    cached_position: Callable[[Valve], int | None]
    prepare: Callable[[Valve], None] = _nothing
    baudrate: int = 9600
    known_bugs: dict[str, KnownBug] = field(default_factory=dict)


def _idex_cached(valve: Valve) -> int | None:
    assert isinstance(valve, IdexValve)
    return valve.last_position


def _set_idex_position(emulator: SimIdexValve, position: int) -> None:
    emulator.position = position


def _idex() -> ValveImpl:
    return ValveImpl(
        make_emulator=lambda world: SimIdexValve(world, n_positions=10),
        make_driver=lambda transport, clock: IdexValve(
            transport, name="valve", n_positions=10, clock=clock
        ),
        true_position=lambda emulator: emulator.position,
        move_behind_the_back=_set_idex_position,
        inject_jam=lambda emulator: emulator.jam(),
        cached_position=_idex_cached,
        baudrate=SimIdexValve.baudrate,
    )


def _cavro_prepare(valve: Valve) -> None:
    assert isinstance(valve, CavroValve)
    valve.pump.connect()
    valve.pump.initialize()


def _cavro_cached(valve: Valve) -> int | None:
    assert isinstance(valve, CavroValve)
    return valve.pump.port


def _set_cavro_port(emulator: SimCavro, port: int) -> None:
    emulator.valve_port = port


def _cavro_valve() -> ValveImpl:
    return ValveImpl(
        make_emulator=lambda world: SimCavro(
            world, model="XLP6000", n_ports=6, syringe_volume_ul=1000.0
        ),
        make_driver=lambda transport, clock: CavroValve(
            CavroPump(
                transport,
                name="valve",
                syringe=lookup_syringe("Hamilton Gastight 1 mL"),
                clock=clock,
                model="XLP6000",
                n_ports=6,
            )
        ),
        true_position=lambda emulator: emulator.valve_port,
        move_behind_the_back=_set_cavro_port,
        inject_jam=lambda emulator: emulator.jam_valve(),
        cached_position=_cavro_cached,
        prepare=_cavro_prepare,
        baudrate=SimCavro.baudrate,
    )


VALVE_IMPLS: dict[str, ValveImpl] = {
    "idex-mx2-10": _idex(),
    "cavro-xlp6000-6port": _cavro_valve(),
}
