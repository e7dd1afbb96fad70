"""SensirionFlowSensor and the SHDLC port adapter: scripted bytes, emulator, PTY.

The driver uses Sensirion's own SHDLC/SCC1 client; the emulator is an independent
implementation of the device side, so these tests cross-check both.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sensirion_shdlc_driver import ShdlcConnection, ShdlcDevice
from sensirion_shdlc_driver.errors import ShdlcResponseError, ShdlcTimeoutError

from drivers.clock import RealClock, VirtualClock
from drivers.errors import (
    DeviceAlarm,
    DeviceError,
    DeviceNotFound,
    IncompatibleStateError,
    ReplyError,
    TransportError,
    TransportTimeout,
)
from drivers.roles import FlowSensor
from drivers.sensirion import SensirionFlowSensor, TransportShdlcPort
from drivers.sensirion.flow import flow_unit_ul_min
from drivers.sensirion.shdlc_port import is_shdlc_frame_complete
from drivers.testing import ScriptedTransport
from drivers.transport import EmulatorTransport, SerialTransport
from simulator.devices.sensirion import SimScc1Slf3s


def miso(command: int, data: bytes, state: int = 0, address: int = 0) -> bytes:
    """A MISO frame built by hand (no bytes here need stuffing)."""
    content = bytes((address, command, state, len(data))) + data
    return b"\x7e" + content + bytes((~sum(content) & 0xFF,)) + b"\x7e"


# --- the port adapter -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("buffer", "complete"),
    [
        (b"", False),
        (b"\x7e\x00\xd0", False),
        (b"\x7e\x00\xd0\x00\x00\x2f\x7e", True),
        (b"\x00\xff\x7e\x00\x7e", True),  # line noise before the start
        (b"\x7e\x7d\x5e", False),  # a stuffed 0x7E is not a delimiter
    ],
)
def test_frame_complete_rule(buffer: bytes, complete: bool) -> None:
    assert is_shdlc_frame_complete(buffer) is complete


def test_port_exchanges_the_manual_example_bytes() -> None:
    transport = ScriptedTransport(
        [(bytes.fromhex("7e00d001012d7e"), miso(0xD0, b"SCC1\x00"))], name="link"
    )
    port = TransportShdlcPort(transport)
    port.open()
    assert ShdlcDevice(ShdlcConnection(port), 0).get_product_name() == "SCC1"
    transport.assert_done()
    assert port.description == "link@115200"
    assert port.lock is transport.lock


def test_port_timeout_is_shdlc_timeout_chained_from_transport_timeout() -> None:
    transport = ScriptedTransport([(bytes.fromhex("7e00d001012d7e"), b"\x7e\x00\xd0")])
    port = TransportShdlcPort(transport, name="flow")
    port.open()
    with pytest.raises(ShdlcTimeoutError) as info:
        ShdlcDevice(ShdlcConnection(port), 0).get_product_name()
    cause = info.value.__cause__
    assert isinstance(cause, TransportTimeout)
    assert cause.device == "flow"
    assert cause.received == b"\x7e\x00\xd0"
    assert port.last_received == b"\x7e\x00\xd0"


def test_port_reports_bad_checksum_as_response_error() -> None:
    reply = bytearray(miso(0xD0, b"SCC1\x00"))
    reply[-2] ^= 0x01
    transport = ScriptedTransport([(bytes.fromhex("7e00d001012d7e"), bytes(reply))])
    port = TransportShdlcPort(transport)
    port.open()
    with pytest.raises(ShdlcResponseError, match="checksum"):
        ShdlcDevice(ShdlcConnection(port), 0).get_product_name()


def test_port_waits_on_the_virtual_clock_not_in_real_time() -> None:
    clock = VirtualClock()
    device = SimScc1Slf3s()
    device.faults.no_reply = True
    port = TransportShdlcPort(
        EmulatorTransport(device, clock, name="link"), additional_response_time_s=0.25
    )
    port.open()
    with pytest.raises(ShdlcTimeoutError):
        port.transceive(0, 0xD1, b"", 10.0)
    assert clock.now_s() == pytest.approx(10.25)  # one silence timeout, in virtual time


def test_port_bitrate_cannot_be_changed_through_the_port() -> None:
    port = TransportShdlcPort(ScriptedTransport([]))
    with pytest.raises(NotImplementedError):
        port.bitrate = 9600


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet="~}\x11\x13AZ09 -", max_size=200))
def test_stuffed_bytes_survive_emulator_and_sensirion_builders(serial: str) -> None:
    # The emulator stuffs with its own code, Sensirion's builder unstuffs with theirs.
    device = SimScc1Slf3s()
    device.serial_number = serial
    port = TransportShdlcPort(EmulatorTransport(device, VirtualClock(), name="link"))
    port.open()
    assert ShdlcDevice(ShdlcConnection(port), 0).get_serial_number() == serial


@pytest.mark.parametrize(
    ("unit_code", "ul_min"),
    [(0x0845, 1000.0), (0x0844, 1.0), (0x0835, 60_000.0), (0x0855, 1000.0 / 60)],
)
def test_flow_unit_decoding(unit_code: int, ul_min: float) -> None:
    assert flow_unit_ul_min(unit_code) == pytest.approx(ul_min)


def test_flow_unit_decoding_rejects_gas_units() -> None:
    with pytest.raises(ValueError):
        flow_unit_ul_min(0x0145)  # standard litres: a gas unit


# --- the driver on the in-process emulator ----------------------------------------------


class Rig:
    def __init__(self, **device_kwargs: object) -> None:
        self.clock = VirtualClock()
        self.device = SimScc1Slf3s(noise_ul_min=0.0, **device_kwargs)  # type: ignore[arg-type]
        self.transport = EmulatorTransport(self.device, self.clock, name="scc1-link")

    def sensor(self, **kwargs: object) -> SensirionFlowSensor:
        return SensirionFlowSensor(
            self.transport,
            name="flow",
            clock=self.clock,
            **kwargs,  # type: ignore[arg-type]
        )


@pytest.fixture
def rig() -> Rig:
    return Rig()


@pytest.fixture
def connected(rig: Rig) -> Iterator[tuple[Rig, SensirionFlowSensor]]:
    sensor = rig.sensor()
    sensor.connect()
    yield rig, sensor
    sensor.close()


def test_is_a_flow_sensor_and_constructor_does_no_io() -> None:
    transport = ScriptedTransport([])
    sensor = SensirionFlowSensor(transport, name="flow", clock=VirtualClock())
    assert isinstance(sensor, FlowSensor)
    assert transport.writes == [] and not transport.is_open


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sensor": "LG16-1000D"},
        {"liquid": "ethanol"},
        {"timeout_s": 0.0},
        {"slave_address": 255},
        {"sampling_interval_ms": -1},
    ],
)
def test_constructor_validates(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="flow"):
        SensirionFlowSensor(
            ScriptedTransport([]),
            name="flow",
            clock=VirtualClock(),
            **kwargs,  # type: ignore[arg-type]
        )


def test_connect_identifies_and_starts_measuring(
    connected: tuple[Rig, SensirionFlowSensor],
) -> None:
    rig, sensor = connected
    identity = sensor.identity
    assert identity is not None
    assert identity.cable_serial == "SCC1-EMU-0001"
    assert identity.firmware_version == "1.9"
    assert identity.sensor_product_id >> 8 == 0x070302
    assert identity.sensor_serial == rig.device.sensor_serial
    assert (identity.scale_per_unit, identity.flow_unit) == (500.0, "ml/min")
    assert identity.scale_from_device
    assert rig.device.measurement_command == 0x3608  # water calibration
    assert rig.device.is_measuring


def test_read_converts_flow_and_temperature(connected: tuple[Rig, SensirionFlowSensor]) -> None:
    rig, sensor = connected
    rig.device.true_flow_ul_min = 35.0
    rig.device.temperature_c = 31.25
    reading = sensor.read()
    assert reading.flow_ul_min == pytest.approx(36.0)  # 1300F resolution: 2 uL/min
    assert reading.temperature_c == pytest.approx(31.25)
    assert not reading.air_in_line and not reading.high_flow
    rig.device.true_flow_ul_min = -1000.0
    assert sensor.read().flow_ul_min == pytest.approx(-1000.0)


def test_read_costs_no_real_time_and_little_virtual_time(
    connected: tuple[Rig, SensirionFlowSensor],
) -> None:
    rig, sensor = connected
    t0_s = rig.clock.now_s()
    for _ in range(100):
        sensor.read()
    assert rig.clock.now_s() == t0_s  # replies are immediate: no timeout was waited


def test_ipa_calibration_and_0600f_scale() -> None:
    rig = Rig(sensor="SLF3S-0600F")
    sensor = rig.sensor(sensor="SLF3S-0600F", liquid="IPA")
    sensor.connect()
    assert rig.device.measurement_command == 0x3615
    assert sensor.identity is not None and sensor.identity.flow_unit == "ul/min"
    rig.device.true_flow_ul_min = 12.3
    assert sensor.read().flow_ul_min == pytest.approx(12.3)  # 10 counts per uL/min


def test_flags_air_in_line_and_high_flow(connected: tuple[Rig, SensirionFlowSensor]) -> None:
    rig, sensor = connected
    rig.device.air_in_line = True
    assert sensor.read().air_in_line
    rig.device.air_in_line = False
    rig.device.true_flow_ul_min = 45_000.0
    reading = sensor.read()
    assert reading.high_flow and not reading.air_in_line


def test_wrong_model_is_not_found() -> None:
    rig = Rig(sensor="SLF3S-0600F")
    with pytest.raises(DeviceNotFound, match="flow: expected an SLF3S-1300F"):
        rig.sensor().connect()


def test_connect_configures_sensor_type_if_needed(rig: Rig) -> None:
    rig.device.sensor_type = 0  # cable left configured for an SF04 sensor
    rig.sensor().connect()
    assert rig.device.sensor_type == 3


def test_connect_restarts_a_measurement_left_running(rig: Rig) -> None:
    first = rig.sensor(liquid="ipa")
    first.connect()
    # Another session connects without the first having closed: water now.
    rig.sensor().connect()
    assert rig.device.measurement_command == 0x3608


def test_datasheet_scale_when_firmware_lacks_the_query() -> None:
    rig = Rig()
    rig.device.unsupported_commands = {0x53}
    sensor = rig.sensor()
    sensor.connect()
    assert sensor.identity is not None and not sensor.identity.scale_from_device
    rig.device.true_flow_ul_min = 100.0
    assert sensor.read().flow_ul_min == pytest.approx(100.0)


def test_read_before_connect_is_incompatible_state(rig: Rig) -> None:
    with pytest.raises(IncompatibleStateError, match="flow: not connected"):
        rig.sensor().read()


def test_close_stops_measurement_and_releases_the_link(
    connected: tuple[Rig, SensirionFlowSensor],
) -> None:
    rig, sensor = connected
    sensor.close()
    assert not rig.device.is_measuring
    assert not rig.transport.is_open
    sensor.close()  # idempotent


def test_close_on_a_dead_link_does_not_raise(connected: tuple[Rig, SensirionFlowSensor]) -> None:
    rig, sensor = connected
    rig.device.faults.no_reply = True
    sensor.close()
    assert not rig.transport.is_open


def test_concurrent_reads_do_not_interleave_frames(
    connected: tuple[Rig, SensirionFlowSensor],
) -> None:
    rig, sensor = connected
    rig.device.true_flow_ul_min = 100.0
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            for _ in range(200):
                assert sensor.read().flow_ul_min == pytest.approx(100.0)
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert errors == []


# --- faults -----------------------------------------------------------------------------


def test_garbled_reply_is_a_typed_error_with_bytes(
    connected: tuple[Rig, SensirionFlowSensor],
) -> None:
    rig, sensor = connected
    rig.device.faults.garble = True
    for _ in range(10):
        with pytest.raises((ReplyError, TransportTimeout)) as info:
            sensor.read()
        assert info.value.device == "flow"
        assert info.value.sent == bytes.fromhex("7e00350103c67e")
        assert info.value.received
    rig.device.faults.clear()
    assert sensor.read().temperature_c == pytest.approx(23.0)


def test_no_reply_times_out_on_the_clock(connected: tuple[Rig, SensirionFlowSensor]) -> None:
    rig, sensor = connected
    rig.device.faults.no_reply = True
    t0_s = rig.clock.now_s()
    with pytest.raises(TransportTimeout, match="flow: read last measurement: no reply") as info:
        sensor.read()
    assert info.value.sent == bytes.fromhex("7e00350103c67e")
    # The SCC1's nominal 10 ms response time plus the driver's 0.5 s allowance.
    assert rig.clock.now_s() - t0_s == pytest.approx(0.51)


def test_partial_reply_times_out_with_what_arrived(
    connected: tuple[Rig, SensirionFlowSensor],
) -> None:
    rig, sensor = connected
    rig.device.faults.partial = True
    with pytest.raises(TransportTimeout) as info:
        sensor.read()
    assert info.value.received and info.value.received.startswith(b"\x7e\x00\x35")


def test_disconnect_then_reconnect(connected: tuple[Rig, SensirionFlowSensor]) -> None:
    rig, sensor = connected
    rig.device.faults.disconnected = True
    with pytest.raises(TransportError) as info:
        sensor.read()
    assert info.value.device == "flow"
    with pytest.raises(TransportError):
        sensor.reconnect()  # still unplugged
    rig.device.faults.clear()
    rig.device.inject_sensor_reset()  # the cable lost power while unplugged
    sensor.reconnect()
    rig.device.true_flow_ul_min = 8.0
    assert sensor.read().flow_ul_min == pytest.approx(8.0)


def test_sensor_reset_raises_alarm_and_reconnect_recovers(
    connected: tuple[Rig, SensirionFlowSensor],
) -> None:
    rig, sensor = connected
    rig.device.inject_sensor_reset()
    with pytest.raises(DeviceAlarm) as info:
        sensor.read()
    assert info.value.alarm == "device_error"
    assert info.value.device == "flow"
    with pytest.raises(IncompatibleStateError, match="not running"):
        sensor.read()  # error state cleared, but the measurement is gone
    sensor.reconnect()
    assert rig.device.is_measuring
    assert sensor.read().temperature_c == pytest.approx(23.0)


def test_reconnect_refuses_a_different_sensor(connected: tuple[Rig, SensirionFlowSensor]) -> None:
    rig, sensor = connected
    rig.device.sensor_serial += 1
    with pytest.raises(DeviceNotFound, match="different"):
        sensor.reconnect()


def test_device_rejection_is_wrapped(connected: tuple[Rig, SensirionFlowSensor]) -> None:
    rig, sensor = connected
    rig.device.sensor_type = 2  # 0x35 with sensor type 3 is now a parameter error
    with pytest.raises(DeviceError, match="device error 4"):
        sensor.read()


# --- the driver on a PTY, through SerialTransport ---------------------------------------


@pytest.fixture
def served() -> Iterator[tuple[SimScc1Slf3s, str]]:
    from simulator.pty import PtyServer

    device = SimScc1Slf3s(noise_ul_min=0.0)
    with PtyServer({"flow": device}, RealClock().now_s, poll_s=0.005) as server:
        yield device, server.paths["flow"]


@pytest.mark.pty
@pytest.mark.timeout(30)
def test_driver_over_serial_transport_on_a_pty(served: tuple[SimScc1Slf3s, str]) -> None:
    device, path = served
    device.true_flow_ul_min = 500.0
    transport = SerialTransport(path, baudrate=115200)
    sensor = SensirionFlowSensor(transport, name="flow", clock=RealClock(), timeout_s=0.2)
    sensor.connect()
    try:
        reading = sensor.read()
        assert reading.flow_ul_min == pytest.approx(500.0)
        device.air_in_line = True
        assert sensor.read().air_in_line
        device.faults.garble = True
        with pytest.raises((ReplyError, TransportTimeout)):
            sensor.read()
        device.faults.clear()
        assert sensor.read().flow_ul_min == pytest.approx(500.0)
    finally:
        sensor.close()
    assert not device.is_measuring


@pytest.mark.pty
@pytest.mark.timeout(30)
def test_unplugged_pty_is_a_transport_error(served: tuple[SimScc1Slf3s, str]) -> None:
    device, path = served
    sensor = SensirionFlowSensor(
        SerialTransport(path, baudrate=115200), name="flow", clock=RealClock(), timeout_s=0.2
    )
    sensor.connect()
    device.faults.disconnected = True  # the server closes the PTY on its next turn
    with pytest.raises(TransportError) as info:
        for _ in range(20):  # bounded: the server notices within one poll
            sensor.read()
    assert info.value.device == "flow"
    with pytest.raises(TransportError, match="flow: open link"):
        sensor.reconnect()  # the PTY is gone for good, like an unplugged cable
    sensor.close()
