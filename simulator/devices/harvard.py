"""Byte-level emulator of a Harvard Apparatus / KD Scientific "pump chain" syringe pump.

PHD ULTRA, Pump 11 Elite and KDS Legato share one line-based ASCII command language
(hardware-reference §1). This module implements the pump side of it, written from the
manuals' pump-chain pages and independent of any driver's codec (DESIGN.md, "Dependency
direction"), so a bug shared by driver and emulator cannot hide.

Sources are cited per behaviour as in the hardware reference: **[S]** the manuals (PHD
ULTRA 5419-002 p.83/p.88, Legato 100/130/200, Pump 33 DDS 5419-013, KDS Allegro p.57);
**[I]** inferred (from public driver code or chosen here as plausible) and to be confirmed
on hardware. Everything marked [I] is a guess the emulator makes explicit rather than hides.

Wire format (§1.4 [S]): the host ends a line with ``\\r`` (``\\r\\n`` accepted); every
reply line is ``\\n[NN:]text\\r`` and the reply ends with ``\\n[NN]prompt`` (no CR), the
prompt being ``:`` idle, ``>`` infusing, ``<`` withdrawing, ``*`` stalled, ``T*`` target
reached. ``NN`` is the pump's two-digit address and is omitted for address 0 [I: the
manuals show prefixes only for nonzero addresses; flowchem auto-detects address 0 from a
reply starting with a bare prompt].

Example, address 0::

    host:  b"irate 3.2 u/m\\r"     pump: b"\\n:"
    host:  b"irate\\r"             pump: b"\\n3.2 ul/min\\r\\n:"
    host:  b"12:irun\\r"           (pump 12 answers ``b"\\n12>"``; pump 0 stays silent)
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from simulator.faults import CommFaults
from simulator.world import World

__all__ = [
    "DEFAULT_MAX_FORCE_N",
    "MAX_LINEAR_SPEED_MM_MIN",
    "MIN_LINEAR_SPEED_MM_MIN",
    "MODELS",
    "SimHarvardPump",
]

Model = Literal["phd-ultra", "elite", "legato"]
Direction = Literal["infuse", "withdraw"]

#: Models this emulator knows, with the ``ver`` reply of each. The Elite string is the
#: example printed in the Pump 11 Elite manual [S]; the other two are shaped like it [I].
MODELS: dict[str, str] = {
    "phd-ultra": "PHD ULTRA I/W 3.0.4",
    "elite": "11 ELITE I/W Single 3.0.4",
    "legato": "LEGATO 100 I/W 3.0.4",
}

#: Full-scale pusher force in newtons at ``force 100``. About 75 lbf, the order of the
#: vendors' data-sheet figures for PHD ULTRA and Legato [I: not in the reference manuals].
DEFAULT_MAX_FORCE_N = 334.0

#: Slowest and fastest pusher speeds in mm/min, which with the syringe cross-section give
#: ``irate lim``. Chosen [I] so that a BD 1 mL syringe (4.78 mm) reproduces the manual's
#: example limits "1.2 nl/min to 3.5 ml/min" (§1.3).
MIN_LINEAR_SPEED_MM_MIN = 6.7e-5
MAX_LINEAR_SPEED_MM_MIN = 195.0

#: Syringe diameter range in mm accepted by ``diameter``: 0.1-33 mm is the Elite's
#: ``metrics`` range (§1.5 [I]); the PHD ULTRA also takes 140 mL syringes, hence 50 mm [I].
DIAMETER_RANGE_MM: dict[str, tuple[float, float]] = {
    "phd-ultra": (0.1, 50.0),
    "elite": (0.1, 33.0),
    "legato": (0.1, 33.0),
}

#: Factory settings after a power-on reset [I]: a BD 10 mL plastic syringe, 1 mL/min.
_FACTORY_DIAMETER_MM = 14.43
_FACTORY_SYRINGE_UL = 10_000.0
_FACTORY_RATE = (1.0, "ml/min")
_FACTORY_FORCE_PCT = 100

#: Relative slack on rate limits, for values copied from a 4-digit display [I].
_ROUNDING = 5e-4

#: Longest command line kept while waiting for its CR; longer input is line noise [I].
_MAX_LINE_BYTES = 256

_VOLUME_UL_PER_UNIT = {"m": 1e3, "u": 1.0, "n": 1e-3, "p": 1e-6}
_PER_MIN_PER_TIME_UNIT = {"min": 1.0, "m": 1.0, "hr": 1.0 / 60.0, "h": 1.0 / 60.0}
_PER_MIN_PER_TIME_UNIT |= {"sec": 60.0, "s": 60.0}
_CANONICAL_TIME_UNIT = {"min": "min", "m": "min", "hr": "hr", "h": "hr", "sec": "s", "s": "s"}
# "ul/min", "u/m", "ml/hr", "nl/s": volume prefix, optional "l", "/", time unit (§1.3 [S]).
_RATE_UNITS_RE = re.compile(r"^([munp])l?/(min|hr|sec|m|h|s)$")
_VOLUME_UNITS_RE = re.compile(r"^([munp])l?$")
_TIME_S_PER_UNIT = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "hr": 3600.0}
# Optional "@" (Legato fast mode, §1.3 [S]), address 0-99 with or without ":" (§1.2 [S]).
_LINE_RE = re.compile(r"^@?(?:(\d{1,2}):?)?@?\s*(.*)$", re.DOTALL)


class _ArgumentError(Exception):
    """A command argument that is not understood: ``Argument error: <arg>``."""

    def __init__(self, argument: str, detail: str = "Invalid argument") -> None:
        super().__init__(argument)
        self.lines = [f"Argument error: {argument}", f"   {detail}"]


class _RangeError(_ArgumentError):
    """A well-formed value outside the allowed range."""

    def __init__(self, argument: str, low: str, high: str) -> None:
        super().__init__(argument, f"Out of range: {low} to {high}")


@dataclass
class _Rate:
    """A rate as the user set it: value and canonical unit (for queries), and in uL/min."""

    value: float
    unit: str

    @property
    def ul_min(self) -> float:
        """Return the rate in uL/min."""
        match = _RATE_UNITS_RE.match(self.unit)
        assert match is not None
        return self.value * _VOLUME_UL_PER_UNIT[match[1]] * _PER_MIN_PER_TIME_UNIT[match[2]]


def _fmt(value: float) -> str:
    """Format a number the way the pump displays it: up to 4 significant digits [I]."""
    if value == 0:
        return "0"
    text = f"{value:.4g}"
    if "e" in text:
        text = f"{value:.12f}".rstrip("0").rstrip(".")
    return text


def _auto_volume(volume_ul: float) -> str:
    """Format a volume in the unit that gives 1-999 (as the display does [I])."""
    for unit, ul_per_unit in (("ml", 1e3), ("ul", 1.0), ("nl", 1e-3)):
        if abs(volume_ul) >= ul_per_unit:
            return f"{_fmt(volume_ul / ul_per_unit)} {unit}"
    return f"{_fmt(volume_ul / 1e-6)} pl" if volume_ul else "0 ul"


def _auto_rate(rate_ul_min: float) -> str:
    """Format a rate in ml/min, ul/min, nl/min or pl/min, whichever gives 1-999 [I]."""
    for unit, ul_per_unit in (("ml/min", 1e3), ("ul/min", 1.0), ("nl/min", 1e-3)):
        if rate_ul_min >= ul_per_unit:
            return f"{_fmt(rate_ul_min / ul_per_unit)} {unit}"
    return f"{_fmt(rate_ul_min / 1e-6)} pl/min"


def _parse_number(text: str) -> float:
    """Parse a finite decimal number, or raise an argument error naming ``text``."""
    try:
        value = float(text)
    except ValueError:
        raise _ArgumentError(text) from None
    if not math.isfinite(value):
        raise _ArgumentError(text)
    return value


class SimHarvardPump:
    """One PHD ULTRA / Pump 11 Elite / Legato syringe pump, seen from its serial port.

    The emulator satisfies the structural ``EmulatedDevice`` interface (``advance_to``,
    ``receive``, ``take_output``), the world's ``Component`` (``step``) and
    ``SyringeMechanics`` (``last_step_displaced_ul``, ``back_pressure_kpa``).

    Behaviour and its sources:

    * Parser (§1.2, §1.3 [S]): ``\\r`` or ``\\r\\n`` ends a line; an optional ``@``; an
      optional address with or without ``:``; commands case-insensitive and shortened to
      any prefix of at least 4 letters. A line addressed to another pump is ignored (the
      other pump on the chain answers) [S]; a line with no address is taken by this pump,
      as over USB [S]. A bare ``\\r`` gets only the prompt (address auto-detection) [S].
    * Errors (§1.4): ``Command error: <cmd>`` + ``   Unknown command``; ``Argument
      error: <arg>`` + an indented message (``Invalid argument``, ``Out of range: <min> to
      <max>``) [S: KDS Allegro p.57 layout, substrings from flowchem [I]].
    * Kinetics [S §1.6]: volume grows by rate x dt while running, in the current
      direction; the pump stops exactly at the target volume or time and shows ``T*``.
    * Syringe travel [I]: the syringe holds ``contents_ul`` (full when mounted, at most
      the syringe volume). Infusing an empty syringe or withdrawing into a full one stops
      the motor, sets the limit-switch ``status`` flag (``i``/``w``, never on PHD ULTRA,
      whose manual says the flag is always ``.`` [S]) and raises :attr:`alarm`.
    * Stall [S §1.4]: ``*`` prompt and ``S`` flag, motion stops. It happens on
      :meth:`inject_stall`, or when the back pressure on the plunger needs more than the
      force limit (``force`` % of ``max_force_n``) [I]. It stays until
      :meth:`clear_stall` (on hardware, the operator clears it on the display [I]).
    * Power-on reset (:meth:`power_on_reset`) [I, worst case chosen on purpose]: the run
      stops, counters, target and stall are cleared and every setting returns to the
      factory value except the address, so a driver must re-send its configuration
      (the ``nvram`` setting is reported but does not protect settings here).

    Args:
        world: the world to live in; the pump registers itself as a component and
            ``advance_to`` advances the whole world. Without one the pump keeps its own
            timeline, whose origin is the first ``advance_to``.
        model: ``"phd-ultra"``, ``"elite"`` or ``"legato"``: sets ``ver`` and the
            ``status`` flags (5 on PHD ULTRA, 6 on Elite/Legato [S]).
        address: chain address 0-99 (§1.2 [S]).
        faults: link faults applied to every reply; a fresh (inactive) one by default.
        max_force_n: pusher force at ``force 100``, in newtons.

    Raises:
        ValueError: unknown model or an address outside 0-99.
    """

    def __init__(
        self,
        world: World | None = None,
        *,
        model: str = "phd-ultra",
        address: int = 0,
        faults: CommFaults | None = None,
        max_force_n: float = DEFAULT_MAX_FORCE_N,
    ) -> None:
        """Build a pump at rest with factory settings and a full syringe."""
        if model not in MODELS:
            raise ValueError(f"unknown Harvard model {model!r}; choose from {sorted(MODELS)}")
        if not 0 <= address <= 99:
            raise ValueError(f"address must be 0-99, got {address}")
        self.model = model
        self.address = address
        self.faults = faults if faults is not None else CommFaults()
        self.max_force_n = max_force_n
        self.world = world
        # SyringeMechanics (simulator.world): published to / written by the hydraulics.
        self.last_step_displaced_ul = 0.0
        self.back_pressure_kpa = 0.0
        #: Why the pump last stopped by itself (end of travel), or None.
        self.alarm: str | None = None
        self._t_s: float | None = None
        self._in = bytearray()
        self._overflow = False
        self._out = bytearray()
        self._handlers = self._build_handlers()
        self._factory_reset()
        if world is not None:
            world.add(self)

    # ----------------------------------------------------------------- state and reset

    def _factory_reset(self) -> None:
        """Set every setting, counter and flag to its factory value (not the address)."""
        self._diameter_mm = _FACTORY_DIAMETER_MM
        self._syringe_ul = _FACTORY_SYRINGE_UL
        self._contents_ul = _FACTORY_SYRINGE_UL
        self._rates: dict[Direction, _Rate] = {
            "infuse": _Rate(*_FACTORY_RATE),
            "withdraw": _Rate(*_FACTORY_RATE),
        }
        self._target: tuple[float, str] | None = None  # (value, canonical unit)
        self._target_time_s: float | None = None
        self._force_pct = _FACTORY_FORCE_PCT
        self._nvram = "on"
        self._echo = False
        self._direction: Direction = "infuse"
        self._running = False
        self._stalled = False
        self._target_reached = False
        self._limit: Direction | None = None
        self._volume_ul: dict[Direction, float] = {"infuse": 0.0, "withdraw": 0.0}
        self._time_s: dict[Direction, float] = {"infuse": 0.0, "withdraw": 0.0}
        self.alarm = None

    @property
    def infused_ul(self) -> float:
        """Volume infused since the counter was last cleared (``ivolume``), in uL."""
        return self._volume_ul["infuse"]

    @property
    def withdrawn_ul(self) -> float:
        """Volume withdrawn since the counter was last cleared (``wvolume``), in uL."""
        return self._volume_ul["withdraw"]

    @property
    def running(self) -> bool:
        """Tell whether the motor is moving (stalled or stopped pumps are not)."""
        return self._running

    @property
    def direction(self) -> Direction:
        """The current direction, ``"infuse"`` or ``"withdraw"``."""
        return self._direction

    @property
    def rate_ul_min(self) -> float:
        """The set rate of the current direction, in uL/min."""
        return self._rates[self._direction].ul_min

    @property
    def stalled(self) -> bool:
        """Tell whether the pump is stalled (``*`` prompt)."""
        return self._stalled

    @property
    def target_reached(self) -> bool:
        """Tell whether the last run stopped at its target (``T*`` prompt)."""
        return self._target_reached

    @property
    def contents_ul(self) -> float:
        """Liquid left in the syringe, in uL (0 = plunger at the infuse end of travel)."""
        return self._contents_ul

    @property
    def diameter_mm(self) -> float:
        """The syringe inner diameter set with ``diameter``, in mm."""
        return self._diameter_mm

    @property
    def area_mm2(self) -> float:
        """The plunger cross-section, in mm^2 (so mm/min x mm^2 = uL/min)."""
        return math.pi / 4.0 * self._diameter_mm**2

    @property
    def prompt(self) -> str:
        """The prompt the pump would show now (§1.4 [S])."""
        if self._stalled:
            return "*"
        if self._target_reached:
            return "T*"
        if self._running:
            return ">" if self._direction == "infuse" else "<"
        return ":"

    def rate_limits_ul_min(self) -> tuple[float, float]:
        """Return ``(min, max)`` rate for the current diameter, in uL/min (``irate lim``)."""
        area_mm2 = self.area_mm2
        return area_mm2 * MIN_LINEAR_SPEED_MM_MIN, area_mm2 * MAX_LINEAR_SPEED_MM_MIN

    # ------------------------------------------------------------ device-specific faults

    def inject_stall(self) -> None:
        """Stall the motor now: motion stops, ``*`` prompt, ``S`` status flag (§1.4 [S])."""
        self._stalled = True
        self._running = False

    def clear_stall(self) -> None:
        """Clear a stall, as the operator does on the display [I]; the pump stays stopped."""
        self._stalled = False

    def power_on_reset(self) -> None:
        """Simulate a power cycle [I]: factory settings (address kept), counters cleared.

        The run stops and half-received input is lost. The plunger does not move: the
        liquid left in the syringe stays (clamped to the factory syringe volume).
        """
        contents_ul = self._contents_ul
        self._in.clear()
        self._overflow = False
        self._factory_reset()
        self._contents_ul = min(contents_ul, self._syringe_ul)

    def syringe_empty(self) -> None:
        """Put the plunger at the infuse end of travel: the next infusing step hits it [I]."""
        self._contents_ul = 0.0

    def load_syringe(self, contents_ul: float) -> None:
        """Mount a syringe holding ``contents_ul`` (clamped to the syringe volume) [I]."""
        self._contents_ul = min(max(contents_ul, 0.0), self._syringe_ul)
        self._limit = None
        self.alarm = None

    # ------------------------------------------------------------------------ timeline

    def advance_to(self, t_s: float) -> None:
        """Bring the pump (and its world, if any) to ``t_s``; earlier times do nothing."""
        if self.world is not None:
            self.world.advance_to(t_s)
            return
        if self._t_s is None:
            self._t_s = t_s
            return
        if t_s > self._t_s:
            self.step(self._t_s, t_s)
            self._t_s = t_s

    def step(self, t0_s: float, t1_s: float) -> None:
        """Move the plunger from ``t0_s`` to ``t1_s`` (world ``Component``).

        The force check uses the back pressure the hydraulics wrote after the previous step
        (``SyringeMechanics`` order). Motion stops exactly at whichever comes first: the
        target volume, the target time, or the end of syringe travel.
        """
        self.last_step_displaced_ul = 0.0
        if not self._running:
            return
        direction = self._direction
        sign = 1.0 if direction == "infuse" else -1.0
        force_n = sign * self.back_pressure_kpa * self.area_mm2 * 1e-3  # kPa x mm^2 = mN
        if force_n > self._force_pct / 100.0 * self.max_force_n:
            self.inject_stall()
            return
        rate_ul_min = self._rates[direction].ul_min
        dt_s = t1_s - t0_s
        wanted_ul = rate_ul_min * dt_s / 60.0
        travel_ul = (
            self._contents_ul if direction == "infuse" else (self._syringe_ul - self._contents_ul)
        )
        target_ul = self._target_ul()
        to_target_ul = math.inf if target_ul is None else target_ul - self._volume_ul[direction]
        to_time_ul = math.inf
        if self._target_time_s is not None:
            to_time_ul = rate_ul_min * (self._target_time_s - self._time_s[direction]) / 60.0
        moved_ul = max(0.0, min(wanted_ul, travel_ul, to_target_ul, to_time_ul))
        elapsed_s = dt_s if wanted_ul <= 0 else dt_s * moved_ul / wanted_ul
        self._volume_ul[direction] += moved_ul
        self._time_s[direction] += elapsed_s
        self._contents_ul -= sign * moved_ul
        self.last_step_displaced_ul = sign * moved_ul
        if target_ul is not None and moved_ul >= to_target_ul:
            self._volume_ul[direction] = target_ul  # exact, whatever the rounding
            self._stop_at_target()
        if self._target_time_s is not None and moved_ul >= to_time_ul:
            self._time_s[direction] = self._target_time_s
            self._stop_at_target()
        if moved_ul >= travel_ul and moved_ul < wanted_ul:
            self._contents_ul = 0.0 if direction == "infuse" else self._syringe_ul
            self._running = False
            self._limit = direction
            self.alarm = f"{direction} end of travel"

    def _target_ul(self) -> float | None:
        if self._target is None:
            return None
        value, unit = self._target
        return value * _VOLUME_UL_PER_UNIT[unit[0]]

    def _stop_at_target(self) -> None:
        self._running = False
        self._target_reached = True

    # ------------------------------------------------------------------------ byte link

    def receive(self, data: bytes) -> None:
        """Take bytes from the host; each complete line is executed and answered.

        Raises:
            ConnectionError: the port has disappeared (``faults.disconnected``); the bytes
                are lost.
        """
        self.faults.check_connected()
        for byte in data:
            if byte == 0x0D:  # CR ends a line (§1.3 [S]); a following LF is dropped below
                if not self._overflow:
                    self._handle_line(bytes(self._in))
                self._in.clear()
                self._overflow = False
            elif byte == 0x0A and not self._in:
                continue
            elif len(self._in) < _MAX_LINE_BYTES:
                self._in.append(byte)
            else:  # noise: drop the whole line, silently [I]
                self._overflow = True

    def take_output(self) -> bytes:
        """Return and clear what the pump has sent since the last call.

        Raises:
            ConnectionError: the port has disappeared (``faults.disconnected``).
        """
        self.faults.check_connected()
        out = bytes(self._out)
        self._out.clear()
        return out

    def _handle_line(self, raw: bytes) -> None:
        if self.faults.no_reply:
            return  # CommFaults: the command is swallowed, not executed
        text = raw.decode("ascii", errors="replace").strip()
        match = _LINE_RE.match(text)
        assert match is not None  # the pattern matches any string
        address_text, command_text = match[1], match[2].strip()
        if address_text is not None and int(address_text) != self.address:
            return  # another pump on the chain answers
        echo = self._echo  # as typed: "echo on" itself is not echoed
        lines = self._execute(command_text) if command_text else []
        reply = self._frame(lines)
        if echo:
            reply = raw + b"\r" + reply  # the terminal echoes the line as typed [I]
        self._out += self.faults.filter_reply(reply)

    def _frame(self, lines: list[str]) -> bytes:
        """Frame reply lines and the prompt (§1.4 [S])."""
        line_prefix = f"{self.address:02d}:" if self.address else ""
        prompt_prefix = f"{self.address:02d}" if self.address else ""
        body = "".join(f"\n{line_prefix}{line}\r" for line in lines)
        # A non-ASCII byte quoted back in an error is shown as "?" [I].
        return f"{body}\n{prompt_prefix}{self.prompt}".encode("ascii", errors="replace")

    # ------------------------------------------------------------------------ commands

    def _build_handlers(self) -> dict[str, Callable[[list[str]], list[str]]]:
        return {
            "irun": lambda args: self._cmd_run(args, "infuse"),
            "wrun": lambda args: self._cmd_run(args, "withdraw"),
            "rrun": lambda args: self._cmd_run(args, "reverse"),
            "run": lambda args: self._cmd_run(args, None),
            "stop": self._cmd_stop,
            "stp": self._cmd_stop,
            "diameter": self._cmd_diameter,
            "svolume": self._cmd_svolume,
            "irate": lambda args: self._cmd_rate(args, "infuse"),
            "wrate": lambda args: self._cmd_rate(args, "withdraw"),
            "crate": self._cmd_crate,
            "tvolume": self._cmd_tvolume,
            "ctvolume": self._no_args(self._clear_target),
            "ivolume": lambda args: self._cmd_volume(args, "infuse"),
            "wvolume": lambda args: self._cmd_volume(args, "withdraw"),
            "civolume": self._no_args(lambda: self._clear_volume("infuse")),
            "cwvolume": self._no_args(lambda: self._clear_volume("withdraw")),
            "cvolume": self._no_args(self._clear_volumes),
            "ttime": self._cmd_ttime,
            "cttime": self._no_args(self._clear_target_time),
            "itime": lambda args: self._cmd_time(args, "infuse"),
            "wtime": lambda args: self._cmd_time(args, "withdraw"),
            "citime": self._no_args(lambda: self._clear_time("infuse")),
            "cwtime": self._no_args(lambda: self._clear_time("withdraw")),
            "ctime": self._no_args(self._clear_times),
            "ver": self._cmd_version,
            "version": self._cmd_version,
            "status": self._cmd_status,
            "force": self._cmd_force,
            "address": self._cmd_address,
            "nvram": self._cmd_nvram,
            "echo": self._cmd_echo,
        }

    def _lookup(self, word: str) -> Callable[[list[str]], list[str]] | None:
        """Find a command by full name or by a prefix of 4+ letters (§1.3 [S])."""
        if word in self._handlers:
            return self._handlers[word]
        if len(word) >= 4:
            names = [name for name in self._handlers if name.startswith(word)]
            if len(names) == 1:
                return self._handlers[names[0]]
        return None

    def _execute(self, command_text: str) -> list[str]:
        word, *args = command_text.split()
        handler = self._lookup(word.lower())
        if handler is None:
            return [f"Command error: {word}", "   Unknown command"]
        try:
            return handler([arg.lower() for arg in args])
        except _ArgumentError as exc:
            return exc.lines

    @staticmethod
    def _no_args(action: Callable[[], None]) -> Callable[[list[str]], list[str]]:
        def handler(args: list[str]) -> list[str]:
            if args:
                raise _ArgumentError(args[0])
            action()
            return []

        return handler

    def _cmd_run(self, args: list[str], how: Direction | Literal["reverse"] | None) -> list[str]:
        """``irun``/``wrun``/``rrun``/``run`` (§1.3 [S]); ignored while stalled [I]."""
        if args:
            raise _ArgumentError(args[0])
        if how == "reverse":
            self._direction = "withdraw" if self._direction == "infuse" else "infuse"
        elif how is not None:
            self._direction = how
        if self._stalled:
            return []
        self._target_reached = False
        if self._limit == self._direction:
            return []  # still against the end of travel: the motor cannot start [I]
        self._limit = None
        self.alarm = None
        target_ul = self._target_ul()
        if target_ul is not None and self._volume_ul[self._direction] >= target_ul:
            self._target_reached = True  # already there: the pump stops at once [I]
            return []
        if self._target_time_s is not None and self._time_s[self._direction] >= (
            self._target_time_s
        ):
            self._target_reached = True
            return []
        self._running = True
        return []

    def _cmd_stop(self, args: list[str]) -> list[str]:
        if args:
            raise _ArgumentError(args[0])
        self._running = False
        return []

    def _cmd_diameter(self, args: list[str]) -> list[str]:
        """``diameter [mm]`` (§1.3 [S]); range per model (§1.5 [I])."""
        if not args:
            return [f"{self._diameter_mm:.4f} mm"]
        value = _parse_number(args[0])
        if len(args) > 2 or (len(args) == 2 and args[1] != "mm"):
            raise _ArgumentError(args[-1])
        low, high = DIAMETER_RANGE_MM[self.model]
        if not low <= value <= high:
            raise _RangeError(args[0], f"{low:.4f} mm", f"{high:.4f} mm")
        self._diameter_mm = value
        return []

    def _parse_volume(self, args: list[str]) -> tuple[float, str]:
        """Parse ``<value> <ul|ml|nl|pl>`` into the value and its canonical unit."""
        if len(args) != 2:
            raise _ArgumentError(" ".join(args) if args else "")
        value = _parse_number(args[0])
        match = _VOLUME_UNITS_RE.match(args[1])
        if match is None:
            raise _ArgumentError(args[1])
        if value <= 0:
            raise _RangeError(args[0], "0", "syringe volume")
        return value, f"{match[1]}l"

    def _cmd_svolume(self, args: list[str]) -> list[str]:
        """``svolume [value ul|ml]`` (§1.3 [S]); the syringe's liquid is clamped to it [I]."""
        if not args:
            return [_auto_volume(self._syringe_ul)]
        value, unit = self._parse_volume(args)
        self._syringe_ul = value * _VOLUME_UL_PER_UNIT[unit[0]]
        self._contents_ul = min(self._contents_ul, self._syringe_ul)
        return []

    def _cmd_rate(self, args: list[str], direction: Direction) -> list[str]:
        """``irate``/``wrate`` ``[value units | max | min | lim]`` (§1.3 [S])."""
        rate = self._rates[direction]
        low_ul_min, high_ul_min = self.rate_limits_ul_min()
        if not args:
            return [f"{_fmt(rate.value)} {rate.unit}"]
        if len(args) == 1 and args[0] == "lim":
            return [f"{_auto_rate(low_ul_min)} to {_auto_rate(high_ul_min)}"]
        if len(args) == 1 and args[0] in ("max", "min"):
            limit_ul_min = high_ul_min if args[0] == "max" else low_ul_min
            self._rates[direction] = _Rate(limit_ul_min, "ul/min")
            return []
        if len(args) != 2:
            raise _ArgumentError(" ".join(args))
        value = _parse_number(args[0])
        match = _RATE_UNITS_RE.match(args[1])
        if match is None:
            raise _ArgumentError(args[1])
        new_rate = _Rate(value, f"{match[1]}l/{_CANONICAL_TIME_UNIT[match[2]]}")
        # Limits are shown to 4 digits, so a limit read back and sent again may exceed the
        # true one by half a unit in the last digit: accept that and clamp [I].
        if not low_ul_min * (1 - _ROUNDING) <= new_rate.ul_min <= high_ul_min * (1 + _ROUNDING):
            raise _RangeError(args[0], _auto_rate(low_ul_min), _auto_rate(high_ul_min))
        if not low_ul_min <= new_rate.ul_min <= high_ul_min:
            limit_ul_min = min(max(new_rate.ul_min, low_ul_min), high_ul_min)
            new_rate = _Rate(new_rate.value * limit_ul_min / new_rate.ul_min, new_rate.unit)
        self._rates[direction] = new_rate
        return []

    def _cmd_crate(self, args: list[str]) -> list[str]:
        """``crate``: the motor's current rate, 0 when it is not moving [S/I]."""
        if args:
            raise _ArgumentError(args[0])
        if not self._running:
            return ["0 ul/min"]
        rate = self._rates[self._direction]
        return [f"{_fmt(rate.value)} {rate.unit}"]

    def _cmd_tvolume(self, args: list[str]) -> list[str]:
        """``tvolume [value units]``; unset query text from §1.3 [S]."""
        if not args:
            if self._target is None:
                return ["Target volume not set"]
            value, unit = self._target
            return [f"{_fmt(value)} {unit}"]
        self._target = self._parse_volume(args)
        self._target_reached = False
        return []

    def _clear_target(self) -> None:
        self._target = None
        self._target_reached = False

    def _cmd_volume(self, args: list[str], direction: Direction) -> list[str]:
        """``ivolume``/``wvolume``: the counter, in the unit that reads best [I]."""
        if args:
            raise _ArgumentError(args[0])
        return [_auto_volume(self._volume_ul[direction])]

    def _clear_volume(self, direction: Direction) -> None:
        self._volume_ul[direction] = 0.0

    def _clear_volumes(self) -> None:
        self._volume_ul = {"infuse": 0.0, "withdraw": 0.0}

    def _cmd_ttime(self, args: list[str]) -> list[str]:
        """``ttime [seconds | value s|min|h]``: target time (§1.3 [S]; format [I])."""
        if not args:
            if self._target_time_s is None:
                return ["Target time not set"]
            return [f"{_fmt(self._target_time_s)} s"]
        value = _parse_number(args[0])
        if len(args) > 2 or (len(args) == 2 and args[1] not in _TIME_S_PER_UNIT):
            raise _ArgumentError(args[-1])
        if value <= 0:
            raise _RangeError(args[0], "0", "unlimited")
        self._target_time_s = value * (_TIME_S_PER_UNIT[args[1]] if len(args) == 2 else 1.0)
        self._target_reached = False
        return []

    def _clear_target_time(self) -> None:
        self._target_time_s = None
        self._target_reached = False

    def _cmd_time(self, args: list[str], direction: Direction) -> list[str]:
        """``itime``/``wtime``: time run in that direction, in seconds [I]."""
        if args:
            raise _ArgumentError(args[0])
        return [f"{_fmt(self._time_s[direction])} s"]

    def _clear_time(self, direction: Direction) -> None:
        self._time_s[direction] = 0.0

    def _clear_times(self) -> None:
        self._time_s = {"infuse": 0.0, "withdraw": 0.0}

    def _cmd_version(self, args: list[str]) -> list[str]:
        if args:
            raise _ArgumentError(args[0])
        return [MODELS[self.model]]

    def _cmd_status(self, args: list[str]) -> list[str]:
        """``status``: ``<rate fL/s> <time> <volume fL> <flags>`` (§1.3 [S]).

        Rate is the motor's current rate (0 when not moving [I]); time is in ms on
        Legato/Elite and in s on PHD ULTRA (as each manual says [S]); volume and time are
        those of the current direction. Flags: direction (``i``/``w``, upper case while
        running), limit switch (``.`` always on PHD ULTRA [S]; ``i``/``w`` when that end of
        travel is engaged on the others [I]), stall ``S``, trigger input (``.``: no trigger
        emulated), direction port (``I``/``W``, following the direction [I]) and, on
        Legato/Elite only, target reached ``T``.
        """
        if args:
            raise _ArgumentError(args[0])
        direction = self._direction
        rate_fl_s = round(self._rates[direction].ul_min * 1e9 / 60.0) if self._running else 0
        time_s = self._time_s[direction]
        time_field = int(time_s) if self.model == "phd-ultra" else round(time_s * 1e3)
        volume_fl = round(self._volume_ul[direction] * 1e9)
        letter = "i" if direction == "infuse" else "w"
        flags = letter.upper() if self._running else letter
        limit = "." if self.model == "phd-ultra" or self._limit is None else self._limit[0]
        flags += limit
        flags += "S" if self._stalled else "."
        flags += "."
        flags += letter.upper()
        if self.model != "phd-ultra":
            flags += "T" if self._target_reached else "."
        return [f"{rate_fl_s} {time_field} {volume_fl} {flags}"]

    def _cmd_force(self, args: list[str]) -> list[str]:
        """``force [%]``, 1-100 (§1.5 [I: flowchem's range])."""
        if not args:
            return [f"{self._force_pct}%"]
        if len(args) > 1:
            raise _ArgumentError(args[1])
        value = _parse_number(args[0].rstrip("%"))
        if value != int(value):
            raise _ArgumentError(args[0])
        if not 1 <= value <= 100:
            raise _RangeError(args[0], "1", "100")
        self._force_pct = int(value)
        return []

    def _cmd_address(self, args: list[str]) -> list[str]:
        """``address [0-99]`` (§1.2 [S]); the reply's prompt already uses the new address."""
        if not args:
            return [str(self.address)]
        if len(args) > 1 or not args[0].isdigit():
            raise _ArgumentError(args[-1])
        value = int(args[0])
        if value > 99:
            raise _RangeError(args[0], "0", "99")
        self.address = value
        return []

    def _cmd_nvram(self, args: list[str]) -> list[str]:
        """``nvram [on|off|none]`` (§1.3 [S]: ``off`` on Legato, ``none`` on PHD ULTRA).

        Stored and reported only; it does not change :meth:`power_on_reset` [I].
        """
        if not args:
            return [f"NVRAM {self._nvram}"]
        if len(args) > 1 or args[0] not in ("on", "off", "none"):
            raise _ArgumentError(args[-1])
        self._nvram = args[0]
        return []

    def _cmd_echo(self, args: list[str]) -> list[str]:
        """``echo [on|off]`` (§1.3 [S]); when on, each line is echoed before its reply [I]."""
        if not args:
            return [f"Echo {'on' if self._echo else 'off'}"]
        if len(args) > 1 or args[0] not in ("on", "off"):
            raise _ArgumentError(args[-1])
        self._echo = args[0] == "on"
        return []
