"""Errors raised by drivers and transports.

One hierarchy rooted at :class:`DeviceError`. Every error carries the device (or link)
name, and, where a byte exchange was involved, the bytes sent and received, so the one
line a user sees ("drug: no reply to b'00irun\\r' within 0.5 s") says what and where.
Bad arguments (an out-of-range rate) raise :class:`ValueError` before any I/O.
"""

from __future__ import annotations

__all__ = [
    "DeviceAlarm",
    "DeviceError",
    "DeviceNotFound",
    "DeviceRejected",
    "IncompatibleStateError",
    "ReplyError",
    "StrokeLimitError",
    "TransportError",
    "TransportTimeout",
]


def _fmt_bytes(data: bytes | None) -> str:
    if data is None:
        return "-"
    return repr(bytes(data))


class DeviceError(Exception):
    """Base class: something went wrong talking to, or inside, one device.

    Args:
        device: the device's name in the instrument config (or the link's name).
        message: what happened, in one line.
        sent: the bytes of the command concerned, if any.
        received: the bytes that came back, if any (possibly a partial frame).
    """

    def __init__(
        self,
        device: str,
        message: str,
        *,
        sent: bytes | None = None,
        received: bytes | None = None,
    ) -> None:
        """Build the error; ``str(err)`` is the one-line description."""
        self.device = device
        self.message = message
        self.sent = sent
        self.received = received
        super().__init__(self._line())

    def _line(self) -> str:
        line = f"{self.device}: {self.message}"
        if self.sent is not None or self.received is not None:
            line += f" (sent {_fmt_bytes(self.sent)}, received {_fmt_bytes(self.received)})"
        return line


class TransportError(DeviceError):
    """Raised when a link cannot be opened, read or written (port missing, unplugged)."""


class TransportTimeout(TransportError):
    """Raised when a reply (or the rest of one) did not arrive within the read timeout."""


class ReplyError(DeviceError):
    """Raised when a reply is malformed: bad checksum, wrong address, unparseable text."""


class DeviceRejected(DeviceError):
    """Raised when the device understood the frame but refused the command.

    Examples: a Harvard "Argument error", a New Era ``?OOR`` (out of range), a Cavro
    "invalid operand" status.
    """


class DeviceAlarm(DeviceError):
    """Raised when the device reports an alarm: stall, occlusion, end of travel, reset.

    Args:
        alarm: a short machine-readable alarm name (``"stall"``, ``"occlusion"``...).
    """

    def __init__(
        self,
        device: str,
        message: str,
        *,
        alarm: str,
        sent: bytes | None = None,
        received: bytes | None = None,
    ) -> None:
        """Build the alarm error."""
        self.alarm = alarm
        super().__init__(device, message, sent=sent, received=received)


class IncompatibleStateError(DeviceError):
    """Raised when an operation is not valid in the device's current state."""


class StrokeLimitError(IncompatibleStateError, ValueError):
    """Raised when a move does not fit the syringe's present content or stroke left.

    A stroke pump (Cavro) knows its plunger position, read from the pump: dispensing more
    than the syringe holds, or aspirating more than the stroke left, is refused before any
    move is sent. It is an :class:`IncompatibleStateError`, because the limit is the
    device's present state (a run reports it as a device fault naming the pump), and a
    ``ValueError``, like any other move refused before any I/O because of its arguments.
    """


class DeviceNotFound(DeviceError):
    """Raised by ``connect()`` when nothing, or the wrong model, answers on the link."""
