"""Pure codec for the Harvard Apparatus / KD Scientific "pump chain" ASCII protocol.

Shared by the PHD ULTRA, Pump 11 Elite and KDS Legato (hardware-reference §1). No I/O:
every function turns text into bytes or bytes into values, and raises
:class:`drivers.errors.ReplyError` (never anything else) on bytes it cannot make sense of.

Wire format (hardware-reference §1.2-1.4):

- host to pump: ``[address][":"]command[ argument]\\r``. The PHD ULTRA manual puts a colon
  between the address and the command (``12:irat 3.2 ul/min``); the Legato and Elite manuals
  do not (``12irat 3.2 u/m``).
- pump to host: zero or more text lines ``\\n[NN:]text\\r``, then a prompt line
  ``\\n[NN]P`` with *no* terminator, where ``P`` is the state (:class:`Prompt`).

Why the host terminator is ``\\r`` and not ``\\r\\n``: the manuals specify a carriage return
(§1.2-1.3). flowchem sends ``\\r\\n`` [I]; if a firmware took the trailing ``\\n`` as a second,
empty command, it would answer with a second prompt that arrives after we stopped reading
and would be mistaken for the reply to the next command. ``\\r`` alone cannot cause that.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import Enum

from drivers.errors import ReplyError

__all__ = [
    "ERROR_MARKERS",
    "Direction",
    "Model",
    "Prompt",
    "PumpChainStatus",
    "Reply",
    "SIGNIFICANT_DIGITS",
    "TERMINATOR",
    "encode_command",
    "error_text",
    "format_diameter_mm",
    "format_rate",
    "format_volume",
    "parse_rate_limits_ul_min",
    "parse_rate_ul_min",
    "parse_reply",
    "parse_status",
    "parse_volume_ul",
    "prompt_may_continue",
    "reply_complete",
]

#: Command terminator sent by the host (see the module docstring for why not CR LF).
TERMINATOR = b"\r"

#: Significant digits written in rate and volume arguments. [I] The manuals do not state the
#: accepted precision; the pumps display about 4-5 digits and flowchem sends 10 decimals
#: that the Elite accepts. Five digits keeps the relative rounding error below 5e-5.
SIGNIFICANT_DIGITS = 5

#: Substrings that mark a refused command (§1.4: flowchem's list, plus the Pump 33 DDS
#: manual's "Range error").
ERROR_MARKERS = (
    "Command error",
    "Unknown command",
    "Argument error",
    "Out of range",
    "Range error",
)


class Model(Enum):
    """Pump models that speak the pump-chain protocol; values are the config names."""

    PHD_ULTRA = "phd-ultra"
    ELITE = "elite"
    LEGATO = "legato"


class Prompt(Enum):
    """The state prompt that ends every reply; values are the wire characters (§1.4)."""

    IDLE = ":"
    INFUSING = ">"
    WITHDRAWING = "<"
    STALLED = "*"
    TARGET_REACHED = "T*"


class Direction(Enum):
    """Plunger direction as written in ``status`` flag 1 (lowercase form)."""

    INFUSE = "i"
    WITHDRAW = "w"


@dataclass(frozen=True, slots=True)
class Reply:
    """One decoded reply.

    Args:
        lines: the text lines, address prefix and CR removed, empty lines dropped.
        prompt: the final prompt.
        address: the address carried by the prompt, or None if it carried none.
    """

    lines: tuple[str, ...]
    prompt: Prompt
    address: int | None


@dataclass(frozen=True, slots=True)
class PumpChainStatus:
    """The raw ``status`` reply, decoded (hardware-reference §1.3, "Raw status").

    Args:
        rate_fl_s: current rate in femtolitres per second.
        time_raw: time in the current direction, in the model's unit (see ``time_s``).
        volume_fl: volume pumped in the current direction, in femtolitres.
        direction: flag 1, the current (or last) direction.
        running: flag 1 is uppercase (motor moving).
        limit_switch: flag 2, the direction whose limit switch is hit, or None.
        stalled: flag 3 is ``S``.
        trigger: flag 4 is ``T`` (trigger input active).
        port_direction: flag 5, the direction port input (``I``/``W``), or None if ``.``.
        target_reached: flag 6 is ``T`` (Legato; False when the model sends 5 flags).
        time_s: ``time_raw`` in seconds: milliseconds on Legato/Elite, seconds on the
            PHD ULTRA (its manual p.88 says seconds; the Elite unit is assumed [I]).
    """

    rate_fl_s: int
    time_raw: int
    volume_fl: int
    direction: Direction
    running: bool
    limit_switch: Direction | None
    stalled: bool
    trigger: bool
    port_direction: Direction | None
    target_reached: bool
    time_s: float

    @property
    def rate_ul_min(self) -> float:
        """Return the rate in uL/min (1 uL = 1e9 fL)."""
        return self.rate_fl_s * 60.0 / 1e9

    @property
    def volume_ul(self) -> float:
        """Return the volume in uL."""
        return self.volume_fl / 1e9


# -- framing ---------------------------------------------------------------------------

_PROMPT_RE = re.compile(rb"(\d{2})?(:|>|<|\*|T\*)", re.ASCII)
_PROMPT_TEXT_RE = re.compile(r"(\d{2})?(:|>|<|\*|T\*)", re.ASCII)
# A text line from an addressed pump: "NN:" (manuals) or "NN" + prompt char (flowchem [I]).
_LINE_PREFIX_RE = re.compile(r"(\d{2})(?::|>|<|\*|T\*)", re.ASCII)
_AMBIGUOUS_TAIL_RE = re.compile(rb"\n\d{2}:", re.ASCII)
_PRINTABLE_RE = re.compile(r"[\t\x20-\x7e]*", re.ASCII)


def encode_command(command: str, *, address: int, model: Model) -> bytes:
    """Frame ``command`` (with its arguments) for the pump at ``address``.

    The address is always sent, without a leading zero (§1.2: "a one-digit address needs
    no leading 0"), as flowchem does for address 0 [I].

    Raises:
        ValueError: the address is outside 0-99, or the command is not printable ASCII.
    """
    if not 0 <= address <= 99:
        raise ValueError(f"pump-chain address must be 0-99, got {address}")
    if not command or not command.isascii() or not command.isprintable():
        raise ValueError(f"command must be non-empty printable ASCII, got {command!r}")
    separator = ":" if model is Model.PHD_ULTRA else ""  # PHD ULTRA manual p.83
    return f"{address}{separator}{command}".encode("ascii") + TERMINATOR


def reply_complete(buf: bytes) -> bool:
    """Tell whether ``buf`` ends with a prompt line, i.e. holds a whole reply.

    The prompt carries no terminator (§1.4), so the reply is complete when the text after
    the last LF is exactly an (optionally addressed) prompt. For :func:`read_frame`.
    """
    start = buf.rfind(b"\n")
    return start >= 0 and _PROMPT_RE.fullmatch(buf, start + 1) is not None


def prompt_may_continue(buf: bytes) -> bool:
    """Tell whether a complete-looking ``buf`` may be the start of a text line instead.

    An addressed pump's idle prompt ``\\n12:`` is byte for byte the start of its text lines
    ``\\n12:text\\r`` (Legato 100 manual p.51). A reader that sees it at the end of a chunk
    should wait a moment for more bytes before trusting it.
    """
    return len(buf) >= 4 and _AMBIGUOUS_TAIL_RE.fullmatch(buf, len(buf) - 4) is not None


def parse_reply(
    buf: bytes,
    expected_address: int,
    *,
    device: str = "harvard",
    sent: bytes | None = None,
) -> Reply:
    """Decode a whole reply (text lines and prompt).

    Text lines of an addressed reply lose their ``NN:`` prefix. A line without a prefix is
    kept as it is: whether address 0 replies carry ``00`` is unconfirmed (§11), so both forms
    are accepted.

    Args:
        buf: the bytes read, from the first LF to the prompt.
        expected_address: the address the command was sent to.
        device: the device name for errors.
        sent: the command, for errors.

    Raises:
        ReplyError: not ASCII, not framed as lines plus prompt, non-printable text, or an
            address other than ``expected_address``.
    """

    def fail(why: str) -> ReplyError:
        return ReplyError(device, f"malformed reply: {why}", sent=sent, received=buf)

    try:
        text = buf.decode("ascii")
    except UnicodeDecodeError:
        raise fail("not ASCII") from None
    if not text.startswith("\n"):
        raise fail("does not start with LF")
    *segments, last = text[1:].split("\n")
    match = _PROMPT_TEXT_RE.fullmatch(last)
    if match is None:
        raise fail("no prompt at the end")
    address = int(match[1]) if match[1] is not None else None
    if address is not None and address != expected_address:
        raise fail(f"prompt from address {address}, expected {expected_address}")
    lines: list[str] = []
    for segment in segments:
        if not segment.endswith("\r"):
            raise fail("text line without CR")
        content = segment[:-1]
        if _PRINTABLE_RE.fullmatch(content) is None:
            raise fail("control characters in a text line")
        prefix = _LINE_PREFIX_RE.match(content) if address is not None else None
        if prefix is not None:
            if int(prefix[1]) != expected_address:
                raise fail(f"line from address {prefix[1]}, expected {expected_address}")
            content = content[prefix.end() :]
        if content.strip():
            lines.append(content)
    return Reply(tuple(lines), Prompt(match[2]), address)


def error_text(reply: Reply) -> str | None:
    """Return the pump's error message if ``reply`` reports a refused command, else None.

    KDS pumps follow the error line with an indented explanation (Allegro manual p.57);
    both are joined into one line.
    """
    for index, line in enumerate(reply.lines):
        if any(marker in line for marker in ERROR_MARKERS):
            return " ".join(part.strip() for part in reply.lines[index:])
    return None


# -- status ----------------------------------------------------------------------------

_STATUS_RE = re.compile(r"\s*(\d{1,18}) (\d{1,18}) (\d{1,18}) (\S{5,6})\s*", re.ASCII)
_DIRECTION_BY_CHAR = {"i": Direction.INFUSE, "w": Direction.WITHDRAW}


def parse_status(
    text: str, *, model: Model, device: str = "harvard", sent: bytes | None = None
) -> PumpChainStatus:
    """Decode the text line of a ``status`` reply, e.g. ``"2000000 1500 50000000 I..T.I"``.

    The flag field has 6 characters on the Legato and 5 on the PHD ULTRA (§1.3); both are
    accepted on every model since the Elite's count is not documented [I].

    Raises:
        ReplyError: the line does not have three integers and a valid flag field.
    """

    def fail(why: str) -> ReplyError:
        received = text.encode("ascii", "backslashreplace")
        return ReplyError(device, f"bad status reply: {why}", sent=sent, received=received)

    match = _STATUS_RE.fullmatch(text)
    if match is None:
        raise fail("expected '<rate fL/s> <time> <volume fL> <flags>'")
    flags = match[4]
    direction = _DIRECTION_BY_CHAR.get(flags[0].lower())
    if direction is None:
        raise fail(f"direction flag {flags[0]!r} is not i/w/I/W")
    if flags[1] not in "iwIW.":
        raise fail(f"limit-switch flag {flags[1]!r}")
    if flags[2] not in "S." or flags[3] not in "T.":
        raise fail(f"stall/trigger flags {flags[2:4]!r}")
    if flags[4] not in "iwIW.":
        raise fail(f"direction-port flag {flags[4]!r}")
    if len(flags) == 6 and flags[5] not in "T.":
        raise fail(f"target flag {flags[5]!r}")
    time_raw = int(match[2])
    return PumpChainStatus(
        rate_fl_s=int(match[1]),
        time_raw=time_raw,
        volume_fl=int(match[3]),
        direction=direction,
        running=flags[0].isupper(),
        limit_switch=_DIRECTION_BY_CHAR.get(flags[1].lower()),
        stalled=flags[2] == "S",
        trigger=flags[3] == "T",
        port_direction=_DIRECTION_BY_CHAR.get(flags[4].lower()),
        target_reached=len(flags) == 6 and flags[5] == "T",
        time_s=time_raw if model is Model.PHD_ULTRA else time_raw / 1000.0,
    )


# -- quantities ------------------------------------------------------------------------

_VOLUME_UNIT_UL = {"l": 1e6, "ml": 1e3, "ul": 1.0, "nl": 1e-3, "pl": 1e-6}
_TIME_UNIT_MIN = {"s": 1 / 60, "sec": 1 / 60, "m": 1.0, "min": 1.0, "h": 60.0, "hr": 60.0}
_NUMBER = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]{1,3})?"
# Volume units: "ml", "ul", "nl", "pl", "l"; the rate short forms drop the "l" ("u/m").
_VOLUME_RE = re.compile(rf"\s*({_NUMBER})\s*([munp]?l)\s*", re.ASCII | re.IGNORECASE)
_RATE_RE = re.compile(
    rf"\s*({_NUMBER})\s*([munp]l?|l)/(sec|min|hr|s|m|h)\s*", re.ASCII | re.IGNORECASE
)


def _volume_factor_ul(unit: str) -> float:
    unit = unit.lower()
    return _VOLUME_UNIT_UL[unit if unit.endswith("l") else unit + "l"]


def _finite(value: float, what: str, text: str, device: str) -> float:
    """Return ``value``, or raise if the number overflowed a float (``"1e999 ul"``).

    The reply grammar admits exponents, so line noise can turn a reply into infinity;
    passed on, it would become an infinite volume counter or rate limit.
    """
    if not math.isfinite(value):
        raise ReplyError(device, f"{what} out of range: {text[:40]!r}")
    return value


def parse_volume_ul(text: str, *, device: str = "harvard") -> float:
    """Parse a volume reply such as ``"1.234 ul"``, ``"2.5 ml"`` or ``"500 nl"`` to uL.

    Raises:
        ReplyError: not a number followed by a volume unit, or too large for a float.
    """
    match = _VOLUME_RE.fullmatch(text)
    if match is None:
        raise ReplyError(device, f"not a volume: {text!r}")
    return _finite(float(match[1]) * _volume_factor_ul(match[2]), "volume", text, device)


def parse_rate_ul_min(text: str, *, device: str = "harvard") -> float:
    """Parse a rate such as ``"3.2 ul/min"``, ``"3.2 u/m"`` or ``"0.5 ml/hr"`` to uL/min.

    The short unit forms (``u/m``, ``m/m``) are the Legato manual's (§1.3).

    Raises:
        ReplyError: not a number followed by a rate unit, or too large for a float.
    """
    match = _RATE_RE.fullmatch(text)
    if match is None:
        raise ReplyError(device, f"not a rate: {text!r}")
    rate = float(match[1]) * _volume_factor_ul(match[2]) / _TIME_UNIT_MIN[match[3].lower()]
    return _finite(rate, "rate", text, device)


def parse_rate_limits_ul_min(text: str, *, device: str = "harvard") -> tuple[float, float]:
    """Parse an ``irate lim`` reply, ``"1.2 nl/min to 3.5 ml/min"``, to (min, max) uL/min.

    Raises:
        ReplyError: not two rates separated by ``to``, or min > max.
    """
    parts = text.split(" to ")
    if len(parts) != 2:
        raise ReplyError(device, f"not a rate range: {text!r}")
    low, high = (parse_rate_ul_min(part, device=device) for part in parts)
    if not 0 < low <= high:
        raise ReplyError(device, f"not a rate range: {text!r}")
    return low, high


def _format_number(value: float, significant_digits: int = SIGNIFICANT_DIGITS) -> str:
    """Write ``value`` in plain decimal (never an exponent) with that many digits."""
    exponent = math.floor(math.log10(abs(value)))
    decimals = max(0, significant_digits - 1 - exponent)
    text = f"{value:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _scaled(value_ul: float) -> tuple[float, str]:
    """Pick ml, ul or nl so the number is in [1, 1000) where possible."""
    if value_ul >= 1000.0:
        return value_ul / 1000.0, "ml"
    if value_ul >= 1.0:
        return value_ul, "ul"
    return value_ul * 1000.0, "nl"


def format_rate(rate_ul_min: float) -> str:
    """Write a rate argument, e.g. ``format_rate(3.2) == "3.2 ul/min"``.

    Raises:
        ValueError: the rate is not finite and > 0.
    """
    if not (math.isfinite(rate_ul_min) and rate_ul_min > 0):
        raise ValueError(f"rate must be finite and > 0 uL/min, got {rate_ul_min}")
    number, unit = _scaled(rate_ul_min)
    return f"{_format_number(number)} {unit}/min"


def format_volume(volume_ul: float) -> str:
    """Write a volume argument, e.g. ``format_volume(2500) == "2.5 ml"``.

    Raises:
        ValueError: the volume is not finite and > 0.
    """
    if not (math.isfinite(volume_ul) and volume_ul > 0):
        raise ValueError(f"volume must be finite and > 0 uL, got {volume_ul}")
    number, unit = _scaled(volume_ul)
    return f"{_format_number(number)} {unit}"


def format_diameter_mm(diameter_mm: float) -> str:
    """Write a ``diameter`` argument in mm (the command's unit, §1.3), 4 decimals at most.

    Raises:
        ValueError: the diameter is not finite and > 0.
    """
    if not (math.isfinite(diameter_mm) and diameter_mm > 0):
        raise ValueError(f"diameter must be finite and > 0 mm, got {diameter_mm}")
    return f"{diameter_mm:.4f}".rstrip("0").rstrip(".")
