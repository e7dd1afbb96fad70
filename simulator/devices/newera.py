"""Byte-level emulator of New Era NE-300/500/1000/4000 syringe pumps (and a daisy chain of them).

Written from the New Era manuals as summarised in hardware-reference §2 (NE-500 manual
1200-03 §8, NE-1000 manual RS-232 chapter); it imports nothing of ``drivers`` or
``chipctl`` (DESIGN.md, "Dependency direction"), so a misreading of the manual by the
driver's author is not shared here. Behaviour follows the manual first; where the manual
is silent the choice is marked **[I]** (inferred, to confirm on hardware).

What is emulated:

- Both framings (§2.2-2.3). Basic: ``[addr]CMD[data] CR`` in, ``STX data ETX`` out. Safe:
  ``STX len data crc_hi crc_lo ETX`` both ways, CRC-16/XModem over ``data``. In basic mode
  the pump accepts either framing and answers in the current mode; ``SAF<n>`` switches
  modes (n = 0: basic) and sets the communications watchdog. A bad CRC gets ``?COM``.
- The reply grammar (§2.4): ``<addr 2 digits><status I|W|S|P|T|U|X>[data|?error]`` or an
  alarm ``<addr>A?<R|S|T|E|O>``; a pending alarm is reported (and so acknowledged) by the
  next valid command, which is not executed.
- The commands of §2.5 (DIA, RAT, VOL, DIR, RUN, PUR, STP, DIS, CLD, VER, SAF, ADR, and
  the flags ALR, BUZ, ROM, PHN), network addressing, ``*`` system commands and the network
  command burst.
- Kinetics on the world's timeline: the plunger moves at the set rate, the pump stops at
  the target volume, stalls above its force limit (back pressure from the hydraulics) or
  at the end of the syringe's travel, and the safe-mode watchdog stops it.
- Faults: power-on reset (``A?R``), stall (``A?S``), any alarm, and the link faults of
  :class:`simulator.faults.CommFaults`.

Each :class:`SimNewEraPump` is a complete emulated device (``advance_to``/``receive``/
``take_output``, the structural emulator interface of docs/CONTRIBUTING.md). Several pumps
on one daisy-chained cable are served by a :class:`SimNewEraBus`, which has the same
interface.
"""

from __future__ import annotations

import binascii
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum

from simulator.faults import CommFaults
from simulator.world import World

__all__ = [
    "MODELS",
    "ModelSpec",
    "SimNewEraBus",
    "SimNewEraPump",
    "crc16_xmodem",
    "format_number",
]

STX = 0x02
ETX = 0x03
CR = 0x0D

#: A safe-mode packet is discarded when the gap between two of its bytes exceeds this (§2.3).
SAFE_INTER_BYTE_GAP_S = 0.5
#: ``SAF <n>`` accepts 0..255 s (§2.3; nesp-lib's limit).
SAFE_TIMEOUT_LIMIT_S = 255
#: Syringe inside-diameter limits accepted by ``DIA`` [I: nesp-lib's limits, §2.5].
DIAMETER_MIN_MM = 0.1
DIAMETER_MAX_MM = 80.0
#: ``DIA`` at or below this sets the volume units to uL, above it to mL (§2.5, NE-500 manual).
DIAMETER_UL_UNITS_MAX_MM = 14.0
#: Largest number the pump reads or writes: 4 digits (§2.5).
NUMBER_MAX = 9999.0

_RATE_UNITS_TO_UL_MIN = {"UM": 1.0, "MM": 1000.0, "UH": 1.0 / 60.0, "MH": 1000.0 / 60.0}
_VOLUME_UNITS_TO_UL = {"UL": 1.0, "ML": 1000.0}
_NUMBER_RE = re.compile(r"(\d*)(?:\.(\d*))?")


def crc16_xmodem(data: bytes) -> int:
    """Return the CRC-16/CCITT (XModem: poly 0x1021, init 0) of ``data`` (§2.3)."""
    return binascii.crc_hqx(data, 0)


def format_number(value: float) -> str:
    """Format a number the way the pump prints it: 4 significant digits and a decimal point.

    The manual allows at most 4 digits plus the decimal point and at most 3 digits after it
    (§2.5). The point is always printed [I], so ``2880`` reads ``2880.``; nesp-lib's
    parser insists on a point (§2.6).
    """
    for decimals in (3, 2, 1):
        text = f"{value:.{decimals}f}"
        if sum(c.isdigit() for c in text) <= 4:
            return text
    return f"{value:.0f}."


def _parse_number(text: str) -> float | None:
    """Parse a number argument; None if it is malformed or longer than the manual allows."""
    match = _NUMBER_RE.fullmatch(text)
    if match is None or not text or text == ".":
        return None
    whole, frac = match.group(1), match.group(2) or ""
    if len(whole) + len(frac) > 4 or len(frac) > 3:
        return None
    return float(text)


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """What differs between pump models.

    Attributes:
        model_number: reported by ``VER`` (``NE<model_number>V...``).
        firmware: the version part of the ``VER`` reply.
        max_force_n: the force above which the motor stalls.
        min_speed_mm_min: slowest plunger speed; with the syringe area it bounds ``RAT``.
        max_speed_mm_min: fastest plunger speed (also the purge speed).
    """

    model_number: int
    firmware: str
    max_force_n: float
    min_speed_mm_min: float
    max_speed_mm_min: float


# [I] Speeds derived from the NE-1000 brochure rate range (0.73 uL/h on a 1 mL syringe to
# 2100 mL/h on a 60 mL one) divided by those syringes' areas; force ~ 35 lbf. The other
# models are given the same mechanics, which the simulator does not need to tell apart.
_NE1000_MECHANICS = {"max_force_n": 156.0, "min_speed_mm_min": 0.00068, "max_speed_mm_min": 63.0}

#: Supported models by name.
MODELS: dict[str, ModelSpec] = {
    "NE-300": ModelSpec(300, "V3.928", **_NE1000_MECHANICS),
    "NE-500": ModelSpec(500, "V3.928", **_NE1000_MECHANICS),
    "NE-1000": ModelSpec(1000, "V3.928", **_NE1000_MECHANICS),
    "NE-4000": ModelSpec(4000, "V3.928", **_NE1000_MECHANICS),
}


class _Motion(Enum):
    """The pump's motion state; the value is the reply status character (§2.4)."""

    STOPPED = "S"
    PAUSED = "P"
    INFUSING = "I"
    WITHDRAWING = "W"
    PURGING = "X"


@dataclass(slots=True)
class _Settings:
    """The non-volatile settings: they survive a power cycle (§2.3, §2.7)."""

    address: int = 0
    baud_rate: int = 19200
    safe_timeout_s: int = 0
    diameter_mm: float = 14.50  # [I] factory default not documented
    rate: float = 10.0
    rate_units: str = "UM"
    volume: float = 0.0
    volume_units: str = "UL"
    direction: str = "INF"
    alarm_enabled: int = 1
    buzzer: int = 0
    phase: int = 1


class _Error(Exception):
    """A command error; ``code`` is the reply text after the status (``?``, ``?OOR``...)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


_COMMANDS = (
    "DIA",
    "RAT",
    "VOL",
    "DIR",
    "RUN",
    "PUR",
    "STP",
    "DIS",
    "CLD",
    "VER",
    "SAF",
    "ADR",
    "ALR",
    "BUZ",
    "ROM",
    "PHN",
)


#: Commands that only store a number [I]: name -> (setting, lowest, highest value).
_FLAGS: dict[str, tuple[str, int, int]] = {
    "ALR": ("alarm_enabled", 0, 1),
    "BUZ": ("buzzer", 0, 1),
    "PHN": ("phase", 1, 41),
}


@dataclass(slots=True)
class _Frame:
    """One command frame taken off the wire."""

    text: str
    safe: bool
    crc_ok: bool = True


@dataclass(slots=True)
class _Receiver:
    """Splits the incoming byte stream into frames (both framings, §2.2-2.3)."""

    line: bytearray = field(default_factory=bytearray)
    packet: bytearray = field(default_factory=bytearray)
    last_packet_byte_s: float = 0.0

    def feed(self, data: bytes, now_s: float, *, safe_mode: bool) -> list[_Frame]:
        frames: list[_Frame] = []
        for byte in data:
            if self.packet:
                if now_s - self.last_packet_byte_s > SAFE_INTER_BYTE_GAP_S:
                    self.packet.clear()  # §2.3: a gap > 0.5 s discards the packet
                else:
                    self.packet.append(byte)
                    self.last_packet_byte_s = now_s
                    frame = self._packet_frame()
                    if frame is not None:
                        frames.append(frame)
                    continue
            if byte == STX and not self.line:
                self.packet.append(byte)
                self.last_packet_byte_s = now_s
            elif safe_mode:
                continue  # [I] in safe mode, bytes outside a packet are line noise
            elif byte == CR:
                frames.append(_Frame(self.line.decode("latin-1"), safe=False))
                self.line.clear()
            else:
                self.line.append(byte)
        return frames

    def _packet_frame(self) -> _Frame | None:
        if len(self.packet) < 2:
            return None
        length = self.packet[1]
        if length < 4:  # [I] impossible length byte: drop the packet silently
            self.packet.clear()
            return None
        if len(self.packet) < 1 + length:
            return None
        packet = bytes(self.packet)
        self.packet.clear()
        data, crc, etx = packet[2:-3], packet[-3:-1], packet[-1]
        ok = etx == ETX and int.from_bytes(crc, "big") == crc16_xmodem(data)
        return _Frame(data.decode("latin-1"), safe=True, crc_ok=ok)

    def clear(self) -> None:
        self.line.clear()
        self.packet.clear()


def _normalise(text: str) -> str:
    """Strip spaces and control characters and upper-case (§2.2)."""
    return "".join(c for c in text if c.isprintable() and not c.isspace()).upper()


def _split_address(text: str) -> tuple[int, str]:
    """Split ``"12RAT5"`` into ``(12, "RAT5")``; no digits means address 0 (§2.1)."""
    match = re.match(r"\d*", text)
    digits = match.group(0) if match else ""
    return (int(digits) if digits else 0), text[len(digits) :]


def _split_command(body: str) -> tuple[str | None, str]:
    """Split ``"RAT250UM"`` into ``("RAT", "250UM")``; ``(None, body)`` if unknown."""
    if not body:
        return "", ""
    for name in _COMMANDS:
        if body.startswith(name):
            return name, body[len(name) :]
    return None, body


class SimNewEraPump:
    """One emulated New Era syringe pump.

    It is a :class:`simulator.world.SyringeMechanics` (``last_step_displaced_ul``,
    ``back_pressure_kpa``) and registers itself with ``world`` if given; without a world it
    steps itself in :meth:`advance_to`.

    Args:
        world: the shared timeline (hydraulics reads the displaced volume each step).
        address: the network address 0..99 (a non-volatile setting).
        model: ``"NE-300"``, ``"NE-500"``, ``"NE-1000"`` or ``"NE-4000"``.
        faults: link faults; a fresh, inactive :class:`CommFaults` by default.
        power_on_alarm: start as if just powered on, with the ``A?R`` alarm pending (§2.7).
    """

    def __init__(
        self,
        world: World | None = None,
        *,
        address: int = 0,
        model: str = "NE-1000",
        faults: CommFaults | None = None,
        power_on_alarm: bool = True,
    ) -> None:
        """Build the pump in its factory state; register with ``world``."""
        if model not in MODELS:
            raise ValueError(f"unknown New Era model {model!r}; known: {', '.join(MODELS)}")
        if not 0 <= address <= 99:
            raise ValueError(f"New Era address must be 0..99, got {address}")
        self.model = model
        self.spec = MODELS[model]
        self.faults = faults if faults is not None else CommFaults()
        self.world = world
        #: Motor force above which the pump stalls (compared with back pressure x area).
        self.stall_force_n = self.spec.max_force_n
        self.last_step_displaced_ul = 0.0
        self.back_pressure_kpa = 0.0
        #: Liquid in the syringe and its capacity; infinite until :meth:`load_syringe`.
        self.syringe_contents_ul = math.inf
        self.syringe_capacity_ul = math.inf
        self._settings = _Settings(address=address)
        self._saved_rate = (self._settings.rate, self._settings.rate_units)
        self._now_s: float | None = None
        self._rx = _Receiver()
        self._out = bytearray()
        self._motion = _Motion.STOPPED
        self._run_done_ul = 0.0
        self._infused_ul = 0.0
        self._withdrawn_ul = 0.0
        self._alarm: str | None = None
        self._watchdog_armed = False
        self._last_valid_s = 0.0
        self._safe_mode = False
        if world is not None:
            world.add(self)
        self._power_on(alarm=power_on_alarm)

    # ----------------------------------------------------------------- observation
    @property
    def address(self) -> int:
        """The network address (0..99)."""
        return self._settings.address

    @property
    def baud_rate(self) -> int:
        """The configured baud rate (recorded only: a PTY does not enforce it, §8.1)."""
        return self._settings.baud_rate

    @property
    def safe_mode(self) -> bool:
        """Tell whether the pump talks safe-mode (CRC) frames."""
        return self._safe_mode

    @property
    def safe_timeout_s(self) -> int:
        """The safe-mode communications timeout (0 in basic mode)."""
        return self._settings.safe_timeout_s

    @property
    def status_char(self) -> str:
        """The status character the next reply would carry (I/W/S/P/X)."""
        return self._motion.value

    @property
    def is_running(self) -> bool:
        """Tell whether the motor moves."""
        return self._motion in (_Motion.INFUSING, _Motion.WITHDRAWING, _Motion.PURGING)

    @property
    def alarm(self) -> str | None:
        """The pending, unacknowledged alarm code (``"R"``, ``"S"``, ``"T"``...), or None."""
        return self._alarm

    @property
    def diameter_mm(self) -> float:
        """The syringe inside diameter."""
        return self._settings.diameter_mm

    @property
    def rate_ul_min(self) -> float:
        """The set pumping rate."""
        return self._settings.rate * _RATE_UNITS_TO_UL_MIN[self._settings.rate_units]

    @property
    def infused_ul(self) -> float:
        """Volume infused since the last ``CLD INF``."""
        return self._infused_ul

    @property
    def withdrawn_ul(self) -> float:
        """Volume withdrawn since the last ``CLD WDR``."""
        return self._withdrawn_ul

    # ---------------------------------------------------------------- fault injection
    def load_syringe(self, contents_ul: float, capacity_ul: float | None = None) -> None:
        """Put ``contents_ul`` of liquid in a syringe of ``capacity_ul`` (end-of-travel model).

        Infusing past empty, or withdrawing past full, stalls the motor (``A?S``) [I: the
        pumps have no end-of-travel switch; the plunger hits the barrel end and stalls].
        """
        self.syringe_contents_ul = contents_ul
        self.syringe_capacity_ul = capacity_ul if capacity_ul is not None else math.inf

    def power_cycle(self) -> None:
        """Emulate a power interruption: motion and volatile state are lost, ``A?R`` pending.

        Non-volatile settings survive (§2.3, §2.7), except a rate changed while pumping
        (§2.5: not saved). The dispensed-volume counters are cleared [I].
        """
        self._power_on(alarm=True)

    def inject_stall(self) -> None:
        """Stall the motor now: it stops and raises ``A?S`` (§2.4)."""
        self._raise_alarm("S")

    def inject_alarm(self, code: str) -> None:
        """Raise alarm ``code`` (one of R, S, T, E, O) now, stopping the pump."""
        if code not in ("R", "S", "T", "E", "O"):
            raise ValueError(f"unknown New Era alarm code {code!r}")
        self._raise_alarm(code)

    # ------------------------------------------------------------- emulator interface
    def advance_to(self, t_s: float) -> None:
        """Bring the pump (and the world it lives in) to ``t_s``."""
        if self.world is not None:
            self.world.advance_to(t_s)
            if self._now_s is None or t_s > self._now_s:
                self._now_s = t_s
        elif self._now_s is None:
            self._now_s = t_s
        elif t_s > self._now_s:
            self.step(self._now_s, t_s)

    def receive(self, data: bytes) -> None:
        """Take bytes from the host; replies are queued for :meth:`take_output`."""
        self.faults.check_connected()
        self._accept(data)

    def take_output(self) -> bytes:
        """Return and clear what the pump has sent."""
        self.faults.check_connected()
        return self._drain()

    def _accept(self, data: bytes) -> None:
        now_s = self._now_s if self._now_s is not None else 0.0
        for frame in self._rx.feed(data, now_s, safe_mode=self._safe_mode):
            self._handle_frame(frame, now_s)

    def _drain(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    # ------------------------------------------------------------------- kinetics
    def step(self, t0_s: float, t1_s: float) -> None:
        """Move the plunger from ``t0_s`` to ``t1_s``; stop at targets, stalls, timeouts."""
        self.last_step_displaced_ul = 0.0
        if self.is_running and self._force_n() > self.stall_force_n:
            self._raise_alarm("S")
        t_s = t0_s
        while t_s < t1_s:
            self._now_s = t_s
            deadline_s = self._watchdog_deadline_s()
            if deadline_s is not None and deadline_s <= t_s:
                self._watchdog_armed = False
                self._raise_alarm("T")  # §2.3: no valid packet within the timeout
                continue
            t_next_s = t1_s if deadline_s is None else min(t1_s, deadline_s)
            if not self.is_running:
                t_s = t_next_s
                continue
            rate_ul_s = self._motion_rate_ul_min() / 60.0
            limit_ul, limit_kind = self._motion_limit_ul()
            dt_s = t_next_s - t_s
            if rate_ul_s * dt_s >= limit_ul:
                self._displace(limit_ul)
                t_s = t_s + (limit_ul / rate_ul_s if rate_ul_s > 0 else 0.0)
                self._now_s = t_s
                if limit_kind == "target":
                    self._motion = _Motion.STOPPED
                    self._run_done_ul = 0.0
                else:
                    self._raise_alarm("S")  # end of travel
            else:
                self._displace(rate_ul_s * dt_s)
                t_s = t_next_s
        self._now_s = t1_s

    def _force_n(self) -> float:
        return abs(self.back_pressure_kpa) * self._area_mm2() * 1e-3  # kPa x mm2 = mN

    def _area_mm2(self) -> float:
        return math.pi * (self._settings.diameter_mm / 2.0) ** 2

    def _rate_limits_ul_min(self) -> tuple[float, float]:
        area_mm2 = self._area_mm2()  # 1 mm3 = 1 uL
        return self.spec.min_speed_mm_min * area_mm2, self.spec.max_speed_mm_min * area_mm2

    def _motion_rate_ul_min(self) -> float:
        if self._motion is _Motion.PURGING:
            return self._rate_limits_ul_min()[1]
        return self.rate_ul_min

    def _infusing(self) -> bool:
        if self._motion is _Motion.PURGING:
            return self._settings.direction == "INF"
        return self._motion is _Motion.INFUSING

    def _motion_limit_ul(self) -> tuple[float, str]:
        """Return the volume left before the motion must end, and why."""
        if self._infusing():
            travel_ul = self.syringe_contents_ul
        elif math.isinf(self.syringe_capacity_ul):
            travel_ul = math.inf
        else:
            travel_ul = self.syringe_capacity_ul - self.syringe_contents_ul
        target_ul = math.inf
        if self._motion is not _Motion.PURGING and self._settings.volume > 0:
            volume_ul = self._settings.volume * _VOLUME_UNITS_TO_UL[self._settings.volume_units]
            target_ul = max(0.0, volume_ul - self._run_done_ul)
        if target_ul <= travel_ul:
            return target_ul, "target"
        return max(0.0, travel_ul), "travel"

    def _displace(self, volume_ul: float) -> None:
        if self._infusing():
            self._infused_ul += volume_ul
            self.syringe_contents_ul -= volume_ul
            self.last_step_displaced_ul += volume_ul
        else:
            self._withdrawn_ul += volume_ul
            self.syringe_contents_ul += volume_ul
            self.last_step_displaced_ul -= volume_ul
        self._run_done_ul += volume_ul

    def _watchdog_deadline_s(self) -> float | None:
        if not (self._safe_mode and self._watchdog_armed):
            return None
        return self._last_valid_s + self._settings.safe_timeout_s

    # --------------------------------------------------------------- alarms, power
    def _power_on(self, *, alarm: bool) -> None:
        # §2.5: a rate changed while pumping is not saved to NVRAM.
        self._settings.rate, self._settings.rate_units = self._saved_rate
        self._motion = _Motion.STOPPED
        self._run_done_ul = 0.0
        self._infused_ul = self._withdrawn_ul = 0.0
        self._rx.clear()
        self._safe_mode = self._settings.safe_timeout_s > 0
        self._watchdog_armed = False  # §2.3: the timer starts after the first valid packet
        self._alarm = None
        if alarm:
            self._raise_alarm("R")

    def _raise_alarm(self, code: str) -> None:
        """Stop and latch alarm ``code``; in safe mode announce it unsolicited (§2.3)."""
        self._motion = _Motion.STOPPED
        self._run_done_ul = 0.0
        self._alarm = code
        if self._safe_mode:
            self._send(f"{self.address:02d}A?{code}", safe=True)

    # --------------------------------------------------------------- command handling
    def _send(self, text: str, *, safe: bool) -> None:
        data = text.encode("ascii")
        if safe:
            frame = bytes([STX, len(data) + 4]) + data
            frame += crc16_xmodem(data).to_bytes(2, "big") + bytes([ETX])
        else:
            frame = bytes([STX]) + data + bytes([ETX])
        self._out += self.faults.filter_reply(frame)

    def _handle_frame(self, frame: _Frame, now_s: float) -> None:
        text = _normalise(frame.text)
        if not frame.crc_ok:
            # [I] answer a corrupt packet only if it still looks addressed to this pump,
            # so that a chain does not answer ?COM in chorus.
            address, _ = _split_address(text)
            if text.startswith("*") or address == self.address:
                self._reply(f"{self._motion.value}?COM")
            return
        if text.startswith("*"):
            self._execute(text[1:], now_s)
        elif "*" in text:
            # §2.5 network command burst: "0RAT100*1RAT250*"; the replies collide.
            for part in text.split("*"):
                if part:
                    self._dispatch(part, now_s)
        else:
            self._dispatch(text, now_s)

    def _dispatch(self, text: str, now_s: float) -> None:
        address, body = _split_address(text)
        if address == self.address:
            self._execute(body, now_s)

    def _execute(self, body: str, now_s: float) -> None:
        # Any valid frame for this pump feeds the watchdog (§2.3).
        if self._safe_mode:
            self._watchdog_armed = True
            self._last_valid_s = now_s
        name, arg = _split_command(body)
        if self._alarm is not None:
            # §2.4: the reply reports (and so acknowledges) the alarm; nothing is changed.
            # [I] Except the link setting SAF<n>, which takes effect so that the alarm
            # reply comes in the new framing: nesp-lib's first exchange (SAF<n> on a pump
            # fresh from power-on, §2.6) reads its reply in the framing it asked for.
            code, self._alarm = self._alarm, None
            if name == "SAF" and arg.isdigit() and int(arg) <= SAFE_TIMEOUT_LIMIT_S:
                self._run_command(name, arg)
                self._watchdog_armed = self._safe_mode
            self._reply(f"A?{code}")
            return
        try:
            if name is None:
                raise _Error("?")
            data = self._run_command(name, arg)
        except _Error as err:
            self._reply(f"{self._motion.value}{err.code}")
            return
        if name == "SAF" and arg:
            self._watchdog_armed = self._safe_mode
            self._last_valid_s = now_s
        self._reply(f"{self._motion.value}{data}")

    def _reply(self, status_and_data: str) -> None:
        """Queue a reply in the current framing (§2.3: the mode after the command)."""
        self._send(f"{self.address:02d}{status_and_data}", safe=self._safe_mode)

    def _run_command(self, name: str, arg: str) -> str:
        """Execute one command; return the reply data ("" for set commands, §2.4)."""
        s = self._settings
        match name:
            case "":
                return ""  # a packet with no command is a status query
            case "DIA":
                if not arg:
                    return format_number(s.diameter_mm)
                self._require_stopped()
                s.diameter_mm = self._number(arg, DIAMETER_MIN_MM, DIAMETER_MAX_MM)
                s.volume_units = "UL" if s.diameter_mm <= DIAMETER_UL_UNITS_MAX_MM else "ML"
                return ""
            case "RAT":
                return self._cmd_rate(arg)
            case "VOL":
                if not arg:
                    return format_number(s.volume) + s.volume_units
                if arg in _VOLUME_UNITS_TO_UL:
                    s.volume_units = arg
                else:
                    s.volume = self._number(arg, 0.0, NUMBER_MAX)
                return ""
            case "DIR":
                return self._cmd_direction(arg)
            case "RUN":
                return self._cmd_run(arg)
            case "PUR":
                if not self.is_running:
                    self._motion = _Motion.PURGING
                return ""
            case "STP":
                # [I] NE keypad semantics: a first stop pauses the program, a second ends it.
                if self._motion in (_Motion.INFUSING, _Motion.WITHDRAWING):
                    self._motion = _Motion.PAUSED
                else:
                    self._motion = _Motion.STOPPED
                    self._run_done_ul = 0.0
                return ""
            case "DIS":
                return self._cmd_dispensed()
            case "CLD":
                if arg == "INF":
                    self._infused_ul = 0.0
                elif arg == "WDR":
                    self._withdrawn_ul = 0.0
                else:
                    raise _Error("?OOR")
                return ""
            case "VER":
                return f"NE{self.spec.model_number}{self.spec.firmware}"
            case "SAF":
                if not arg:
                    return str(s.safe_timeout_s)
                if not arg.isdigit() or int(arg) > SAFE_TIMEOUT_LIMIT_S:
                    raise _Error("?OOR")
                s.safe_timeout_s = int(arg)
                self._safe_mode = s.safe_timeout_s > 0
                return ""
            case "ADR":
                return self._cmd_address(arg)
            case "ROM":
                return "1" if self.is_running else "0"  # [I] seen in public code only
            case _:
                return self._cmd_flag(name, arg)

    def _number(self, text: str, low: float, high: float) -> float:
        value = _parse_number(text)
        if value is None:
            raise _Error("?OOR") if re.fullmatch(r"[\d.]+", text) else _Error("?")
        if not low <= value <= high:
            raise _Error("?OOR")
        return value

    def _require_stopped(self) -> None:
        if self.is_running:
            raise _Error("?NA")  # [I] settings other than the rate are fixed while pumping

    def _cmd_rate(self, arg: str) -> str:
        s = self._settings
        if not arg:
            return format_number(s.rate) + s.rate_units
        match = re.fullmatch(r"([\d.]*)(UM|MM|UH|MH)?", arg)
        if match is None:
            raise _Error("?")
        number, units = match.group(1), match.group(2) or s.rate_units
        if units != s.rate_units and self.is_running:
            raise _Error("?NA")  # §2.5: the units cannot change while pumping
        rate = s.rate
        if number:
            rate = self._number(number, 0.0, NUMBER_MAX)
        low_ul_min, high_ul_min = self._rate_limits_ul_min()
        rate_ul_min = rate * _RATE_UNITS_TO_UL_MIN[units]
        if not low_ul_min <= rate_ul_min <= high_ul_min:
            raise _Error("?OOR")
        s.rate, s.rate_units = rate, units
        if not self.is_running:
            self._saved_rate = (rate, units)
        return ""

    def _cmd_direction(self, arg: str) -> str:
        s = self._settings
        if not arg:
            return s.direction
        if arg not in ("INF", "WDR", "REV"):
            raise _Error("?NA" if arg == "STK" else "?OOR")  # [I] STK not emulated
        self._require_stopped()
        if arg == "REV":
            s.direction = "WDR" if s.direction == "INF" else "INF"
        else:
            s.direction = arg
        return ""

    def _cmd_run(self, arg: str) -> str:
        if arg and not arg.isdigit():
            raise _Error("?")
        if self.is_running:
            return ""
        if self._motion is not _Motion.PAUSED:
            self._run_done_ul = 0.0
        low_ul_min, high_ul_min = self._rate_limits_ul_min()
        if not low_ul_min <= self.rate_ul_min <= high_ul_min:
            raise _Error("?OOR")  # [I] a DIA change left the rate out of range
        infuse = self._settings.direction == "INF"
        self._motion = _Motion.INFUSING if infuse else _Motion.WITHDRAWING
        return ""

    def _cmd_dispensed(self) -> str:
        units = self._settings.volume_units
        factor = _VOLUME_UNITS_TO_UL[units]
        if units == "UL" and max(self._infused_ul, self._withdrawn_ul) > NUMBER_MAX:
            units, factor = "ML", 1000.0  # [I] too big for 4 digits of uL
        infused = format_number(self._infused_ul / factor)
        withdrawn = format_number(self._withdrawn_ul / factor)
        return f"I{infused}W{withdrawn}{units}"

    def _cmd_address(self, arg: str) -> str:
        if not arg:
            return str(self.address)
        match = re.fullmatch(r"(\d{1,2})(?:B(\d+))?", arg)
        if match is None:
            raise _Error("?OOR")
        baud = match.group(2)
        if baud is not None:
            if int(baud) not in (19200, 9600, 2400, 1200, 300):
                raise _Error("?OOR")
            self._settings.baud_rate = int(baud)
        self._settings.address = int(match.group(1))
        return ""

    def _cmd_flag(self, name: str, arg: str) -> str:
        """ALR, BUZ, PHN: stored settings, not otherwise modelled [I]."""
        s = self._settings
        attr, low, high = _FLAGS[name]
        if not arg:
            value: int = getattr(s, attr)
            return f"{value:02d}" if name == "PHN" else str(value)
        if not arg.isdigit():
            raise _Error("?OOR")
        if not low <= int(arg) <= high:
            raise _Error("?OOR")
        setattr(s, attr, int(arg))
        return ""


class SimNewEraBus:
    """Several emulated pumps on one daisy-chained cable (§2.1).

    Every pump sees every byte, as on the real network, and answers only what is
    addressed to it (or ``*`` system commands, which all pumps execute). Replies appear in
    the order they are produced.

    Args:
        pumps: the pumps on the chain; their addresses must differ.
        faults: faults of the shared cable (each pump also has its own).
    """

    def __init__(
        self, pumps: Iterable[SimNewEraPump] = (), *, faults: CommFaults | None = None
    ) -> None:
        """Chain ``pumps`` together."""
        self.faults = faults if faults is not None else CommFaults()
        self._pumps: list[SimNewEraPump] = []
        self._out = bytearray()
        for pump in pumps:
            self.add(pump)

    def add(self, pump: SimNewEraPump) -> None:
        """Connect ``pump`` at the end of the chain."""
        if pump.address in self.pumps:
            raise ValueError(f"two pumps at address {pump.address} on one New Era bus")
        self._pumps.append(pump)

    @property
    def pumps(self) -> dict[int, SimNewEraPump]:
        """The pumps by their current address."""
        return {pump.address: pump for pump in self._pumps}

    def advance_to(self, t_s: float) -> None:
        """Advance every pump (and their worlds) to ``t_s``."""
        for pump in self._pumps:
            pump.advance_to(t_s)
            self._out += pump._drain()

    def receive(self, data: bytes) -> None:
        """Put ``data`` on the cable: every pump reads it."""
        self.faults.check_connected()
        for byte in data:
            for pump in self._pumps:
                if pump.faults.disconnected:
                    continue  # [I] an unplugged pump just stops answering on the chain
                pump._accept(bytes([byte]))
                self._out += pump._drain()

    def take_output(self) -> bytes:
        """Return and clear what the pumps have sent, through the cable's faults."""
        self.faults.check_connected()
        for pump in self._pumps:
            self._out += pump._drain()
        out = bytes(self._out)
        self._out.clear()
        return self.faults.filter_reply(out) if out else b""
