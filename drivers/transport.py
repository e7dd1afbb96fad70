"""Transports: byte pipes between a driver and one physical link.

A driver takes a :class:`Transport` in its constructor and never opens a port itself
(DESIGN.md, "The transport seam"). The driver owns framing and meaning; the transport
only moves bytes. One transport serves one bus, and its :attr:`Transport.lock` is held
for a whole command/reply exchange, so devices daisy-chained on one cable (New Era,
Harvard pump chains) never interleave frames.

Implementations here:

- :class:`SerialTransport`: pyserial, for hardware and for PTYs served by ``chipctl
  simulate serve``.
- :class:`EmulatorTransport`: an in-process byte-level emulator on a :class:`Clock`, for
  virtual-time runs. The emulator is anything satisfying :class:`EmulatedDevice`
  structurally; the simulator package implements it without importing this module.
- :class:`LoggingTransport`: wraps any transport and logs every byte at DEBUG, optionally
  recording a JSON-lines transcript.

The reading helpers (:func:`read_until`, :func:`read_frame`) use a
*silence* timeout: they give up when no new byte arrived for ``timeout_s``. That bounds
every read without needing a clock, on real and on virtual time alike.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import IO, Any, Protocol, runtime_checkable
from urllib.parse import parse_qsl, unquote, urlsplit

from drivers.clock import Clock
from drivers.errors import TransportError, TransportTimeout

__all__ = [
    "EmulatedDevice",
    "EmulatorTransport",
    "LoggingTransport",
    "SerialTransport",
    "Transport",
    "read_frame",
    "read_until",
]

logger = logging.getLogger(__name__)


def _port_errors() -> tuple[type[BaseException], ...]:
    """Return the exceptions a pyserial port raises when the device is gone.

    Besides ``SerialException`` and ``OSError``, pyserial lets ``termios.error`` through from
    ``tcdrain``/``tcflush`` when a USB adapter (or a PTY's other end) has vanished: it is
    neither of the two, and must become a TransportError too.
    """
    import serial

    errors: list[type[BaseException]] = [serial.SerialException, OSError]
    try:
        import termios
    except ImportError:  # Windows has no termios
        pass
    else:
        errors.append(termios.error)
    return tuple(errors)


#: Longest frame any supported device sends; a reader that got this many bytes without a
#: complete frame is reading garbage and stops.
MAX_FRAME_BYTES = 4096


@runtime_checkable
class Transport(Protocol):
    """A byte pipe to one link (an RS-232 bus, a USB-CDC port, a PTY, an emulator)."""

    name: str
    lock: threading.RLock

    def open(self) -> None:
        """Open the link (idempotent). Raises :class:`TransportError` if it cannot."""
        ...

    @property
    def is_open(self) -> bool:
        """Tell whether the link is open."""
        ...

    def write(self, data: bytes) -> None:
        """Send ``data``. Raises :class:`TransportError` if the link is gone."""
        ...

    def read_some(self, timeout_s: float) -> bytes:
        """Return the bytes that have arrived (at least one), or ``b""`` after ``timeout_s``."""
        ...

    def reset_input(self) -> None:
        """Discard bytes received but not yet read (stale replies, line noise)."""
        ...

    def close(self) -> None:
        """Close the link (idempotent)."""
        ...


@runtime_checkable
class EmulatedDevice(Protocol):
    """The device side of a byte-level emulator, as seen by :class:`EmulatorTransport`.

    The emulator owns no clock: it is advanced to the time it is handed. It signals an
    unplugged port by raising :class:`ConnectionError` from ``receive``/``take_output``.
    """

    def advance_to(self, t_s: float) -> None:
        """Bring the device (and the world behind it) to time ``t_s``."""
        ...

    def receive(self, data: bytes) -> None:
        """Accept bytes written by the host; replies are queued for ``take_output``."""
        ...

    def take_output(self) -> bytes:
        """Return and clear the bytes the device has sent since the last call."""
        ...


def read_frame(
    transport: Transport,
    is_complete: Callable[[bytes], bool],
    *,
    timeout_s: float,
    max_bytes: int = MAX_FRAME_BYTES,
    device: str | None = None,
    sent: bytes | None = None,
) -> bytes:
    """Read until ``is_complete(buffer)`` is true.

    Args:
        transport: the link to read from.
        is_complete: the codec's rule for "this buffer holds a whole reply".
        timeout_s: silence timeout: give up when no byte arrived for this long.
        max_bytes: give up when this many bytes came without a complete frame.
        device: the device name for error messages (defaults to the transport's).
        sent: the command these bytes answer, for error messages.

    Raises:
        TransportTimeout: nothing more arrived within ``timeout_s``, or too many bytes;
            carries what was received so far.
    """
    buffer = bytearray()
    while True:
        chunk = transport.read_some(timeout_s)
        if not chunk:
            what = "no reply" if not buffer else "incomplete reply"
            raise TransportTimeout(
                device or transport.name,
                f"{what} within {timeout_s:g} s",
                sent=sent,
                received=bytes(buffer),
            )
        buffer += chunk
        if is_complete(bytes(buffer)):
            return bytes(buffer)
        if len(buffer) > max_bytes:
            raise TransportTimeout(
                device or transport.name,
                f"no complete frame in {len(buffer)} bytes",
                sent=sent,
                received=bytes(buffer[:64]),
            )


def read_until(
    transport: Transport,
    terminator: bytes,
    *,
    timeout_s: float,
    device: str | None = None,
    sent: bytes | None = None,
) -> bytes:
    """Read until ``terminator`` has arrived; see :func:`read_frame` for the timeout rule."""
    return read_frame(
        transport,
        lambda buf: terminator in buf,
        timeout_s=timeout_s,
        device=device,
        sent=sent,
    )


class SerialTransport:
    """A pyserial port: real hardware, or a PTY served by ``chipctl simulate serve``.

    All line settings are passed when the port opens (on a PTY, changing ``bytesize`` on an
    open port fails; hardware-reference §8.1).

    Args:
        port: the device path, e.g. ``/dev/ttyUSB0`` or ``COM3``.
        baudrate: line speed in bit/s.
        bytesize, parity, stopbits: framing, pyserial's values (8, ``"N"``, 1 by default).
        name: the link name used in error messages (defaults to the port).
    """

    def __init__(
        self,
        port: str,
        *,
        baudrate: int = 9600,
        bytesize: int = 8,
        parity: str = "N",
        stopbits: float = 1,
        name: str | None = None,
    ) -> None:
        """Describe the port; nothing is opened until :meth:`open`."""
        self.port = port
        self.baudrate = baudrate
        self.bytesize = bytesize
        self.parity = parity
        self.stopbits = stopbits
        self.name = name or port
        self.lock = threading.RLock()
        self._serial: Any = None

    @classmethod
    def from_url(cls, url: str, *, name: str | None = None) -> SerialTransport:
        """Build from ``serial:///dev/ttyUSB0?baudrate=9600&parity=N``.

        Raises:
            ValueError: the URL is not a ``serial://`` URL or has an unknown option.
        """
        parts = urlsplit(url)
        if parts.scheme != "serial":
            raise ValueError(f"not a serial:// URL: {url!r}")
        port = unquote(parts.netloc + parts.path)
        if not port:
            raise ValueError(f"serial URL names no port: {url!r}")
        options: dict[str, str] = dict(parse_qsl(parts.query, strict_parsing=False))
        known = {"baudrate", "bytesize", "parity", "stopbits"}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"unknown serial option(s) {', '.join(unknown)} in {url!r}")
        try:
            return cls(
                port,
                baudrate=int(options.get("baudrate", 9600)),
                bytesize=int(options.get("bytesize", 8)),
                parity=options.get("parity", "N").upper(),
                stopbits=float(options.get("stopbits", 1)),
                name=name,
            )
        except ValueError as exc:
            raise ValueError(f"bad serial option in {url!r}: {exc}") from exc

    @property
    def is_open(self) -> bool:
        """Tell whether the port is open."""
        return self._serial is not None

    def open(self) -> None:
        """Open the port with all line settings at once."""
        if self._serial is not None:
            return
        import serial  # pyserial; imported here so the module loads without it

        try:
            self._serial = serial.Serial(
                port=self.port,
                baudrate=self.baudrate,
                bytesize=self.bytesize,
                parity=self.parity,
                stopbits=self.stopbits,
                timeout=0,
                write_timeout=2.0,
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            raise TransportError(self.name, f"cannot open serial port: {exc}") from exc

    def _port(self) -> Any:
        if self._serial is None:
            raise TransportError(self.name, "port is not open")
        return self._serial

    def write(self, data: bytes) -> None:
        """Write all of ``data``."""
        port = self._port()
        try:
            port.write(data)
            port.flush()
        except _port_errors() as exc:
            self._drop()
            raise TransportError(self.name, f"write failed: {exc}", sent=data) from exc

    def read_some(self, timeout_s: float) -> bytes:
        """Wait up to ``timeout_s`` for one byte, then take everything already buffered."""
        port = self._port()
        errors: tuple[type[BaseException], ...] = (*_port_errors(), TypeError)
        try:
            port.timeout = timeout_s
            first: bytes = port.read(1)
            if not first:
                return b""
            port.timeout = 0
            waiting = port.in_waiting
            rest: bytes = port.read(waiting) if waiting else b""
            return first + rest
        except errors as exc:
            # pyserial raises SerialException("device reports readiness to read but
            # returned no data") when the other end of a PTY went away (hw-ref §8.1).
            self._drop()
            raise TransportError(self.name, f"read failed: {exc}") from exc

    def reset_input(self) -> None:
        """Discard unread input."""
        port = self._port()
        try:
            port.reset_input_buffer()
        except _port_errors() as exc:
            self._drop()
            raise TransportError(self.name, f"reset failed: {exc}") from exc

    def _drop(self) -> None:
        """Forget a port that failed, so a later :meth:`open` can reconnect."""
        port, self._serial = self._serial, None
        if port is not None:
            try:
                port.close()
            except Exception:
                logger.debug("closing failed port %s raised", self.name, exc_info=True)

    def close(self) -> None:
        """Close the port."""
        self._drop()


class EmulatorTransport:
    """In-process link to a byte-level emulator, on a :class:`Clock`.

    Before every exchange the emulator is advanced to ``clock.now_s()``. A read that finds
    no reply waits ``timeout_s`` on the clock (instantly, under a virtual clock) and looks
    again, so a "no reply" fault costs the simulated time a real timeout would.

    Args:
        device: the emulator.
        clock: the run's clock.
        name: the link name for error messages.
    """

    def __init__(self, device: EmulatedDevice, clock: Clock, *, name: str) -> None:
        """Attach to ``device``; nothing happens until :meth:`open`."""
        self.device = device
        self.clock = clock
        self.name = name
        self.lock = threading.RLock()
        self._open = False

    @property
    def is_open(self) -> bool:
        """Tell whether the link is open."""
        return self._open

    def open(self) -> None:
        """Open the link; fails if the emulated port has disappeared."""
        try:
            self.device.advance_to(self.clock.now_s())
            self.device.take_output()  # whatever the device said before we listened is lost
        except ConnectionError as exc:
            raise TransportError(self.name, f"cannot open emulated port: {exc}") from exc
        self._open = True

    def _check_open(self) -> None:
        if not self._open:
            raise TransportError(self.name, "port is not open")

    def write(self, data: bytes) -> None:
        """Hand ``data`` to the emulator."""
        self._check_open()
        try:
            self.device.advance_to(self.clock.now_s())
            self.device.receive(bytes(data))
        except ConnectionError as exc:
            self._open = False
            raise TransportError(self.name, f"write failed: {exc}", sent=data) from exc

    def read_some(self, timeout_s: float) -> bytes:
        """Return what the emulator has sent, waiting ``timeout_s`` on the clock if nothing."""
        self._check_open()
        try:
            self.device.advance_to(self.clock.now_s())
            out = self.device.take_output()
            if out:
                return out
            self.clock.sleep_s(timeout_s)
            self.device.advance_to(self.clock.now_s())
            return self.device.take_output()
        except ConnectionError as exc:
            self._open = False
            raise TransportError(self.name, f"read failed: {exc}") from exc

    def reset_input(self) -> None:
        """Discard what the emulator has sent."""
        self._check_open()
        try:
            self.device.advance_to(self.clock.now_s())
            self.device.take_output()
        except ConnectionError as exc:
            self._open = False
            raise TransportError(self.name, f"reset failed: {exc}") from exc

    def close(self) -> None:
        """Close the link."""
        self._open = False


class LoggingTransport:
    """Wraps a transport and logs every byte in and out.

    Traffic goes to the ``drivers.transport.wire`` logger at DEBUG. With ``record_to`` a
    JSON-lines transcript is written too (one object per write/read: ``dir``, ``hex``),
    for bench debugging and for turning a hardware session into scripted exchange tests.
    """

    wire_logger = logging.getLogger("drivers.transport.wire")

    def __init__(self, inner: Transport, *, record_to: IO[str] | None = None) -> None:
        """Wrap ``inner``."""
        self.inner = inner
        self.name = inner.name
        self.lock = inner.lock
        self._record_to = record_to

    @property
    def is_open(self) -> bool:
        """Tell whether the wrapped link is open."""
        return self.inner.is_open

    def _log(self, direction: str, data: bytes) -> None:
        self.wire_logger.debug("%s %s %r", self.name, direction, data)
        if self._record_to is not None:
            self._record_to.write(json.dumps({"dir": direction, "hex": data.hex()}) + "\n")

    def open(self) -> None:
        """Open the wrapped link."""
        self.inner.open()

    def write(self, data: bytes) -> None:
        """Log and write."""
        self._log("tx", data)
        self.inner.write(data)

    def read_some(self, timeout_s: float) -> bytes:
        """Read and log."""
        data = self.inner.read_some(timeout_s)
        if data:
            self._log("rx", data)
        return data

    def reset_input(self) -> None:
        """Reset the wrapped link's input."""
        self.inner.reset_input()

    def close(self) -> None:
        """Close the wrapped link."""
        self.inner.close()
