"""The Valve contract, run over every valve driver against its emulator.

Each test runs twice per implementation: in-process (EmulatorTransport on a virtual clock)
and through a pseudo-terminal served by simulator.pty.PtyServer, the emulator advanced to
the same virtual clock.
"""

from __future__ import annotations

import pytest

from drivers.clock import VirtualClock
from drivers.errors import DeviceAlarm, DeviceError, TransportError
from simulator.world import World

from .harness import Link, contract_fixtures
from .valves import VALVE_IMPLS


class Bench:
    """A connected, prepared valve driver on its emulator."""

    def __init__(self, impl, link):
        self.impl = impl
        self.clock = VirtualClock()
        self.world = World(seed=1)
        self.emulator = impl.make_emulator(self.world)
        self.link = Link(self.emulator, self.clock, link, baudrate=impl.baudrate)
        self.valve = impl.make_driver(self.link.transport, self.clock)
        self.valve.connect()
        impl.prepare(self.valve)

    @property
    def true_position(self):
        return self.link.on_device(self.impl.true_position)

    @property
    def cached_position(self):
        return self.impl.cached_position(self.valve)

    def close(self):
        try:
            self.valve.close()
        finally:
            self.link.close()


impl, bench = contract_fixtures(VALVE_IMPLS, Bench)


def test_connect_knows_where_the_valve_is(bench):
    position = bench.valve.read_position()
    assert 1 <= position <= bench.valve.n_positions
    assert position == bench.true_position == bench.cached_position


def test_select_each_position_and_read_it_back(bench):
    n = bench.valve.n_positions
    # Every position, in an order that moves both ways and by more than one port.
    order = [*range(n, 0, -2), *range(1, n + 1, 2), 1]
    assert set(order) == set(range(1, n + 1))
    for position in order:
        bench.valve.select(position)
        assert bench.true_position == position
        assert bench.cached_position == position
        assert bench.valve.read_position() == position


def test_selecting_the_current_position_is_harmless(bench):
    bench.valve.select(2)
    bench.valve.select(2)
    assert bench.valve.read_position() == 2 == bench.true_position


def test_out_of_range_positions_are_refused_before_any_io(bench):
    bench.valve.select(2)
    writes = bench.link.transport.writes
    for position in (0, -1, bench.valve.n_positions + 1, 99):
        with pytest.raises(ValueError, match="position"):
            bench.valve.select(position)
    assert bench.link.transport.writes == writes, "a refused command must not reach the link"
    assert bench.true_position == 2
    assert bench.valve.read_position() == 2


def test_a_jam_is_reported_as_a_typed_alarm(bench):
    bench.valve.select(2)
    bench.link.on_device(bench.impl.inject_jam)
    with pytest.raises(DeviceAlarm) as info:
        bench.valve.select(4)
    assert info.value.alarm
    assert info.value.device == bench.valve.name
    assert bench.true_position == 2  # the rotor did not turn
    # The driver never claims the target: it reads the old position or reports the fault.
    try:
        position = bench.valve.read_position()
    except DeviceError:
        pass
    else:
        assert position == 2
    assert bench.cached_position != 4


def test_reconnect_rereads_the_position(bench):
    bench.valve.select(3)
    bench.link.on_device(lambda emulator: bench.impl.move_behind_the_back(emulator, 5))
    assert bench.cached_position == 3
    bench.valve.reconnect()
    assert bench.cached_position == 5
    assert bench.valve.read_position() == 5 == bench.true_position


def test_an_unplugged_link_is_a_transport_error(bench):
    bench.link.unplug()
    with pytest.raises(TransportError):
        bench.valve.read_position()
    with pytest.raises(TransportError):
        bench.valve.reconnect()  # still unplugged


def test_reconnect_after_replug_rereads_the_position(bench):
    if bench.link.kind == "pty":
        pytest.skip("PtyServer closes an unplugged port for good (simulator/pty.py)")
    bench.valve.select(3)
    bench.link.unplug()
    with pytest.raises(TransportError):
        bench.valve.select(4)
    bench.link.replug()
    bench.valve.reconnect()
    assert bench.cached_position == 3 == bench.true_position
    bench.valve.select(4)
    assert bench.valve.read_position() == 4
