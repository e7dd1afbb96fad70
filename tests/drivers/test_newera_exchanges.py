"""NewEraPump: exact byte exchanges on a ScriptedTransport (hardware-reference §2).

Reply frames are built here with ``binascii.crc_hqx`` rather than the driver's codec, so a
framing bug in the codec cannot hide in both sides of a test.
"""

from __future__ import annotations

import binascii
import logging

import pytest

from drivers.clock import VirtualClock
from drivers.errors import (
    DeviceAlarm,
    DeviceNotFound,
    DeviceRejected,
    ReplyError,
    TransportTimeout,
)
from drivers.newera import NewEraPump
from drivers.roles import PumpDirection, Syringe
from drivers.testing import ScriptedTransport
from drivers.transport import LoggingTransport

SYRINGE_10ML = Syringe("BD Plastipak 10 mL", 14.5, 10_000.0)


def sf(text: str) -> bytes:
    """A safe-mode packet (§2.3): STX, len(data)+4, data, CRC-16/XModem big-endian, ETX."""
    data = text.encode("ascii")
    crc = binascii.crc_hqx(data, 0)
    return bytes([0x02, len(data) + 4]) + data + bytes([crc >> 8, crc & 0xFF, 0x03])


def rb(text: str) -> bytes:
    """A basic-mode reply (§2.2): STX, data, ETX."""
    return b"\x02" + text.encode("ascii") + b"\x03"


def connect_basic(address: int = 0) -> list[tuple[bytes, bytes]]:
    a = str(address)
    return [
        (sf(f"{a}VER"), rb(f"{address:02d}SNE1000V3.928")),
        (f"{a}DIA14.5\r".encode(), rb(f"{address:02d}S")),
        (f"{a}CLDINF\r".encode(), rb(f"{address:02d}S")),
        (f"{a}CLDWDR\r".encode(), rb(f"{address:02d}S")),
    ]


def connect_safe(address: int = 0) -> list[tuple[bytes, bytes]]:
    a, r = str(address), f"{address:02d}"
    return [
        (sf(f"{a}VER"), sf(f"{r}SNE1000V3.928")),
        (sf(f"{a}SAF10"), sf(f"{r}S")),
        (sf(f"{a}DIA14.5"), sf(f"{r}S")),
        (sf(f"{a}CLDINF"), sf(f"{r}S")),
        (sf(f"{a}CLDWDR"), sf(f"{r}S")),
    ]


def make(
    script: list[tuple[bytes, bytes]], *, safe_mode: bool = False, **kwargs: object
) -> tuple[NewEraPump, ScriptedTransport, VirtualClock]:
    transport = ScriptedTransport(script)
    clock = VirtualClock()
    pump = NewEraPump(
        transport,
        name="drug",
        syringe=SYRINGE_10ML,
        clock=clock,
        safe_mode=safe_mode,
        **kwargs,  # type: ignore[arg-type]
    )
    return pump, transport, clock


# -- connect -----------------------------------------------------------------------------


def test_constructor_does_no_io() -> None:
    pump, transport, _ = make([])
    assert not transport.is_open and transport.writes == []
    assert pump.heartbeat_period_s is None


def test_connect_basic_mode() -> None:
    pump, transport, _ = make(connect_basic())
    pump.connect()
    transport.assert_done()
    assert pump.version is not None and pump.version.firmware == "3.928"


def test_connect_acknowledges_power_on_reset_alarm() -> None:
    # §2.6: a pump just switched on answers its first command with A?R; the reply
    # acknowledges it, and a reset at connect is expected, so it is not reported.
    script = [(sf("0VER"), rb("00A?R")), *connect_basic()]
    script += [(b"0DIS\r", rb("00SI0.000W0.000UL"))]
    pump, transport, _ = make(script)
    pump.connect()
    status = pump.read_status()
    transport.assert_done()
    assert status.alarm is None


def test_connect_safe_mode_sets_watchdog() -> None:
    pump, transport, _ = make(connect_safe(), safe_mode=True)
    pump.connect()
    transport.assert_done()
    assert pump.heartbeat_period_s == 5.0


def test_connect_basic_leaves_safe_mode_the_pump_remembered() -> None:
    # SAF is stored in NVRAM (§2.3): a pump found in safe mode is switched back.
    script = [
        (sf("0VER"), sf("00SNE1000V3.928")),
        (sf("0SAF0"), rb("00S")),
        *connect_basic()[1:],
    ]
    pump, transport, _ = make(script)
    pump.connect()
    transport.assert_done()


def test_connect_wrong_model_is_device_not_found() -> None:
    pump, _, _ = make([(sf("0VER"), rb("00SNE500V3.919"))])
    with pytest.raises(DeviceNotFound, match="expected an NE-1000"):
        pump.connect()


def test_connect_silence_is_device_not_found_after_retries() -> None:
    pump, transport, _ = make([(sf("0VER"), b"")] * 3)
    with pytest.raises(DeviceNotFound, match="no New Era pump answers") as info:
        pump.connect()
    transport.assert_done()
    assert info.value.sent == sf("0VER")


# -- motion ------------------------------------------------------------------------------


def test_infuse_with_volume() -> None:
    script = [
        *connect_basic(),
        (b"0DIRINF\r", rb("00S")),
        (b"0RAT250UM\r", rb("00S")),
        (b"0VOLUL\r", rb("00S")),
        (b"0VOL500\r", rb("00S")),
        (b"0RUN\r", rb("00I")),
    ]
    pump, transport, _ = make(script)
    pump.connect()
    pump.infuse(250.0, 500.0)
    transport.assert_done()


def test_withdraw_without_volume_runs_continuously() -> None:
    script = [
        *connect_basic(),
        (b"0DIRWDR\r", rb("00S")),
        (b"0RAT0.5UM\r", rb("00S")),  # exact in UM and UH: ties prefer UM
        (b"0VOL0\r", rb("00S")),  # 0 = pump until stopped (§2.5)
        (b"0RUN\r", rb("00W")),
    ]
    pump, transport, _ = make(script)
    pump.connect()
    pump.withdraw(0.5)
    transport.assert_done()


def test_rate_and_volume_units_follow_precision() -> None:
    script = [
        *connect_basic(),
        (b"0DIA26.59\r", rb("00S")),
        (b"0DIRINF\r", rb("00S")),
        (b"0RAT30.75UH\r", rb("00S")),  # 0.5125 uL/min: 4 digits only in uL/h
        (b"0VOLML\r", rb("00S")),
        (b"0VOL12.5\r", rb("00S")),  # 12500 uL has 5 digits in uL: sent in mL
        (b"0RUN\r", rb("00I")),
    ]
    pump, transport, _ = make(script)
    pump.connect()
    pump.set_syringe(Syringe("BD 60 mL", 26.59, 60_000.0))
    pump.infuse(0.5125, 12_500.0)
    transport.assert_done()


def test_new_run_while_running_stops_first() -> None:
    run = [
        (b"0DIRINF\r", rb("00S")),
        (b"0RAT10UM\r", rb("00S")),
        (b"0VOL0\r", rb("00S")),
        (b"0RUN\r", rb("00I")),
    ]
    script = connect_basic() + run + [(b"0STP\r", rb("00P")), (b"0STP\r", rb("00S"))] + run
    pump, transport, _ = make(script)
    pump.connect()
    pump.infuse(10.0)
    pump.infuse(10.0)
    transport.assert_done()


def test_stop_pauses_then_stops() -> None:
    # [I] STP pauses a running program (P); a second STP stops it (S).
    script = [*connect_basic(), (b"0STP\r", rb("00P")), (b"0STP\r", rb("00S"))]
    pump, transport, _ = make(script)
    pump.connect()
    pump.stop()
    transport.assert_done()


def test_stop_when_stopped_is_one_exchange() -> None:
    script = [*connect_basic(), (b"0STP\r", rb("00S"))]
    pump, transport, _ = make(script)
    pump.connect()
    pump.stop()
    transport.assert_done()


def test_out_of_range_rate_is_device_rejected_and_run_not_sent() -> None:
    script = [*connect_basic(), (b"0DIRINF\r", rb("00S")), (b"0RAT5000UM\r", rb("00S?OOR"))]
    pump, transport, _ = make(script)
    pump.connect()
    with pytest.raises(DeviceRejected, match="out of range") as info:
        pump.infuse(5000.0)
    transport.assert_done()
    assert info.value.sent == b"0RAT5000UM\r"
    assert info.value.received == rb("00S?OOR")
    assert info.value.device == "drug"


def test_not_applicable_is_device_rejected() -> None:
    script = [*connect_basic(), (b"0DIA26.59\r", rb("00I?NA"))]
    pump, transport, _ = make(script)
    pump.connect()
    with pytest.raises(DeviceRejected, match="not applicable"):
        pump.set_syringe(Syringe("BD 60 mL", 26.59, 60_000.0))
    transport.assert_done()
    assert pump.syringe is SYRINGE_10ML


def test_bad_rate_raises_value_error_before_any_byte() -> None:
    pump, transport, _ = make(connect_basic())
    pump.connect()
    n_writes = len(transport.writes)
    with pytest.raises(ValueError):
        pump.infuse(1e9)
    with pytest.raises(ValueError):
        pump.infuse(10.0, 20_000.0)  # more than the syringe holds
    assert len(transport.writes) == n_writes


def test_run_is_not_retried_after_a_timeout() -> None:
    script = [
        *connect_basic(),
        (b"0DIRINF\r", rb("00S")),
        (b"0RAT10UM\r", rb("00S")),
        (b"0VOL0\r", rb("00S")),
        (b"0RUN\r", b""),
    ]
    pump, transport, _ = make(script)
    pump.connect()
    with pytest.raises(TransportTimeout) as info:
        pump.infuse(10.0)
    transport.assert_done()  # a second RUN would have been a ScriptMismatch
    assert transport.writes.count(b"0RUN\r") == 1
    assert info.value.sent == b"0RUN\r"


def test_alarm_reply_to_a_run_command_raises_device_alarm() -> None:
    script = [*connect_basic(), (b"0DIRINF\r", rb("00A?S"))]
    pump, transport, _ = make(script)
    pump.connect()
    with pytest.raises(DeviceAlarm) as info:
        pump.infuse(10.0)
    transport.assert_done()
    assert info.value.alarm == "stall"


# -- status ------------------------------------------------------------------------------


def test_status_running_infuse() -> None:
    script = [
        *connect_basic(),
        (b"0DIRINF\r", rb("00S")),
        (b"0RAT10UM\r", rb("00S")),
        (b"0VOL0\r", rb("00S")),
        (b"0RUN\r", rb("00I")),
        (b"0DIS\r", rb("00II0.125W0.000ML")),
    ]
    pump, transport, _ = make(script)
    pump.connect()
    pump.infuse(10.0)
    status = pump.read_status()
    transport.assert_done()
    assert status.running and status.direction is PumpDirection.INFUSE
    assert status.rate_ul_min == 10.0
    assert status.infused_ul == pytest.approx(125.0)
    assert status.withdrawn_ul == 0.0
    assert status.alarm is None and not status.stalled


def test_status_stopped_withdraw_direction_from_status_char() -> None:
    script = [
        *connect_basic(),
        (b"0DIS\r", rb("00WI0.000W12.5UL")),
        (b"0DIS\r", rb("00SI0.000W20.0UL")),
    ]
    pump, transport, _ = make(script)
    pump.connect()
    first = pump.read_status()
    second = pump.read_status()
    transport.assert_done()
    assert first.running and first.direction is PumpDirection.WITHDRAW
    assert not second.running and second.rate_ul_min == 0.0
    assert second.direction is PumpDirection.WITHDRAW and second.withdrawn_ul == 20.0


def test_status_alarm_reply_is_reported_and_query_resent() -> None:
    script = [
        *connect_basic(),
        (b"0DIS\r", rb("00A?S")),
        (b"0DIS\r", rb("00SI0.050W0.000ML")),
        (b"0DIS\r", rb("00SI0.050W0.000ML")),
    ]
    pump, transport, _ = make(script)
    pump.connect()
    status = pump.read_status()
    again = pump.read_status()
    transport.assert_done()
    assert status.stalled and status.alarm == "stall" and not status.running
    assert again.alarm is None and not again.stalled


def test_query_is_retried_after_a_garbled_reply() -> None:
    garbled = bytearray(sf("00SI0.000W0.000UL"))
    garbled[5] ^= 0x40  # corrupt one data byte: the CRC no longer matches
    script = [*connect_safe(), (sf("0DIS"), bytes(garbled)), (sf("0DIS"), sf("00SI0.000W0.000UL"))]
    pump, transport, _ = make(script, safe_mode=True)
    pump.connect()
    status = pump.read_status()
    transport.assert_done()
    assert status.infused_ul == 0.0


def test_query_is_retried_after_com_error_then_gives_up() -> None:
    script = connect_basic() + [(b"0DIS\r", rb("00S?COM"))] * 3
    pump, transport, _ = make(script)
    pump.connect()
    with pytest.raises(ReplyError, match="COM"):
        pump.read_status()
    transport.assert_done()


def test_query_timeout_after_retries() -> None:
    script = connect_basic() + [(b"0DIS\r", b"")] * 2
    pump, transport, _ = make(script, retries=1)
    pump.connect()
    with pytest.raises(TransportTimeout, match=r"no reply within 0\.5 s"):
        pump.read_status()
    transport.assert_done()


# -- safe mode: unsolicited alarms, heartbeat --------------------------------------------


def test_unsolicited_alarm_after_a_reply_is_reported_by_next_status() -> None:
    # §2.3 auto-alarm: the pump sends 00A?S on its own; the alarm stays set until a
    # command's reply returns it.
    script = [
        *connect_safe(),
        (sf("0DIRINF"), sf("00S")),
        (sf("0RAT10UM"), sf("00S")),
        (sf("0VOL0"), sf("00S")),
        (sf("0RUN"), sf("00I") + sf("00A?S")),
        (sf("0DIS"), sf("00A?S")),
        (sf("0DIS"), sf("00SI0.010W0.000ML")),
    ]
    pump, transport, _ = make(script, safe_mode=True)
    pump.connect()
    pump.infuse(10.0)
    status = pump.read_status()
    transport.assert_done()
    assert status.alarm == "stall" and status.stalled and not status.running
    assert status.infused_ul == pytest.approx(10.0)


def test_unsolicited_alarm_in_status_is_acknowledged_so_the_next_run_starts() -> None:
    script = [
        *connect_safe(),
        (sf("0DIS"), sf("00SI0.000W0.000ML") + sf("00A?T")),  # watchdog fired
        (sf("0"), sf("00A?T")),  # acknowledge: the reply returns (clears) the alarm
        (sf("0"), sf("00S")),
        (sf("0DIRINF"), sf("00S")),
        (sf("0RAT10UM"), sf("00S")),
        (sf("0VOL0"), sf("00S")),
        (sf("0RUN"), sf("00I")),
    ]
    pump, transport, _ = make(script, safe_mode=True)
    pump.connect()
    assert pump.read_status().alarm == "watchdog"
    pump.infuse(10.0)
    transport.assert_done()


def test_unsolicited_alarm_between_exchanges_raises_from_infuse() -> None:
    script = connect_safe()
    script[-1] = (script[-1][0], script[-1][1] + sf("00A?S"))  # arrives after connect
    script += [
        (sf("0"), sf("00A?S")),  # acknowledge
        (sf("0"), sf("00S")),
        (sf("0DIRINF"), sf("00S")),
        (sf("0RAT10UM"), sf("00S")),
        (sf("0VOL0"), sf("00S")),
        (sf("0RUN"), sf("00I")),
    ]
    pump, transport, _ = make(script, safe_mode=True)
    pump.connect()
    with pytest.raises(DeviceAlarm) as info:
        pump.infuse(10.0)
    assert info.value.alarm == "stall"
    assert sf("0DIRINF") not in transport.writes
    pump.infuse(10.0)  # the alarm was reported once and acknowledged
    transport.assert_done()


def test_heartbeat_is_a_status_query_skipped_when_recent() -> None:
    script = [*connect_safe(), (sf("0"), sf("00I"))]
    pump, transport, clock = make(script, safe_mode=True)
    pump.connect()
    pump.heartbeat()  # just talked: nothing sent
    clock.advance_s(3.0)  # more than half of the 5 s period
    pump.heartbeat()
    transport.assert_done()


def test_heartbeat_does_nothing_in_basic_mode() -> None:
    pump, transport, clock = make(connect_basic())
    pump.connect()
    clock.advance_s(100.0)
    pump.heartbeat()
    transport.assert_done()


# -- daisy chain -------------------------------------------------------------------------


def test_two_pumps_share_one_transport() -> None:
    script = (
        connect_basic(1)
        + connect_basic(2)
        + [
            (b"1DIS\r", rb("01II1.000W0.000UL")),
            (b"2DIS\r", rb("02SI0.000W3.000UL")),
        ]
    )
    transport = ScriptedTransport(script)
    clock = VirtualClock()
    p1 = NewEraPump(transport, name="p1", syringe=SYRINGE_10ML, address=1, clock=clock)
    p2 = NewEraPump(transport, name="p2", syringe=SYRINGE_10ML, address=2, clock=clock)
    p1.connect()
    p2.connect()
    s1, s2 = p1.read_status(), p2.read_status()
    transport.assert_done()
    assert s1.running and s1.infused_ul == 1.0
    assert not s2.running and s2.withdrawn_ul == 3.0
    p1.close()
    assert transport.is_open  # p2 still uses it
    p2.close()
    assert not transport.is_open


def test_frames_for_another_address_are_routed_to_that_pump() -> None:
    # Pump 2's auto-alarm arrives while pump 1 waits for its reply.
    script = (
        connect_safe(1)
        + connect_safe(2)
        + [
            (sf("1DIS"), sf("02A?S") + sf("01SI0.000W0.000UL")),
            (sf("2DIS"), sf("02A?S")),
            (sf("2DIS"), sf("02SI0.000W0.000UL")),
        ]
    )
    transport = ScriptedTransport(script)
    clock = VirtualClock()
    p1 = NewEraPump(
        transport, name="p1", syringe=SYRINGE_10ML, address=1, clock=clock, safe_mode=True
    )
    p2 = NewEraPump(
        transport, name="p2", syringe=SYRINGE_10ML, address=2, clock=clock, safe_mode=True
    )
    p1.connect()
    p2.connect()
    s1 = p1.read_status()
    s2 = p2.read_status()
    transport.assert_done()
    assert s1.alarm is None
    assert s2.alarm == "stall"


def test_logging_wrapper_shares_the_bus_with_its_inner_transport() -> None:
    script = [
        *connect_basic(1),
        (b"1DIS\r", rb("02A?S") + rb("01SI0.000W0.000UL")),
        *connect_basic(2),
        (b"2DIS\r", rb("02A?S")),
        (b"2DIS\r", rb("02SI0.000W0.000UL")),
    ]
    inner = ScriptedTransport(script)
    clock = VirtualClock()
    p1 = NewEraPump(inner, name="p1", syringe=SYRINGE_10ML, address=1, clock=clock)
    p2 = NewEraPump(
        LoggingTransport(inner), name="p2", syringe=SYRINGE_10ML, address=2, clock=clock
    )
    p1.connect()
    p1.read_status()
    p2.connect()
    assert p2.read_status().alarm == "stall"
    inner.assert_done()


# -- reconnect ---------------------------------------------------------------------------


def test_reconnect_after_power_loss_reapplies_diameter_and_reports_reset(
    caplog: pytest.LogCaptureFixture,
) -> None:
    script = [
        *connect_basic(),
        (sf("0VER"), rb("00A?R")),
        (sf("0VER"), rb("00SNE1000V3.928")),
        (b"0DIA14.5\r", rb("00S")),
        (b"0\r", rb("00S")),
        (b"0DIS\r", rb("00SI0.000W0.000UL")),
    ]
    pump, transport, _ = make(script)
    pump.connect()
    transport.close()
    with caplog.at_level(logging.DEBUG):
        pump.reconnect()
    status = pump.read_status()
    transport.assert_done()
    assert status.alarm == "reset"


def test_reconnect_while_running_rereads_rate_without_clearing() -> None:
    script = [
        *connect_basic(),
        (sf("0VER"), rb("00SNE1000V3.928")),
        (b"0\r", rb("00I")),
        (b"0RAT\r", rb("00I250.0UM")),
        (b"0DIS\r", rb("00II0.100W0.000ML")),
    ]
    pump, transport, _ = make(script)
    pump.connect()
    pump.reconnect()
    status = pump.read_status()
    transport.assert_done()
    assert status.running and status.rate_ul_min == 250.0 and status.infused_ul == 100.0


def test_constructor_validates() -> None:
    clock = VirtualClock()
    t = ScriptedTransport([])
    with pytest.raises(ValueError):
        NewEraPump(t, name="x", syringe=SYRINGE_10ML, clock=clock, address=100)
    with pytest.raises(ValueError):
        NewEraPump(t, name="x", syringe=SYRINGE_10ML, clock=clock, model="NE-9999")
    with pytest.raises(ValueError):
        NewEraPump(t, name="x", syringe=SYRINGE_10ML, clock=clock, safe_timeout_s=0)


def test_rate_limits_scale_with_syringe_area() -> None:
    pump, _, _ = make([])
    low, high = pump.rate_range_ul_min()
    assert high == pytest.approx(50.7 * SYRINGE_10ML.area_mm2)
    assert low < 0.2 < 1000.0 < high


# -- against the independent emulator (simulator/devices/newera.py) ----------------------


def _emulated(
    safe_mode: bool,
) -> tuple[NewEraPump, VirtualClock]:
    newera_sim = pytest.importorskip("simulator.devices.newera")
    from drivers.transport import EmulatorTransport
    from simulator.world import World

    clock = VirtualClock()
    sim = newera_sim.SimNewEraPump(World(), address=0)
    transport = EmulatorTransport(sim, clock, name="bus")
    pump = NewEraPump(
        transport, name="drug", syringe=SYRINGE_10ML, clock=clock, safe_mode=safe_mode
    )
    return pump, clock


@pytest.mark.parametrize("safe_mode", [False, True])
def test_against_emulator_volume_run_stops_by_itself(safe_mode: bool) -> None:
    pump, clock = _emulated(safe_mode)

    def wait(duration_s: float) -> None:  # what the engine does: heartbeats while waiting
        for _ in range(int(duration_s / 2.5)):
            clock.advance_s(2.5)
            pump.heartbeat()

    pump.connect()
    pump.infuse(100.0, 50.0)
    wait(10.0)
    running = pump.read_status()
    assert running.running and running.infused_ul == pytest.approx(16.67, abs=0.01)
    wait(30.0)
    done = pump.read_status()
    assert not done.running and done.infused_ul == pytest.approx(50.0)
    assert done.alarm is None


def test_against_emulator_heartbeat_keeps_safe_mode_watchdog_quiet() -> None:
    pump, clock = _emulated(True)
    pump.connect()
    pump.withdraw(10.0)
    assert pump.heartbeat_period_s is not None
    for _ in range(24):  # one minute
        clock.advance_s(pump.heartbeat_period_s / 2)
        pump.heartbeat()
    status = pump.read_status()
    assert status.running and status.alarm is None
    assert status.withdrawn_ul == pytest.approx(10.0, rel=0.01)
    pump.stop()
    clock.advance_s(30.0)  # no heartbeat: the pump's watchdog fires
    assert pump.read_status().alarm == "watchdog"


def test_unreadable_status_data_in_basic_mode_is_asked_again() -> None:
    # Basic mode has no CRC: a corrupted byte can leave a well-framed reply whose data
    # no longer parses.
    script = [
        *connect_basic(),
        (b"0DIS\r", rb("00SI0.0#0W0.000UL")),
        (b"0DIS\r", rb("00SI0.010W0.000ML")),
    ]
    pump, transport, _ = make(script)
    pump.connect()
    assert pump.read_status().infused_ul == pytest.approx(10.0)
    transport.assert_done()


def test_reconnect_with_the_link_still_down_is_a_transport_error() -> None:
    script = [*connect_basic(), (sf("0VER"), b""), (sf("0VER"), b""), (sf("0VER"), b"")]
    pump, transport, _ = make(script)
    pump.connect()
    with pytest.raises(TransportTimeout):
        pump.reconnect()
    transport.assert_done()
