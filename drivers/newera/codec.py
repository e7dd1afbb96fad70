"""New Era NE-300/500/1000/4000 wire format: framing, CRC, reply grammar, numbers.

Pure functions, no I/O. Section numbers refer to ``hardware-reference.md`` §2, which
summarises the New Era manuals (NE-500 manual 1200-03 §8, NE-1000 manual "RS-232
protocol"). Items marked [I] are inferred from public driver code, not from a manual.

Two framings share one reply grammar (§2.2-2.4):

- *basic*: to the pump ``<address><command><data>\\r``; from the pump ``STX <data> ETX``.
- *safe*: both ways ``STX <length> <data> <CRC hi> <CRC lo> ETX``, where ``length`` is
  ``len(data) + 4`` (it counts itself, the two CRC bytes and ETX) and the CRC is
  CRC-16/XModem over ``<data>`` only.

A reply's data is ``<address 2 digits><status>[<data> | ?<error>]`` or, for an alarm,
``<address>A?<alarm type>``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from drivers.errors import ReplyError

__all__ = [
    "ALARM_NAMES",
    "ERROR_MEANINGS",
    "ETX",
    "RATE_UNITS_UL_MIN",
    "STATUS_MEANINGS",
    "STX",
    "VOLUME_UNITS_UL",
    "Reply",
    "Version",
    "crc16_xmodem",
    "decode_frame",
    "decode_reply",
    "encode_basic",
    "encode_command",
    "encode_safe",
    "find_frame",
    "format_number",
    "format_rate",
    "format_volume",
    "parse_dispensed",
    "parse_number",
    "parse_reply",
    "parse_version",
    "reply_complete",
]

STX: Final = 0x02
ETX: Final = 0x03
CR: Final = b"\r"

#: Highest pump address on a network (§2.1).
MAX_ADDRESS: Final = 99

#: Status characters of a normal reply (§2.4).
STATUS_MEANINGS: Final[dict[str, str]] = {
    "I": "infusing",
    "W": "withdrawing",
    "S": "stopped",
    "P": "paused",
    "T": "timed pause",
    "U": "waiting for user trigger",
    "X": "purging",
}

#: Alarm type letter after ``A?`` -> the alarm name used in PumpStatus/DeviceAlarm (§2.4).
ALARM_NAMES: Final[dict[str, str]] = {
    "R": "reset",  # power was interrupted (power-on reset)
    "S": "stall",  # motor stalled: occlusion or end of travel
    "T": "watchdog",  # safe-mode communication timeout
    "E": "program_error",
    "O": "phase_out_of_range",
}

#: Error code after ``?`` -> meaning (§2.4). The empty code is a bare ``?``.
ERROR_MEANINGS: Final[dict[str, str]] = {
    "": "command not recognised",
    "NA": "command not applicable now",
    "OOR": "data out of range",
    "COM": "invalid packet (bad CRC or framing)",
    "IGN": "command ignored (simultaneous phase start)",
}

#: Rate unit codes of ``RAT`` -> microlitres per minute per unit (§2.5).
RATE_UNITS_UL_MIN: Final[dict[str, float]] = {
    "UM": 1.0,
    "MM": 1000.0,
    "UH": 1.0 / 60.0,
    "MH": 1000.0 / 60.0,
}

#: Volume unit codes of ``VOL``/``DIS`` -> microlitres per unit (§2.5).
VOLUME_UNITS_UL: Final[dict[str, float]] = {"UL": 1.0, "ML": 1000.0}

#: The pump takes at most this many digits in a number (plus one decimal point, §2.5).
MAX_DIGITS: Final = 4
#: ...and at most this many after the decimal point.
MAX_DECIMALS: Final = 3


# -- CRC and framing -------------------------------------------------------------------


def crc16_xmodem(data: bytes) -> int:
    """Return the CRC-16/XModem (CCITT poly 0x1021, init 0, no reflection) of ``data``.

    Safe mode protects each packet's data with this CRC (§2.3). It equals
    ``binascii.crc_hqx(data, 0)``; it is written out here so the check value
    (``b"123456789"`` -> 0x31C3) documents the variant unambiguously.
    """
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def _check_address(address: int | None) -> str:
    if address is None:
        return ""
    if not 0 <= address <= MAX_ADDRESS:
        raise ValueError(f"New Era address must be 0..{MAX_ADDRESS}, got {address}")
    return str(address)


def encode_basic(address: int | None, command: str) -> bytes:
    """Encode ``command`` for ``address`` in basic mode: ASCII then CR (§2.2).

    Args:
        address: the pump's network address (0-99), or None to leave it out (the pump
            then assumes 0, or the command is a ``*`` system command).
        command: command name and data, e.g. ``"RAT250UM"``; ``""`` queries status.
    """
    return (_check_address(address) + command).encode("ascii") + CR


def encode_safe(address: int | None, command: str) -> bytes:
    """Encode ``command`` for ``address`` as a safe-mode packet (§2.3).

    The packet is ``STX, len(data) + 4, data, CRC hi, CRC lo, ETX``; for example
    ``encode_safe(None, "SAF0") == bytes.fromhex("0208534146305543 03")`` as printed in
    the manual.
    """
    data = (_check_address(address) + command).encode("ascii")
    if not data:
        raise ValueError("a safe-mode packet needs an address or a command")
    if len(data) + 4 > 0xFF:
        raise ValueError(f"command too long for a safe-mode packet: {command!r}")
    crc = crc16_xmodem(data)
    return bytes([STX, len(data) + 4]) + data + crc.to_bytes(2, "big") + bytes([ETX])


def encode_command(address: int | None, command: str, *, safe: bool) -> bytes:
    """Encode ``command`` in safe framing if ``safe``, else in basic framing."""
    return encode_safe(address, command) if safe else encode_basic(address, command)


def _is_safe_start(buf: bytes, start: int) -> bool:
    """Tell whether the frame starting at ``buf[start] == STX`` is a safe-mode packet.

    [I] The framing is recognised from the byte after STX: every reply begins with a
    two-digit address, so in basic framing that byte is an ASCII digit; in safe framing
    it is the length byte, and a reply would need 44+ data bytes for its length to look
    like a digit, far longer than any reply in the grammar of §2.4. This lets the driver
    read the answer to its first command in whatever mode the pump was left in (the mode
    is stored in non-volatile memory, §2.3).
    """
    second = buf[start + 1]
    return not (0x30 <= second <= 0x39)


def find_frame(buf: bytes) -> tuple[int, int] | None:
    """Locate the first complete frame in ``buf``.

    Bytes before the first STX are line noise and are skipped. Never raises.

    Returns:
        ``(start, end)`` so that ``buf[start:end]`` is the frame, or None if ``buf`` holds
        no complete frame yet.
    """
    start = buf.find(STX)
    while start != -1:
        if len(buf) < start + 2:
            return None
        if _is_safe_start(buf, start):
            length = buf[start + 1]
            if length < 5:
                # Impossible length (data must hold at least one byte): not a frame
                # start after all; look for the next STX.
                start = buf.find(STX, start + 1)
                continue
            end = start + 1 + length
            return (start, end) if len(buf) >= end else None
        etx = buf.find(ETX, start + 1)
        return (start, etx + 1) if etx != -1 else None
    return None


def reply_complete(buf: bytes) -> bool:
    """Tell whether ``buf`` holds at least one complete frame (for ``read_frame``)."""
    return find_frame(buf) is not None


def decode_frame(raw: bytes, *, device: str = "newera") -> tuple[bytes, bool]:
    """Check one frame found by :func:`find_frame` and return its data.

    Args:
        raw: exactly one frame, STX first.
        device: the device name for errors.

    Returns:
        ``(data, safe)``: the data between the framing bytes, and whether the frame was a
        safe-mode packet.

    Raises:
        ReplyError: bad framing, wrong length, bad CRC.
    """
    if len(raw) < 3 or raw[0] != STX or raw[-1] != ETX:
        raise ReplyError(device, "reply is not framed by STX ... ETX", received=raw)
    if _is_safe_start(raw, 0):
        length = raw[1]
        if length != len(raw) - 1 or length < 5:
            raise ReplyError(device, f"safe packet length byte {length} is wrong", received=raw)
        data = raw[2:-3]
        crc_sent = int.from_bytes(raw[-3:-1], "big")
        crc_calc = crc16_xmodem(data)
        if crc_sent != crc_calc:
            raise ReplyError(
                device,
                f"safe packet CRC 0x{crc_sent:04X} does not match 0x{crc_calc:04X}",
                received=raw,
            )
        return data, True
    return raw[1:-1], False


# -- reply grammar ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reply:
    """One decoded reply (§2.4).

    Attributes:
        address: the replying pump's address.
        status: the status character (``"I"``, ``"W"``, ``"S"``...) or ``"A"`` for an
            alarm reply.
        alarm: the alarm name (``"stall"``, ``"reset"``...) for an alarm reply, else None.
        error: the error code (``""`` for a bare ``?``, ``"OOR"``, ``"NA"``...) or None.
        data: the data after the status character (empty for set commands).
        safe: whether the reply came safe-framed.
    """

    address: int
    status: str
    alarm: str | None = None
    error: str | None = None
    data: str = ""
    safe: bool = False

    @property
    def running(self) -> bool:
        """Tell whether the status says the motor is moving (infusing, withdrawing, purging)."""
        return self.status in ("I", "W", "X")


def parse_reply(data: bytes, *, safe: bool = False, device: str = "newera") -> Reply:
    """Parse the data of one reply frame (§2.4).

    Raises:
        ReplyError: the data does not follow the grammar.
    """
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise ReplyError(device, "reply is not ASCII", received=data) from None
    if len(text) < 3 or not text[:2].isdigit() or not text[:2].isascii():
        raise ReplyError(device, "reply does not start with a 2-digit address", received=data)
    address = int(text[:2])
    status = text[2]
    rest = text[3:]
    if status == "A":
        if len(rest) != 2 or rest[0] != "?" or rest[1] not in ALARM_NAMES:
            raise ReplyError(device, f"unknown alarm reply {text!r}", received=data)
        return Reply(address, "A", alarm=ALARM_NAMES[rest[1]], safe=safe)
    if status not in STATUS_MEANINGS:
        raise ReplyError(device, f"unknown status character {status!r}", received=data)
    if rest.startswith("?"):
        code = rest[1:]
        if code not in ERROR_MEANINGS:
            raise ReplyError(device, f"unknown error code {code!r}", received=data)
        return Reply(address, status, error=code, safe=safe)
    if not rest.isprintable():
        raise ReplyError(device, "reply data holds control characters", received=data)
    return Reply(address, status, data=rest, safe=safe)


def decode_reply(raw: bytes, *, device: str = "newera") -> Reply:
    """Check one frame and parse its data; see :func:`decode_frame` and :func:`parse_reply`."""
    data, safe = decode_frame(raw, device=device)
    return parse_reply(data, safe=safe, device=device)


# -- numbers ---------------------------------------------------------------------------


def format_number(value: float) -> str:
    """Format ``value`` as the pump reads numbers: <= 4 digits, <= 3 decimals (§2.5).

    The value is rounded to 4 significant digits (the pump would truncate further
    digits itself, NE-500 manual §5); trailing zeros and a trailing point are dropped, so
    ``250.0 -> "250"``, ``14.5 -> "14.5"``, ``0.0126 -> "0.013"``.

    Raises:
        ValueError: negative, non-finite, too large for 4 digits (>= 9999.5), or so small
            that it would round to 0.
    """
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"cannot send {value!r} to a New Era pump")
    if value >= 9999.5:
        raise ValueError(f"{value:g} does not fit the pump's 4 digits")
    if value == 0:
        return "0"
    integer_digits = max(1, math.floor(math.log10(value)) + 1)
    decimals = min(MAX_DECIMALS, max(0, MAX_DIGITS - integer_digits))
    text = f"{value:.{decimals}f}"
    if len(text.replace(".", "")) > MAX_DIGITS:
        # Rounding carried into a new integer digit (999.95 -> "1000.0"): one decimal less.
        text = f"{value:.{max(0, decimals - 1)}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    if text == "0":
        # Rounding a positive value to zero would turn "VOL x" into "pump forever".
        raise ValueError(f"{value:g} is below the pump's resolution of 0.001")
    return text


def _sent_precision(value: float) -> float:
    """Return the relative rounding error of sending ``value`` (inf if it cannot be sent)."""
    try:
        sent = float(format_number(value))
    except ValueError:
        return math.inf
    if sent == 0:
        return math.inf
    return abs(sent - value) / value


def _best_unit(value_base: float, units: dict[str, float]) -> tuple[str, str]:
    """Pick the unit in which ``value_base`` is sent with the least rounding error.

    Ties go to the first unit in ``units`` order.
    """
    best: tuple[float, str, str] | None = None
    for unit, per_unit in units.items():
        scaled = value_base / per_unit
        err = _sent_precision(scaled)
        if best is None or err < best[0]:
            best = (err, unit, format_number(scaled) if math.isfinite(err) else "")
    if best is None or not math.isfinite(best[0]):
        raise ValueError(f"{value_base:g} cannot be sent in any of {', '.join(units)}")
    return best[2], best[1]


def format_rate(rate_ul_min: float) -> tuple[str, str]:
    """Return ``(number, unit)`` for ``RAT`` that sends ``rate_ul_min`` most precisely.

    The unit is one of UM, MM, UH, MH (§2.5); ties prefer that order, so common rates
    stay in uL/min. Example: ``format_rate(0.5) == ("30", "UH")``.

    Raises:
        ValueError: the rate is <= 0 or cannot be expressed in 4 digits in any unit.
    """
    if not (math.isfinite(rate_ul_min) and rate_ul_min > 0):
        raise ValueError(f"rate must be > 0 uL/min, got {rate_ul_min!r}")
    return _best_unit(rate_ul_min, RATE_UNITS_UL_MIN)


def format_volume(volume_ul: float) -> tuple[str, str]:
    """Return ``(number, unit)`` for ``VOL`` that sends ``volume_ul`` most precisely.

    The unit is UL or ML (§2.5). Example: ``format_volume(12500) == ("12.5", "ML")``.

    Raises:
        ValueError: the volume is <= 0 or too large for 4 digits in mL.
    """
    if not (math.isfinite(volume_ul) and volume_ul > 0):
        raise ValueError(f"volume must be > 0 uL, got {volume_ul!r}")
    return _best_unit(volume_ul, VOLUME_UNITS_UL)


def parse_number(text: str, *, device: str = "newera") -> float:
    """Parse a number field of a reply (``"14.50"``, ``"0.250"``, ``"3"``).

    Raises:
        ReplyError: not a plain decimal number, or one too long for a float (the pump
            sends at most 4 digits; hundreds are line noise).
    """
    body = text.replace(".", "", 1)
    if not body or not body.isdigit() or not body.isascii():
        raise ReplyError(
            device, f"not a number: {text!r}", received=text.encode("ascii", "replace")
        )
    value = float(text)
    if not math.isfinite(value):
        raise ReplyError(
            device, f"number out of range: {text[:20]!r}...", received=text.encode("ascii")
        )
    return value


def parse_dispensed(data: str, *, device: str = "newera") -> tuple[float, float]:
    """Parse the data of a ``DIS`` reply, ``I<float>W<float><UL|ML>``, to uL (§2.5 [I]).

    Returns:
        ``(infused_ul, withdrawn_ul)``.

    Raises:
        ReplyError: the data does not match.
    """
    if not data.startswith("I") or "W" not in data or data[-2:] not in VOLUME_UNITS_UL:
        raise ReplyError(
            device, f"unexpected DIS reply {data!r}", received=data.encode("ascii", "replace")
        )
    infused_text, withdrawn_text = data[1:-2].split("W", 1)
    per_unit = VOLUME_UNITS_UL[data[-2:]]
    return (
        parse_number(infused_text, device=device) * per_unit,
        parse_number(withdrawn_text, device=device) * per_unit,
    )


@dataclass(frozen=True, slots=True)
class Version:
    """The answer to ``VER``: ``NE<model>[X<upgrade>]V<major>.<minor>`` (§2.5 [I]).

    Attributes:
        model: the model number, e.g. ``"1000"`` for an NE-1000.
        upgrade: the firmware upgrade code after ``X`` (may be empty), or None.
        firmware: the firmware version, e.g. ``"3.928"``.
    """

    model: str
    upgrade: str | None
    firmware: str


def parse_version(data: str, *, device: str = "newera") -> Version:
    """Parse the data of a ``VER`` reply, e.g. ``"NE1000V3.928"``.

    Raises:
        ReplyError: the data does not match.
    """
    bad = ReplyError(
        device, f"unexpected VER reply {data!r}", received=data.encode("ascii", "replace")
    )
    if not data.startswith("NE") or "V" not in data:
        raise bad
    head, firmware = data[2:].rsplit("V", 1)
    model, sep, upgrade = head.partition("X")
    major, dot, minor = firmware.partition(".")
    if not (model.isdigit() and major.isdigit() and dot and minor.isdigit()):
        raise bad
    if upgrade and not upgrade.isdigit():
        raise bad
    return Version(model=model, upgrade=upgrade if sep else None, firmware=firmware)
