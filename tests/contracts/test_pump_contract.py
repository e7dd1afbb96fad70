"""The SyringePump contract, run over every driver against its emulator.

Each test runs twice per implementation: in-process (EmulatorTransport on a virtual clock)
and through a pseudo-terminal (pyserial on a PTY served by simulator.pty.PtyServer, the
emulator advanced to the same virtual clock), so the driver is exercised through the same
serial stack it uses on hardware.
"""

from __future__ import annotations

import pytest

from drivers.clock import VirtualClock
from drivers.roles import PumpDirection
from drivers.syringes import lookup_syringe
from drivers.transport import EmulatorTransport, SerialTransport
from simulator.pty import PtyServer
from simulator.world import World

from .pumps import PUMP_IMPLS

SYRINGE = lookup_syringe("BD Plastipak 10 mL")


class Bench:
    """A driver connected to its emulator, and the clock that moves the world."""

    def __init__(self, impl, link):
        self.impl = impl
        self.clock = VirtualClock()
        self.world = World(seed=1)
        self.emulator = impl.make_emulator(self.world)
        self.server = None
        if link == "inproc":
            transport = EmulatorTransport(self.emulator, self.clock, name="emu")
        else:
            self.server = PtyServer({"pump": self.emulator}, self.clock.now_s)
            self.server.start()
            transport = SerialTransport(self.server.paths["pump"], name="pty")
        self.pump = impl.make_driver(transport, self.clock, SYRINGE)
        self.pump.connect()
        impl.prepare(self.pump)

    def advance(self, duration_s):
        self.clock.sleep_s(duration_s)

    def inject(self, fault):
        """Apply ``fault`` to the emulator at the clock's now (emulators advance lazily)."""
        self.emulator.advance_to(self.clock.now_s())
        fault(self.emulator)

    def close(self):
        self.pump.close()
        if self.server is not None:
            self.server.stop()


@pytest.fixture(params=sorted(PUMP_IMPLS))
def impl(request):
    return PUMP_IMPLS[request.param]


@pytest.fixture(params=["inproc", pytest.param("pty", marks=pytest.mark.pty)])
def bench(request, impl):
    bench = Bench(impl, request.param)
    yield bench
    bench.close()


def test_connect_leaves_it_idle_with_zero_volumes(bench):
    status = bench.pump.read_status()
    assert not status.running
    assert status.infused_ul == 0.0 and status.withdrawn_ul == 0.0
    assert not status.stalled and status.alarm is None


def test_infuse_a_volume_stops_by_itself_at_the_volume(bench):
    bench.pump.infuse(rate_ul_min=10.0, volume_ul=50.0)
    bench.advance(150.0)  # half way
    status = bench.pump.read_status()
    assert status.running and status.direction is PumpDirection.INFUSE
    assert status.rate_ul_min == pytest.approx(10.0, rel=1e-3)
    assert status.infused_ul == pytest.approx(25.0, rel=0.02)
    bench.advance(200.0)
    status = bench.pump.read_status()
    assert not status.running
    assert status.infused_ul == pytest.approx(50.0, rel=1e-3)
    assert status.delivered_ul == pytest.approx(50.0, rel=1e-3)


def test_stop_halts_an_open_ended_infusion(bench):
    bench.pump.infuse(rate_ul_min=6.0)
    bench.advance(60.0)
    bench.pump.stop()
    at_stop = bench.pump.read_status()
    bench.advance(600.0)
    later = bench.pump.read_status()
    assert not later.running
    assert at_stop.infused_ul == pytest.approx(6.0, rel=1e-3)
    assert later.infused_ul == pytest.approx(at_stop.infused_ul, abs=1e-9)


def test_withdraw_a_volume(bench):
    bench.pump.infuse(rate_ul_min=100.0, volume_ul=100.0)
    bench.advance(61.0)
    bench.pump.withdraw(rate_ul_min=20.0, volume_ul=40.0)
    bench.advance(121.0)
    status = bench.pump.read_status()
    assert not status.running
    assert status.infused_ul == pytest.approx(100.0, rel=1e-3)
    assert status.withdrawn_ul == pytest.approx(40.0, rel=1e-3)
    assert status.delivered_ul == pytest.approx(60.0, rel=1e-3)


def test_successive_infusions_add_up(bench):
    for _ in range(3):
        bench.pump.infuse(rate_ul_min=30.0, volume_ul=15.0)
        bench.advance(31.0)
    assert bench.pump.read_status().infused_ul == pytest.approx(45.0, rel=1e-3)


def test_impossible_rate_and_volume_are_refused_before_any_io(bench):
    low, high = bench.pump.rate_range_ul_min()
    assert 0 < low < 2.0 < high
    with pytest.raises(ValueError, match="outside"):
        bench.pump.infuse(rate_ul_min=high * 10)
    with pytest.raises(ValueError, match="exceeds"):
        bench.pump.infuse(rate_ul_min=1.0, volume_ul=SYRINGE.volume_ul * 2)
    assert not bench.pump.read_status().running


def test_reconnect_keeps_the_counters(bench):
    bench.pump.infuse(rate_ul_min=12.0, volume_ul=24.0)
    bench.advance(130.0)
    bench.pump.reconnect()
    assert bench.pump.read_status().infused_ul == pytest.approx(24.0, rel=1e-3)


def test_a_stall_is_reported_and_stops_motion(bench):
    bench.pump.infuse(rate_ul_min=10.0, volume_ul=100.0)
    bench.advance(60.0)
    bench.inject(bench.impl.inject_stall)
    bench.advance(60.0)
    status = bench.pump.read_status()
    assert status.stalled
    assert status.alarm is not None
    assert status.infused_ul == pytest.approx(10.0, rel=0.02)
    bench.pump.stop()  # stopping a stalled pump never raises
