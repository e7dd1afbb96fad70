"""Exact byte exchanges of :class:`drivers.harvard.HarvardPump` (scripted transport).

The device side of each script is written from the manual facts (hardware-reference §1):
replies ``\\n[NN:]text\\r`` then a prompt ``\\n[NN]P`` without terminator. Pump replies that
no manual prints verbatim (the PHD ULTRA ``ver`` text, volume replies of ``ivolume``) are
plausible stand-ins in the documented format.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from drivers.clock import VirtualClock
from drivers.errors import (
    DeviceAlarm,
    DeviceNotFound,
    DeviceRejected,
    ReplyError,
    TransportTimeout,
)
from drivers.harvard import HarvardPump
from drivers.harvard.codec import Model
from drivers.harvard.pump import LINEAR_SPEED_LIMITS_MM_MIN
from drivers.roles import PumpDirection, Syringe
from drivers.testing import ScriptedTransport, ScriptMismatch

BD_10ML = Syringe("BD Plastipak 10 mL", inner_diameter_mm=14.43, volume_ul=10_000.0)
HAMILTON_100UL = Syringe("Hamilton 1710", inner_diameter_mm=1.457, volume_ul=100.0)

Script = list[tuple[bytes, bytes]]

CONNECT: Script = [
    (b"0ver\r", b"\n11 ELITE I/W Single 3.0.4\r\n:"),
    (b"0diameter 14.43\r", b"\n:"),
    (b"0svolume 10 ml\r", b"\n:"),
    (b"0irate lim\r", b"\n1.2 nl/min to 3.5 ml/min\r\n:"),
    (b"0cvolume\r", b"\n:"),
]

INFUSE_5_UNTIL_STOPPED: Script = [
    (b"0irate 5 ul/min\r", b"\n:"),
    (b"0ctvolume\r", b"\n:"),
    (b"0irun\r", b"\n>"),
]


def make_pump(
    script: Iterable[tuple[bytes, bytes]], **kwargs: object
) -> tuple[HarvardPump, ScriptedTransport, VirtualClock]:
    transport = ScriptedTransport(script, name="bus0")
    clock = VirtualClock()
    options: dict[str, object] = {"model": "elite", **kwargs}
    pump = HarvardPump(transport, name="drug", syringe=BD_10ML, clock=clock, **options)  # type: ignore[arg-type]
    return pump, transport, clock


def connected(
    script: Script, **kwargs: object
) -> tuple[HarvardPump, ScriptedTransport, VirtualClock]:
    pump, transport, clock = make_pump(CONNECT + script, **kwargs)
    pump.connect()
    return pump, transport, clock


# -- construction and connect ----------------------------------------------------------


def test_constructor_does_no_io() -> None:
    pump, transport, _ = make_pump([])
    assert not transport.is_open
    assert transport.writes == []
    assert pump.address == 0
    assert pump.model is Model.ELITE


@pytest.mark.parametrize(
    "kwargs",
    [{"address": 100}, {"address": -1}, {"model": "phd2000"}, {"timeout_s": 0}, {"retries": -1}],
)
def test_constructor_rejects_bad_arguments(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        make_pump([], **kwargs)


def test_connect() -> None:
    pump, transport, _ = connected([])
    transport.assert_done()
    assert pump.version == "11 ELITE I/W Single 3.0.4"
    assert pump.rate_range_ul_min() == pytest.approx((0.0012, 3500.0))


PHD_CONNECT_AT_12: Script = [
    (b"12:ver\r", b"\n12:PHD ULTRA 2.0.1\r\n12:"),
    (b"12:diameter 14.43\r", b"\n12:"),
    (b"12:svolume 10 ml\r", b"\n12:"),
    (b"12:irate lim\r", b"\n12:1.2 nl/min to 3.5 ml/min\r\n12:"),
    (b"12:cvolume\r", b"\n12:"),
]


def test_connect_phd_ultra_at_address_12() -> None:
    pump, transport, _ = make_pump(PHD_CONNECT_AT_12, model="phd-ultra", address=12)
    pump.connect()
    transport.assert_done()
    assert pump.version == "PHD ULTRA 2.0.1"
    assert pump.rate_range_ul_min() == pytest.approx((0.0012, 3500.0))


class ChunkedTransport(ScriptedTransport):
    """Delivers replies 4 bytes at a time, as a real serial port may."""

    def read_some(self, timeout_s: float) -> bytes:
        data = bytes(self._pending[:4])
        del self._pending[:4]
        return data


def test_addressed_idle_prompt_at_a_chunk_boundary_does_not_cut_the_reply() -> None:
    # Every reply starts with the 4 bytes "\n12:", which alone look like a whole reply
    # (pump 12's idle prompt); the driver must read on to the real prompt.
    transport = ChunkedTransport(PHD_CONNECT_AT_12)
    pump = HarvardPump(
        transport, name="drug", syringe=BD_10ML, address=12, model="phd-ultra", clock=VirtualClock()
    )
    pump.connect()
    transport.assert_done()
    assert pump.version == "PHD ULTRA 2.0.1"
    assert pump.rate_range_ul_min() == pytest.approx((0.0012, 3500.0))


def test_connect_falls_back_to_model_limits_when_irate_lim_is_refused() -> None:
    script = [*CONNECT[:3], (b"0irate lim\r", b"\nCommand error\r\n:"), CONNECT[4]]
    pump, transport, _ = make_pump(script)
    pump.connect()
    transport.assert_done()
    low_mm_min, high_mm_min = LINEAR_SPEED_LIMITS_MM_MIN[Model.ELITE]
    area_mm2 = BD_10ML.area_mm2
    assert pump.rate_range_ul_min() == (low_mm_min * area_mm2, high_mm_min * area_mm2)
    # Elite metrics [I]: about 0.025 uL/min .. 26 mL/min for a 14.43 mm syringe.
    assert pump.rate_range_ul_min()[1] == pytest.approx(26_000, rel=0.01)


def test_connect_to_a_silent_port_raises_device_not_found_with_the_bytes() -> None:
    pump, transport, _ = make_pump([(b"0ver\r", b"")] * 3)  # 1 try + 2 retries
    with pytest.raises(DeviceNotFound, match="no Harvard pump-chain pump") as info:
        pump.connect()
    transport.assert_done()
    assert info.value.sent == b"0ver\r"
    assert "b'0ver\\r'" in str(info.value)


def test_connect_to_something_else_raises_device_not_found() -> None:
    pump, transport, _ = make_pump([(b"0ver\r", b"?\r\nOK\r\n>")] * 3)
    with pytest.raises(DeviceNotFound) as info:
        pump.connect()
    transport.assert_done()
    assert info.value.received == b"?\r\nOK\r\n>"


# -- motion ----------------------------------------------------------------------------


def test_infuse_with_volume_clears_the_counter_before_setting_the_target() -> None:
    pump, transport, _ = connected(
        [
            (b"0irate 5 ul/min\r", b"\n:"),
            (b"0ivolume\r", b"\n0 ul\r\n:"),
            (b"0civolume\r", b"\n:"),
            (b"0tvolume 100 ul\r", b"\n:"),
            (b"0irun\r", b"\n>"),
        ]
    )
    pump.infuse(5.0, 100.0)
    transport.assert_done()


def test_infuse_without_volume_clears_the_target() -> None:
    pump, transport, _ = connected(INFUSE_5_UNTIL_STOPPED)
    pump.infuse(5.0)
    transport.assert_done()


def test_withdraw_with_volume() -> None:
    pump, transport, _ = connected(
        [
            (b"0wrate 2 ml/min\r", b"\n:"),
            (b"0wvolume\r", b"\n0 ul\r\n:"),
            (b"0cwvolume\r", b"\n:"),
            (b"0tvolume 1.5 ml\r", b"\n:"),
            (b"0wrun\r", b"\n<"),
        ]
    )
    pump.withdraw(2000.0, 1500.0)
    transport.assert_done()


def test_stop() -> None:
    pump, transport, _ = connected([(b"0stp\r", b"\n:")])
    pump.stop()
    transport.assert_done()


def test_stop_on_a_stalled_pump_does_not_raise() -> None:
    pump, transport, _ = connected([(b"0stp\r", b"\n*")])
    pump.stop()
    transport.assert_done()


def test_rate_outside_the_reported_limits_fails_before_any_io() -> None:
    pump, transport, _ = connected([])
    with pytest.raises(ValueError, match="outside"):
        pump.infuse(4000.0)  # irate lim said 3.5 ml/min
    transport.assert_done()


def test_run_on_a_stalled_pump_raises_device_alarm_and_never_starts() -> None:
    pump, transport, _ = connected([(b"0irate 5 ul/min\r", b"\n*")])
    with pytest.raises(DeviceAlarm) as info:
        pump.infuse(5.0)
    transport.assert_done()  # ctvolume and irun were never sent
    assert info.value.alarm == "stall"
    assert info.value.sent == b"0irate 5 ul/min\r"


def test_error_reply_raises_device_rejected_with_the_bytes() -> None:
    reply = b"\nArgument error: 5 ul/min\r\n   Out of range\r\n:"
    pump, transport, _ = connected([(b"0irate 5 ul/min\r", reply)])
    with pytest.raises(DeviceRejected, match="Argument error: 5 ul/min Out of range") as info:
        pump.infuse(5.0)
    transport.assert_done()
    assert info.value.sent == b"0irate 5 ul/min\r"
    assert info.value.received == reply
    assert "b'0irate 5 ul/min\\r'" in str(info.value)
    assert "Out of range" in str(info.value)


def test_silent_device_raises_transport_timeout_with_the_sent_bytes_and_irun_is_not_retried() -> (
    None
):
    pump, transport, _ = connected([*INFUSE_5_UNTIL_STOPPED[:2], (b"0irun\r", b"")])
    with pytest.raises(TransportTimeout) as info:
        pump.infuse(5.0)
    transport.assert_done()  # a retry would have written a second b"0irun\r": ScriptMismatch
    assert info.value.sent == b"0irun\r"
    assert "b'0irun\\r'" in str(info.value)


def test_garbled_reply_to_irun_is_not_retried() -> None:
    pump, transport, _ = connected([*INFUSE_5_UNTIL_STOPPED[:2], (b"0irun\r", b"\n>\x00\n>")])
    with pytest.raises(ReplyError):
        pump.infuse(5.0)
    transport.assert_done()


# -- status ----------------------------------------------------------------------------

STATUS_INFUSING_5UL = (b"0status\r", b"\n83333333 60000 5000000000 I...I.\r\n>")


def test_read_status_after_a_run_settles_the_other_counter_once() -> None:
    pump, transport, _ = connected(
        [
            *INFUSE_5_UNTIL_STOPPED,
            STATUS_INFUSING_5UL,
            (b"0wvolume\r", b"\n0 ul\r\n>"),  # the direction status does not cover
            (b"0status\r", b"\n83333333 120000 10000000000 I...I.\r\n>"),  # one exchange
        ]
    )
    pump.infuse(5.0)
    first = pump.read_status()
    assert first.running
    assert first.direction is PumpDirection.INFUSE
    assert first.rate_ul_min == pytest.approx(5.0, rel=1e-6)
    assert (first.infused_ul, first.withdrawn_ul) == pytest.approx((5.0, 0.0))
    assert not first.stalled
    assert first.alarm is None
    second = pump.read_status()
    assert second.infused_ul == pytest.approx(10.0)
    transport.assert_done()


def test_read_status_keeps_totals_across_a_direction_change() -> None:
    pump, transport, _ = connected(
        [
            *INFUSE_5_UNTIL_STOPPED,
            STATUS_INFUSING_5UL,
            (b"0wvolume\r", b"\n0 ul\r\n>"),
            (b"0stp\r", b"\n:"),
            (b"0wrate 10 ul/min\r", b"\n:"),
            (b"0ctvolume\r", b"\n:"),
            (b"0wrun\r", b"\n<"),
            (b"0status\r", b"\n166666667 30000 5000000000 W...W.\r\n<"),
            # The infuse counter moved on between the last poll and the stop.
            (b"0ivolume\r", b"\n5.5 ul\r\n<"),
        ]
    )
    pump.infuse(5.0)
    pump.read_status()
    pump.stop()
    pump.withdraw(10.0)
    status = pump.read_status()
    transport.assert_done()
    assert status.running
    assert status.direction is PumpDirection.WITHDRAW
    assert status.rate_ul_min == pytest.approx(10.0, rel=1e-6)
    assert status.infused_ul == pytest.approx(5.5)
    assert status.withdrawn_ul == pytest.approx(5.0)
    assert status.delivered_ul == pytest.approx(0.5)


def test_totals_survive_the_counter_clear_of_a_targeted_run() -> None:
    pump, transport, _ = connected(
        [
            *INFUSE_5_UNTIL_STOPPED,
            STATUS_INFUSING_5UL,
            (b"0wvolume\r", b"\n0 ul\r\n>"),
            (b"0stp\r", b"\n:"),
            (b"0irate 5 ul/min\r", b"\n:"),
            (b"0ivolume\r", b"\n5.2 ul\r\n:"),
            (b"0civolume\r", b"\n:"),
            (b"0tvolume 10 ul\r", b"\n:"),
            (b"0irun\r", b"\n>"),
            (b"0status\r", b"\n0 120000 10000000000 i...I.\r\nT*"),
            (b"0wvolume\r", b"\n0 ul\r\nT*"),
        ]
    )
    pump.infuse(5.0)
    pump.read_status()
    pump.stop()
    pump.infuse(5.0, 10.0)
    status = pump.read_status()
    transport.assert_done()
    assert not status.running
    assert status.rate_ul_min == 0.0
    assert status.infused_ul == pytest.approx(15.2)


def test_stalled_status_is_reported_without_raising() -> None:
    pump, transport, _ = connected([(b"0status\r", b"\n0 1000 2000000000 i.S.I.\r\n*")])
    status = pump.read_status()
    transport.assert_done()
    assert status.stalled
    assert status.alarm == "stall"
    assert not status.running
    assert status.rate_ul_min == 0.0
    assert status.infused_ul == pytest.approx(2.0)


def test_limit_switch_reports_end_of_travel() -> None:
    pump, transport, _ = connected([(b"0status\r", b"\n0 1000 0 wW..W.\r\n:")])
    status = pump.read_status()
    transport.assert_done()
    assert status.alarm == "end_of_travel"
    assert not status.stalled


# -- retries ---------------------------------------------------------------------------


def test_status_is_retried_after_one_garbled_reply() -> None:
    pump, transport, clock = connected(
        [(b"0status\r", b"\n8333\xff333 60000\r\n>"), (b"0status\r", b"\n0 0 0 i...I.\r\n:")]
    )
    t0_s = clock.now_s()
    status = pump.read_status()
    transport.assert_done()
    assert not status.running
    assert clock.now_s() - t0_s == pytest.approx(HarvardPump.RETRY_PAUSE_S)


def test_status_is_retried_after_an_unparseable_status_line() -> None:
    pump, transport, _ = connected(
        [(b"0status\r", b"\n0 0 i...I.\r\n:"), (b"0status\r", b"\n0 0 0 i...I.\r\n:")]
    )
    pump.read_status()
    transport.assert_done()


def test_status_is_retried_after_silence_then_gives_up() -> None:
    pump, transport, _ = connected([(b"0status\r", b"")] * 3, retries=2)
    with pytest.raises(TransportTimeout) as info:
        pump.read_status()
    transport.assert_done()
    assert info.value.sent == b"0status\r"


def test_reply_from_another_address_is_a_reply_error() -> None:
    pump, transport, _ = connected([(b"0status\r", b"\n07:0 0 0 i...I.\r\n07:")], retries=0)
    with pytest.raises(ReplyError, match="address 7"):
        pump.read_status()
    transport.assert_done()


def test_rejected_query_is_not_retried() -> None:
    pump, transport, _ = connected([(b"0status\r", b"\nUnknown command\r\n:")])
    with pytest.raises(DeviceRejected):
        pump.read_status()
    transport.assert_done()


# -- syringe and reconnect -------------------------------------------------------------


def test_set_syringe_sends_diameter_volume_and_rereads_limits() -> None:
    pump, transport, _ = connected(
        [
            (b"0diameter 1.457\r", b"\n:"),
            (b"0svolume 100 ul\r", b"\n:"),
            (b"0irate lim\r", b"\n1.5 pl/min to 1.2 ml/min\r\n:"),
        ]
    )
    pump.set_syringe(HAMILTON_100UL)
    transport.assert_done()
    assert pump.syringe == HAMILTON_100UL
    assert pump.rate_range_ul_min() == pytest.approx((1.5e-6, 1200.0))


def test_reconnect_rereads_state_without_clearing_or_setting() -> None:
    pump, transport, _ = connected(
        [
            *INFUSE_5_UNTIL_STOPPED,
            STATUS_INFUSING_5UL,
            (b"0wvolume\r", b"\n0 ul\r\n>"),
            # link lost and back: only queries, no diameter/svolume/cvolume
            (b"0status\r", b"\n83333333 90000 7500000000 I...I.\r\n>"),
            (b"0wvolume\r", b"\n0 ul\r\n>"),
        ]
    )
    pump.infuse(5.0)
    pump.read_status()
    transport.close()
    pump.reconnect()
    assert transport.is_open
    transport.assert_done()


def test_reconnect_after_a_power_cycle_keeps_the_volume_already_pumped() -> None:
    pump, transport, _ = connected(
        [
            *INFUSE_5_UNTIL_STOPPED,
            STATUS_INFUSING_5UL,
            (b"0wvolume\r", b"\n0 ul\r\n>"),
            (b"0status\r", b"\n0 0 0 i...I.\r\n:"),  # counters back to zero
            (b"0wvolume\r", b"\n0 ul\r\n:"),
            (b"0status\r", b"\n0 0 0 i...I.\r\n:"),
        ]
    )
    pump.infuse(5.0)
    pump.read_status()
    pump.reconnect()
    status = pump.read_status()
    transport.assert_done()
    assert status.infused_ul == pytest.approx(5.0)


def test_script_mismatch_is_detected() -> None:
    # Guards the harness itself: a wrong byte fails the test.
    pump, _, _ = connected([(b"0stop\r", b"\n:")])
    with pytest.raises(ScriptMismatch):
        pump.stop()


def test_direction_change_made_on_the_front_panel_settles_the_old_counter() -> None:
    pump, transport, _ = connected(
        [
            (b"0status\r", b"\n83333333 60000 5000000000 I...I.\r\n>"),  # no extra query
            (b"0status\r", b"\n83333333 6000 500000000 W...W.\r\n<"),
            (b"0ivolume\r", b"\n5.1 ul\r\n<"),
        ]
    )
    assert pump.read_status().infused_ul == pytest.approx(5.0)
    status = pump.read_status()
    transport.assert_done()
    assert (status.infused_ul, status.withdrawn_ul) == pytest.approx((5.1, 0.5))


def test_a_rounded_volume_reply_is_not_mistaken_for_a_counter_reset() -> None:
    pump, transport, _ = connected(
        [
            *INFUSE_5_UNTIL_STOPPED,
            STATUS_INFUSING_5UL,  # exactly 5 uL, in fL
            (b"0wvolume\r", b"\n0 ul\r\n>"),
            (b"0irate 5 ul/min\r", b"\n>"),
            (b"0ivolume\r", b"\n4.99 ul\r\n>"),  # the same count, in a shorter format
            (b"0civolume\r", b"\n>"),
            (b"0tvolume 10 ul\r", b"\n>"),
            (b"0irun\r", b"\n>"),
            (b"0status\r", b"\n83333333 1000 100000000 I...I.\r\n>"),
            (b"0wvolume\r", b"\n0 ul\r\n>"),
        ]
    )
    pump.infuse(5.0)
    pump.read_status()
    pump.infuse(5.0, 10.0)
    status = pump.read_status()
    transport.assert_done()
    assert status.infused_ul == pytest.approx(5.1)


def test_multi_line_ver_reply_is_kept_whole() -> None:
    script = [(b"0ver\r", b"\nLEGATO 110\r\nFirmware 2.1\r\n:"), *CONNECT[1:]]
    pump, transport, _ = make_pump(script, model="legato")
    pump.connect()
    transport.assert_done()
    assert pump.version == "LEGATO 110 / Firmware 2.1"
