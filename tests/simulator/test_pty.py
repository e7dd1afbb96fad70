"""PtyServer: emulators served on pseudo-terminals and spoken to with pyserial.

The only waits are bounded pyserial read timeouts. Most tests hand the server a clock the
test sets by hand, so motion is exact; one checks real time against ``RealClock``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import serial

from drivers.clock import RealClock
from simulator.devices.harvard import SimHarvardPump
from simulator.faults import CommFaults
from simulator.pty import PtyServer

pytestmark = pytest.mark.pty

READ_TIMEOUT_S = 2.0


class ManualTime:
    """A time source the test sets by hand (read from the server thread)."""

    def __init__(self) -> None:
        self.t_s = 0.0

    def __call__(self) -> float:
        return self.t_s


def ask(port: serial.Serial, command: bytes, expected: bytes) -> None:
    """Send ``command`` and check the exact reply (read with a bounded timeout)."""
    port.write(command)
    assert port.read(len(expected)) == expected
    assert port.read(port.in_waiting) == b""  # nothing extra queued


def wait_quietly(port: serial.Serial, duration_s: float) -> None:
    """Let the server run for ``duration_s`` while the client stays silent."""
    port.timeout = duration_s
    assert port.read(1) == b""
    port.timeout = READ_TIMEOUT_S


@pytest.fixture
def clock() -> ManualTime:
    return ManualTime()


@pytest.fixture
def pump() -> SimHarvardPump:
    return SimHarvardPump(model="legato")


@pytest.fixture
def server(pump: SimHarvardPump, clock: ManualTime) -> Iterator[PtyServer]:
    with PtyServer({"pump": pump}, clock) as srv:
        yield srv


@pytest.fixture
def port(server: PtyServer) -> Iterator[serial.Serial]:
    with serial.Serial(server.paths["pump"], baudrate=115200, timeout=READ_TIMEOUT_S) as client:
        yield client


def test_paths_are_terminals(server: PtyServer) -> None:
    path = server.paths["pump"]
    assert path.startswith("/dev/")
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    try:
        assert os.isatty(fd)
    finally:
        os.close(fd)


def test_raw_bytes_pass_untranslated(port: serial.Serial) -> None:
    ask(port, b"\r", b"\n:")
    ask(port, b"ver\r\n", b"\nLEGATO 100 I/W 3.0.4\r\n:")
    ask(port, b"irate 3.2 u/m\rirate\r", b"\n:\n3.2 ul/min\r\n:")


def test_client_can_close_and_reopen(server: PtyServer) -> None:
    for _ in range(2):
        with serial.Serial(server.paths["pump"], timeout=READ_TIMEOUT_S) as port:
            ask(port, b"\r", b"\n:")


def test_motion_follows_the_time_source(
    port: serial.Serial, clock: ManualTime, pump: SimHarvardPump
) -> None:
    ask(port, b"irate 60 u/m\r", b"\n:")
    ask(port, b"irun\r", b"\n>")
    clock.t_s = 30.0
    # The device is advanced to now before it sees the query.
    ask(port, b"ivolume\r", b"\n30 ul\r\n>")
    ask(port, b"status\r", b"\n1000000000 30000 30000000000 I...I.\r\n>")


def test_motion_advances_without_traffic(
    port: serial.Serial, clock: ManualTime, pump: SimHarvardPump
) -> None:
    ask(port, b"irate 60 u/m\r", b"\n:")
    ask(port, b"tvolume 5 ul\r", b"\n:")
    ask(port, b"irun\r", b"\n>")
    clock.t_s = 100.0
    wait_quietly(port, 0.3)  # the loop wakes every 20 ms
    assert pump.target_reached
    assert pump.infused_ul == 5.0
    ask(port, b"\r", b"\nT*")


def test_real_time_run(pump: SimHarvardPump) -> None:
    real = RealClock()
    with (
        PtyServer({"pump": pump}, real.now_s) as server,
        serial.Serial(server.paths["pump"], timeout=READ_TIMEOUT_S) as port,
    ):
        ask(port, b"irate 60 u/m\r", b"\n:")  # 1 uL/s
        t_before_run_s = real.now_s()
        ask(port, b"irun\r", b"\n>")
        t_running_s = real.now_s()
        wait_quietly(port, 0.25)
        t_before_stop_s = real.now_s()
        ask(port, b"stop\r", b"\n:")
        t_stopped_s = real.now_s()
    # The pump ran for at least the time between the two replies, at most the whole span.
    assert t_before_stop_s - t_running_s <= pump.infused_ul <= t_stopped_s - t_before_run_s


def test_several_devices_each_on_its_own_port(clock: ManualTime) -> None:
    pumps = {"a": SimHarvardPump(model="elite"), "b": SimHarvardPump(address=5)}
    with PtyServer(pumps, clock) as server:
        assert server.paths["a"] != server.paths["b"]
        with (
            serial.Serial(server.paths["a"], timeout=READ_TIMEOUT_S) as port_a,
            serial.Serial(server.paths["b"], timeout=READ_TIMEOUT_S) as port_b,
        ):
            ask(port_a, b"ver\r", b"\n11 ELITE I/W Single 3.0.4\r\n:")
            ask(port_b, b"5irun\r", b"\n05>")
            ask(port_a, b"\r", b"\n:")
    assert pumps["b"].running and not pumps["a"].running


def test_comm_fault_through_the_pty(clock: ManualTime) -> None:
    pump = SimHarvardPump(faults=CommFaults(partial=True))
    with (
        PtyServer({"pump": pump}, clock) as server,
        serial.Serial(server.paths["pump"], timeout=0.3) as port,
    ):
        port.write(b"ver\r")
        reply = b"\nPHD ULTRA I/W 3.0.4\r\n:"
        assert port.read(len(reply)) == reply[: len(reply) // 2]


def test_disconnected_fault_makes_the_port_vanish(clock: ManualTime) -> None:
    faults = CommFaults()
    unplugged = SimHarvardPump(faults=faults)
    other = SimHarvardPump()
    with PtyServer({"unplugged": unplugged, "other": other}, clock) as server:
        with (
            serial.Serial(server.paths["unplugged"], timeout=READ_TIMEOUT_S) as port,
            serial.Serial(server.paths["other"], timeout=READ_TIMEOUT_S) as other_port,
        ):
            ask(port, b"\r", b"\n:")
            faults.disconnected = True
            with pytest.raises(serial.SerialException):
                port.read(1)
            assert not server.is_port_open("unplugged")
            ask(other_port, b"\r", b"\n:")  # the other device is still served
        assert server.is_running


class _BrokenDevice:
    """An emulator with a bug: it raises on input."""

    def advance_to(self, t_s: float) -> None:
        pass

    def receive(self, data: bytes) -> None:
        raise RuntimeError("emulator bug")

    def take_output(self) -> bytes:
        return b""


def test_an_emulator_bug_closes_only_its_port(clock: ManualTime) -> None:
    with PtyServer({"broken": _BrokenDevice(), "pump": SimHarvardPump()}, clock) as server:
        with (
            serial.Serial(server.paths["broken"], timeout=READ_TIMEOUT_S) as port,
            serial.Serial(server.paths["pump"], timeout=READ_TIMEOUT_S) as pump_port,
        ):
            port.write(b"\r")
            with pytest.raises(serial.SerialException):
                port.read(1)
            ask(pump_port, b"\r", b"\n:")


def test_stop_closes_everything(clock: ManualTime) -> None:
    server = PtyServer({"pump": SimHarvardPump()}, clock)
    server.start()
    assert server.is_running
    with pytest.raises(RuntimeError, match="already started"):
        server.start()
    port = serial.Serial(server.paths["pump"], timeout=READ_TIMEOUT_S)
    try:
        ask(port, b"\r", b"\n:")
        server.stop()
        assert not server.is_running
        assert not server.is_port_open("pump")
        with pytest.raises(serial.SerialException):
            port.read(1)
    finally:
        port.close()
    server.stop()  # idempotent
