"""Cavro driver: exact byte exchanges on a ScriptedTransport and a VirtualClock (no waiting)."""

from __future__ import annotations

import pytest

from drivers.cavro import CavroPump
from drivers.clock import VirtualClock
from drivers.errors import (
    DeviceAlarm,
    DeviceNotFound,
    DeviceRejected,
    IncompatibleStateError,
    ReplyError,
    TransportTimeout,
)
from drivers.roles import PumpDirection, Syringe
from drivers.testing import ScriptedTransport

SYRINGE_1ML = Syringe(name="Cavro 1 mL", inner_diameter_mm=4.61, volume_ul=1000.0)


def answer(data: str = "", *, ready: bool = True, error: int = 0) -> bytes:
    """A DT answer block: /0, status byte, data, ETX CR LF (hardware-reference §3.3)."""
    status = 0x40 | (0x20 if ready else 0) | error
    return b"/0" + bytes([status]) + data.encode() + b"\x03\r\n"


BUSY = answer(ready=False)
READY = answer()

CONNECT = [
    (b"/1Q\r", READY),
    (b"/1&\r", answer("XLP6000 V1.4")),
    (b"/1?\r", answer("0")),
    (b"/1?6\r", answer("1")),
]


def make_pump(
    script: list[tuple[bytes, bytes]], **kwargs: object
) -> tuple[CavroPump, ScriptedTransport, VirtualClock]:
    transport = ScriptedTransport(script, name="bus")
    clock = VirtualClock()
    pump = CavroPump(
        transport,
        name="drug",
        syringe=SYRINGE_1ML,
        clock=clock,
        **kwargs,  # type: ignore[arg-type]
    )
    return pump, transport, clock


# -- construction and connect -----------------------------------------------------------


def test_constructor_does_no_io() -> None:
    pump, transport, _ = make_pump([])
    assert not transport.is_open
    assert transport.writes == []
    assert pump.full_stroke_increments == 6000  # XLP 6000, N0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"address": "0"},
        {"address": "_"},
        {"model": "XP3000"},
        {"n_ports": 1},
        {"timeout_s": 0.0},
        {"retries": -1},
        {"resolution": 3},
        {"output_port": 7},
    ],
)
def test_constructor_rejects_bad_settings(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        make_pump([], **kwargs)


def test_connect_reads_status_firmware_plunger_and_valve_without_moving() -> None:
    pump, transport, _ = make_pump(CONNECT)
    pump.connect()
    transport.assert_done()
    assert pump.firmware_version == "XLP6000 V1.4"
    assert pump.plunger_position_increments == 0
    assert pump.port == 1


def test_connect_when_silent_raises_device_not_found_after_retries() -> None:
    pump, transport, _ = make_pump([(b"/1Q\r", b"")] * 3)
    with pytest.raises(DeviceNotFound) as info:
        pump.connect()
    transport.assert_done()
    assert info.value.device == "drug"
    assert info.value.sent == b"/1Q\r"


def test_connect_to_something_else_raises_device_not_found() -> None:
    pump, transport, _ = make_pump([(b"/1Q\r", b"00S\r\n:")] * 3)
    with pytest.raises(DeviceNotFound):
        pump.connect()
    transport.assert_done()


def test_connect_uninitialised_pump_reports_not_initialised() -> None:
    not_init = answer(error=7)
    script = [
        (b"/1Q\r", not_init),
        (b"/1&\r", answer("XLP6000 V1.4", error=7)),
        (b"/1?\r", answer("0", error=7)),
        (b"/1?6\r", answer("0", error=7)),
        (b"/1Q\r", not_init),
        (b"/1?\r", answer("0", error=7)),
    ]
    pump, transport, _ = make_pump(script)
    pump.connect()
    status = pump.read_status()
    transport.assert_done()
    assert status.alarm == "not_initialised"
    assert not status.running and not status.stalled


def test_address_is_used_in_every_frame() -> None:
    script = [(cmd.replace(b"/1", b"/3"), reply) for cmd, reply in CONNECT]
    pump, transport, _ = make_pump(script, address="3")
    pump.connect()
    transport.assert_done()


# -- initialisation and busy polling ----------------------------------------------------


def test_initialize_polls_until_ready_on_the_clock() -> None:
    script = [
        *CONNECT,
        (b"/1?\r", answer("0")),
        (b"/1Z0R\r", answer(ready=False, error=7)),
        (b"/1Q\r", BUSY),
        (b"/1Q\r", BUSY),
        (b"/1Q\r", READY),
        (b"/1N0R\r", READY),
        (b"/1?\r", answer("0")),
        (b"/1?6\r", answer("1")),
    ]
    pump, transport, clock = make_pump(script)
    pump.connect()
    pump.initialize()
    transport.assert_done()
    # Two busy polls, each followed by one poll interval on the virtual clock.
    assert clock.now_s() == pytest.approx(0.1)


def test_initialize_half_force_counterclockwise() -> None:
    script = [
        *CONNECT,
        (b"/1?\r", answer("0")),
        (b"/1Y1R\r", BUSY),
        (b"/1Q\r", READY),
        (b"/1N0R\r", READY),
        (b"/1?\r", answer("0")),
        (b"/1?6\r", answer("1")),
    ]
    pump, transport, _ = make_pump(script)
    pump.connect()
    pump.initialize(force=1, counterclockwise=True)
    transport.assert_done()


def test_initialisation_error_raises_alarm() -> None:
    script = [*CONNECT, (b"/1?\r", answer("0")), (b"/1Z0R\r", BUSY), (b"/1Q\r", answer(error=1))]
    pump, transport, _ = make_pump(script)
    pump.connect()
    with pytest.raises(DeviceAlarm) as info:
        pump.initialize()
    transport.assert_done()
    assert info.value.alarm == "init_error"


def test_wait_until_ready_times_out_on_the_virtual_clock() -> None:
    script = [*CONNECT] + [(b"/1Q\r", BUSY)] * 5
    pump, transport, clock = make_pump(script, poll_interval_s=0.25)
    pump.connect()
    with pytest.raises(DeviceAlarm) as info:
        pump.wait_until_ready(1.0)
    transport.assert_done()
    assert info.value.alarm == "busy_timeout"
    assert clock.now_s() == pytest.approx(1.0)


# -- aspirate / dispense -----------------------------------------------------------------


def test_aspirate_then_dispense_with_busy_polling_and_counters() -> None:
    # XLP 6000 N0, 1 mL: 6 increments per uL; 1000 uL/min = 100 half-steps/s.
    script = [
        *CONNECT,
        (b"/1?\r", answer("0")),
        (b"/1I2V100P1200R\r", BUSY),
        (b"/1Q\r", BUSY),
        (b"/1Q\r", READY),
        (b"/1?\r", answer("1200")),
        (b"/1I5V50D600R\r", BUSY),
        (b"/1Q\r", BUSY),
        (b"/1?\r", answer("900")),
        (b"/1Q\r", READY),
        (b"/1Q\r", READY),
        (b"/1?\r", answer("600")),
    ]
    pump, transport, clock = make_pump(script)
    pump.connect()
    pump.aspirate(200.0, 1000.0, from_port=2)
    pump.wait_until_ready(5.0)
    pump.dispense(100.0, 500.0, to_port=5)
    running = pump.read_status()
    pump.wait_until_ready(5.0)
    done = pump.read_status()
    transport.assert_done()
    assert pump.port == 5
    assert running.running and running.direction is PumpDirection.INFUSE
    assert running.rate_ul_min == pytest.approx(500.0)
    assert running.withdrawn_ul == pytest.approx(200.0)
    assert running.infused_ul == pytest.approx(50.0)
    assert not done.running and done.rate_ul_min == 0.0
    assert done.infused_ul == pytest.approx(100.0)
    assert done.delivered_ul == pytest.approx(-100.0)
    assert clock.now_s() == pytest.approx(0.05)


def test_infuse_without_volume_dispenses_what_is_left_through_output_port() -> None:
    script = [
        *CONNECT,
        (b"/1?\r", answer("4500")),
        (b"/1I6V600D4500R\r", BUSY),
    ]
    pump, transport, _ = make_pump(script, output_port=6)
    pump.connect()
    pump.infuse(6000.0)
    transport.assert_done()


def test_withdraw_without_volume_fills_the_syringe_through_the_current_port() -> None:
    script = [*CONNECT, (b"/1?\r", answer("1000")), (b"/1V100P5000R\r", BUSY)]
    pump, transport, _ = make_pump(script)
    pump.connect()
    pump.withdraw(1000.0)
    transport.assert_done()


def test_xcalibur_fine_positioning_conversions() -> None:
    script = [
        (b"/1Q\r", READY),
        (b"/1&\r", answer("XC V2")),
        (b"/1?\r", answer("0")),
        (b"/1?6\r", answer("1")),
        (b"/1?\r", answer("0")),
        # XCalibur N1, 1 mL: 24 increments per uL; speeds stay in half-steps (6000/stroke).
        (b"/1I3V100P2400R\r", BUSY),
    ]
    pump, transport, _ = make_pump(script, model="XCalibur", resolution=1)
    pump.connect()
    pump.aspirate(100.0, 1000.0, from_port=3)
    transport.assert_done()


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda p: p.aspirate(900.0, 1000.0, 2), "only 500 uL of stroke left"),
        (lambda p: p.dispense(600.0, 1000.0, 2), "only 500 uL of liquid"),
        (lambda p: p.aspirate(0.05, 1000.0, 2), "less than one plunger increment"),
    ],
)
def test_stroke_checks_raise_before_any_move(call: object, message: str) -> None:
    script = [*CONNECT, (b"/1?\r", answer("3000"))]
    pump, transport, _ = make_pump(script)
    pump.connect()
    with pytest.raises(ValueError, match=message):
        call(pump)  # type: ignore[operator]
    transport.assert_done()


def test_bad_arguments_raise_before_any_io() -> None:
    pump, transport, _ = make_pump(CONNECT)
    pump.connect()
    with pytest.raises(ValueError):
        pump.aspirate(10.0, 10.0, 2)  # below 5 Hz = 50 uL/min for 1 mL
    with pytest.raises(ValueError):
        pump.aspirate(10.0, 100_000.0, 2)  # above 6000 Hz = 60 mL/min
    with pytest.raises(ValueError):
        pump.aspirate(10.0, 1000.0, 7)
    with pytest.raises(ValueError):
        pump.dispense(2000.0, 1000.0, 1)  # more than the syringe holds
    with pytest.raises(ValueError):
        pump.select_port(0)
    transport.assert_done()


def test_rate_range_follows_top_speed_range() -> None:
    pump, _, _ = make_pump([])
    low, high = pump.rate_range_ul_min()
    assert low == pytest.approx(50.0)
    assert high == pytest.approx(60000.0)


# -- errors in answers ---------------------------------------------------------------------


def test_invalid_operand_raises_device_rejected_with_bytes() -> None:
    script = [*CONNECT, (b"/1?\r", answer("0")), (b"/1I2V100P600R\r", answer(error=3))]
    pump, transport, _ = make_pump(script)
    pump.connect()
    with pytest.raises(DeviceRejected) as info:
        pump.aspirate(100.0, 1000.0, 2)
    transport.assert_done()
    assert info.value.device == "drug"
    assert info.value.sent == b"/1I2V100P600R\r"
    assert info.value.received == answer(error=3)
    assert "invalid operand" in str(info.value)


def test_move_while_busy_raises_incompatible_state() -> None:
    script = [*CONNECT, (b"/1I4R\r", answer(ready=False, error=15))]
    pump, transport, _ = make_pump(script)
    pump.connect()
    with pytest.raises(IncompatibleStateError, match="command overflow"):
        pump.select_port(4)
    transport.assert_done()


def test_plunger_overload_while_waiting_raises_occlusion_alarm() -> None:
    script = [
        *CONNECT,
        (b"/1?\r", answer("6000")),
        (b"/1I5V100D600R\r", BUSY),
        (b"/1Q\r", BUSY),
        (b"/1Q\r", answer(error=9)),
        (b"/1Q\r", answer(error=9)),
        (b"/1?\r", answer("5800", error=9)),
    ]
    pump, transport, _ = make_pump(script)
    pump.connect()
    pump.dispense(100.0, 1000.0, 5)
    with pytest.raises(DeviceAlarm) as info:
        pump.wait_until_ready(5.0)
    assert info.value.alarm == "occlusion"
    status = pump.read_status()
    transport.assert_done()
    assert status.stalled and status.alarm == "occlusion" and not status.running
    assert status.infused_ul == pytest.approx(200.0 / 6.0)


def test_select_port_waits_and_read_port_queries() -> None:
    script = [
        *CONNECT,
        (b"/1I4R\r", BUSY),
        (b"/1Q\r", BUSY),
        (b"/1Q\r", READY),
        (b"/1?6\r", answer("4")),
    ]
    pump, transport, clock = make_pump(script)
    pump.connect()
    pump.select_port(4)
    assert pump.read_port() == 4
    transport.assert_done()
    assert clock.now_s() == pytest.approx(0.05)


def test_read_port_of_a_non_distribution_answer() -> None:
    pump, transport, _ = make_pump([*CONNECT, (b"/1?6\r", answer("i"))])
    pump.connect()
    with pytest.raises(IncompatibleStateError):
        pump.read_port()
    transport.assert_done()


# -- timeouts and retries ----------------------------------------------------------------


def test_query_is_retried_after_a_garbled_answer() -> None:
    script = [
        *CONNECT,
        (b"/1Q\r", b"/0\xe0\x03\r\n"),  # status byte corrupted
        (b"/1Q\r", READY),
        (b"/1?\r", answer("0")),
    ]
    pump, transport, _ = make_pump(script)
    pump.connect()
    status = pump.read_status()
    transport.assert_done()
    assert not status.running


def test_query_is_retried_after_a_partial_answer() -> None:
    script = [*CONNECT, (b"/1?\r", b"/0`12"), (b"/1?\r", answer("1200"))]
    pump, transport, _ = make_pump(script)
    pump.connect()
    assert pump.read_plunger_position_ul() == pytest.approx(200.0)
    transport.assert_done()


def test_query_gives_up_after_retries() -> None:
    script = [*CONNECT] + [(b"/1?6\r", b"")] * 3
    pump, transport, _ = make_pump(script)
    pump.connect()
    with pytest.raises(TransportTimeout) as info:
        pump.read_port()
    transport.assert_done()
    assert info.value.sent == b"/1?6\r"


def test_garbled_answers_exhaust_retries_as_reply_error() -> None:
    script = [*CONNECT] + [(b"/1?\r", b"/0`12a\x03\r\n")] * 3
    pump, transport, _ = make_pump(script)
    pump.connect()
    with pytest.raises(ReplyError):
        pump.read_plunger_position_ul()
    transport.assert_done()


def test_move_command_is_not_retried_after_a_timeout() -> None:
    script = [*CONNECT, (b"/1?\r", answer("0")), (b"/1I2V100P600R\r", b"")]
    pump, transport, _ = make_pump(script)
    pump.connect()
    with pytest.raises(TransportTimeout) as info:
        pump.aspirate(100.0, 1000.0, 2)
    transport.assert_done()  # exactly one attempt
    assert info.value.device == "drug"


def test_position_beyond_full_stroke_means_wrong_mode() -> None:
    pump, transport, _ = make_pump([*CONNECT[:2]] + [(b"/1?\r", answer("24000"))] * 3)
    with pytest.raises(ReplyError, match="resolution mode"):
        pump.connect()
    transport.assert_done()


# -- stop, reconnect, syringe ------------------------------------------------------------


def test_stop_sends_terminate_then_confirms_the_plunger_stopped() -> None:
    script = [
        *CONNECT,
        (b"/1TR\r", READY),
        (b"/1Q\r", READY),
        (b"/1TR\r", answer(error=9)),  # an error code in the answer is logged only
        (b"/1Q\r", READY),
    ]
    pump, transport, _ = make_pump(script)
    pump.connect()
    pump.stop()
    pump.stop()
    transport.assert_done()


def test_a_stop_that_leaves_the_pump_busy_raises() -> None:
    busy = answer(ready=False)
    script = [*CONNECT, (b"/1TR\r", READY)] + [(b"/1Q\r", busy)] * 30
    pump, _transport, clock = make_pump(script)
    pump.connect()
    with pytest.raises(DeviceAlarm) as info:
        pump.stop()
    assert info.value.alarm == "stop_failed"
    assert clock.now_s() >= pump.STOP_CONFIRM_S


def test_reconnect_reopens_and_counts_moves_made_meanwhile() -> None:
    script = [
        *CONNECT,
        (b"/1Q\r", READY),
        (b"/1?\r", answer("600")),
        (b"/1?6\r", answer("3")),
        (b"/1Q\r", READY),
        (b"/1?\r", answer("600")),
    ]
    pump, transport, _ = make_pump(script)
    pump.connect()
    transport.close()
    pump.reconnect()
    assert transport.is_open
    assert pump.port == 3
    status = pump.read_status()
    transport.assert_done()
    assert status.withdrawn_ul == pytest.approx(100.0)


def test_set_syringe_sends_nothing_and_changes_conversions() -> None:
    script = [*CONNECT, (b"/1?\r", answer("0")), (b"/1V100P60R\r", BUSY)]
    pump, transport, _ = make_pump(script)
    pump.connect()
    pump.set_syringe(Syringe(name="Cavro 5 mL", inner_diameter_mm=10.3, volume_ul=5000.0))
    pump.withdraw(5000.0, 50.0)  # 5 mL syringe: 1.2 increments per uL, 5000 uL/min = 100 Hz
    transport.assert_done()


def test_nothing_to_withdraw_when_the_syringe_is_full() -> None:
    pump, transport, _ = make_pump([*CONNECT, (b"/1?\r", answer("6000"))])
    pump.connect()
    with pytest.raises(ValueError, match="nothing to aspirate"):
        pump.withdraw(1000.0)
    transport.assert_done()


# -- OEM framing (§3.4) -------------------------------------------------------------------


def oem_answer(data: str = "", *, ready: bool = True, error: int = 0) -> bytes:
    block = b"\x020" + bytes([0x40 | (0x20 if ready else 0) | error]) + data.encode() + b"\x03"
    checksum = 0
    for byte in block:
        checksum ^= byte
    return block + bytes([checksum])


def oem_command(body: bytes, sequence_byte: int) -> bytes:
    block = b"\x021" + bytes([sequence_byte]) + body + b"\x03"
    checksum = 0
    for byte in block:
        checksum ^= byte
    return block + bytes([checksum])


def test_oem_sequence_numbers_cycle_and_retries_set_the_repeat_bit() -> None:
    script = [
        (oem_command(b"Q", 0x31), oem_answer()),
        (oem_command(b"&", 0x32), oem_answer("XLP6000 V1.4")),
        (oem_command(b"?", 0x33), oem_answer("0")),
        (oem_command(b"?6", 0x34), b""),  # lost: resent with the repeat bit
        (oem_command(b"?6", 0x3C), oem_answer("2")),
    ]
    pump, transport, _ = make_pump(script, protocol="oem")
    pump.connect()
    transport.assert_done()
    assert pump.port == 2


def test_oem_sequence_wraps_after_seven_and_initialise_uses_it() -> None:
    script = [(oem_command(b"Q", 0x30 + n), oem_answer()) for n in range(1, 8)]
    script += [
        (oem_command(b"?", 0x31), oem_answer("0")),
        (oem_command(b"Z0R", 0x32), oem_answer(ready=False, error=7)),
        (oem_command(b"Q", 0x33), oem_answer()),
        (oem_command(b"N0R", 0x34), oem_answer()),
        (oem_command(b"?", 0x35), oem_answer("0")),
        (oem_command(b"?6", 0x36), oem_answer("1")),
    ]
    pump, transport, _ = make_pump(script, protocol="oem")
    transport.open()
    for _ in range(7):
        pump.wait_until_ready(1.0)
    pump.initialize()
    transport.assert_done()


def test_oem_bad_checksum_is_retried_for_queries() -> None:
    bad = bytearray(oem_answer("0"))
    bad[-1] ^= 0xFF
    script = [
        (oem_command(b"?", 0x31), bytes(bad)),
        (oem_command(b"?", 0x39), oem_answer("600")),
    ]
    pump, transport, _ = make_pump(script, protocol="oem")
    transport.open()
    assert pump.read_plunger_position_ul() == pytest.approx(100.0)
    transport.assert_done()


def test_initialisation_counts_earlier_moves_but_not_its_own_emptying() -> None:
    script = [
        *CONNECT,
        (b"/1?\r", answer("600")),  # the plunger aspirated 100 uL since connect
        (b"/1Z0R\r", BUSY),
        (b"/1Q\r", READY),
        (b"/1N0R\r", READY),
        (b"/1?\r", answer("0")),  # init pushed the 100 uL out to the init port
        (b"/1?6\r", answer("1")),
        (b"/1Q\r", READY),
        (b"/1?\r", answer("0")),
    ]
    pump, transport, _ = make_pump(script)
    pump.connect()
    pump.initialize()
    status = pump.read_status()
    transport.assert_done()
    assert status.withdrawn_ul == pytest.approx(100.0)
    assert status.infused_ul == 0.0
