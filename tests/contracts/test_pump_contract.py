"""The SyringePump contract, run over every driver against its emulator.

Each test runs twice per implementation: in-process (EmulatorTransport on a virtual clock)
and through a pseudo-terminal (pyserial on a PTY served by simulator.pty.PtyServer, the
emulator advanced to the same virtual clock), so the driver is exercised through the same
serial stack it uses on hardware.

Volumes and rates are written for the contract syringe and multiplied by the pump's
``scale`` (see pumps.py); durations are the same for every pump. Time passes the way the
engine lets it pass: in steps of the pump's ``heartbeat_period_s``, with a heartbeat after
each, so a pump with a communication watchdog (New Era safe mode) is kept alive as in a run.
"""

from __future__ import annotations

import pytest

from drivers.clock import VirtualClock
from drivers.errors import TransportError
from drivers.roles import PumpDirection
from simulator.world import World

from .harness import Link, contract_fixtures
from .pumps import PUMP_IMPLS


class Bench:
    """A prepared driver connected to its emulator, and the clock that moves the world."""

    def __init__(self, impl, link):
        self.impl = impl
        self.scale = impl.scale
        self.clock = VirtualClock()
        self.world = World(seed=1)
        self.emulator = impl.make_emulator(self.world)
        self.link = Link(self.emulator, self.clock, link)
        self.pump = impl.make_driver(self.link.transport, self.clock, impl.syringe)
        self.pump.connect()
        impl.prepare(self.pump)

    def v(self, volume_ul):
        """A contract volume (or rate) for this pump."""
        return volume_ul * self.scale

    @property
    def writes(self):
        return self.link.transport.writes

    def advance(self, duration_s):
        """Let time pass, feeding the pump's watchdog as the engine does."""
        period_s = self.pump.heartbeat_period_s
        if period_s is None:
            self.clock.sleep_s(duration_s)
            return
        end_s = self.clock.now_s() + duration_s
        while self.clock.now_s() < end_s:
            self.clock.sleep_until_s(min(end_s, self.clock.now_s() + period_s))
            self.pump.heartbeat()

    def inject(self, fault):
        """Apply ``fault`` to the emulator at the clock's now."""
        self.link.on_device(fault)

    def close(self):
        try:
            self.pump.close()
        finally:
            self.link.close()


impl, bench = contract_fixtures(PUMP_IMPLS, Bench)


def test_connect_leaves_it_idle_with_zero_volumes(bench):
    status = bench.pump.read_status()
    assert not status.running
    assert status.infused_ul == 0.0 and status.withdrawn_ul == 0.0
    assert not status.stalled and status.alarm is None


def test_infuse_a_volume_stops_by_itself_at_the_volume(bench):
    bench.pump.infuse(rate_ul_min=bench.v(10.0), volume_ul=bench.v(50.0))
    bench.advance(150.0)  # half way
    status = bench.pump.read_status()
    assert status.running and status.direction is PumpDirection.INFUSE
    assert status.rate_ul_min == pytest.approx(bench.v(10.0), rel=1e-3)
    assert status.infused_ul == pytest.approx(bench.v(25.0), rel=0.02)
    bench.advance(200.0)
    status = bench.pump.read_status()
    assert not status.running
    assert status.infused_ul == pytest.approx(bench.v(50.0), rel=1e-3)
    assert status.delivered_ul == pytest.approx(bench.v(50.0), rel=1e-3)
    # ...and it really went into the line, as the emulator's mechanics saw it.
    true_ul = bench.link.on_device(bench.impl.true_delivered_ul)
    assert true_ul == pytest.approx(bench.v(50.0), rel=1e-3)


def test_stop_halts_an_open_ended_infusion(bench):
    bench.pump.infuse(rate_ul_min=bench.v(6.0))
    bench.advance(60.0)
    bench.pump.stop()
    at_stop = bench.pump.read_status()
    bench.advance(600.0)
    later = bench.pump.read_status()
    assert not later.running
    assert at_stop.infused_ul == pytest.approx(bench.v(6.0), rel=bench.impl.timed_volume_rel)
    assert later.infused_ul == pytest.approx(at_stop.infused_ul, abs=1e-9)


def test_stop_is_safe_when_already_stopped(bench):
    bench.pump.stop()
    bench.pump.stop()
    status = bench.pump.read_status()
    assert not status.running and status.rate_ul_min == 0.0
    assert status.infused_ul == 0.0 and status.withdrawn_ul == 0.0


def test_withdraw_a_volume(bench):
    bench.pump.infuse(rate_ul_min=bench.v(100.0), volume_ul=bench.v(100.0))
    bench.advance(61.0)
    bench.pump.withdraw(rate_ul_min=bench.v(20.0), volume_ul=bench.v(40.0))
    bench.advance(60.0)  # half way
    status = bench.pump.read_status()
    assert status.running and status.direction is PumpDirection.WITHDRAW
    bench.advance(61.0)
    status = bench.pump.read_status()
    assert not status.running
    assert status.infused_ul == pytest.approx(bench.v(100.0), rel=1e-3)
    assert status.withdrawn_ul == pytest.approx(bench.v(40.0), rel=1e-3)
    assert status.delivered_ul == pytest.approx(bench.v(60.0), rel=1e-3)


def test_successive_infusions_add_up(bench):
    for _ in range(3):
        bench.pump.infuse(rate_ul_min=bench.v(30.0), volume_ul=bench.v(15.0))
        bench.advance(31.0)
    assert bench.pump.read_status().infused_ul == pytest.approx(bench.v(45.0), rel=1e-3)


def test_impossible_rate_and_volume_are_refused_before_any_io(bench):
    low, high = bench.pump.rate_range_ul_min()
    # The range covers every rate this contract uses.
    assert 0 < low <= bench.v(6.0) and bench.v(100.0) < high
    writes = bench.writes
    with pytest.raises(ValueError, match="outside"):
        bench.pump.infuse(rate_ul_min=high * 10)
    with pytest.raises(ValueError, match="outside"):
        bench.pump.withdraw(rate_ul_min=low / 10)
    with pytest.raises(ValueError, match="exceeds"):
        bench.pump.infuse(rate_ul_min=bench.v(10.0), volume_ul=bench.impl.syringe.volume_ul * 2)
    with pytest.raises(ValueError):
        bench.pump.infuse(rate_ul_min=bench.v(10.0), volume_ul=-1.0)
    assert bench.writes == writes, "a refused command must not reach the link"
    assert not bench.pump.read_status().running


def test_a_finite_stroke_is_enforced_before_moving(bench):
    if not bench.impl.finite_stroke:
        pytest.skip(
            "continuous pump: the driver does not know the plunger position; the limit "
            "is the pump's own end-of-travel stall"
        )
    full_ul = bench.impl.syringe.volume_ul  # prepare() filled the syringe
    with pytest.raises(ValueError):
        bench.pump.withdraw(rate_ul_min=bench.v(10.0), volume_ul=bench.v(10.0))
    bench.pump.infuse(rate_ul_min=bench.v(100.0), volume_ul=0.6 * full_ul)
    bench.advance(0.6 * full_ul / bench.v(100.0) * 60.0 + 1.0)
    with pytest.raises(ValueError):
        bench.pump.infuse(rate_ul_min=bench.v(10.0), volume_ul=0.6 * full_ul)
    status = bench.pump.read_status()
    assert not status.running
    assert status.infused_ul == pytest.approx(0.6 * full_ul, rel=1e-3)
    assert status.withdrawn_ul == 0.0


def test_reconnect_keeps_the_counters(bench):
    bench.pump.infuse(rate_ul_min=bench.v(12.0), volume_ul=bench.v(24.0))
    bench.advance(130.0)
    bench.pump.reconnect()
    assert bench.pump.read_status().infused_ul == pytest.approx(bench.v(24.0), rel=1e-3)


def test_reconnect_while_running_resynchronises(bench):
    bench.pump.infuse(rate_ul_min=bench.v(10.0), volume_ul=bench.v(50.0))
    bench.advance(60.0)
    bench.pump.reconnect()
    status = bench.pump.read_status()
    assert status.running and status.direction is PumpDirection.INFUSE
    assert status.infused_ul == pytest.approx(bench.v(10.0), rel=0.02)
    bench.advance(300.0)
    assert bench.pump.read_status().infused_ul == pytest.approx(bench.v(50.0), rel=1e-3)


def test_an_unplugged_link_is_a_transport_error(bench):
    bench.link.unplug()
    with pytest.raises(TransportError):
        bench.pump.read_status()
    with pytest.raises(TransportError):
        bench.pump.reconnect()  # still unplugged


def test_reconnect_after_replug_keeps_the_counters(bench):
    if bench.link.kind == "pty":
        pytest.skip("PtyServer closes an unplugged port for good (simulator/pty.py)")
    bench.pump.infuse(rate_ul_min=bench.v(30.0), volume_ul=bench.v(15.0))
    bench.advance(31.0)
    bench.link.unplug()
    with pytest.raises(TransportError):
        bench.pump.read_status()
    bench.link.replug()
    bench.pump.reconnect()
    status = bench.pump.read_status()
    assert not status.running
    assert status.infused_ul == pytest.approx(bench.v(15.0), rel=1e-3)


def test_a_stall_is_reported_and_stops_motion(bench):
    bench.pump.infuse(rate_ul_min=bench.v(10.0), volume_ul=bench.v(100.0))
    bench.advance(60.0)
    bench.inject(bench.impl.inject_stall)
    bench.advance(60.0)
    status = bench.pump.read_status()
    assert status.stalled
    assert status.alarm is not None
    assert not status.running
    assert status.infused_ul == pytest.approx(bench.v(10.0), rel=0.02)
    bench.pump.stop()  # stopping a stalled pump never raises
