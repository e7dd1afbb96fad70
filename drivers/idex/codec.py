"""Pure codec for IDEX / Rheodyne MX Series II modules and Titan EZ/EX/HP/HT driver boards.

Source: IDEX document 2321382G, "UART/USB Communication Protocol for TitanEX/TitanEZ/
TitanHP, TitanHT Driver Boards and MX Series II Modules", as summarised in
hardware-reference §5.1. No I/O here: the functions build command bytes and decode reply
bytes, so they are tested against the document's examples alone.

The protocol (§5.1): a command is one ASCII letter, optionally two hex digits, then CR;
every reply ends with CR. ``P<hh>`` moves to position ``hh`` and is answered by a bare CR.
``S`` asks for the status: the position as two hex digits, or a two-digit error code.
While the valve moves, the board accepts no command and answers every byte it receives
with ``*`` (no CR).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from drivers.errors import ReplyError

__all__ = [
    "BUSY",
    "CR",
    "ERROR_CODES",
    "MAX_POSITION",
    "CommandMode",
    "ValveStatus",
    "decode_command_mode_reply",
    "decode_move_reply",
    "decode_status_reply",
    "encode_move",
    "encode_read_command_mode",
    "encode_set_command_mode",
    "encode_set_profile",
    "encode_status",
    "is_busy",
    "reply_complete",
]

CR = b"\r"
#: The byte a moving valve sends for every byte it receives (§5.1).
BUSY = b"*"
#: Highest position a valve mode allows (mode ``C``: 12 positions, §5.1).
MAX_POSITION = 0x0C

#: Error codes the ``S`` query returns instead of a position (§5.1), by code.
ERROR_CODES: dict[int, str] = {
    99: "valve failure (cannot find home)",
    88: "non-volatile memory error",
    77: "configuration or command-mode error",
    66: "positioning error",
    55: "data integrity error",
    44: "data CRC error",
}


class CommandMode(enum.IntEnum):
    """The board's command mode (``F``/``D`` commands, §5.1 [I]).

    Serial control needs a mode other than level logic [I]; a new mode is applied at the
    next power cycle.
    """

    LEVEL_LOGIC = 1
    SINGLE_PULSE = 2
    BCD = 3
    INVERTED_BCD = 4
    DUAL_PULSE = 5


@dataclass(frozen=True, slots=True)
class ValveStatus:
    """A decoded reply to ``S``: exactly one of the three cases holds.

    Attributes:
        position: the current position (1-based, as on the valve), if reported.
        error_code: the error code (:data:`ERROR_CODES`), if reported.
        busy: the valve is moving and did not process the query.
    """

    position: int | None = None
    error_code: int | None = None
    busy: bool = False

    @property
    def error_text(self) -> str | None:
        """Return the manual's meaning of :attr:`error_code` (None if there is none)."""
        if self.error_code is None:
            return None
        return ERROR_CODES.get(self.error_code, f"unknown error code {self.error_code}")


def _hex2(value: int) -> bytes:
    return f"{value:02X}".encode("ascii")


def encode_move(position: int) -> bytes:
    """Return the command moving to ``position``: ``P`` + two hex digits + CR (§5.1).

    Raises:
        ValueError: ``position`` is outside 1..12; the valve would ignore it silently.
    """
    if not 1 <= position <= MAX_POSITION:
        raise ValueError(f"IDEX position must be 1..{MAX_POSITION}, got {position}")
    return b"P" + _hex2(position) + CR


def encode_status() -> bytes:
    """Return the status query ``S`` CR (§5.1)."""
    return b"S" + CR


def encode_set_profile(profile: int) -> bytes:
    """Return ``O<hh>`` CR, which selects the valve profile, active after a reset (§5.1).

    Raises:
        ValueError: ``profile`` does not fit in two hex digits.
    """
    if not 0 <= profile <= 0xFF:
        raise ValueError(f"IDEX valve profile must be 0..255, got {profile}")
    return b"O" + _hex2(profile) + CR


def encode_set_command_mode(mode: CommandMode) -> bytes:
    """Return ``F<hh>`` CR, which sets the command mode, applied at power-up (§5.1 [I])."""
    return b"F" + _hex2(int(mode)) + CR


def encode_read_command_mode() -> bytes:
    """Return ``D`` CR, which reads the command mode (§5.1 [I])."""
    return b"D" + CR


def is_busy(reply: bytes) -> bool:
    """Tell whether ``reply`` is the busy answer: one or more ``*`` and nothing else."""
    body = reply.rstrip(CR)
    return bool(body) and body == BUSY * len(body)


def reply_complete(buffer: bytes) -> bool:
    """Tell whether ``buffer`` holds a whole reply: up to a CR, or the busy ``*``.

    The busy answer has no CR (§5.1); one ``*`` per byte sent may follow, and the driver
    discards those before its next command.
    """
    return CR in buffer or buffer.startswith(BUSY)


def _body(reply: bytes, device: str) -> bytes:
    if not reply.endswith(CR):
        raise ReplyError(device, "reply does not end with CR", received=reply)
    body = reply[:-1]
    if CR in body:
        raise ReplyError(device, "more than one reply line", received=reply)
    return body


def decode_move_reply(reply: bytes, *, device: str = "idex") -> bool:
    """Decode the answer to ``P<hh>``: True if accepted (bare CR), False if busy (``*``).

    Raises:
        ReplyError: anything else.
    """
    if is_busy(reply):
        return False
    if _body(reply, device):
        raise ReplyError(device, "move reply is not a bare CR", received=reply)
    return True


def decode_status_reply(reply: bytes, *, device: str = "idex") -> ValveStatus:
    """Decode the answer to ``S``: a position, an error code, or busy (§5.1).

    Error codes are checked before positions: they are written as decimal pairs (``66``)
    that no valid position (hex ``01``..``0C``) can take.

    Raises:
        ReplyError: the reply is not two hex digits + CR, or names position 0.
    """
    if is_busy(reply):
        return ValveStatus(busy=True)
    body = _body(reply, device)
    text = body.decode("ascii", errors="replace")
    if len(body) != 2 or any(c not in "0123456789abcdefABCDEF" for c in text):
        raise ReplyError(device, "status reply is not two hex digits", received=reply)
    if text.isdigit() and int(text) in ERROR_CODES:
        return ValveStatus(error_code=int(text))
    position = int(text, 16)
    if position == 0:
        raise ReplyError(device, "status reply names position 0", received=reply)
    return ValveStatus(position=position)


def decode_command_mode_reply(reply: bytes, *, device: str = "idex") -> CommandMode:
    """Decode the answer to ``D``: the command mode as two hex digits [I].

    Raises:
        ReplyError: the reply is malformed or names no known mode.
    """
    body = _body(reply, device)
    text = body.decode("ascii", errors="replace")
    if len(body) != 2 or any(c not in "0123456789abcdefABCDEF" for c in text):
        raise ReplyError(device, "command-mode reply is not two hex digits", received=reply)
    try:
        return CommandMode(int(text, 16))
    except ValueError:
        raise ReplyError(device, "unknown command mode", received=reply) from None
