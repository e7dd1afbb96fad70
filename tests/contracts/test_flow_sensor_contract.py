"""The FlowSensor contract, run over every flow-sensor driver against its emulator.

Each test runs twice per implementation: in-process (EmulatorTransport on a virtual clock)
and through a pseudo-terminal served by simulator.pty.PtyServer, the emulator advanced to
the same virtual clock. Tolerances come from the sensor's stated quality (flow_sensors.py):
one reading lies within 6 sigma plus one count of the true flow, the mean of N readings
within 5 sigma / sqrt(N) plus one count. The emulator's noise is seeded, so the readings,
and the test, are the same on every run.
"""

from __future__ import annotations

import math
import statistics

import pytest

from drivers.clock import VirtualClock
from drivers.errors import DeviceAlarm, DeviceError, TransportError, TransportTimeout
from simulator.world import World

from .flow_sensors import FLOW_SENSOR_IMPLS
from .harness import Link, contract_fixtures

#: Readings averaged per set point.
N_READS = 20
#: Time between two readings (the engine's telemetry period is of this order).
READ_PERIOD_S = 0.1


class Bench:
    """A connected flow-sensor driver on its emulator."""

    def __init__(self, impl, link):
        self.impl = impl
        self.clock = VirtualClock()
        self.world = World(seed=1)
        self.emulator = impl.make_emulator(self.world)
        self.link = Link(self.emulator, self.clock, link, baudrate=impl.baudrate)
        self.sensor = impl.make_driver(self.link.transport, self.clock)
        self.sensor.connect()

    def set_flow(self, flow_ul_min):
        self.link.on_device(lambda emulator: self.impl.set_true_flow(emulator, flow_ul_min))

    def reads(self, n=N_READS):
        readings = []
        for _ in range(n):
            self.clock.sleep_s(READ_PERIOD_S)
            readings.append(self.sensor.read())
        return readings

    def one_read_tolerance(self):
        return 6 * self.impl.noise_ul_min + self.impl.count_ul_min

    def mean_tolerance(self, n=N_READS):
        return 5 * self.impl.noise_ul_min / math.sqrt(n) + self.impl.count_ul_min

    def assert_tracks(self, flow_ul_min):
        readings = self.reads()
        flows = [reading.flow_ul_min for reading in readings]
        for flow in flows:
            assert flow == pytest.approx(flow_ul_min, abs=self.one_read_tolerance())
        assert statistics.fmean(flows) == pytest.approx(flow_ul_min, abs=self.mean_tolerance())
        return readings

    def close(self):
        try:
            self.sensor.close()
        finally:
            self.link.close()


impl, bench = contract_fixtures(FLOW_SENSOR_IMPLS, Bench)


def test_connect_starts_measuring_zero_flow_and_the_temperature(bench):
    bench.link.on_device(lambda emulator: bench.impl.set_temperature(emulator, 31.5))
    readings = bench.assert_tracks(0.0)
    for reading in readings:
        assert reading.temperature_c == pytest.approx(31.5, abs=0.01)
        assert not reading.air_in_line and not reading.high_flow


@pytest.mark.parametrize("fraction_of_full_scale", [0.005, 0.1, -0.05, 0.6])
def test_reads_track_the_true_flow_within_the_noise(bench, fraction_of_full_scale):
    flow_ul_min = fraction_of_full_scale * bench.impl.full_scale_ul_min
    bench.set_flow(flow_ul_min)
    readings = bench.assert_tracks(flow_ul_min)
    assert all(not reading.high_flow for reading in readings)


def test_reads_follow_a_change_of_flow(bench):
    low = 0.01 * bench.impl.full_scale_ul_min
    high = 0.2 * bench.impl.full_scale_ul_min
    bench.set_flow(low)
    bench.assert_tracks(low)
    bench.set_flow(high)
    bench.assert_tracks(high)  # no stale sample from before the change
    bench.set_flow(0.0)
    bench.assert_tracks(0.0)


def test_air_in_line_is_flagged_while_a_bubble_passes(bench):
    bench.set_flow(0.05 * bench.impl.full_scale_ul_min)
    assert not any(reading.air_in_line for reading in bench.reads(3))
    bench.link.on_device(lambda emulator: bench.impl.set_air_in_line(emulator, True))
    assert all(reading.air_in_line for reading in bench.reads(3))
    bench.link.on_device(lambda emulator: bench.impl.set_air_in_line(emulator, False))
    assert not any(reading.air_in_line for reading in bench.reads(3))


def test_flow_above_the_calibrated_range_is_flagged(bench):
    over = 1.2 * bench.impl.full_scale_ul_min
    assert over < bench.impl.max_reading_ul_min
    bench.set_flow(over)
    readings = bench.assert_tracks(over)
    assert all(reading.high_flow for reading in readings)
    bench.set_flow(-over)  # the range is symmetric: reverse flow too
    assert all(reading.high_flow for reading in bench.reads(3))
    bench.set_flow(0.5 * bench.impl.full_scale_ul_min)
    assert not any(reading.high_flow for reading in bench.reads(3))


def test_reconnect_keeps_measuring(bench):
    flow = 0.1 * bench.impl.full_scale_ul_min
    bench.set_flow(flow)
    bench.assert_tracks(flow)
    bench.sensor.reconnect()
    bench.assert_tracks(flow)


def test_a_sensor_reset_is_a_typed_alarm_and_reconnect_recovers(bench):
    flow = 0.1 * bench.impl.full_scale_ul_min
    bench.set_flow(flow)
    bench.assert_tracks(flow)
    bench.link.on_device(bench.impl.inject_sensor_reset)
    with pytest.raises(DeviceError) as info:
        bench.sensor.read()
    assert isinstance(info.value, DeviceAlarm) and info.value.alarm
    assert info.value.device == bench.sensor.name
    bench.sensor.reconnect()
    bench.assert_tracks(flow)


def test_a_missing_reply_is_a_typed_error(bench):
    flow = 0.1 * bench.impl.full_scale_ul_min
    bench.set_flow(flow)

    def silence(emulator):
        emulator.faults.no_reply = True

    def speak(emulator):
        emulator.faults.no_reply = False

    bench.link.on_device(silence)
    with pytest.raises(TransportTimeout) as info:
        bench.sensor.read()
    assert info.value.device == bench.sensor.name
    bench.link.on_device(speak)
    bench.assert_tracks(flow)  # the link recovers without a reconnect


def test_an_unplugged_link_is_a_transport_error(bench):
    bench.link.unplug()
    with pytest.raises(TransportError):
        bench.sensor.read()
    with pytest.raises(TransportError):
        bench.sensor.reconnect()  # still unplugged


def test_reconnect_after_replug_resumes_reading(bench):
    if bench.link.kind == "pty":
        pytest.skip("PtyServer closes an unplugged port for good (simulator/pty.py)")
    flow = 0.1 * bench.impl.full_scale_ul_min
    bench.set_flow(flow)
    bench.link.unplug()
    with pytest.raises(TransportError):
        bench.sensor.read()
    bench.link.replug()
    bench.sensor.reconnect()
    bench.assert_tracks(flow)
