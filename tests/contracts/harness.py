"""What every role contract needs: an emulator served over a link, on a virtual clock.

A :class:`Link` connects an emulator to a driver either in-process
(:class:`~drivers.transport.EmulatorTransport`) or through a pseudo-terminal served by
:class:`~simulator.pty.PtyServer` (pyserial on the slave side, the serial stack the driver
uses on hardware). Both run on the same :class:`~drivers.clock.VirtualClock`: in-process
the transport advances the emulator to the clock's now, through the PTY the server thread
does, each time it wakes.

Two details make the PTY runs deterministic and the contracts sharper:

- the served emulator is wrapped in :class:`LockedDevice`, so a test that injects a fault
  (or reads the emulator's true state) never runs inside the server thread's turn
  (``simulator/pty.py``: "do not drive a served device from another thread");
- the driver's transport is wrapped in :class:`CountingTransport`, so a contract can say
  "refused before any I/O" and check it, not just assume it.
"""

from __future__ import annotations

import select
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

from drivers.clock import VirtualClock
from drivers.transport import EmulatorTransport, LoggingTransport, SerialTransport, Transport
from simulator.pty import PtyServer

LINKS = ("inproc", "pty")


@dataclass(frozen=True)
class KnownBug:
    """A bug a contract test exposed and that was reported, not fixed, by the tests' author.

    Attributes:
        reason: the bug, precisely (shown by pytest).
        raises: what the test fails with because of it; any other failure is a real one.
    """

    reason: str
    raises: type[BaseException] = AssertionError


UNPLUGGED_PTY = "test_an_unplugged_link_is_a_transport_error[pty]"


def mark_known_bugs(
    request: pytest.FixtureRequest, link: str, impl_bugs: Mapping[str, KnownBug] | None = None
) -> None:
    """Mark the running test xfail(strict=True) if it hits a known, reported bug.

    Args:
        request: the test's fixture request.
        link: ``"inproc"`` or ``"pty"``.
        impl_bugs: bugs of one implementation, by test name (any link) or
            ``"<test name>[<link>]"`` (that link only).
    """
    name = request.node.originalname
    bugs = impl_bugs or {}
    bug = bugs.get(name) or bugs.get(f"{name}[{link}]")
    if bug is not None:
        request.node.add_marker(
            pytest.mark.xfail(strict=True, reason=bug.reason, raises=bug.raises)
        )


_T = TypeVar("_T")


class LockedDevice:
    """An emulator whose every call holds one lock (the emulator interface, serialised)."""

    def __init__(self, device: Any) -> None:
        self.device = device
        self.lock = threading.RLock()

    def advance_to(self, t_s: float) -> None:
        with self.lock:
            self.device.advance_to(t_s)

    def receive(self, data: bytes) -> None:
        with self.lock:
            self.device.receive(data)

    def take_output(self) -> bytes:
        with self.lock:
            out: bytes = self.device.take_output()
            return out


class CountingTransport(LoggingTransport):
    """A transport wrapper that counts the writes (and logs bytes, as in production)."""

    def __init__(self, inner: Transport) -> None:
        super().__init__(inner)
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1
        super().write(data)


class Link:
    """An emulator reachable through a transport, in-process or over a PTY.

    Args:
        emulator: the device side (``advance_to``/``receive``/``take_output``).
        clock: the virtual clock of the run.
        kind: ``"inproc"`` or ``"pty"``.
        baudrate: the line speed the driver opens the PTY with (a PTY ignores it).
    """

    def __init__(
        self, emulator: Any, clock: VirtualClock, kind: str, *, baudrate: int = 9600
    ) -> None:
        if kind not in LINKS:
            raise ValueError(f"unknown link {kind!r}")
        self.kind = kind
        self.emulator = emulator
        self.clock = clock
        self.device = LockedDevice(emulator)
        self.server: PtyServer | None = None
        inner: Transport
        if kind == "inproc":
            inner = EmulatorTransport(self.device, clock, name="emu")
        else:
            self.server = PtyServer({"dev": self.device}, clock.now_s)
            self.server.start()
            inner = SerialTransport(self.server.paths["dev"], baudrate=baudrate, name="pty")
        self.transport = CountingTransport(inner)

    def on_device(self, action: Callable[[Any], _T]) -> _T:
        """Run ``action(emulator)`` at the clock's now, outside the server's turn.

        Emulators advance lazily, so the device is first brought to now: a fault injected
        at t = 60 s happens at 60 s, not at the time of the last exchange.
        """
        with self.device.lock:
            self.emulator.advance_to(self.clock.now_s())
            return action(self.emulator)

    def unplug(self) -> None:
        """Pull the cable: the emulator raises ConnectionError from now on.

        Through a PTY, this returns once the server has closed the port (the client's end
        then reads as hung up), so the next command meets a vanished port every time, as
        after a USB unplug while idle, instead of racing the server's next turn.
        """
        self.on_device(_disconnect)
        if self.server is not None:
            # A bounded read wait: the slave end turns readable (EOF/EIO) when the master
            # closes. pyserial exposes no public fd on the transport, hence the private one.
            fd = self.transport.inner._serial.fileno()  # type: ignore[attr-defined]
            readable, _, _ = select.select([fd], [], [], 2.0)
            assert readable and not self.server.is_port_open("dev"), "PTY was not closed"

    def replug(self) -> None:
        """Plug the cable back in (in-process only: a closed PTY stays closed)."""
        if self.server is not None:
            raise RuntimeError("PtyServer closes an unplugged port for good")
        self.on_device(_reconnect)

    def close(self) -> None:
        """Stop serving (the driver closes its own transport)."""
        if self.server is not None:
            self.server.stop()


def _disconnect(emulator: Any) -> None:
    emulator.faults.disconnected = True


def _reconnect(emulator: Any) -> None:
    emulator.faults.disconnected = False


#: The two ways every contract test reaches its emulator, as fixture parameters.
LINK_PARAMS = ["inproc", pytest.param("pty", marks=pytest.mark.pty)]


def contract_fixtures(impls, bench_class):
    """Return the ``impl`` and ``bench`` fixtures of one role's contract suite.

    ``impl`` runs over every implementation in ``impls``; ``bench`` builds
    ``bench_class(impl, link)`` for each link in :data:`LINK_PARAMS`, marks the test for the
    implementation's known bugs, and closes the bench afterwards. Use as
    ``impl, bench = contract_fixtures(PUMP_IMPLS, Bench)`` at module level.
    """

    @pytest.fixture(params=sorted(impls))
    def impl(request):
        return impls[request.param]

    @pytest.fixture(params=LINK_PARAMS)
    def bench(request, impl):
        mark_known_bugs(request, request.param, impl.known_bugs)
        made = bench_class(impl, request.param)
        yield made
        made.close()

    return impl, bench
