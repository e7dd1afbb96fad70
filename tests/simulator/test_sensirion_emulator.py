"""The SCC1 + SLF3x emulator, at the byte level and through Sensirion's own client.

The byte-level tests build frames with the small SHDLC encoder below, written from
hardware-reference §6.1 and checked against the two frames printed there. The client tests
serve the emulator on a PTY and talk to it with sensirion-shdlc-driver's
``ShdlcSerialPort`` and sensirion-uart-scc1's ``Scc1ShdlcDevice``/``Scc1Slf3x``: an
implementation of the protocol independent of the emulator's.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.devices.sensirion import SimScc1Slf3s
from simulator.faults import CommFaults
from simulator.world import World

# --- an independent little SHDLC codec (hardware-reference §6.1) ------------------------

_SPECIAL = {0x7E, 0x7D, 0x11, 0x13}


def _stuff(content: bytes) -> bytes:
    out = bytearray()
    for byte in content:
        out += bytes((0x7D, byte ^ 0x20)) if byte in _SPECIAL else bytes((byte,))
    return bytes(out)


def mosi(command: int, data: bytes = b"", address: int = 0) -> bytes:
    content = bytes((address, command, len(data))) + data
    return b"\x7e" + _stuff(content + bytes((~sum(content) & 0xFF,))) + b"\x7e"


def miso_decode(frame: bytes) -> tuple[int, int, int, bytes]:
    """Decode one MISO frame, checking delimiters, stuffing, length and checksum."""
    assert frame[:1] == b"\x7e" and frame[-1:] == b"\x7e", frame
    body = frame[1:-1]
    assert 0x7E not in body, frame
    content = bytearray()
    escape = False
    for byte in body:
        if escape:
            content.append(byte ^ 0x20)
            escape = False
        elif byte == 0x7D:
            escape = True
        else:
            content.append(byte)
    address, command, state, length = content[:4]
    data = bytes(content[4:-1])
    assert length == len(data), frame
    assert content[-1] == ~sum(content[:-1]) & 0xFF, frame
    return address, command, state, data


def exchange(device: SimScc1Slf3s, frame: bytes) -> tuple[int, int, int, bytes]:
    device.receive(frame)
    return miso_decode(device.take_output())


def test_encoder_reproduces_the_manual_examples() -> None:
    assert mosi(0xD0, b"\x01") == bytes.fromhex("7e00d001012d7e")
    assert mosi(0x35, b"\x03") == bytes.fromhex("7e003501 03c67e".replace(" ", ""))


# --- generic SHDLC commands -------------------------------------------------------------


def test_product_name_answers_the_manual_example_frame() -> None:
    device = SimScc1Slf3s()
    assert exchange(device, bytes.fromhex("7e00d001012d7e")) == (0, 0xD0, 0, b"SCC1\x00")


def test_version_reply_has_seven_bytes() -> None:
    _, _, state, data = exchange(SimScc1Slf3s(), mosi(0xD1))
    assert state == 0
    assert len(data) == 7
    assert (data[0], data[1]) == (1, 9)


def test_serial_number_is_nul_terminated_ascii() -> None:
    device = SimScc1Slf3s()
    device.serial_number = "FTXYZ123"
    assert exchange(device, mosi(0xD0, b"\x03"))[3] == b"FTXYZ123\x00"


@pytest.mark.parametrize(
    ("frame", "error_code"),
    [
        (mosi(0x99), 2),  # unknown command
        (mosi(0xD1, b"\x00"), 1),  # version takes no data
        (mosi(0x35), 1),  # last measurement needs the sensor type
        (mosi(0xD0, b"\x09"), 4),  # no such information
        (mosi(0x24, b"\x07"), 4),  # sensor type out of range
        (mosi(0x33, struct.pack(">HH", 20, 0x1234)), 4),  # not a measurement command
        (mosi(0x53, struct.pack(">H", 0x1234)), 4),
    ],
)
def test_bad_commands_answer_an_error_code(frame: bytes, error_code: int) -> None:
    address, command, state, data = exchange(SimScc1Slf3s(), frame)
    assert (address, command, state, data) == (0, frame[2], error_code, b"")


def test_bad_checksum_answers_checksum_error() -> None:
    frame = bytearray(mosi(0xD1))
    frame[-2] ^= 0xFF
    assert exchange(SimScc1Slf3s(), bytes(frame))[2] == 5


def test_length_byte_disagreeing_with_data_answers_data_size_error() -> None:
    content = bytes((0, 0x24, 3, 1))  # claims 3 data bytes, carries 1
    frame = b"\x7e" + content + bytes((~sum(content) & 0xFF,)) + b"\x7e"
    assert exchange(SimScc1Slf3s(), frame)[2] == 1


def test_frames_for_other_addresses_and_line_noise_are_ignored() -> None:
    device = SimScc1Slf3s(slave_address=2)
    device.receive(mosi(0xD1, address=0) + b"\x00\x13garbage\x7e\x7e")
    assert device.take_output() == b""
    assert exchange(device, mosi(0xD1, address=2))[:3] == (2, 0xD1, 0)


def test_frame_split_into_single_bytes_is_answered_once() -> None:
    device = SimScc1Slf3s()
    for byte in mosi(0xD0, b"\x01"):
        device.receive(bytes((byte,)))
    assert miso_decode(device.take_output())[3] == b"SCC1\x00"


def test_stuffed_request_bytes_are_unstuffed() -> None:
    device = SimScc1Slf3s()
    request = mosi(0x25, b"\x11")  # 0x11 (XON) must travel as 7D 31
    assert b"\x7d\x31" in request
    assert exchange(device, request)[2] == 0
    assert exchange(device, mosi(0x25))[3] == b"\x11"


def test_reply_bytes_needing_escape_are_stuffed() -> None:
    device = SimScc1Slf3s(noise_ul_min=0.0)
    device.temperature_c = 0x7E13 / 200  # raw temperature 0x7E13: both bytes need escaping
    exchange(device, mosi(0x33, struct.pack(">HH", 20, 0x3608)))
    device.advance_to(1.0)
    device.receive(mosi(0x35, b"\x03"))
    raw = device.take_output()
    assert b"\x7d\x5e\x7d\x33" in raw
    assert struct.unpack(">hhH", miso_decode(raw)[3])[1] == 0x7E13


def test_error_state_is_read_and_cleared() -> None:
    device = SimScc1Slf3s()
    device.inject_sensor_reset()
    state, data = exchange(device, mosi(0xD2, b"\x01"))[2:]
    assert state & 0x80  # the device error flag rides on every reply
    assert struct.unpack(">IB", data)[0] != 0
    state, data = exchange(device, mosi(0xD2, b"\x01"))[2:]
    assert (state, struct.unpack(">IB", data)) == (0, (0, 0))


# --- SCC1 commands and the flow model ---------------------------------------------------


def start(device: SimScc1Slf3s, interval_ms: int = 20, command: int = 0x3608) -> None:
    assert exchange(device, mosi(0x33, struct.pack(">HH", interval_ms, command)))[2] == 0


def last_measurement(device: SimScc1Slf3s) -> tuple[int, int, int] | None:
    state, data = exchange(device, mosi(0x35, b"\x03"))[2:]
    assert state == 0
    if not data:
        return None
    flow, temperature, flags = struct.unpack(">hhH", data)
    return flow, temperature, flags


def test_no_measurement_until_started_and_first_sample_due() -> None:
    device = SimScc1Slf3s()
    device.advance_to(0.0)
    assert last_measurement(device) is None
    start(device)
    device.advance_to(0.005)
    assert last_measurement(device) is None
    device.advance_to(0.013)
    assert last_measurement(device) is not None


def test_status_reports_interval_while_measuring() -> None:
    device = SimScc1Slf3s()
    assert exchange(device, mosi(0x33))[3] == b""
    start(device, interval_ms=25)
    assert exchange(device, mosi(0x33))[3] == struct.pack(">H", 25)
    exchange(device, mosi(0x34))
    assert exchange(device, mosi(0x33))[3] == b""
    assert not device.is_measuring


@pytest.mark.parametrize(
    ("sensor", "flow_ul_min", "raw"),
    [
        ("SLF3S-1300F", 1000.0, 500),  # 500 counts per ml/min
        ("SLF3S-1300F", -20.0, -10),
        ("SLF3S-0600F", 1000.0, 10000),  # 10 counts per ul/min
        ("SLF3S-4000B", 100_000.0, 3200),  # 32 counts per ml/min
    ],
)
def test_raw_flow_is_true_flow_times_scale_factor(
    sensor: str, flow_ul_min: float, raw: int
) -> None:
    device = SimScc1Slf3s(sensor=sensor, noise_ul_min=0.0)
    device.true_flow_ul_min = flow_ul_min
    device.temperature_c = 24.5
    start(device)
    device.advance_to(1.0)
    assert last_measurement(device) == (raw, 4900, 0)


def test_scale_factor_and_unit_query() -> None:
    assert exchange(SimScc1Slf3s(), mosi(0x53, b"\x36\x08"))[3] == struct.pack(
        ">HHH", 500, 0x0845, 0
    )
    assert exchange(SimScc1Slf3s(sensor="SLF3S-0600F"), mosi(0x53, b"\x36\x15"))[3] == struct.pack(
        ">HHH", 10, 0x0844, 0
    )


def test_sensor_id_is_hex_product_id_and_serial() -> None:
    device = SimScc1Slf3s()
    device.sensor_serial = 0xABCDEF
    for request in (mosi(0x50), mosi(0x50, b"\x03")):
        text = exchange(device, request)[3].rstrip(b"\x00").decode()
        assert int(text[:8], 16) >> 8 == 0x070302
        assert int(text[8:], 16) == 0xABCDEF


def test_high_flow_flag_and_saturation() -> None:
    device = SimScc1Slf3s(noise_ul_min=0.0)
    start(device)
    device.advance_to(1.0)
    device.true_flow_ul_min = 50_000.0  # above the 1300F's 40 ml/min calibrated range
    assert last_measurement(device) == (25_000, 4600, 0x0002)
    device.true_flow_ul_min = 100_000.0  # beyond what an int16 can carry
    assert last_measurement(device) == (32_767, 4600, 0x0002)


class _Line:
    """A FlowSource: the true flow in a line, with a bubble switch."""

    def __init__(self) -> None:
        self.flow_ul_min = 0.0
        self.bubble = False

    def true_flow_ul_min(self) -> float:
        return self.flow_ul_min

    def air_in_line(self) -> bool:
        return self.bubble


def test_flow_source_drives_flow_and_air_in_line_flag() -> None:
    line = _Line()
    device = SimScc1Slf3s(flow_source=line, noise_ul_min=0.0)
    device.true_flow_ul_min = 12345.0  # ignored: the source wins
    start(device)
    device.advance_to(1.0)
    line.flow_ul_min = 40.0
    assert last_measurement(device) == (20, 4600, 0)
    line.bubble = True
    assert last_measurement(device) == (20, 4600, 0x0001)


def test_injected_bubble_sets_air_in_line_flag() -> None:
    device = SimScc1Slf3s(noise_ul_min=0.0)
    start(device)
    device.advance_to(1.0)
    device.air_in_line = True
    measurement = last_measurement(device)
    assert measurement is not None and measurement[2] == 0x0001


def _flows(seed: int, n: int) -> list[int]:
    device = SimScc1Slf3s(seed=seed, noise_ul_min=20.0)
    device.true_flow_ul_min = 1000.0
    start(device)
    device.advance_to(1.0)
    flows = []
    for _ in range(n):
        measurement = last_measurement(device)
        assert measurement is not None
        flows.append(measurement[0])
    return flows


def test_noise_is_seeded_and_has_the_given_spread() -> None:
    assert _flows(1, 50) == _flows(1, 50)
    assert _flows(1, 50) != _flows(2, 50)
    flows_ul_min = np.array(_flows(3, 2000)) * 2.0  # 2 uL/min per count
    assert abs(flows_ul_min.mean() - 1000.0) < 3.0
    assert 18.0 < flows_ul_min.std() < 22.0


def test_extended_buffer_returns_samples_and_counts_lost_bytes() -> None:
    device = SimScc1Slf3s(noise_ul_min=0.0)
    device.true_flow_ul_min = 1000.0
    start(device, interval_ms=20)
    device.advance_to(1.0)  # 50 samples on the 20 ms grid
    data = exchange(device, mosi(0x36, b"\x03"))[3]
    lost, remaining, signals = struct.unpack(">IHH", data[:8])
    assert (lost, signals) == (0, 3)
    samples = [struct.unpack(">hhh", data[i : i + 6]) for i in range(8, len(data), 6)]
    assert len(samples) == 41  # as many as fit into 255 bytes
    assert remaining == 6 * (50 - 41)
    assert set(samples) == {(500, 4600, 0)}
    device.advance_to(100.0)  # far more than the buffer holds
    lost = struct.unpack(">I", exchange(device, mosi(0x36, b"\x03"))[3][:4])[0]
    assert lost > 0


def test_totaliser_sums_raw_flow() -> None:
    device = SimScc1Slf3s(noise_ul_min=0.0)
    device.true_flow_ul_min = 1000.0  # 500 counts per sample
    assert exchange(device, mosi(0x37, b"\x01"))[2] == 0
    start(device, interval_ms=20)
    device.advance_to(0.012)
    device.advance_to(60.012)  # 3000 samples
    total = struct.unpack(">q", exchange(device, mosi(0x38))[3])[0]
    assert total == pytest.approx(3000 * 500, rel=1e-3)
    exchange(device, mosi(0x39))
    assert struct.unpack(">q", exchange(device, mosi(0x38))[3])[0] == 0


def test_advancing_the_device_advances_its_world() -> None:
    world = World()
    device = SimScc1Slf3s(world)
    device.advance_to(2.5)
    assert world.t_s == 2.5


# --- device faults and link faults ------------------------------------------------------


def test_sensor_reset_stops_measurement_and_raises_error_flag() -> None:
    device = SimScc1Slf3s()
    start(device)
    device.advance_to(1.0)
    device.inject_sensor_reset()
    state, data = exchange(device, mosi(0x35, b"\x03"))[2:]
    assert (state, data) == (0x80, b"")
    exchange(device, mosi(0xD2, b"\x01"))
    start(device)
    device.advance_to(2.0)
    assert last_measurement(device) is not None


def test_sensor_reset_command_stops_measurement() -> None:
    device = SimScc1Slf3s()
    start(device)
    assert exchange(device, mosi(0x65))[2] == 0
    assert not device.is_measuring


def test_no_reply_fault_swallows_the_reply() -> None:
    device = SimScc1Slf3s(faults=CommFaults(no_reply=True))
    device.receive(mosi(0xD1))
    assert device.take_output() == b""


def test_garbled_reply_fails_validation() -> None:
    device = SimScc1Slf3s(faults=CommFaults(garble=True, seed=4))
    for _ in range(20):
        device.receive(mosi(0xD0, b"\x01"))
        with pytest.raises((AssertionError, ValueError)):
            miso_decode(device.take_output())


def test_partial_reply_lacks_its_end() -> None:
    device = SimScc1Slf3s(faults=CommFaults(partial=True))
    device.receive(mosi(0xD0, b"\x01"))
    out = device.take_output()
    assert 0 < len(out) < len(mosi(0xD0, b"\x01")) + 8
    assert out.count(b"\x7e") == 1


def test_disconnected_port_raises_connection_error() -> None:
    device = SimScc1Slf3s()
    device.faults.disconnected = True
    with pytest.raises(ConnectionError):
        device.receive(mosi(0xD1))
    with pytest.raises(ConnectionError):
        device.take_output()
    device.faults.clear()
    assert device.take_output() == b""  # what was sent while unplugged is lost


def test_constructor_rejects_unknown_model() -> None:
    with pytest.raises(ValueError, match="SLF3S-1300F"):
        SimScc1Slf3s(sensor="LG16-0150")


def test_random_garbage_never_crashes_the_parser() -> None:
    rng = np.random.default_rng(0)
    device = SimScc1Slf3s()
    for _ in range(300):
        device.receive(rng.integers(0, 256, int(rng.integers(1, 40)), dtype=np.uint8).tobytes())
    device.take_output()
    device.receive(b"\x7e")  # resynchronise on a clean frame
    assert exchange(device, mosi(0xD1))[2] == 0


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_give_only_valid_reply_frames(garbage: bytes) -> None:
    device = SimScc1Slf3s()
    device.receive(garbage)
    out = device.take_output()
    while out:  # whatever the device answers is well formed
        start = out.index(b"\x7e")
        end = out.index(b"\x7e", start + 1)
        miso_decode(out[start : end + 1])
        out = out[end + 1 :]


@settings(max_examples=200, deadline=None)
@given(command=st.integers(0, 255), data=st.binary(max_size=255), address=st.integers(0, 3))
def test_every_well_formed_frame_for_us_gets_one_reply(
    command: int, data: bytes, address: int
) -> None:
    device = SimScc1Slf3s(slave_address=1)
    device.receive(mosi(command, data, address=address))
    out = device.take_output()
    if address != 1:
        assert out == b""
        return
    reply_address, reply_command, state, _ = miso_decode(out)
    assert (reply_address, reply_command) == (1, command)
    assert state & 0x7F in (0, 1, 2, 4)


# --- through Sensirion's own client, on a PTY -------------------------------------------

shdlc = pytest.importorskip("sensirion_shdlc_driver")
scc1_module = pytest.importorskip("sensirion_uart_scc1.scc1_shdlc_device")
slf3x_module = pytest.importorskip("sensirion_uart_scc1.drivers.scc1_slf3x")
shdlc_errors = pytest.importorskip("sensirion_shdlc_driver.errors")


@pytest.fixture
def served() -> Iterator[tuple[SimScc1Slf3s, str]]:
    from drivers.clock import RealClock
    from simulator.pty import PtyServer

    device = SimScc1Slf3s(noise_ul_min=0.0)
    device.true_flow_ul_min = 250.0
    with PtyServer({"flow": device}, RealClock().now_s, poll_s=0.005) as server:
        yield device, server.paths["flow"]


@pytest.mark.pty
@pytest.mark.timeout(30)
def test_sensirion_client_reads_flow_over_a_pty(served: tuple[SimScc1Slf3s, str]) -> None:
    device, path = served
    with shdlc.ShdlcSerialPort(port=path, baudrate=115200) as port:
        scc1 = scc1_module.Scc1ShdlcDevice(shdlc.ShdlcConnection(port), 0)
        assert scc1.serial_number == "SCC1-EMU-0001"
        assert str(scc1.firmware_version) == "1.9"
        assert scc1.get_product_name() == "SCC1"
        assert scc1.get_sensor_type() == 3
        assert scc1.get_sensor_address() == 0x08
        sensor = slf3x_module.Scc1Slf3x(scc1)
        assert sensor.product_id >> 8 == 0x070302
        assert sensor.serial_number == device.sensor_serial
        assert sensor.get_flow_unit_and_scale() == (500, 0x0845)
        sensor.start_continuous_measurement(interval_ms=10)
        assert sensor.get_continuous_measurement_status() == 10
        measurement = None
        for _ in range(50):  # bounded: the first sample is due 12 ms after the start
            measurement = sensor.get_last_measurement()
            if measurement is not None:
                break
        assert measurement == (125, 4600, 0)  # 250 uL/min at 500 counts per ml/min
        _remaining, lost, samples = sensor.read_extended_buffer()
        assert lost == 0 and all(sample == (125, 4600, 0) for sample in samples)
        sensor.stop_continuous_measurement()
        assert sensor.get_continuous_measurement_status() is None


@pytest.mark.pty
@pytest.mark.timeout(30)
def test_sensirion_client_sees_device_errors(served: tuple[SimScc1Slf3s, str]) -> None:
    device, path = served
    with shdlc.ShdlcSerialPort(port=path, baudrate=115200) as port:
        scc1 = scc1_module.Scc1ShdlcDevice(shdlc.ShdlcConnection(port), 0)
        with pytest.raises(shdlc_errors.ShdlcUnknownCommandError):
            scc1.transceive(0x99, [])
        with pytest.raises(shdlc_errors.ShdlcCommandDataSizeError):
            scc1.transceive(0xD1, [1, 2])
        with pytest.raises(shdlc_errors.ShdlcCommandParameterError):
            scc1.transceive(0x33, [0, 20, 0x12, 0x34])
        device.inject_sensor_reset()
        scc1.get_sensor_type()
        assert scc1.last_error_flag
        state, _ = scc1.get_error_state(clear=True)
        assert state != 0
        scc1.get_sensor_type()
        assert not scc1.last_error_flag


@pytest.mark.pty
@pytest.mark.timeout(30)
def test_sensirion_client_rejects_garbled_replies(served: tuple[SimScc1Slf3s, str]) -> None:
    device, path = served
    with shdlc.ShdlcSerialPort(port=path, baudrate=115200, additional_response_time=0.05) as port:
        scc1 = scc1_module.Scc1ShdlcDevice(shdlc.ShdlcConnection(port), 0)
        device.faults.garble = True
        for _ in range(5):
            with pytest.raises(shdlc_errors.ShdlcError):
                scc1.get_product_name()
        device.faults.clear()
        assert scc1.get_product_name() == "SCC1"
