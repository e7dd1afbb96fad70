"""The New Era emulator driven by nesp-lib, an independent client (hardware-reference §2.6).

nesp-lib opens a real serial path, so the emulator is served on a PTY by
:class:`simulator.pty.PtyServer`, on real time scaled by ``speed`` (pumping runs finish
quickly). nesp-lib has no read timeouts, so every test has a pytest-timeout.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import serial

from simulator.devices.newera import SimNewEraBus, SimNewEraPump
from simulator.pty import PtyServer

nesp_lib = pytest.importorskip("nesp_lib")

pytestmark = [pytest.mark.pty, pytest.mark.timeout(30)]


class Served:
    """Serves an emulator on a PTY; :attr:`lock` lets the test touch it between turns."""

    def __init__(self, device: SimNewEraPump | SimNewEraBus, *, speed: float = 1.0) -> None:
        self.device = device
        self.lock = threading.Lock()
        t0_s = time.monotonic()
        self._server = PtyServer({"pump": self}, lambda: (time.monotonic() - t0_s) * speed)
        self._server.start()
        self.path = self._server.paths["pump"]

    def advance_to(self, t_s: float) -> None:
        with self.lock:
            self.device.advance_to(t_s)

    def receive(self, data: bytes) -> None:
        with self.lock:
            self.device.receive(data)

    def take_output(self) -> bytes:
        with self.lock:
            return self.device.take_output()

    def is_port_open(self) -> bool:
        return self._server.is_port_open("pump")

    def stop(self) -> None:
        self._server.stop()


@pytest.fixture
def pump() -> SimNewEraPump:
    return SimNewEraPump(address=0, model="NE-1000")


@pytest.fixture
def server(pump: SimNewEraPump) -> Iterator[Served]:
    served = Served(pump, speed=100.0)
    yield served
    served.stop()


def test_init_acknowledges_power_on_alarm_and_reads_version(
    server: Served, pump: SimNewEraPump
) -> None:
    assert pump.alarm == "R"
    with nesp_lib.Port(server.path) as port:
        client = nesp_lib.Pump(port, model_number=1000)
        assert client.model_number == 1000
        assert client.firmware_version == (3, 928)
        assert client.firmware_upgrade == 0
        assert pump.alarm is None


def test_wrong_model_is_detected(server: Served) -> None:
    with nesp_lib.Port(server.path) as port, pytest.raises(nesp_lib.ModelException):
        nesp_lib.Pump(port, model_number=300)


def test_settings_round_trip(server: Served, pump: SimNewEraPump) -> None:
    with nesp_lib.Port(server.path) as port:
        client = nesp_lib.Pump(port)
        client.syringe_diameter_mm = 4.78
        assert client.syringe_diameter_mm == pytest.approx(4.78)
        client.pumping_rate_ml_per_min = 0.25  # sent as 250 UM
        assert client.pumping_rate_ml_per_min == pytest.approx(0.25)
        assert pump.rate_ul_min == pytest.approx(250.0)
        client.pumping_rate_ml_per_min = 0.0005  # sent as 30 UH
        assert client.pumping_rate_ml_per_min == pytest.approx(0.0005)
        client.pumping_volume_ml = 0.5  # sent as UL, then 500
        assert client.pumping_volume_ml == pytest.approx(0.5)
        client.pumping_direction = nesp_lib.PumpingDirection.WITHDRAW
        assert client.pumping_direction is nesp_lib.PumpingDirection.WITHDRAW
        client.pumping_direction = nesp_lib.PumpingDirection.INFUSE
        assert client.status is nesp_lib.Status.STOPPED


def test_run_to_target_volume_then_dispensed(server: Served, pump: SimNewEraPump) -> None:
    with nesp_lib.Port(server.path) as port:
        client = nesp_lib.Pump(port)
        client.syringe_diameter_mm = 4.78
        client.pumping_rate_ml_per_min = 0.6  # 600 uL/min x 100 speed: 10 uL in 10 ms
        client.pumping_volume_ml = 0.01
        client.volume_infused_clear()
        client.run(wait_while_running=True)
        assert client.status is nesp_lib.Status.STOPPED
        assert client.volume_infused_ml == pytest.approx(0.01)
        assert client.volume_withdrawn_ml == 0.0
        client.volume_infused_clear()
        assert client.volume_infused_ml == 0.0


def test_stop_pauses_a_continuous_run(server: Served) -> None:
    with nesp_lib.Port(server.path) as port:
        client = nesp_lib.Pump(port)
        client.syringe_diameter_mm = 4.78
        client.pumping_rate_ml_per_min = 0.01
        client.pumping_volume_ml = 0.001
        client.pumping_volume_ml = 9.0  # long enough never to finish here
        client.run(wait_while_running=False)
        assert client.running
        assert client.status is nesp_lib.Status.INFUSING
        client.stop()
        assert not client.running
        assert client.volume_infused_ml > 0.0


def test_errors_map_to_nesplib_exceptions(server: Served) -> None:
    with nesp_lib.Port(server.path) as port:
        client = nesp_lib.Pump(port)
        client.syringe_diameter_mm = 4.78
        with pytest.raises(ValueError):
            client.pumping_rate_ml_per_min = 50.0  # ?OOR: far above the 1 mL syringe's max
        client.pumping_rate_ml_per_min = 0.01
        client.pumping_volume_ml = 9.0
        client.run(wait_while_running=False)
        with pytest.raises(nesp_lib.StateException):
            client.syringe_diameter_mm = 10.0  # ?NA while pumping
        client.stop()


def test_stall_alarm_reaches_the_client(server: Served, pump: SimNewEraPump) -> None:
    with nesp_lib.Port(server.path) as port:
        client = nesp_lib.Pump(port)
        client.pumping_volume_ml = 9.0
        client.run(wait_while_running=False)
        with server.lock:
            pump.inject_stall()
        with pytest.raises(nesp_lib.StatusAlarmException) as info:
            client.status  # noqa: B018  (a query property)
        assert info.value.alarm_status is nesp_lib.AlarmStatus.STALLED
        assert client.status is nesp_lib.Status.STOPPED  # acknowledged by that reply


def test_safe_mode_round_trip_with_heartbeat() -> None:
    pump = SimNewEraPump()
    server = Served(pump, speed=1.0)  # real time: nesp-lib's heartbeat is real time
    try:
        with nesp_lib.Port(server.path) as port:
            client = nesp_lib.Pump(port, safe_mode_timeout_s=1)
            assert pump.safe_mode
            assert client.safe_mode_timeout_s == 1
            client.syringe_diameter_mm = 12.06
            assert client.syringe_diameter_mm == pytest.approx(12.06)
            time.sleep(1.6)  # nesp-lib's heartbeat (every 0.5 s) keeps the 1 s watchdog fed
            assert pump.alarm is None
            assert client.status is nesp_lib.Status.STOPPED
            client.safe_mode_timeout_s = 0
            assert not pump.safe_mode
            assert client.syringe_diameter_mm == pytest.approx(12.06)
    finally:
        server.stop()


def test_two_pumps_on_one_chain() -> None:
    pumps = [SimNewEraPump(address=1), SimNewEraPump(address=2, model="NE-4000")]
    server = Served(SimNewEraBus(pumps), speed=100.0)
    try:
        with nesp_lib.Port(server.path) as port:
            first = nesp_lib.Pump(port, address=1)
            second = nesp_lib.Pump(port, address=2)
            assert (first.model_number, second.model_number) == (1000, 4000)
            first.pumping_rate_ml_per_min = 0.1
            second.pumping_rate_ml_per_min = 0.2
            assert pumps[0].rate_ul_min == pytest.approx(100.0)
            assert pumps[1].rate_ul_min == pytest.approx(200.0)
    finally:
        server.stop()


def test_unplugged_port_fails_the_client(server: Served, pump: SimNewEraPump) -> None:
    with nesp_lib.Port(server.path) as port:
        client = nesp_lib.Pump(port)
        with server.lock:
            pump.faults.disconnected = True
        deadline_s = time.monotonic() + 5.0
        while server.is_port_open() and time.monotonic() < deadline_s:
            time.sleep(0.01)  # the server closes the PTY on its next turn
        with pytest.raises((serial.SerialException, OSError)):
            client.status  # noqa: B018  (a query property)
