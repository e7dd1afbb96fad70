"""Run Sensirion's SHDLC client over a chipctl :class:`~drivers.transport.Transport`.

Sensirion's ``sensirion_shdlc_driver`` separates the SHDLC *port* (moves one frame out and
one frame back) from the *connection* and *device* classes (command semantics, error
codes). Its ports, ``ShdlcSerialPort`` and ``ShdlcTcpPort``, open the serial port or socket
themselves and time out on the system's wall clock, so they can neither share chipctl's
injected transports nor run on a virtual clock. :class:`TransportShdlcPort` implements the
same port interface (it subclasses Sensirion's abstract ``ShdlcPort``) on top of a
Transport, so Sensirion's ``ShdlcConnection``, ``ShdlcDevice`` and the SCC1 classes built
on them run unchanged over pyserial, a PTY, or an in-process emulator.

Framing stays Sensirion's: frames are built and validated with the package's
``ShdlcSerialMosiFrameBuilder``/``ShdlcSerialMisoFrameBuilder`` (byte stuffing, checksum,
length). This module only moves bytes: it holds the transport's lock for a whole
exchange and reads with :func:`drivers.transport.read_frame`, whose silence timeout waits
on the transport (on the clock, for an emulator), never on real time.

Errors follow the port contract, so Sensirion's code (and any third-party code using this
port) sees the exceptions it expects: no reply raises ``ShdlcTimeoutError`` (chained from
a :class:`~drivers.errors.TransportTimeout` that carries the bytes), a malformed reply
raises ``ShdlcResponseError``. A lost link raises :class:`~drivers.errors.TransportError`
unchanged, as a real ``ShdlcSerialPort`` lets pyserial's exception through.
"""

from __future__ import annotations

import logging
import threading

from sensirion_shdlc_driver.errors import ShdlcTimeoutError
from sensirion_shdlc_driver.port import ShdlcPort
from sensirion_shdlc_driver.serial_frame_builder import (
    ShdlcSerialMisoFrameBuilder,
    ShdlcSerialMosiFrameBuilder,
)

from drivers.errors import TransportTimeout
from drivers.transport import Transport, read_frame

__all__ = ["SHDLC_DEFAULT_BITRATE", "TransportShdlcPort", "is_shdlc_frame_complete"]

logger = logging.getLogger(__name__)

#: The SCC1-USB's line speed (hardware-reference §6.1), reported when the transport has none.
SHDLC_DEFAULT_BITRATE = 115200
_DELIMITER = 0x7E
#: Longest stuffed SHDLC frame (start + 2 x (4 header bytes + 255 data + checksum) + stop),
#: plus room for a little line noise before the start byte.
_MAX_FRAME_BYTES = 522 + 64


def is_shdlc_frame_complete(buffer: bytes) -> bool:
    """Tell whether ``buffer`` holds a whole SHDLC frame: a 0x7E start and a 0x7E end.

    Byte stuffing guarantees 0x7E occurs only as a delimiter, so the second 0x7E after
    the first ends the frame. Bytes before the start delimiter (line noise) are allowed.
    """
    start = buffer.find(_DELIMITER)
    return start >= 0 and buffer.find(_DELIMITER, start + 1) > start


class TransportShdlcPort(ShdlcPort):  # type: ignore[misc]  # Sensirion's package is untyped
    """Sensirion's SHDLC port interface over a chipctl transport.

    Args:
        transport: the link (its lock is the port's lock; it is opened by :meth:`open`).
        additional_response_time_s: added to each command's nominal response time to
            form the read's silence timeout, for USB latency and OS scheduling (the same
            allowance as ``ShdlcSerialPort``'s ``additional_response_time``).
        name: the device name used in the chained chipctl errors.

    Attributes:
        last_sent: the last frame written, for error reports.
        last_received: the bytes of the last reply read (possibly partial or garbled).
    """

    def __init__(
        self,
        transport: Transport,
        *,
        additional_response_time_s: float = 0.1,
        name: str | None = None,
    ) -> None:
        """Wrap ``transport``; no I/O."""
        super().__init__()
        if additional_response_time_s < 0:
            raise ValueError(
                f"additional_response_time_s must be >= 0, got {additional_response_time_s}"
            )
        self._transport = transport
        self._additional_response_time_s = float(additional_response_time_s)
        self._name = name or transport.name
        self.last_sent: bytes | None = None
        self.last_received: bytes | None = None

    @property
    def transport(self) -> Transport:
        """The wrapped transport."""
        return self._transport

    @property
    def description(self) -> str:
        """Describe the port as ``name@bitrate`` (Sensirion's format; the SCC1 parses it)."""
        return f"{self._transport.name}@{self.bitrate}"

    @property
    def bitrate(self) -> int:
        """The transport's baud rate, or the SCC1's 115200 for links without one."""
        baudrate = getattr(self._transport, "baudrate", None)
        return int(baudrate) if isinstance(baudrate, int) else SHDLC_DEFAULT_BITRATE

    @bitrate.setter
    def bitrate(self, bitrate: int) -> None:
        # Line settings belong to the transport and are fixed when it opens (hw-ref §8.1).
        raise NotImplementedError("set the baud rate in the transport's configuration")

    @property
    def lock(self) -> threading.RLock:
        """The transport's lock: one exchange at a time on the bus."""
        return self._transport.lock

    @property
    def is_open(self) -> bool:
        """Tell whether the transport is open."""
        return self._transport.is_open

    def open(self) -> None:
        """Open the transport (idempotent)."""
        self._transport.open()

    def close(self) -> None:
        """Close the transport (idempotent)."""
        self._transport.close()

    def transceive(
        self, slave_address: int, command_id: int, data: bytes, response_timeout: float
    ) -> tuple[int, int, int, bytes]:
        """Send one MOSI frame and return the reply's address, command, state and data.

        Args:
            slave_address: the SHDLC address.
            command_id: the command byte.
            data: the payload (0..255 bytes).
            response_timeout: the command's nominal response time in seconds; the read
                gives up after this plus ``additional_response_time_s`` of silence.

        Raises:
            ShdlcTimeoutError: no (complete) reply; chained from a
                :class:`~drivers.errors.TransportTimeout` with the bytes.
            ShdlcResponseError: the reply is malformed (checksum, length, too short).
            drivers.errors.TransportError: the link is gone.
        """
        tx = ShdlcSerialMosiFrameBuilder(slave_address, command_id, data).to_bytes()
        timeout_s = float(response_timeout) + self._additional_response_time_s
        with self._transport.lock:
            self.last_sent = bytes(tx)
            self.last_received = None
            # Stale bytes (a late reply to an earlier, timed-out command) would be taken
            # for this command's reply; ShdlcSerialPort flushes its input the same way.
            self._transport.reset_input()
            self._transport.write(tx)
            try:
                rx = read_frame(
                    self._transport,
                    is_shdlc_frame_complete,
                    timeout_s=timeout_s,
                    max_bytes=_MAX_FRAME_BYTES,
                    device=self._name,
                    sent=tx,
                )
            except TransportTimeout as exc:
                self.last_received = exc.received
                raise ShdlcTimeoutError() from exc
            self.last_received = rx
        builder = ShdlcSerialMisoFrameBuilder()
        builder.add_data(rx[rx.find(_DELIMITER) :])
        address, command, state, payload = builder.interpret_data()
        return int(address), int(command), int(state), bytes(payload)

    def __repr__(self) -> str:
        """Show the wrapped transport."""
        return f"TransportShdlcPort({self._transport.name!r})"
