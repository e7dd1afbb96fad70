"""Tecan Cavro XCalibur / XLP 6000 protocol: framing, status byte, commands, unit conversions.

Pure functions, no I/O (CONTRIBUTING.md, "Drivers"). Section numbers refer to
``shared/reference/hardware-reference.md`` §3, which summarises the XCalibur operating manual
733085-B (§3.1-3.6, App. G), the XLP 6000 manual 734237-C and the XP 3000 manual 725730C.
Items marked [I] are inferred from public driver code or from consistency between manuals,
not read in a manual; confirm them on hardware.

Two framings exist (§3.3, §3.4):

* **DT** (data terminal, ASCII): ``/`` + address + command string + CR. The string runs when
  it ends with ``R``; report commands (``?``, ``Q``, ``&``...) run without it. The answer is
  ``/0`` + status byte + data + ETX + CR + LF.
* **OEM**: STX + address + sequence byte + command string + ETX + checksum, where the
  checksum is the XOR of every byte from STX to ETX. The answer is STX + ``0`` + status byte
  + data + ETX + checksum. Once a pump has seen an OEM frame it ignores DT until it is
  power-cycled (§3.1), so a driver must pick one framing and stay with it.

Every parser raises :class:`drivers.errors.ReplyError` (and nothing else) on bad input, so
line noise can never crash a caller with an ``IndexError``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Final, Literal

from drivers.errors import ReplyError

__all__ = [
    "ALL_PUMPS_ADDRESS",
    "CR",
    "CavroErrorCode",
    "CavroModel",
    "CavroReply",
    "CavroStatus",
    "ETX",
    "FORCE_FULL",
    "FORCE_HALF",
    "FORCE_THIRD",
    "LF",
    "MASTER_ADDRESS",
    "MAX_TOP_SPEED_HZ",
    "MIN_TOP_SPEED_HZ",
    "STX",
    "absolute_move",
    "address_for_switch",
    "build_dt_command",
    "build_oem_command",
    "cutoff_speed",
    "decode_status",
    "dispense_relative",
    "dt_reply_complete",
    "encode_status",
    "error_name",
    "full_stroke_increments",
    "hz_to_rate_ul_min",
    "increments_to_ul",
    "initialize_plunger",
    "initialize_plunger_and_valve",
    "oem_checksum",
    "oem_reply_complete",
    "oem_sequence_byte",
    "parse_dt_reply",
    "parse_oem_reply",
    "parse_plunger_position",
    "parse_valve_port",
    "pickup_relative",
    "rate_ul_min_to_hz",
    "set_resolution",
    "slope",
    "start_speed",
    "speed_pulses_per_stroke",
    "terminate",
    "top_speed",
    "ul_to_increments",
    "valve_to_port",
]

STX: Final = 0x02
ETX: Final = 0x03
CR: Final = 0x0D
LF: Final = 0x0A

#: The address every pump answers to (§3.2: the host/master is 0x30).
MASTER_ADDRESS: Final = "0"
#: Broadcast address: every pump executes, none can be queried (§3.2).
ALL_PUMPS_ADDRESS: Final = "_"

#: Initialisation force codes (§3.6): full force, half force, one third of full force.
#: Half or one third is for syringes of 500 uL and below, whose plungers can be crushed.
FORCE_FULL: Final = 0
FORCE_HALF: Final = 1
FORCE_THIRD: Final = 2

#: Top speed ``V`` range in pulses per second, both models (§3.6; XLP manual "?2").
MIN_TOP_SPEED_HZ: Final = 5
MAX_TOP_SPEED_HZ: Final = 6000

CavroModel = Literal["XCalibur", "XLP6000"]

# Full-stroke increments per resolution mode ``N`` (§3.6). XCalibur / XP 3000: 3000 in
# standard mode, 24000 with fine positioning. XLP 6000: positions are half-steps (N0,
# 6000) or microsteps (N1, N2, 48000), per the XLP manual's "?" report. N2 differs from N1
# only in the unit of the speed commands (microsteps instead of half-steps) [I].
_FULL_STROKE_INCREMENTS: Final[dict[str, tuple[int, int, int]]] = {
    "XCalibur": (3000, 24000, 24000),
    "XLP6000": (6000, 48000, 48000),
}

# Speed pulses per full stroke. In N0 and N1 the speeds V/v/c are half-steps per second
# (XP 3000 App. G: "V 5..6000 end velocity in HS/s") and a full stroke is 6000 half-steps on
# both models: one XCalibur increment is two half-steps (tecancavro's move-time formula
# doubles increments into half-steps [I]), which matches the XCalibur's 20 min stroke at
# 5 Hz. In N2 speeds count position increments [I].
_HALF_STEPS_PER_STROKE: Final = 6000


class CavroErrorCode(IntEnum):
    """Error codes in bits 3-0 of the status byte (§3.5; XP 3000 App. G table)."""

    NONE = 0
    INIT_ERROR = 1
    INVALID_COMMAND = 2
    INVALID_OPERAND = 3
    INVALID_COMMAND_SEQUENCE = 4
    FLUID_DETECTION = 5
    EEPROM_FAILURE = 6
    NOT_INITIALISED = 7
    PLUNGER_OVERLOAD = 9
    VALVE_OVERLOAD = 10
    PLUNGER_MOVE_NOT_ALLOWED = 11
    COMMAND_OVERFLOW = 15


_ERROR_NAMES: Final[dict[int, str]] = {
    0: "no error",
    1: "initialisation error",
    2: "invalid command",
    3: "invalid operand",
    4: "invalid command sequence",
    5: "fluid detection error",
    6: "EEPROM failure",
    7: "device not initialised",
    9: "plunger overload (occlusion or stall; re-initialise)",
    10: "valve overload (re-initialise the valve)",
    11: "plunger move not allowed (valve in bypass or throughput position)",
    15: "command overflow (move, set or valve command sent while busy)",
}


def error_name(code: int) -> str:
    """Return the manual's name for error ``code`` (codes 8, 12-14 are unassigned)."""
    return _ERROR_NAMES.get(code, f"unknown error {code}")


@dataclass(frozen=True, slots=True)
class CavroStatus:
    """A decoded status byte.

    Args:
        ready: bit 5: the pump accepts move and set commands; when busy, only report and
            terminate commands are accepted (§3.5).
        error: bits 3-0, an error code (see :class:`CavroErrorCode`).
    """

    ready: bool
    error: int

    @property
    def error_name(self) -> str:
        """Return the manual's name for :attr:`error`."""
        return error_name(self.error)


@dataclass(frozen=True, slots=True)
class CavroReply:
    """One answer block, DT or OEM.

    Args:
        status: the decoded status byte.
        data: the data field as text (ASCII), possibly empty.
        raw: the whole frame as received.
    """

    status: CavroStatus
    data: str
    raw: bytes

    @property
    def ready(self) -> bool:
        """Tell whether the pump was ready (not busy) when it answered."""
        return self.status.ready

    @property
    def error(self) -> int:
        """Return the error code the answer carried."""
        return self.status.error


# -- status byte --------------------------------------------------------------------


def decode_status(
    byte: int, *, device: str = "cavro", raw: bytes | None = None, sent: bytes | None = None
) -> CavroStatus:
    """Decode a status byte: ``0 1 ready 0 e3 e2 e1 e0`` (§3.5).

    Args:
        byte: the status byte.
        device: device name for the error message.
        raw: the frame it came from, for the error message.
        sent: the command it answers, for the error message.

    Raises:
        ReplyError: bits 7-6 are not ``01`` or bit 4 is set: not a status byte.
    """
    if not 0 <= byte <= 0xFF or byte & 0b1101_0000 != 0b0100_0000:
        raise ReplyError(
            device, f"invalid status byte 0x{byte & 0xFF:02x}", sent=sent, received=raw
        )
    return CavroStatus(ready=bool(byte & 0x20), error=byte & 0x0F)


def encode_status(ready: bool, error: int) -> int:
    """Return the status byte for ``ready`` and ``error`` (the inverse of :func:`decode_status`).

    Raises:
        ValueError: ``error`` is outside 0..15.
    """
    if not 0 <= error <= 15:
        raise ValueError(f"error code must be 0..15, got {error}")
    return 0x40 | (0x20 if ready else 0) | error


# -- addresses ----------------------------------------------------------------------


def address_for_switch(switch: int) -> str:
    """Return the address character for rotary switch position ``switch`` (0..14 -> '1'..'?').

    Raises:
        ValueError: ``switch`` is outside 0..14 (position F runs the self-test, §3.2).
    """
    if not 0 <= switch <= 14:
        raise ValueError(f"Cavro address switch must be 0..14, got {switch}")
    return chr(0x31 + switch)


def _is_valid_address(address: str) -> bool:
    # §3.2: single pumps 0x31-0x3F, pairs 0x41-0x4F, groups of four 0x51-0x5D, all 0x5F.
    if len(address) != 1:
        return False
    code = ord(address)
    return 0x31 <= code <= 0x3F or 0x41 <= code <= 0x4F or 0x51 <= code <= 0x5D or code == 0x5F


def _check_address(address: str) -> bytes:
    if not _is_valid_address(address):
        raise ValueError(
            f"invalid Cavro address {address!r} (use '1'..'?', 'A'..'O', 'Q'..']', '_')"
        )
    return address.encode("ascii")


def _check_command(commands: str) -> bytes:
    try:
        encoded = commands.encode("ascii")
    except UnicodeEncodeError as exc:
        raise ValueError(f"Cavro command string must be ASCII: {commands!r}") from exc
    if not encoded or any(b < 0x20 or b > 0x7E or b == ord("/") for b in encoded):
        raise ValueError(f"invalid Cavro command string {commands!r}")
    return encoded


# -- DT framing ---------------------------------------------------------------------


def build_dt_command(address: str, commands: str, *, execute: bool = True) -> bytes:
    """Frame ``commands`` for the DT protocol (§3.3).

    Args:
        address: the pump's address character (``"1"`` for switch position 0).
        commands: the command string without address and ``R``, e.g. ``"Z0"`` or ``"?6"``.
        execute: append ``R`` so the string runs; False for report commands, which run
            immediately (§3.6), and for loading a string into the buffer.

    Example:
        >>> build_dt_command("1", "Z0")
        b'/1Z0R\\r'
    """
    body = _check_address(address) + _check_command(commands)
    return b"/" + body + (b"R" if execute else b"") + b"\r"


def _dt_frame_start(buffer: bytes) -> int:
    # RS-485 line turn-around can leave a noise byte (often 0xFF) before the answer [I];
    # the answer starts at "/0".
    return buffer.find(b"/0")


def dt_reply_complete(buffer: bytes) -> bool:
    """Tell whether ``buffer`` holds a whole DT answer (``/0`` ... ETX CR LF)."""
    start = _dt_frame_start(buffer)
    if start < 0:
        return False
    return bytes([ETX, CR, LF]) in buffer[start + 2 :]


def parse_dt_reply(frame: bytes, *, device: str = "cavro", sent: bytes | None = None) -> CavroReply:
    """Parse a DT answer ``/0`` + status + data + ETX CR LF (§3.3).

    Bytes before ``/0`` are skipped (line noise); nothing may follow CR LF.

    Raises:
        ReplyError: the frame is malformed; carries the bytes.
    """
    frame = bytes(frame)

    def bad(why: str) -> ReplyError:
        return ReplyError(device, f"malformed DT reply: {why}", sent=sent, received=frame)

    start = _dt_frame_start(frame)
    if start < 0:
        raise bad("no '/0' start")
    body = frame[start:]
    end = body.find(bytes([ETX]), 2)
    if end < 3:
        raise bad("no status byte and ETX")
    if body[end + 1 :] != b"\r\n":
        raise bad("ETX not followed by exactly CR LF")
    status = decode_status(body[2], device=device, raw=frame, sent=sent)
    return CavroReply(status=status, data=_decode_data(body[3:end], bad), raw=frame)


def _decode_data(data: bytes, bad: Callable[[str], ReplyError]) -> str:
    if any(b < 0x20 or b > 0x7E for b in data):
        raise bad("non-printable byte in data")
    return data.decode("ascii")


# -- OEM framing --------------------------------------------------------------------


def oem_checksum(data: bytes) -> int:
    """Return the XOR of ``data`` (pass every byte from STX to ETX inclusive, §3.4).

    Example (§3.4): ``02 31 31 5a 52 03`` gives 0x09.
    """
    checksum = 0
    for byte in data:
        checksum ^= byte
    return checksum


def oem_sequence_byte(sequence: int, *, repeat: bool = False) -> int:
    """Return the OEM sequence byte ``0011 R S2 S1 S0`` (§3.4).

    Args:
        sequence: 1..7; the host cycles it so the pump can tell a repeat from a new block.
        repeat: set when resending a block that got no answer within 100 ms; a pump that
            already ran that sequence number only acknowledges it.

    Raises:
        ValueError: ``sequence`` is outside 1..7.
    """
    if not 1 <= sequence <= 7:
        raise ValueError(f"OEM sequence number must be 1..7, got {sequence}")
    return 0x30 | (0x08 if repeat else 0) | sequence


def build_oem_command(
    address: str,
    commands: str,
    *,
    sequence: int = 1,
    repeat: bool = False,
    execute: bool = True,
) -> bytes:
    """Frame ``commands`` for the OEM protocol (§3.4).

    Example (§3.4): ``build_oem_command("1", "Z")`` is ``02 31 31 5a 52 03 09``.
    """
    block = (
        bytes([STX])
        + _check_address(address)
        + bytes([oem_sequence_byte(sequence, repeat=repeat)])
        + _check_command(commands)
        + (b"R" if execute else b"")
        + bytes([ETX])
    )
    return block + bytes([oem_checksum(block)])


def oem_reply_complete(buffer: bytes) -> bool:
    """Tell whether ``buffer`` holds a whole OEM answer (STX ... ETX checksum)."""
    start = buffer.find(bytes([STX]))
    if start < 0:
        return False
    # Data is printable ASCII, so the first ETX after the status byte ends the block.
    end = buffer.find(bytes([ETX]), start + 3)
    return end >= 0 and len(buffer) > end + 1


def parse_oem_reply(
    frame: bytes, *, device: str = "cavro", sent: bytes | None = None
) -> CavroReply:
    """Parse an OEM answer STX ``0`` status data ETX checksum (§3.4).

    Parsing starts at the first STX and ends at the byte after ETX (§3.4 [S; I]).

    Raises:
        ReplyError: the frame is malformed or the checksum does not match.
    """
    frame = bytes(frame)

    def bad(why: str) -> ReplyError:
        return ReplyError(device, f"malformed OEM reply: {why}", sent=sent, received=frame)

    start = frame.find(bytes([STX]))
    if start < 0:
        raise bad("no STX")
    body = frame[start:]
    end = body.find(bytes([ETX]), 3)
    if end < 0 or len(body) != end + 2:
        raise bad("no ETX followed by exactly one checksum byte")
    if body[1] != ord(MASTER_ADDRESS):
        raise bad(f"addressed to 0x{body[1]:02x}, not the master 0x30")
    if oem_checksum(body[: end + 1]) != body[end + 1]:
        raise bad(
            f"checksum 0x{body[end + 1]:02x} != computed 0x{oem_checksum(body[: end + 1]):02x}"
        )
    status = decode_status(body[2], device=device, raw=frame, sent=sent)
    return CavroReply(status=status, data=_decode_data(body[3:end], bad), raw=frame)


# -- report data ---------------------------------------------------------------------


def parse_plunger_position(reply: CavroReply, *, device: str = "cavro") -> int:
    """Return the plunger position in increments from a ``?`` answer.

    Raises:
        ReplyError: the data is not a non-negative integer.
    """
    if not (reply.data.isascii() and reply.data.isdigit()):
        raise ReplyError(
            device, f"plunger position {reply.data!r} is not a number", received=reply.raw
        )
    return int(reply.data)


def parse_valve_port(reply: CavroReply, *, device: str = "cavro") -> int | None:
    """Return the distribution-valve port from a ``?6`` answer.

    A distribution valve answers 1..X; other valves answer ``i``/``o``/``b``/``e`` (§3.6),
    and an uninitialised pump may answer something else (tecancavro treats a non-number as
    "not initialised" [I]). Those give None.

    Raises:
        ReplyError: the answer is empty.
    """
    if not reply.data:
        raise ReplyError(device, "empty valve position", received=reply.raw)
    if reply.data.isascii() and reply.data.isdigit():
        return int(reply.data)
    return None


# -- command builders (strings to put between address and R) ------------------------


def _check_force(force: int) -> None:
    if not (force in (FORCE_FULL, FORCE_HALF, FORCE_THIRD) or 10 <= force <= 40):
        raise ValueError(
            f"initialisation force must be 0, 1, 2 or a speed code 10..40, got {force}"
        )


def initialize_plunger_and_valve(
    force: int = FORCE_FULL,
    *,
    counterclockwise: bool = False,
    input_port: int | None = None,
    output_port: int | None = None,
) -> str:
    """Return ``Z<force>[,<in>,<out>]`` (valve homes clockwise) or ``Y...`` (counter-clockwise).

    §3.6: the plunger moves to the top (position 0) and pushes its contents out through
    the initialisation output port. Ports are optional (the pump's defaults apply).

    Raises:
        ValueError: bad force code, or only one of the two ports given.
    """
    _check_force(force)
    letter = "Y" if counterclockwise else "Z"
    if input_port is None and output_port is None:
        return f"{letter}{force}"
    if input_port is None or output_port is None or input_port < 0 or output_port < 0:
        raise ValueError("give both initialisation ports (>= 0) or neither")
    return f"{letter}{force},{input_port},{output_port}"


def initialize_plunger(force: int = FORCE_FULL) -> str:
    """Return ``W<force>``: initialise the plunger only (§3.6)."""
    _check_force(force)
    return f"W{force}"


def valve_to_port(port: int, n_ports: int, *, clockwise: bool = True) -> str:
    """Return ``I<n>`` (clockwise) or ``O<n>`` (counter-clockwise) for a distribution valve.

    §3.6: distribution valves take ``I<n>``/``O<n>`` with n = 1..X; the letter chooses the
    direction of rotation (tecancavro maps clockwise to ``I`` [I]).

    Raises:
        ValueError: ``port`` is outside 1..n_ports.
    """
    if not 1 <= port <= n_ports:
        raise ValueError(f"valve port must be 1..{n_ports}, got {port}")
    return f"{'I' if clockwise else 'O'}{port}"


def _check_increments(name: str, increments: int, full_stroke: int) -> None:
    if not 0 <= increments <= full_stroke:
        raise ValueError(f"{name} must be 0..{full_stroke} increments, got {increments}")


def absolute_move(position: int, full_stroke: int) -> str:
    """Return ``A<n>``: move the plunger to ``position`` increments (0 = top, §3.6)."""
    _check_increments("absolute position", position, full_stroke)
    return f"A{position}"


def pickup_relative(increments: int, full_stroke: int) -> str:
    """Return ``P<n>``: aspirate (plunger down) by ``increments`` (§3.6).

    The pump answers error 3 (invalid operand) if the end position would pass the bottom.
    """
    _check_increments("relative pickup", increments, full_stroke)
    return f"P{increments}"


def dispense_relative(increments: int, full_stroke: int) -> str:
    """Return ``D<n>``: dispense (plunger up) by ``increments`` (§3.6)."""
    _check_increments("relative dispense", increments, full_stroke)
    return f"D{increments}"


def _check_range(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise ValueError(f"{name} must be {low}..{high}, got {value}")


def top_speed(speed_hz: int) -> str:
    """Return ``V<n>``: top speed in pulses per second, 5..6000 (default 1400, §3.6)."""
    _check_range("top speed (Hz)", speed_hz, MIN_TOP_SPEED_HZ, MAX_TOP_SPEED_HZ)
    return f"V{speed_hz}"


def start_speed(speed_hz: int) -> str:
    """Return ``v<n>``: start speed in pulses per second, 50..1000 (default 900, §3.6)."""
    _check_range("start speed (Hz)", speed_hz, 50, 1000)
    return f"v{speed_hz}"


def cutoff_speed(speed_hz: int) -> str:
    """Return ``c<n>``: cutoff speed in pulses per second, 50..2700 (default 900, §3.6)."""
    _check_range("cutoff speed (Hz)", speed_hz, 50, 2700)
    return f"c{speed_hz}"


def slope(code: int) -> str:
    """Return ``L<n>``: acceleration slope code 1..20 (default 7, §3.6)."""
    _check_range("slope code", code, 1, 20)
    return f"L{code}"


def set_resolution(mode: int) -> str:
    """Return ``N<n>``: resolution mode 0 (standard), 1 (fine positioning), 2 (microstep)."""
    _check_range("resolution mode", mode, 0, 2)
    return f"N{mode}"


def terminate() -> str:
    """Return ``T``: stop the plunger move or string in progress (§3.6)."""
    return "T"


# -- unit conversions ---------------------------------------------------------------


def _check_model_resolution(model: str, resolution: int) -> tuple[int, int, int]:
    try:
        strokes = _FULL_STROKE_INCREMENTS[model]
    except KeyError:
        raise ValueError(f"unknown Cavro model {model!r} (use 'XCalibur' or 'XLP6000')") from None
    if resolution not in (0, 1, 2):
        raise ValueError(f"resolution mode must be 0, 1 or 2, got {resolution}")
    return strokes


def full_stroke_increments(model: str, resolution: int = 0) -> int:
    """Return the plunger positions per full stroke for ``model`` in mode ``N<resolution>``.

    XCalibur: 3000 (N0), 24000 (N1, N2). XLP 6000: 6000 (N0), 48000 (N1, N2) (§3.6).
    """
    return _check_model_resolution(model, resolution)[resolution]


def speed_pulses_per_stroke(model: str, resolution: int = 0) -> int:
    """Return how many speed pulses make one full stroke (the unit of ``V``/``v``/``c``).

    6000 half-steps in N0 and N1 on both models; in N2 speeds are in position increments [I].
    """
    strokes = _check_model_resolution(model, resolution)
    return strokes[2] if resolution == 2 else _HALF_STEPS_PER_STROKE


def _check_syringe(syringe_volume_ul: float) -> None:
    if not (math.isfinite(syringe_volume_ul) and syringe_volume_ul > 0):
        raise ValueError(f"syringe volume must be > 0 uL, got {syringe_volume_ul}")


def ul_to_increments(
    volume_ul: float, syringe_volume_ul: float, model: str, resolution: int = 0
) -> int:
    """Return the nearest whole number of plunger increments for ``volume_ul``.

    A full stroke displaces the syringe's nominal volume.
    """
    _check_syringe(syringe_volume_ul)
    if not (math.isfinite(volume_ul) and volume_ul >= 0):
        raise ValueError(f"volume must be >= 0 uL, got {volume_ul}")
    return round(volume_ul * full_stroke_increments(model, resolution) / syringe_volume_ul)


def increments_to_ul(
    increments: int, syringe_volume_ul: float, model: str, resolution: int = 0
) -> float:
    """Return the volume in uL displaced by ``increments`` plunger increments."""
    _check_syringe(syringe_volume_ul)
    return increments * syringe_volume_ul / full_stroke_increments(model, resolution)


def rate_ul_min_to_hz(
    rate_ul_min: float, syringe_volume_ul: float, model: str, resolution: int = 0
) -> int:
    """Return the nearest top speed ``V`` (pulses/s) for ``rate_ul_min``.

    The result is not clamped: check it against 5..6000 (:func:`top_speed` does).
    """
    _check_syringe(syringe_volume_ul)
    if not (math.isfinite(rate_ul_min) and rate_ul_min >= 0):
        raise ValueError(f"rate must be >= 0 uL/min, got {rate_ul_min}")
    pulses = speed_pulses_per_stroke(model, resolution)
    return round(rate_ul_min / 60.0 * pulses / syringe_volume_ul)


def hz_to_rate_ul_min(
    speed_hz: float, syringe_volume_ul: float, model: str, resolution: int = 0
) -> float:
    """Return the flow rate in uL/min of a plunger running at ``speed_hz`` pulses/s.

    Ignores the start/stop ramps (slope ``L``), which matter only for short moves.
    """
    _check_syringe(syringe_volume_ul)
    return speed_hz * 60.0 * syringe_volume_ul / speed_pulses_per_stroke(model, resolution)
