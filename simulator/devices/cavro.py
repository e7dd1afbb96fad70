"""Byte-level emulator of a Tecan Cavro XCalibur / XLP 6000 syringe pump with valve.

Written from hardware-reference §3, which summarises the Cavro XCalibur operating manual
733085-B (§3.1-3.6, App. G) and the XLP 6000 manual 734237-C. It imports nothing of
``drivers`` (DESIGN.md, "Dependency direction"), so the driver's reading of the manual is
checked against a second, independent reading. Behaviour follows the manual first; where
the reference is silent the choice is marked [I].

Link (§3.1): 9600 baud 8N1 (38400 optional). Two framings (§3.3, §3.4):

- DT: ``/`` + address + command string + CR. Answer: ``/0`` + status byte + data + ETX +
  CR + LF.
- OEM: STX, address, sequence byte, command string, ETX, checksum (XOR of STX..ETX).
  Answer: STX, ``0``, status byte, data, ETX, checksum. Once an OEM frame was seen, DT
  is ignored until a power cycle (§3.1). A block repeated with the repeat bit and the
  sequence number of the last executed block is acknowledged, not executed (§3.4). A
  block with a bad checksum is dropped silently, so the host's retry path runs.

Status byte (§3.5): ``0b01R0EEEE``: 0x60 ready and no error, 0x40 busy; the low nibble is
the error code (:data:`ERROR_CODES`).

Commands (§3.6) are stacked into a string and run on ``R``; a string without ``R`` is
loaded into the command buffer and run by a later bare ``R``; ``X`` runs the last string
again. Report commands (``?``, ``?<n>``, ``Q``, ``F``, ``&``) and ``T`` (terminate) run at
once, also while busy. While a string runs, ``V`` changes the speed on the fly and any
other move, set or valve command is ignored with error 15, command overflow.

Errors follow the Cavro manuals where they are more precise than the reference's §3.5
(XP 3000 manual 3-46, Table 3-8 "Error Reporting Examples"; XLP 6000 manual 734237-C
§3.6, pp. 3-47 to 3-50):

- a string with an invalid command (2), a broken loop (4), or a move to a pump that is
  not initialised (7) or overloaded (9, 10) is refused at once: the answer carries the
  error and nothing runs (``[A3000E2000R]`` "returns an invalid command error
  immediately");
- a value error is found when the string reaches it: the answer shows no error, the
  commands before it run, then the string stops and ``Q`` reports 3 (operand) or 11
  (plunger move with the valve in bypass) (``[A4000R]``, ``[A3000A3500R]``);
- the error code stays in every answer's status byte until ``Q`` reads it; ``Q`` clears
  it ("The [Q] command clears the error"). An overload still answers the next move with
  9/10 until ``Z``/``Y``/``W`` re-initialises (the reference's "a new valve command
  re-inits the valve" is not followed: the XLP manual asks for a re-initialisation);
- [I] the answer to an executed string is sent when the string is accepted, so its ready
  bit is the state the command found; the manuals say only ``Q`` tells busy from ready.

Supported: ``Z``/``Y``/``W`` initialisation, ``I``/``O``/``B``/``E`` and ``I<n>``/``O<n>``
valve moves, ``A``/``P``/``D`` (and non-busy ``a``/``p``/``d``) plunger moves, ``V``,
``v``, ``c``, ``S``, ``L``, ``K``, ``k``, ``N`` settings, ``M`` delays, ``g``...``G<n>``
loops, ``J`` aux outputs, ``R``, ``X``, ``T``; reports ``?``, ``?1``-``?4``, ``?6``,
``?10``/``F``, ``?12``, ``?23``/``&``, ``?24``, ``?29``/``Q``. Not emulated: ``H``, ``s``/``e``
NVRAM strings, ``U`` configuration, ``w``, CAN, and the reports of counters, inputs,
checksum (``#``/``?20``) and configuration (``?76``), which answer error 2.

Timing [I]: a full stroke is 6000 half-steps on both models (XCalibur 3000 steps at N0,
XLP 6000 6000 half-steps at N0; §3.6), and the top speed ``V`` counts half-steps per
second, so a full stroke takes ``6000 / V`` seconds (1 s at 6000 Hz, 20 min at 5 Hz).
Start/cutoff speeds and slope are stored and
reported but ramps are not modelled. A valve move takes :data:`VALVE_MOVE_S`.

Physics: the pump is a :class:`simulator.world.SyringeMechanics`. Only volume moved while
the valve is on ``chip_port`` counts in ``last_step_displaced_ul`` (positive when the
plunger dispenses). When ``back_pressure_kpa`` exceeds the force limit the plunger stops
with error 9, plunger overload, which persists until re-initialisation (§3.5).

Faults: :class:`simulator.faults.CommFaults`, :meth:`SimCavro.inject_overload`
(occlusion), :meth:`SimCavro.jam_valve` (error 10, valve overload) and
:meth:`SimCavro.power_on_reset` (the pump must be initialised again: error 7).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Final

from simulator.faults import CommFaults
from simulator.world import World

__all__ = [
    "ERROR_CODES",
    "MODELS",
    "SPEED_CODES_HZ",
    "VALVE_MOVE_S",
    "CavroModel",
    "SimCavro",
    "oem_checksum",
]

STX: Final = 0x02
ETX: Final = 0x03
CR: Final = 0x0D
LF: Final = 0x0A
MASTER_ADDRESS: Final = ord("0")
ALL_ADDRESS: Final = ord("_")  # 0x5F: every device on the bus (§3.2)

#: Error codes of the status byte's low nibble (§3.5).
ERROR_CODES: Final[dict[int, str]] = {
    0: "no error",
    1: "initialisation error",
    2: "invalid command",
    3: "invalid operand",
    4: "invalid command sequence",
    6: "EEPROM failure",
    7: "device not initialised",
    9: "plunger overload",
    10: "valve overload",
    11: "plunger move not allowed",
    15: "command overflow",
}
E_NONE: Final = 0
E_INIT: Final = 1
E_COMMAND: Final = 2
E_OPERAND: Final = 3
E_SEQUENCE: Final = 4
E_NOT_INIT: Final = 7
E_PLUNGER_OVERLOAD: Final = 9
E_VALVE_OVERLOAD: Final = 10
E_MOVE_NOT_ALLOWED: Final = 11
E_OVERFLOW: Final = 15

#: Speed code ``S<n>`` -> top speed in Hz (§3.6: code 0 = 6000 Hz ... 40 = 10 Hz; the
#: intermediate values follow the XCalibur table as transcribed in tecancavro, whose
#: entry keyed 17 a second time is read as 27 -> 100 Hz, §3.6 [I]).
SPEED_CODES_HZ: Final[tuple[int, ...]] = (
    6000, 5600, 5000, 4400, 3800, 3200, 2600, 2200, 2000, 1800,
    1600, 1400, 1200, 1000, 800, 600, 400, 200, 190, 180,
    170, 160, 150, 140, 130, 120, 110, 100, 90, 80,
    70, 60, 50, 40, 30, 20, 18, 16, 14, 12,
    10,
)  # fmt: skip

#: Time a valve takes to turn to a new position, in s [I].
VALVE_MOVE_S: Final = 0.25
#: Extra time an initialisation takes besides the moves (homing, backing off), in s [I].
INIT_OVERHEAD_S: Final = 1.0
#: Half-steps in one full plunger stroke [I: 3000 steps on the XCalibur, 6000 half-steps
#: on the XLP 6000, §3.6].
STROKE_HALF_STEPS: Final = 6000
#: Longest command string accepted, and most actions one string may expand to [I].
MAX_COMMAND_BYTES: Final = 255
MAX_ACTIONS: Final = 100_000


@dataclass(frozen=True, slots=True)
class CavroModel:
    """Ranges that differ between the emulated models (§3.6).

    Attributes:
        name: model name, reported by ``?23``/``&``.
        increments: full-stroke increments per resolution mode ``N0``, ``N1``, ``N2``.
        firmware: the version text reported by ``?23`` [I].
    """

    name: str
    increments: tuple[int, int, int]
    firmware: str


#: Emulated models. XCalibur: 0-3000 (N0) and 0-24000 (N1, fine positioning); N2 is taken
#: as N1 [I]. XLP 6000: 0-6000 half-steps (N0) and 0-48000 microsteps (N1, N2) (§3.6,
#: ranges to confirm in the XLP table, §11).
MODELS: Final[dict[str, CavroModel]] = {
    "XCALIBUR": CavroModel("XCalibur", (3000, 24000, 24000), "XC SIM V1.0"),
    "XLP6000": CavroModel("XLP6000", (6000, 48000, 48000), "XLP SIM V1.0"),
}

# Settings: letter -> (attribute, low, high, default) (§3.6).
_SETTINGS: Final[dict[str, tuple[str, int, int]]] = {
    "V": ("top_speed_hz", 5, 6000),
    "v": ("start_speed_hz", 50, 1000),
    "c": ("cutoff_speed_hz", 50, 2700),
    "L": ("slope_code", 1, 20),
    "k": ("zero_gap_increments", 0, 80),  # [I] range
}
_DEFAULTS: Final[dict[str, int]] = {
    "top_speed_hz": 1400,
    "start_speed_hz": 900,
    "cutoff_speed_hz": 900,
    "slope_code": 7,
    "zero_gap_increments": 0,
    "backlash_increments": 12,  # [I] factory value
}

#: Every command letter the interpreter knows (reports are handled apart).
_COMMAND_LETTERS: Final = frozenset("ZYWIOBEAPDapdVvcSLKkNMJgG")
_VALVE_LETTERS: Final = "IOBE"  # non-distribution valves: ports 1..4 in this order [I]


def oem_checksum(block: bytes) -> int:
    """Return the OEM checksum of ``block`` (STX up to and including ETX): the XOR (§3.4)."""
    result = 0
    for byte in block:
        result ^= byte
    return result


class _CommandError(Exception):
    """A command string was refused before running; carries the status byte's error code."""

    def __init__(self, code: int) -> None:
        super().__init__(ERROR_CODES.get(code, str(code)))
        self.code = code


class _RunError(Exception):
    """A command that is reached while running fails; the string stops there."""

    def __init__(self, code: int) -> None:
        super().__init__(ERROR_CODES.get(code, str(code)))
        self.code = code


@dataclass
class _Token:
    letter: str
    args: tuple[int, ...]


@dataclass
class _Action:
    """One step of a running command string."""

    kind: str  # "move", "valve", "init", "set", "delay", "error"
    duration_s: float = 0.0
    target: float = 0.0  # plunger target, fraction of a full stroke (move, init)
    port: int = 0  # valve target (valve, init)
    busy: bool = True  # False for a/p/d: the status reports "ready" while moving
    apply: Callable[[], None] | None = None  # for "set"
    code: int = 0  # for "error"


@dataclass
class _Motion:
    """The action being executed and when it started."""

    action: _Action
    start_s: float
    end_s: float
    start_fraction: float
    speed_fraction_s: float  # stroke fraction per second, signed


class SimCavro:
    """An emulated Cavro XCalibur or XLP 6000 pump on a DT or OEM link.

    Args:
        world: the shared world; the pump registers as one of its components.
        address: the address character, ``"1"``..``"?"`` (address switch 0..E, §3.2).
        model: ``"XLP6000"`` or ``"XCalibur"`` (case-insensitive).
        n_ports: valve ports: 3 or 4 for an I/O(/B/E) valve, 5..12 for a distribution
            valve addressed with ``I<n>``/``O<n>`` [I: threshold].
        syringe_volume_ul: the syringe's volume; one full stroke moves this much.
        chip_port: the valve port (1-based; for I/O/B/E valves I=1, O=2, B=3, E=4 [I])
            that leads to the chip; volume moved through other ports is not counted.
        faults: link faults; a fresh :class:`CommFaults` if None.
    """

    #: Serial settings of the link (§3.1), for the PTY server and contract tests.
    baudrate: ClassVar[int] = 9600
    bytesize: ClassVar[int] = 8
    parity: ClassVar[str] = "N"
    stopbits: ClassVar[int] = 1

    #: Outlet pressure above which the plunger stalls at full force, in kPa [I: about
    #: 100 psi, the XCalibur's rating; a half/third-force init (Z1/Z2) lowers it].
    overload_pressure_kpa: float = 690.0

    def __init__(
        self,
        world: World | None = None,
        *,
        address: str = "1",
        model: str = "XLP6000",
        n_ports: int = 6,
        syringe_volume_ul: float = 1000.0,
        chip_port: int | None = None,
        faults: CommFaults | None = None,
    ) -> None:
        """Create a pump just switched on: not initialised, plunger at 0, valve at 1."""
        if len(address) != 1 or not 0x31 <= ord(address) <= 0x3F:
            raise ValueError(f"Cavro address must be '1'..'?', got {address!r}")
        key = model.upper().replace(" ", "").replace("-", "")
        if key not in MODELS:
            raise ValueError(f"unknown Cavro model {model!r}; known: {', '.join(MODELS)}")
        if not 3 <= n_ports <= 12:
            raise ValueError(f"n_ports must be 3..12, got {n_ports}")
        if not (math.isfinite(syringe_volume_ul) and syringe_volume_ul > 0):
            raise ValueError(f"syringe volume must be > 0 uL, got {syringe_volume_ul}")
        if chip_port is not None and not 1 <= chip_port <= n_ports:
            raise ValueError(f"chip_port must be 1..{n_ports}, got {chip_port}")
        self.world = world
        self.address = address
        self.model = MODELS[key]
        self.n_ports = n_ports
        self.syringe_volume_ul = float(syringe_volume_ul)
        self.chip_port = chip_port
        self.faults = faults if faults is not None else CommFaults()
        self.t_s = 0.0 if world is None or world.t_s is None else world.t_s
        # SyringeMechanics (simulator.world)
        self.last_step_displaced_ul = 0.0
        self.back_pressure_kpa = 0.0
        #: Total volume moved through the chip port (positive = dispensed), in uL.
        self.chip_displaced_ul = 0.0
        self._rx = bytearray()
        self._tx = bytearray()
        # Physical state survives a power cycle.
        self._fraction = 0.0  # plunger position, fraction of a full stroke (0 = top)
        self.valve_port = 1
        self._overload_armed = False
        self._valve_jammed = False
        self._power_up()
        if world is not None:
            world.add(self)

    def _power_up(self) -> None:
        """Reset everything a power cycle resets (§3.5: initialise again)."""
        self.plunger_initialised = False
        self.valve_initialised = False
        self.resolution = 0
        self.settings: dict[str, int] = dict(_DEFAULTS)
        self.aux_outputs = 0
        self.error = E_NONE
        # Overloads need a re-initialisation; until then every move answers the error
        # again (XLP 6000 manual §3.6, "Overload Errors").
        self._plunger_overloaded = False
        self._valve_overloaded = False
        self._force_divisor = 1.0
        self._buffer: str = ""
        self._last_string: str = ""
        self._program: list[_Action] = []
        self._motion: _Motion | None = None
        self._oem_latched = False
        self._last_sequence: int | None = None
        self._answer_error: int | None = None

    # -- public state --------------------------------------------------------------------

    @property
    def max_increments(self) -> int:
        """Full-stroke increments in the current resolution mode."""
        return self.model.increments[self.resolution]

    @property
    def plunger_increments(self) -> int:
        """Plunger position in the current resolution, as ``?`` reports it."""
        return round(self._fraction * self.max_increments)

    @property
    def plunger_volume_ul(self) -> float:
        """Volume in the syringe (0 with the plunger at the top)."""
        return self._fraction * self.syringe_volume_ul

    @property
    def busy(self) -> bool:
        """Tell whether a command string is executing (as the status byte reports it)."""
        if self._motion is not None and self._motion.action.busy:
            return True
        return bool(self._program) and any(a.busy for a in self._program)

    @property
    def executing(self) -> bool:
        """Tell whether anything is still running (including non-busy a/p/d moves)."""
        return self._motion is not None or bool(self._program)

    # -- faults --------------------------------------------------------------------------

    def inject_overload(self) -> None:
        """Occlude the line: the plunger stalls (error 9) now if moving, else at its next move."""
        self._overload_armed = True
        if self._motion is not None and self._motion.action.kind in ("move", "init"):
            self._overload(self.t_s)

    def jam_valve(self, jammed: bool = True) -> None:
        """Jam (or free) the valve: a valve move fails with error 10, valve overload."""
        self._valve_jammed = jammed

    def power_on_reset(self) -> None:
        """Cut and restore power: motion stops, settings and initialisation are lost.

        The plunger and valve stay where they physically are; every move answers error 7
        until ``Z``/``Y``/``W`` ran (§3.5). OEM latching is cleared (§3.1).
        """
        self._power_up()
        self._rx.clear()

    # -- timeline ------------------------------------------------------------------------

    def advance_to(self, t_s: float) -> None:
        """Bring the pump (and its world) to ``t_s``."""
        if self.world is not None:
            world_started = self.world.t_s is not None
            self.world.advance_to(t_s)
            if not world_started:
                # The world's timeline begins now; nothing happened before it.
                self.t_s = max(self.t_s, t_s)
        if t_s > self.t_s:
            self.last_step_displaced_ul = self._run(self.t_s, t_s)

    def step(self, t0_s: float, t1_s: float) -> None:
        """Advance as a world component from ``t0_s`` to ``t1_s``."""
        self.last_step_displaced_ul = self._run(max(t0_s, self.t_s), t1_s)

    def _run(self, t0_s: float, t1_s: float) -> float:
        """Execute the command string from ``t0_s`` to ``t1_s``; return uL through the chip port."""
        displaced_ul = 0.0
        t = t0_s
        if self._over_pressure():
            self._overload(t)
        while True:
            if self._motion is None:
                if not self._program:
                    break
                self._start_next(t)
                continue
            motion = self._motion
            end = min(motion.end_s, t1_s)
            if motion.action.kind in ("move", "init"):
                before = self._fraction
                self._fraction = self._fraction_at(motion, end)
                if self.valve_port == self.chip_port:
                    displaced_ul += (before - self._fraction) * self.syringe_volume_ul
            t = max(t, end)
            if motion.end_s > t1_s:
                break
            self._finish(motion)
        self.t_s = max(self.t_s, t1_s)
        self.chip_displaced_ul += displaced_ul
        return displaced_ul

    def _over_pressure(self) -> bool:
        """Tell whether the moving plunger pushes (or pulls) against more than it can.

        The hydraulics writes ``back_pressure_kpa`` after each step; above the limit of
        the init force the motor stalls: plunger overload (§3.5 error 9).
        """
        motion = self._motion
        if motion is None or motion.action.kind not in ("move", "init"):
            return False
        limit_kpa = self.overload_pressure_kpa / self._force_divisor
        if motion.speed_fraction_s < 0:  # dispensing pushes against the outlet pressure
            return self.back_pressure_kpa > limit_kpa
        if motion.speed_fraction_s > 0:  # aspirating pulls against a vacuum
            return self.back_pressure_kpa < -limit_kpa
        return False

    @staticmethod
    def _fraction_at(motion: _Motion, t_s: float) -> float:
        if t_s >= motion.end_s:
            return motion.action.target
        return motion.start_fraction + motion.speed_fraction_s * (t_s - motion.start_s)

    def _start_next(self, t_s: float) -> None:
        action = self._program.pop(0)
        if action.kind == "error":
            # An error found while running stops the string and clears the buffer; the
            # code shows in the status byte (XP 3000 manual Table 3-8 examples).
            self._program.clear()
            self.error = action.code
            return
        if action.kind == "set":
            if action.apply is not None:
                action.apply()
            return
        if action.kind in ("move", "init") and self._overload_armed:
            self._overload(t_s)
            return
        if action.kind == "valve" and self._valve_jammed:
            self._valve_overload()
            return
        if action.kind == "init" and action.port and self._valve_jammed:
            self._valve_overload()
            return
        duration_s = action.duration_s
        speed = 0.0
        if action.kind == "move":
            distance = action.target - self._fraction
            duration_s = abs(distance) * STROKE_HALF_STEPS / self.settings["top_speed_hz"]
            speed = distance / duration_s if duration_s > 0 else 0.0
        elif action.kind == "init":
            if action.port:
                self.valve_port = action.port  # [I] the valve turns first, then the plunger homes
            distance = -self._fraction
            travel_s = abs(distance) * STROKE_HALF_STEPS / _DEFAULTS["top_speed_hz"]
            speed = distance / travel_s if travel_s > 0 else 0.0
            duration_s = travel_s + action.duration_s
        self._motion = _Motion(action, t_s, t_s + duration_s, self._fraction, speed)
        if self._over_pressure():
            self._overload(t_s)
        elif duration_s <= 0:
            self._finish(self._motion)

    def _finish(self, motion: _Motion) -> None:
        action = motion.action
        self._motion = None
        if action.kind == "move":
            self._fraction = action.target
        elif action.kind == "valve":
            self.valve_port = action.port
        elif action.kind == "init":
            self._fraction = 0.0
            if action.port:
                self.valve_initialised = True
                self._valve_overloaded = False
            self.plunger_initialised = True
            self._plunger_overloaded = False

    def _overload(self, t_s: float) -> None:
        """Stop the plunger where it is: error 9 until re-initialised (§3.5)."""
        if self._motion is not None:
            self._fraction = self._fraction_at(self._motion, t_s)
        self._motion = None
        self._program.clear()
        self._overload_armed = False
        self.plunger_initialised = False
        self._plunger_overloaded = True
        self.error = E_PLUNGER_OVERLOAD

    def _valve_overload(self) -> None:
        """The valve could not turn: error 10 until re-initialised (XLP manual §3.6)."""
        self._motion = None
        self._program.clear()
        self.valve_initialised = False
        self._valve_overloaded = True
        self.error = E_VALVE_OVERLOAD

    # -- link ----------------------------------------------------------------------------

    def receive(self, data: bytes) -> None:
        """Accept host bytes; complete DT lines and OEM blocks are executed, answers queued.

        Raises:
            ConnectionError: the emulated port is unplugged (the bytes are lost).
        """
        self.faults.check_connected()
        if self.faults.no_reply:
            return  # the pump hears nothing [I: CommFaults "swallows commands"]
        self._rx += data
        while self._rx:
            first = self._rx[0]
            if first == STX:
                etx = self._rx.find(bytes([ETX]), 1)
                if etx == -1 or len(self._rx) < etx + 2:
                    if len(self._rx) > MAX_COMMAND_BYTES + 6:
                        self._rx.clear()
                    return
                block = bytes(self._rx[: etx + 2])
                del self._rx[: etx + 2]
                self._handle_oem(block)
            elif first == ord("/"):
                cr = self._rx.find(bytes([CR]))
                if cr == -1:
                    if len(self._rx) > MAX_COMMAND_BYTES + 3:
                        self._rx.clear()
                    return
                line = bytes(self._rx[1:cr])
                del self._rx[: cr + 1]
                if not self._oem_latched:  # §3.1: DT is ignored once OEM was seen
                    self._handle_dt(line)
            else:
                del self._rx[0]  # line noise, LF of a CR LF host

    def take_output(self) -> bytes:
        """Return and clear the bytes the pump has sent.

        Raises:
            ConnectionError: the emulated port is unplugged.
        """
        self.faults.check_connected()
        out = bytes(self._tx)
        self._tx.clear()
        return out

    def _status_byte(self) -> int:
        return 0x40 | (0 if self.busy else 0x20) | (self.error & 0x0F)

    def _handle_dt(self, line: bytes) -> None:
        if not line:
            return
        result = self._execute_addressed(line[0], line[1:])
        if result is None:
            return
        status, data = result
        reply = b"/0" + bytes([status]) + data + bytes([ETX, CR, LF])
        self._tx += self.faults.filter_reply(reply)

    def _handle_oem(self, block: bytes) -> None:
        # Block: STX, address, sequence, command..., ETX, checksum (§3.4).
        if len(block) < 5 or oem_checksum(block[:-1]) != block[-1]:
            return  # dropped silently: the host repeats after 100 ms (§3.4)
        address, sequence = block[1], block[2]
        if sequence & 0xF0 != 0x30:
            return
        self._oem_latched = True
        number, repeat = sequence & 0x07, bool(sequence & 0x08)
        if not self._is_addressed(address):
            return
        if repeat and number == self._last_sequence:
            # Already executed: only acknowledge (§3.4).
            result: tuple[int, bytes] | None = (self._status_byte(), b"")
        else:
            result = self._execute_addressed(address, block[3:-2])
            self._last_sequence = number
        if result is None:
            return
        status, data = result
        body = bytes([STX, MASTER_ADDRESS, status]) + data + bytes([ETX])
        self._tx += self.faults.filter_reply(body + bytes([oem_checksum(body)]))

    def _is_addressed(self, address: int) -> bool:
        switch = ord(self.address) - 0x31
        if address == ord(self.address) or address == ALL_ADDRESS:
            return True
        # [I] Group addresses (§3.2): 0x41.. pairs (switches 0-1, 2-3...), 0x51.. quads.
        if 0x41 <= address <= 0x4F:
            return (address - 0x41) // 2 == switch // 2 and (address - 0x41) % 2 == 0
        if 0x51 <= address <= 0x5D:
            return (address - 0x51) // 4 == switch // 4 and (address - 0x51) % 4 == 0
        return False

    def _execute_addressed(self, address: int, command: bytes) -> tuple[int, bytes] | None:
        """Execute ``command`` if it is for this pump; return (status, data) to answer."""
        if not self._is_addressed(address):
            return None
        try:
            text = command.decode("ascii")
        except UnicodeDecodeError:
            text = "\x00"  # not a command: invalid command
        # [I] The answer goes out when the command is accepted, before it runs: its ready
        # bit is the state the command found. Busy/ready is read with Q (§3.5).
        ready_bit = 0 if self.busy else 0x20
        self._answer_error = None
        data = self._execute(text)
        if address != ord(self.address):
            return None  # group and broadcast commands execute but are not answered (§3.2)
        if text[:1] in ("?", "Q", "F", "&", "#"):
            status = self._status_byte()
            if text in ("Q", "?29"):
                # Q reports the error and clears it (XLP 6000 manual §3.6, "Overload
                # Errors"); an overload still answers the next move until re-init.
                self.error = E_NONE
            return status, data
        error = self.error if self._answer_error is None else self._answer_error
        return 0x40 | ready_bit | (error & 0x0F), data

    # -- command interpreter -------------------------------------------------------------

    def _execute(self, text: str) -> bytes:
        """Run one command string; set :attr:`error`; return the answer's data bytes."""
        if text and (text[0] == "?" or text in ("Q", "F", "&", "#")):
            try:
                return self._report(text)
            except _CommandError as exc:
                self.error = exc.code
                return b""
        if text in ("T", "TR"):
            # T acts at once, with or without the execute suffix; hosts commonly send "TR"
            # (tecancavro does) [I: the manual lists T among the control commands, §3.6].
            self._terminate()
            return b""
        executes = text.endswith("R")
        body = text[:-1] if executes else text
        if self.executing:
            self._execute_on_the_fly(body, executes=executes)
            return b""
        if body == "X":
            body, executes = self._last_string, True
        elif not body and executes:
            body = self._buffer
        try:
            actions = self._compile(body)
        except _CommandError as exc:
            # Refused as a whole: nothing runs (XP 3000 manual Table 3-8, [A3000E2000R]).
            self.error = exc.code
            return b""
        if not executes:
            self._buffer = body
            return b""
        self._buffer = ""
        self._last_string = body
        self._program.extend(actions)
        # The answer reports the command's acceptance; what happens once it runs (an
        # operand out of range, a stall at the first step) shows in the next Q.
        self._answer_error = self.error
        self._run(self.t_s, self.t_s)
        return b""

    def _execute_on_the_fly(self, body: str, *, executes: bool) -> None:
        """Handle a command string that arrives while a string is still running.

        Only ``V`` is accepted, and applied at once: the pump changes speed while the
        plunger moves. Move, set and valve commands are ignored with error 15, command
        overflow (XLP 6000 manual §3.6, "Command Overflow Error").
        """
        try:
            tokens = self._tokenise(body)
        except _CommandError as exc:
            self.error = exc.code
            return
        if executes and tokens and all(t.letter == "V" for t in tokens):
            for token in tokens:
                try:
                    speed_hz = self._one_arg(token, *_SETTINGS["V"][1:])
                except _RunError as exc:
                    self.error = exc.code
                    return
                self.settings["top_speed_hz"] = speed_hz
                self._retime_motion()
            return
        self.error = E_OVERFLOW

    def _terminate(self) -> None:
        """``T``: stop the plunger where it is and drop the rest of the string [I]."""
        if self._motion is not None:
            self._fraction = self._fraction_at(self._motion, self.t_s)
            if self._motion.action.kind == "init":
                self.plunger_initialised = False  # homing was cut short [I]
        self._motion = None
        self._program.clear()

    def _report(self, text: str) -> bytes:
        aliases = {"Q": "?29", "F": "?10", "&": "?23", "#": "?20"}
        code = aliases.get(text, text)[1:]
        settings = self.settings
        if code == "" or code == "4":
            # Plunger (or encoder) position, live during a move.
            if self._motion is not None and self._motion.action.kind in ("move", "init"):
                fraction = self._fraction_at(self._motion, self.t_s)
            else:
                fraction = self._fraction
            value = str(round(fraction * self.max_increments))
        elif code == "1":
            value = str(settings["start_speed_hz"])
        elif code == "2":
            value = str(settings["top_speed_hz"])
        elif code == "3":
            value = str(settings["cutoff_speed_hz"])
        elif code == "6":
            value = self._valve_text()
        elif code == "10":
            value = "1" if self._buffer else "0"
        elif code == "12":
            value = str(settings["backlash_increments"])
        elif code == "23":
            value = self.model.firmware
        elif code == "24":
            value = str(settings["zero_gap_increments"])
        elif code == "29":
            value = ""
        else:
            raise _CommandError(E_COMMAND)
        return value.encode("ascii")

    def _valve_text(self) -> str:
        if self.n_ports >= 5:
            return str(self.valve_port)
        return _VALVE_LETTERS[self.valve_port - 1].lower()

    def _tokenise(self, body: str) -> list[_Token]:
        """Split a string into commands and check its syntax (error 2, §3.5).

        A letter that is no command, or a valve letter with an operand the valve does not
        take (``E2000``), makes the whole string invalid at once (XP 3000 manual
        Table 3-8).
        """
        tokens: list[_Token] = []
        i = 0
        while i < len(body):
            letter = body[i]
            if letter not in _COMMAND_LETTERS:
                raise _CommandError(E_COMMAND)
            i += 1
            start = i
            while i < len(body) and (body[i] in "0123456789,"):
                i += 1
            raw = body[start:i]
            args: tuple[int, ...] = ()
            if raw:
                parts = raw.split(",")
                if any(not p for p in parts):
                    raise _CommandError(E_COMMAND)
                args = tuple(int(p) for p in parts)
            if letter in "IOBE":
                distribution = self.n_ports >= 5
                if (distribution and letter in "BE") or (not distribution and args):
                    raise _CommandError(E_COMMAND)
            tokens.append(_Token(letter, args))
        return tokens

    def _compile(self, body: str) -> list[_Action]:
        """Check a command string against a copy of the state and turn it into actions.

        Errors of the whole string (2 invalid command, 4 sequence, 7 not initialised,
        9/10 overload, 15 too long) raise :class:`_CommandError`: nothing runs. An error
        that depends on values (3 operand, 11 move not allowed) becomes an ``error``
        action where the string reaches it: the commands before it run (XP 3000 manual
        Table 3-8: [A3000A3500R] "moves to position 3000, then stops").

        Raises:
            _CommandError: the string is refused.
        """
        if len(body) > MAX_COMMAND_BYTES:
            raise _CommandError(E_OVERFLOW)
        tokens = self._tokenise(body)
        state = _DryState(
            fraction=self._fraction,
            port=self.valve_port,
            resolution=self.resolution,
            plunger_ok=self.plunger_initialised,
            valve_ok=self.valve_initialised,
        )
        actions: list[_Action] = []
        try:
            self._compile_tokens(tokens, state, actions)
        except _RunError as exc:
            actions.append(_Action("error", code=exc.code))
        return actions

    def _compile_tokens(self, tokens: list[_Token], state: _DryState, out: list[_Action]) -> None:
        i = 0
        while i < len(tokens):
            token = tokens[i]
            if token.letter == "g":
                depth, j = 1, i + 1
                while j < len(tokens) and depth:
                    depth += {"g": 1, "G": -1}.get(tokens[j].letter, 0)
                    j += 1
                if depth:
                    raise _CommandError(E_SEQUENCE)  # g without G
                count = tokens[j - 1].args[0] if tokens[j - 1].args else 0
                if not 1 <= count <= 30000:
                    # [I] G0 (endless) is not emulated; G above 30000 is out of range.
                    raise _CommandError(E_OPERAND)
                for _ in range(count):
                    self._compile_tokens(tokens[i + 1 : j - 1], state, out)
                    if len(out) > MAX_ACTIONS:
                        raise _CommandError(E_OVERFLOW)
                i = j
                continue
            if token.letter == "G":
                raise _CommandError(E_SEQUENCE)  # G without g
            out.extend(self._compile_one(token, state))
            i += 1

    @staticmethod
    def _one_arg(token: _Token, low: int, high: int) -> int:
        if len(token.args) != 1 or not low <= token.args[0] <= high:
            raise _RunError(E_OPERAND)
        return token.args[0]

    def _check_move_allowed(self, state: _DryState) -> None:
        # A move to an overloaded or uninitialised pump is refused as soon as it is
        # sent (XLP 6000 manual §3.6, "Initialization Errors", "Overload Errors").
        if self._plunger_overloaded and not state.plunger_ok:
            raise _CommandError(E_PLUNGER_OVERLOAD)
        if self._valve_overloaded and not state.valve_ok:
            raise _CommandError(E_VALVE_OVERLOAD)

    def _compile_one(self, token: _Token, state: _DryState) -> list[_Action]:
        letter = token.letter
        increments = self.model.increments[state.resolution]
        if letter in "ZYW":
            return self._compile_init(token, state)
        if letter in "IOBE":
            return [self._compile_valve(token, state)]
        if letter in "APDapd":
            self._check_move_allowed(state)
            if not state.plunger_ok:
                raise _CommandError(E_NOT_INIT)
            if self._is_bypass(state.port):
                # Valve in bypass: reported by Q, not in the answer (Table 3-8).
                raise _RunError(E_MOVE_NOT_ALLOWED)
            n = self._one_arg(token, 0, increments)
            position = round(state.fraction * increments)
            target = {"A": n, "P": position + n, "D": position - n}[letter.upper()]
            if not 0 <= target <= increments:
                raise _RunError(E_OPERAND)  # [A4000R]: reported by Q (Table 3-8)
            state.fraction = target / increments
            return [_Action("move", target=state.fraction, busy=letter.isupper())]
        if letter in _SETTINGS:
            attribute, low, high = _SETTINGS[letter]
            return [self._setter(attribute, self._one_arg(token, low, high))]
        if letter == "S":
            code = self._one_arg(token, 0, len(SPEED_CODES_HZ) - 1)
            return [self._setter("top_speed_hz", SPEED_CODES_HZ[code])]
        if letter == "K":
            high = 31 if state.resolution == 0 else 248
            return [self._setter("backlash_increments", self._one_arg(token, 0, high))]
        if letter == "N":
            mode = self._one_arg(token, 0, 2)
            state.resolution = mode
            return [_Action("set", apply=lambda: setattr(self, "resolution", mode))]
        if letter == "M":
            delay_ms = self._one_arg(token, 5, 30000)
            return [_Action("delay", duration_s=delay_ms / 1000.0)]
        if letter == "J":
            outputs = self._one_arg(token, 0, 7)
            return [_Action("set", apply=lambda: setattr(self, "aux_outputs", outputs))]
        raise _CommandError(E_COMMAND)  # R or X inside a string [I]

    def _setter(self, attribute: str, value: int) -> _Action:
        def apply() -> None:
            self.settings[attribute] = value

        return _Action("set", apply=apply)

    def _retime_motion(self) -> None:
        """Apply a new top speed to the running move (speed change on the fly, §3.6)."""
        motion = self._motion
        if motion is None or motion.action.kind != "move":
            return
        now = self.t_s
        self._fraction = self._fraction_at(motion, now)
        distance = motion.action.target - self._fraction
        duration_s = abs(distance) * STROKE_HALF_STEPS / self.settings["top_speed_hz"]
        speed = distance / duration_s if duration_s > 0 else 0.0
        self._motion = _Motion(motion.action, now, now + duration_s, self._fraction, speed)

    def _is_bypass(self, port: int) -> bool:
        return self.n_ports < 5 and _VALVE_LETTERS[port - 1] == "B"

    def _compile_valve(self, token: _Token, state: _DryState) -> _Action:
        self._check_move_allowed(state)
        if not state.valve_ok:
            raise _CommandError(E_NOT_INIT)
        if self.n_ports >= 5:
            # Distribution valve: I<n>/O<n>, n = 1..ports; the letter picks the turning
            # direction, which the emulator does not model (§3.6).
            port = self._one_arg(token, 1, self.n_ports)
        else:
            port = _VALVE_LETTERS.index(token.letter) + 1
            if port > self.n_ports:
                raise _RunError(E_OPERAND)  # E on a 3-port valve [I]
        state.port = port
        return _Action("valve", duration_s=VALVE_MOVE_S, port=port)

    def _compile_init(self, token: _Token, state: _DryState) -> list[_Action]:
        # Z<force>,<in>,<out> / Y... (valve and plunger), W<force> (plunger only) (§3.6).
        args = token.args
        limit = 3 if token.letter in "ZY" else 1
        if len(args) > limit:
            raise _RunError(E_OPERAND)
        force = args[0] if args else 0
        if not (force in (0, 1, 2) or 10 <= force <= 40):
            raise _RunError(E_OPERAND)
        port = 0
        if token.letter in "ZY":
            default_out = self.n_ports if self.n_ports >= 5 else 2  # [I] O for I/O valves
            out_port = args[2] if len(args) > 2 and args[2] else default_out
            if not 1 <= out_port <= self.n_ports:
                raise _RunError(E_OPERAND)
            port = out_port
            state.valve_ok = True
            state.port = port
        elif self._is_bypass(state.port):
            raise _RunError(E_MOVE_NOT_ALLOWED)
        state.plunger_ok = True
        state.fraction = 0.0
        # The init force applies to the plunger from now on (§3.6: 0 full, 1 half, 2 a
        # third; 10-40 are speed codes at full force).
        divisor = {0: 1.0, 1: 2.0, 2: 3.0}.get(force, 1.0)
        set_force = _Action("set", apply=lambda: setattr(self, "_force_divisor", divisor))
        duration_s = INIT_OVERHEAD_S + (VALVE_MOVE_S if port else 0.0)
        return [set_force, _Action("init", duration_s=duration_s, port=port)]


@dataclass
class _DryState:
    """The state a command string is checked against while it is compiled."""

    fraction: float
    port: int
    resolution: int
    plunger_ok: bool
    valve_ok: bool
