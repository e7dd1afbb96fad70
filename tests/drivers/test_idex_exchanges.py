"""Exact byte exchanges of the IDEX valve driver (hardware-reference §5.1) on a virtual clock."""

from __future__ import annotations

import pytest

from drivers.clock import VirtualClock
from drivers.errors import (
    DeviceAlarm,
    DeviceNotFound,
    DeviceRejected,
    TransportTimeout,
)
from drivers.idex import IdexValve
from drivers.testing import ScriptedTransport

S = b"S\r"


def make(
    script: list[tuple[bytes, bytes]], *, move_timeout_s: float = 1.0
) -> tuple[IdexValve, ScriptedTransport, VirtualClock]:
    transport = ScriptedTransport(script, name="valve-port")
    clock = VirtualClock()
    valve = IdexValve(
        transport,
        name="valve",
        n_positions=10,
        clock=clock,
        move_timeout_s=move_timeout_s,
        poll_interval_s=0.25,
    )
    return valve, transport, clock


def connected(
    script: list[tuple[bytes, bytes]], *, move_timeout_s: float = 1.0
) -> tuple[IdexValve, ScriptedTransport, VirtualClock]:
    valve, transport, clock = make([(S, b"01\r"), *script], move_timeout_s=move_timeout_s)
    valve.connect()
    return valve, transport, clock


def test_constructor_does_no_io() -> None:
    valve, transport, _ = make([])
    assert not transport.is_open
    assert transport.writes == []
    assert valve.last_position is None


def test_constructor_validates() -> None:
    with pytest.raises(ValueError):
        IdexValve(ScriptedTransport([]), name="v", n_positions=16, clock=VirtualClock())
    with pytest.raises(ValueError):
        IdexValve(ScriptedTransport([]), name="v", n_positions=6, clock=VirtualClock(), timeout_s=0)


def test_connect_reads_the_position() -> None:
    valve, transport, clock = make([(S, b"04\r")])
    valve.connect()
    assert transport.is_open
    assert valve.last_position == 4
    assert clock.now_s() == 0.0
    transport.assert_done()


def test_connect_waits_out_a_homing_move() -> None:
    valve, transport, clock = make([(S, b"**"), (S, b"*"), (S, b"01\r")])
    valve.connect()
    assert valve.last_position == 1
    assert clock.now_s() == pytest.approx(0.5)
    transport.assert_done()


def test_connect_to_a_silent_port_is_device_not_found() -> None:
    valve, transport, _ = make([(S, b"")] * 3)
    with pytest.raises(DeviceNotFound) as info:
        valve.connect()
    assert info.value.sent == S
    transport.assert_done()


def test_connect_reports_an_error_code_as_alarm() -> None:
    valve, transport, _ = make([(S, b"99\r")])
    with pytest.raises(DeviceAlarm) as info:
        valve.connect()
    assert info.value.alarm == "valve_failure"
    assert info.value.received == b"99\r"
    transport.assert_done()


def test_select_polls_while_busy_until_done() -> None:
    valve, transport, clock = connected([(b"P03\r", b"\r"), (S, b"*"), (S, b"**"), (S, b"03\r")])
    valve.select(3)
    assert valve.last_position == 3
    assert clock.now_s() == pytest.approx(3 * 0.25)  # three polls, no real time spent
    transport.assert_done()


def test_select_position_ten_is_hex() -> None:
    valve, transport, _ = connected([(b"P0A\r", b"\r"), (S, b"0A\r")])
    valve.select(10)
    assert valve.last_position == 10
    transport.assert_done()


def test_select_out_of_range_sends_nothing() -> None:
    valve, transport, _ = connected([])
    with pytest.raises(ValueError):
        valve.select(11)
    with pytest.raises(ValueError):
        valve.select(0)
    assert transport.writes == [S]
    transport.assert_done()


def test_jammed_valve_raises_valve_jam_after_move_timeout() -> None:
    # move_timeout 1.0 s, polls every 0.25 s: busy at 0.25, 0.5, 0.75 and 1.0 -> jam.
    valve, transport, clock = connected([(b"P05\r", b"\r")] + [(S, b"*")] * 4)
    with pytest.raises(DeviceAlarm) as info:
        valve.select(5)
    assert info.value.alarm == "valve_jam"
    assert info.value.sent == b"P05\r"
    assert info.value.received == b"*"
    assert clock.now_s() == pytest.approx(1.0)
    transport.assert_done()


def test_valve_stuck_at_another_position_is_a_jam() -> None:
    valve, transport, _ = connected([(b"P05\r", b"\r")] + [(S, b"02\r")] * 4)
    with pytest.raises(DeviceAlarm, match="at position 2") as info:
        valve.select(5)
    assert info.value.alarm == "valve_jam"
    assert valve.last_position == 2
    transport.assert_done()


@pytest.mark.parametrize(
    ("code", "alarm"),
    [
        (b"66", "positioning_error"),
        (b"99", "valve_failure"),
        (b"88", "nvram_error"),
        (b"55", "data_integrity_error"),
        (b"44", "data_crc_error"),
    ],
)
def test_error_codes_during_a_move_are_alarms(code: bytes, alarm: str) -> None:
    valve, transport, _ = connected([(b"P02\r", b"\r"), (S, b"*"), (S, code + b"\r")])
    with pytest.raises(DeviceAlarm) as info:
        valve.select(2)
    assert info.value.alarm == alarm
    assert info.value.sent == b"P02\r"
    assert info.value.received == code + b"\r"
    assert code.decode() in str(info.value)
    transport.assert_done()


def test_command_mode_error_is_a_rejection() -> None:
    valve, transport, _ = connected([(b"P02\r", b"\r"), (S, b"77\r")])
    with pytest.raises(DeviceRejected, match="77"):
        valve.select(2)
    transport.assert_done()


def test_garbled_status_reply_is_retried() -> None:
    valve, transport, _ = connected([(b"P02\r", b"\r"), (S, b"x7\r"), (S, b""), (S, b"02\r")])
    valve.select(2)
    assert valve.last_position == 2
    transport.assert_done()


def test_status_retries_are_bounded() -> None:
    valve, transport, _ = connected([(b"P02\r", b"\r")] + [(S, b"")] * 3)
    with pytest.raises(TransportTimeout):
        valve.select(2)
    transport.assert_done()


def test_move_sent_while_busy_is_resent_once_idle() -> None:
    valve, transport, _ = connected(
        [(b"P02\r", b"*"), (S, b"*"), (S, b"04\r"), (b"P02\r", b"\r"), (S, b"02\r")]
    )
    valve.select(2)
    assert valve.last_position == 2
    transport.assert_done()


def test_ignored_move_is_a_rejection() -> None:
    # §5.1: a position outside the valve mode is ignored without any reply.
    valve, transport, _ = connected([(b"P09\r", b""), (S, b"01\r")])
    with pytest.raises(DeviceRejected, match="position 9") as info:
        valve.select(9)
    assert info.value.sent == b"P09\r"
    transport.assert_done()


def test_silent_link_during_a_move_is_a_timeout() -> None:
    valve, transport, _ = connected([(b"P09\r", b"")] + [(S, b"")] * 3)
    with pytest.raises(TransportTimeout) as info:
        valve.select(9)
    assert info.value.sent == b"P09\r"
    transport.assert_done()


def test_read_position() -> None:
    valve, transport, _ = connected([(S, b"07\r")])
    assert valve.read_position() == 7
    assert valve.last_position == 7
    transport.assert_done()


def test_reconnect_reopens_and_rereads_without_moving() -> None:
    valve, transport, _ = connected([(S, b"06\r")])
    transport.close()
    valve.reconnect()
    assert transport.is_open
    assert valve.last_position == 6
    assert all(not w.startswith(b"P") for w in transport.writes)
    transport.assert_done()


def test_close_releases_the_link() -> None:
    valve, transport, _ = connected([])
    valve.close()
    assert not transport.is_open


# ------------------------------------------- against the independent emulator (black box)
def test_against_the_independent_emulator_in_process() -> None:
    from drivers.transport import EmulatorTransport
    from simulator.devices.idex import SimIdexValve

    clock = VirtualClock()
    device = SimIdexValve(n_positions=10)
    valve = IdexValve(
        EmulatorTransport(device, clock, name="valve"), name="valve", n_positions=10, clock=clock
    )
    valve.connect()
    for position in (3, 10, 1):
        valve.select(position)
        assert valve.read_position() == position
    assert clock.now_s() > 0.0  # the moves took virtual time, polled on the clock
    device.jam()
    with pytest.raises(DeviceAlarm):
        valve.select(5)


@pytest.mark.pty
@pytest.mark.timeout(30)
def test_against_the_independent_emulator_over_a_pty() -> None:
    from drivers.clock import RealClock
    from drivers.transport import SerialTransport
    from simulator.devices.idex import SimIdexValve
    from simulator.pty import PtyServer

    clock = RealClock()
    with PtyServer({"valve": SimIdexValve(n_positions=6)}, clock.now_s) as server:
        transport = SerialTransport(server.paths["valve"], baudrate=19200, name="valve")
        valve = IdexValve(transport, name="valve", n_positions=6, clock=clock)
        valve.connect()
        valve.select(4)
        assert valve.read_position() == 4
        valve.reconnect()
        assert valve.last_position == 4
        valve.close()
