"""Byte-level emulator of an IDEX / Rheodyne MX Series II (Titan EZ driver board) selector valve.

Written from hardware-reference §5.1, which summarises IDEX document 2321382G "UART/USB
Communication Protocol for TitanEX/TitanEZ/TitanHP, TitanHT Driver Boards and MX Series II
Modules". It imports nothing of ``drivers`` (DESIGN.md, "Dependency direction"), so the
driver's reading of that document is checked against a second, independent reading.
Behaviour follows the document first; where it is silent the choice is marked [I].

Link: 19200 baud 8N1, no handshaking (class attributes below). Every command is an ASCII
letter, optionally two hex digits, and CR; every reply ends with CR.

===========  ==========================================================================
Command      Reply
===========  ==========================================================================
``P<hh>``    Move to position hh (01..n). A bare CR, then the valve is busy for
             ``switch_time_s``. An invalid position is ignored: no reply at all (§5.1).
``S``        Status: the position as two upper-case hex digits (``05\\r``), or an error
             code instead: 99 valve failure (cannot home), 88 NVRAM error, 77
             configuration/command-mode error, 66 positioning error, 55 data integrity
             error, 44 data CRC error (§5.1).
``D``        The command mode as two hex digits [I: format as for ``S``].
``F<hh>``    Set the command mode 1..5; applied at the next power-on (§5.1). CR.
``O<hh>``    Set the valve profile (number of positions: 02, 03, 04, 06, 08, 0A, 0C);
             applied at the next power-on (§5.1). CR.
other        Ignored, no reply [I: the document only says invalid positions are ignored;
             ``+``/``-`` exist on TitanHP/EX only, so an MX II ignores them too].
===========  ==========================================================================

While the valve moves it accepts no command and answers *every byte* with ``*`` (0x2A,
§5.1); those bytes are lost, so a command sent during a move is never executed.

Faults: the link faults of :class:`simulator.faults.CommFaults`; :meth:`SimIdexValve.jam`
(the rotor is stuck: a move stays busy for ``jam_timeout_s`` and then ``S`` reports 66,
positioning error, and the valve stays where it was); :meth:`SimIdexValve.inject_error`
(any code of the table); :meth:`SimIdexValve.power_on_reset` (homes to position 1; a jammed
valve cannot home and reports 99).

The emulator owns no clock (DESIGN.md, "Time"): it is advanced with :meth:`advance_to`,
and, when it lives in a :class:`~simulator.world.World`, it is also a component of it, so
the valve's position follows the world's timeline whichever device advanced it.
"""

from __future__ import annotations

import math
import string
from typing import ClassVar, Final

from simulator.faults import CommFaults
from simulator.world import World

__all__ = [
    "COMMAND_MODES",
    "DEFAULT_JAM_TIMEOUT_S",
    "DEFAULT_SWITCH_TIME_S",
    "ERROR_CODES",
    "ERROR_CONFIGURATION",
    "ERROR_DATA_CRC",
    "ERROR_DATA_INTEGRITY",
    "ERROR_NVRAM",
    "ERROR_POSITIONING",
    "ERROR_VALVE_FAILURE",
    "POSITION_COUNTS",
    "SimIdexValve",
]

#: Time for one switch. §5.1: "a few hundred ms, model dependent"; IDEX gives no figure
#: in the sources read, so this is a plausible middle value [I]. Distance is ignored.
DEFAULT_SWITCH_TIME_S: Final = 0.3
#: How long a jammed valve keeps trying before it reports a positioning error [I].
DEFAULT_JAM_TIMEOUT_S: Final = 2.0

#: Status error codes (§5.1), reported by ``S`` in place of the position.
ERROR_VALVE_FAILURE: Final = 99
ERROR_NVRAM: Final = 88
ERROR_CONFIGURATION: Final = 77
ERROR_POSITIONING: Final = 66
ERROR_DATA_INTEGRITY: Final = 55
ERROR_DATA_CRC: Final = 44
ERROR_CODES: Final = frozenset(
    {
        ERROR_VALVE_FAILURE,
        ERROR_NVRAM,
        ERROR_CONFIGURATION,
        ERROR_POSITIONING,
        ERROR_DATA_INTEGRITY,
        ERROR_DATA_CRC,
    }
)

#: Valve profiles: the position counts a board can be configured for (§5.1: 2..C hex).
POSITION_COUNTS: Final = (2, 3, 4, 6, 8, 10, 12)

#: Command modes set by ``F`` and read by ``D`` (§5.1).
COMMAND_MODES: Final[dict[int, str]] = {
    1: "level logic",
    2: "single pulse",
    3: "BCD",
    4: "inverted BCD",
    5: "dual pulse",
}
#: Serial control needs a mode other than level logic (§5.1 [I]); the emulator starts in
#: single-pulse mode [I].
_DEFAULT_COMMAND_MODE: Final = 2

_CR: Final = 0x0D
_LF: Final = 0x0A
_BUSY_REPLY: Final = b"*"
#: A line longer than this without CR is line noise; it is dropped [I].
_MAX_LINE_BYTES: Final = 32


def _parse_hex2(text: str) -> int | None:
    """Return the value of exactly two hex digits, or None."""
    if len(text) != 2 or any(c not in string.hexdigits for c in text):
        return None
    return int(text, 16)


class SimIdexValve:
    """An MX Series II / Titan EZ selector valve with ``n_positions`` ports, at byte level.

    Args:
        world: the shared world; the valve registers as one of its components.
        n_positions: the valve profile (2, 3, 4, 6, 8, 10 or 12 positions).
        faults: link faults; a fresh :class:`CommFaults` when None.
        switch_time_s: how long one switch keeps the valve busy.
        jam_timeout_s: how long a jammed move stays busy before it fails.

    Attributes:
        position: the port the outlet is connected to (1-based). It changes when a switch
            completes; while :attr:`is_switching`, flow is blocked in a real rotor valve,
            which the world can read from :attr:`is_switching`.
        error_code: the error ``S`` reports instead of the position, or None.
        command_mode: the active command mode (see :data:`COMMAND_MODES`).

    Raises:
        ValueError: an unsupported position count or a non-positive time.
    """

    #: Link parameters (§5.1), checked by a contract test and used by the PTY server.
    baudrate: ClassVar[int] = 19200
    bytesize: ClassVar[int] = 8
    parity: ClassVar[str] = "N"
    stopbits: ClassVar[int] = 1

    def __init__(
        self,
        world: World | None = None,
        *,
        n_positions: int = 10,
        faults: CommFaults | None = None,
        switch_time_s: float = DEFAULT_SWITCH_TIME_S,
        jam_timeout_s: float = DEFAULT_JAM_TIMEOUT_S,
    ) -> None:
        """Create a valve at position 1, idle, without error."""
        if n_positions not in POSITION_COUNTS:
            raise ValueError(f"an MX II valve has {POSITION_COUNTS} positions, got {n_positions}")
        for label, value in (("switch_time_s", switch_time_s), ("jam_timeout_s", jam_timeout_s)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{label} must be > 0, got {value}")
        self.world = world
        self.faults = faults if faults is not None else CommFaults()
        self.n_positions = n_positions
        self.switch_time_s = float(switch_time_s)
        self.jam_timeout_s = float(jam_timeout_s)
        self.t_s = 0.0
        self.position = 1
        self.error_code: int | None = None
        self.command_mode = _DEFAULT_COMMAND_MODE
        self.jammed = False
        self._next_command_mode = self.command_mode
        self._next_n_positions = n_positions
        self._target: int | None = None
        self._move_start_s = 0.0
        self._move_end_s = 0.0
        self._move_fails = False
        self._homing = False
        self._rx = bytearray()
        self._tx = bytearray()
        if world is not None:
            world.add(self)

    # -- state ------------------------------------------------------------------------

    @property
    def is_switching(self) -> bool:
        """Tell whether the rotor is moving (the board answers ``*`` to every byte)."""
        return self._target is not None

    @property
    def target_position(self) -> int | None:
        """Get the position being switched to, or None when idle."""
        return self._target

    # -- timeline -----------------------------------------------------------------------

    def advance_to(self, t_s: float) -> None:
        """Bring the valve (and its world) to ``t_s``; a switch that is due completes."""
        if self.world is not None:
            self.world.advance_to(t_s)
        self._update(t_s)

    def step(self, t0_s: float, t1_s: float) -> None:
        """Advance as a world component from ``t0_s`` to ``t1_s``."""
        self._update(t1_s)

    def _update(self, t_s: float) -> None:
        if t_s > self.t_s:
            self.t_s = t_s
        if self._target is not None and self.t_s >= self._move_end_s:
            self._finish_move()

    def _start_move(self, target: int, *, homing: bool = False) -> None:
        self._target = target
        self._homing = homing
        self._move_start_s = self.t_s
        self._move_fails = self.jammed
        duration_s = self.jam_timeout_s if self.jammed else self.switch_time_s
        self._move_end_s = self.t_s + duration_s

    def _finish_move(self) -> None:
        target, self._target = self._target, None
        if self._move_fails:
            # The rotor never reached the target: it stays where it was (§5.1: 66
            # positioning error; 99 when it cannot even home).
            self.error_code = ERROR_VALVE_FAILURE if self._homing else ERROR_POSITIONING
        elif target is not None:
            self.position = target
            self.error_code = None  # a completed move clears a previous error [I]
        self._homing = False

    # -- link ---------------------------------------------------------------------------

    def receive(self, data: bytes) -> None:
        """Accept host bytes; each CR-terminated command is executed, replies are queued.

        Under the ``no_reply`` fault the board hears nothing: commands are lost too.

        Raises:
            ConnectionError: the emulated port is unplugged (the bytes are lost).
        """
        self.faults.check_connected()
        if self.faults.no_reply:
            return
        for byte in bytes(data):
            if self.is_switching:
                self._send(_BUSY_REPLY)
                continue
            if byte == _CR:
                line = bytes(self._rx)
                self._rx.clear()
                self._handle(line)
            elif byte == _LF:
                continue  # hosts that end lines with CR LF [I]
            elif len(self._rx) >= _MAX_LINE_BYTES:
                self._rx.clear()
            else:
                self._rx.append(byte)

    def take_output(self) -> bytes:
        """Return and clear the bytes the valve has sent.

        Raises:
            ConnectionError: the emulated port is unplugged.
        """
        self.faults.check_connected()
        out = bytes(self._tx)
        self._tx.clear()
        return out

    def _send(self, reply: bytes) -> None:
        self._tx += self.faults.filter_reply(reply)

    def _handle(self, line: bytes) -> None:
        if not line or not line.isascii():
            return
        text = line.decode("ascii")
        letter, argument = text[0], text[1:]
        if letter == "P":
            self._handle_move(argument)
        elif letter == "S" and not argument:
            self._send(self._status_text().encode("ascii") + b"\r")
        elif letter == "D" and not argument:
            self._send(f"{self.command_mode:02X}\r".encode("ascii"))
        elif letter == "F":
            mode = _parse_hex2(argument)
            if mode is not None and mode in COMMAND_MODES:
                self._next_command_mode = mode
                self._send(b"\r")
        elif letter == "O":
            count = _parse_hex2(argument)
            if count is not None and count in POSITION_COUNTS:
                self._next_n_positions = count
                self._send(b"\r")

    def _handle_move(self, argument: str) -> None:
        target = _parse_hex2(argument)
        if target is None or not 1 <= target <= self.n_positions:
            return  # §5.1: invalid positions are ignored, no reply
        self._send(b"\r")
        if target == self.position and self.error_code is None:
            return  # already there: nothing turns [I]
        self._start_move(target)

    def _status_text(self) -> str:
        if self.error_code is not None:
            return f"{self.error_code:02d}"
        return f"{self.position:02X}"

    # -- faults -------------------------------------------------------------------------

    def jam(self) -> None:
        """Stick the rotor: the current and later moves fail with error 66 (99 when homing).

        A move already under way keeps the valve busy until ``jam_timeout_s`` after it
        started, then fails.
        """
        self.jammed = True
        if self._target is not None and not self._move_fails:
            self._move_fails = True
            self._move_end_s = max(self._move_end_s, self._move_start_s + self.jam_timeout_s)

    def clear_jam(self) -> None:
        """Free the rotor; the error code stays until a move completes or a reset."""
        self.jammed = False

    def inject_error(self, code: int) -> None:
        """Make ``S`` report ``code`` (one of :data:`ERROR_CODES`) until a move completes.

        Raises:
            ValueError: ``code`` is not an error code of the protocol.
        """
        if code not in ERROR_CODES:
            raise ValueError(f"IDEX error codes are {sorted(ERROR_CODES)}, got {code}")
        self.error_code = code

    def power_on_reset(self) -> None:
        """Power-cycle the board: it forgets its buffers and homes to position 1.

        Input and unsent output are lost, pending ``F``/``O`` settings take effect and
        errors clear. Homing takes ``switch_time_s`` [I] (busy meanwhile); a jammed valve
        cannot home and reports 99 after ``jam_timeout_s``.
        """
        self._rx.clear()
        self._tx.clear()
        self.command_mode = self._next_command_mode
        self.n_positions = self._next_n_positions
        self.error_code = None
        self._target = None
        self._start_move(1, homing=True)
