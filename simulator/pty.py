"""Serve byte-level emulators on pseudo-terminals, in real time.

Any program that opens a serial port by path (our own ``SerialTransport``, third-party
clients such as nesp-lib or flowchem, a terminal program) can talk to an emulator through a
PTY pair: the program opens the slave device path, and :class:`PtyServer` reads and writes
the master side (hardware-reference §8.1). The slave is put in raw mode, otherwise the
kernel's line discipline would echo and translate CR/LF.

The server listens on nothing but its pseudo-terminals, and each slave device is made
readable and writable by its owner only (mode 600): it is a local serial port, never a
network service.

Thread topology: one daemon thread per server runs a ``select()`` loop over every master
fd. Each turn it reads ``now_s()`` once, advances every device to that time, hands a
device the bytes that arrived for it, and writes whatever the device sent. The loop wakes
at least every ``poll_s`` (20 ms by default) even with no traffic, so motion and any
unsolicited output go on while the client is silent. All calls into the devices happen
on that thread, so the emulators need no locks; do not drive a served device from another
thread while the server runs.

The server owns no clock (DESIGN.md, "Time"): it is handed ``now_s``, typically
``RealClock().now_s`` for ``chipctl simulate serve`` or a controllable function in tests.

An emulator signals an unplugged port by raising ``ConnectionError``; the server then
closes that PTY, and the client's next read fails as on a real USB unplug (pyserial raises
``SerialException``, §8.1). A port closed this way stays closed until the server restarts.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import threading
import tty
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol

__all__ = ["ServedDevice", "PtyServer"]

logger = logging.getLogger(__name__)

#: Bytes read from a master fd per call; a command line is far shorter.
_READ_BYTES = 4096
#: Unsent output kept per port while the client is not reading; beyond it the oldest is
#: dropped, as a real UART's buffer would overflow.
_MAX_PENDING_BYTES = 1 << 20


class ServedDevice(Protocol):
    """The device side of an emulator (structurally the same as ``EmulatedDevice``)."""

    def advance_to(self, t_s: float) -> None:
        """Bring the device (and its world) to ``t_s``."""
        ...

    def receive(self, data: bytes) -> None:
        """Accept bytes from the host."""
        ...

    def take_output(self) -> bytes:
        """Return and clear the bytes the device has sent."""
        ...


@dataclass
class _Port:
    """One served device and its PTY pair."""

    name: str
    device: ServedDevice
    master_fd: int
    slave_fd: int
    path: str
    pending: bytearray = field(default_factory=bytearray)
    closed: bool = False


class PtyServer:
    """Serve several emulators, one PTY each, from one background thread.

    Example::

        with PtyServer({"pump": SimHarvardPump()}, RealClock().now_s) as server:
            port = serial.Serial(server.paths["pump"], timeout=0.5)

    Args:
        devices: emulators by name; each gets its own PTY.
        now_s: the time source handed to ``advance_to`` (seconds, monotonic).
        poll_s: the longest the loop sleeps in ``select()`` with no traffic.
    """

    def __init__(
        self,
        devices: Mapping[str, ServedDevice],
        now_s: Callable[[], float],
        *,
        poll_s: float = 0.02,
    ) -> None:
        """Remember the devices; nothing is opened until :meth:`start`."""
        self._devices = dict(devices)
        self._now_s = now_s
        self._poll_s = poll_s
        self._ports: list[_Port] = []
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._wake_r = self._wake_w = -1
        #: Slave device paths by device name (valid after :meth:`start`).
        self.paths: dict[str, str] = {}

    @property
    def is_running(self) -> bool:
        """Tell whether the serving thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def is_port_open(self, name: str) -> bool:
        """Tell whether the PTY of device ``name`` is still served (not unplugged)."""
        return any(port.name == name and not port.closed for port in self._ports)

    def start(self) -> None:
        """Open one raw PTY pair per device and start the serving thread.

        Raises:
            RuntimeError: the server is already running.
            OSError: the system cannot allocate a PTY.
        """
        if self._thread is not None:
            raise RuntimeError("PtyServer already started")
        try:
            for name, device in self._devices.items():
                master_fd, slave_fd = os.openpty()
                self._ports.append(_Port(name, device, master_fd, slave_fd, ""))
                # grantpt() leaves the slave writable by the tty group (mode 620 on most
                # systems): only the user who serves the emulators may drive them.
                os.fchmod(slave_fd, 0o600)
                tty.setraw(slave_fd)
                os.set_blocking(master_fd, False)
                self._ports[-1].path = os.ttyname(slave_fd)
                self.paths[name] = self._ports[-1].path
            self._wake_r, self._wake_w = os.pipe()
        except OSError:
            self._close_all()
            raise
        self._stopping.clear()
        self._thread = threading.Thread(target=self._serve, name="PtyServer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and close every PTY (idempotent)."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stopping.set()
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"x")
            thread.join()
        self._close_all()

    def __enter__(self) -> PtyServer:
        """Start serving; return the server (for :attr:`paths`)."""
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop serving."""
        self.stop()

    # ---------------------------------------------------------------------- internals

    def _serve(self) -> None:
        """The select loop (runs on the server thread)."""
        while not self._stopping.is_set():
            live = [port for port in self._ports if not port.closed]
            read_fds = [port.master_fd for port in live] + [self._wake_r]
            write_fds = [port.master_fd for port in live if port.pending]
            try:
                readable, _, _ = select.select(read_fds, write_fds, [], self._poll_s)
            except (OSError, ValueError):  # an fd closed under us during stop()
                if self._stopping.is_set():
                    return
                raise
            if self._wake_r in readable:
                return
            now_s = self._now_s()
            for port in live:
                try:
                    self._service(port, now_s, port.master_fd in readable)
                except ConnectionError:
                    logger.info("emulated port %s disconnected; closing its PTY", port.name)
                    self._close_port(port)
                except Exception:
                    # A bug in an emulator must not take the other ports down with it.
                    logger.exception("emulator %s failed; closing its PTY", port.name)
                    self._close_port(port)
                else:
                    if port.pending:  # the write is non-blocking: no need to wait for it
                        self._flush(port)

    def _service(self, port: _Port, now_s: float, readable: bool) -> None:
        """Advance one device, feed it what arrived, and queue what it sent."""
        port.device.advance_to(now_s)
        if readable:
            try:
                data = os.read(port.master_fd, _READ_BYTES)
            except BlockingIOError:
                data = b""
            except OSError as exc:
                if exc.errno != errno.EIO:  # EIO: no client has the slave open
                    raise
                data = b""
            if data:
                port.device.receive(data)
        out = port.device.take_output()
        if out:
            port.pending += out
            if len(port.pending) > _MAX_PENDING_BYTES:
                del port.pending[: len(port.pending) - _MAX_PENDING_BYTES]

    def _flush(self, port: _Port) -> None:
        """Write as much pending output as the PTY takes without blocking."""
        try:
            written = os.write(port.master_fd, port.pending)
        except BlockingIOError:
            return
        del port.pending[:written]

    def _close_port(self, port: _Port) -> None:
        """Close both ends of a PTY: the client sees the port vanish."""
        if port.closed:
            return
        port.closed = True
        port.pending.clear()
        for fd in (port.master_fd, port.slave_fd):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _close_all(self) -> None:
        for port in self._ports:
            self._close_port(port)
        self._ports.clear()
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._wake_r = self._wake_w = -1
