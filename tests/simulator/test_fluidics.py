"""The hydraulic network component: lag, steady pressures, conservation, faults."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.chip import ReferenceChip, ReferenceFluidics, build_reference_fluidics
from simulator.fluidics import FluidicNetwork
from simulator.physics.network import GROUND, ChamberPort, Edge, InletPort, NetworkSpec
from simulator.world import FlowSource, SyringeMechanics, World


class StubPump:
    """A SyringeMechanics stand-in: constant rate, stalls above a force (pressure) limit."""

    def __init__(self, rate_ul_min: float = 0.0, force_limit_kpa: float = math.inf) -> None:
        self.rate_ul_min = rate_ul_min
        self.force_limit_kpa = force_limit_kpa
        self.last_step_displaced_ul = 0.0
        self.back_pressure_kpa = 0.0
        self.stalled = False

    def step(self, t0_s: float, t1_s: float) -> None:
        if abs(self.back_pressure_kpa) > self.force_limit_kpa:
            self.stalled = True
        rate = 0.0 if self.stalled else self.rate_ul_min
        self.last_step_displaced_ul = rate * (t1_s - t0_s) / 60.0


def _one_line(r_kpa_s_ul: float = 2.0, c_ul_kpa: float = 0.5) -> NetworkSpec:
    """A syringe node with compliance C draining through R to air: tau = R C."""
    return NetworkSpec(
        nodes=("syringe",),
        compliance_ul_kpa=(c_ul_kpa,),
        edges=(Edge("line", "syringe", GROUND, r_kpa_s_ul),),
        inlets=(InletPort("in", "syringe", "line", 10.0, 0.0),),
        chambers=(ChamberPort("syringe", "line", 1.0, 0.0),),
        outlet_edge="line",
        outlet_sensor_volume_ul=1.0,
    )


def _reference(
    rates_ul_min: dict[str, float], *, max_step_s: float = 1.0, **pump_kwargs: float
) -> tuple[World, dict[str, StubPump], ReferenceFluidics]:
    world = World(max_step_s=max_step_s)
    pumps = {name: StubPump(rate, **pump_kwargs) for name, rate in rates_ul_min.items()}
    for pump in pumps.values():
        world.add(pump)
    parts = build_reference_fluidics(world, pumps=pumps)
    world.advance_to(0.0)
    return world, pumps, parts


def _assert_conserved(net: FluidicNetwork, rel: float = 1e-3) -> None:
    balance = net.outlet_volume_ul + net.leaked_volume_ul + net.held_volume_ul
    assert balance == pytest.approx(net.pumped_volume_ul, rel=rel, abs=1e-9)


# --- start-up lag and steady state ---------------------------------------------------------


@pytest.mark.parametrize("max_step_s", [0.05, 1.0, math.inf])
def test_single_line_start_up_time_constant(max_step_s: float) -> None:
    r, c, q_ul_min = 2.0, 0.5, 6.0  # tau = 1 s
    world = World(max_step_s=max_step_s)
    pump = StubPump(q_ul_min)
    world.add(pump)
    net = FluidicNetwork(_one_line(r, c))
    net.attach_pump("in", pump)
    world.add(net)
    world.advance_to(0.0)
    world.advance_to(1.0)  # one tau
    assert net.outlet_flow_ul_min() == pytest.approx(q_ul_min * (1 - math.exp(-1.0)), rel=1e-6)
    world.advance_to(20.0)
    assert net.pressure_kpa("syringe") == pytest.approx(r * q_ul_min / 60.0, rel=1e-6)
    assert pump.back_pressure_kpa == pytest.approx(r * q_ul_min / 60.0, rel=1e-6)
    _assert_conserved(net, rel=1e-9)


def test_single_line_drips_after_the_pump_stops() -> None:
    world = World(max_step_s=0.1)
    pump = StubPump(6.0)
    world.add(pump)
    net = FluidicNetwork(_one_line(2.0, 0.5))
    net.attach_pump("in", pump)
    world.add(net)
    world.advance_to(0.0)
    world.advance_to(30.0)
    pump.rate_ul_min = 0.0
    world.advance_to(31.0)
    assert net.outlet_flow_ul_min() == pytest.approx(6.0 * math.exp(-1.0), rel=1e-6)


def test_reference_steady_pressures_are_resistance_times_flow() -> None:
    q = 20.0 / 60.0  # uL/min per inlet
    world, _, parts = _reference({"medium": q, "drug": q})
    net, chip = parts.network, parts.chip
    world.advance_to(600.0)
    mu = chip.viscosity_pa_s
    r_line = chip.drug.tubing.resistance_kpa_s_ul(mu)
    drop = net.inlet_pressure_kpa("drug") - net.pressure_kpa("mix:0")
    assert drop == pytest.approx(r_line * q / 60.0, rel=0.01)
    r_out = chip.outlet_tubing.resistance_kpa_s_ul(mu)
    assert net.pressure_kpa("outlet") == pytest.approx(r_out * 2 * q / 60.0, rel=0.01)
    # The design point: manifold at its design pressure, outlet flow = sum of inlets.
    assert net.pressure_kpa("manifold") == pytest.approx(
        chip.dilution.manifold_pressure_kpa, rel=0.01
    )
    assert net.outlet_flow_ul_min() == pytest.approx(2 * q, rel=1e-6)
    chamber_flows = net.chamber_flows_ul_min()
    assert np.allclose(chamber_flows, chamber_flows[0], rtol=1e-6)
    assert chamber_flows.sum() + net.edge_flow_ul_min("bypass") == pytest.approx(2 * q, rel=1e-6)
    assert np.all(net.chamber_wall_shear_pa() > 0.0)


def test_reference_start_up_follows_the_network_time_constant() -> None:
    world, _, parts = _reference({"medium": 0.5, "drug": 0.5}, max_step_s=0.05)
    net = parts.network
    tau = net.slowest_time_constant_s
    assert 0.1 < tau < 100.0
    world.advance_to(0.2 * tau)
    assert net.outlet_flow_ul_min() < 0.5 * 1.0
    world.advance_to(8 * tau)
    assert net.outlet_flow_ul_min() == pytest.approx(1.0, rel=1e-3)


def test_big_steps_equal_small_steps() -> None:
    results = []
    for max_step_s in (0.1, 5.0):
        world, _, parts = _reference({"medium": 1.0, "drug": 0.3}, max_step_s=max_step_s)
        world.advance_to(10.0)
        results.append(parts.network.pressures_kpa())
    for node, p in results[0].items():
        assert results[1][node] == pytest.approx(p, rel=1e-9, abs=1e-12)


def test_outlet_sensor_is_a_flow_source_and_pumps_are_mechanics() -> None:
    world, pumps, parts = _reference({"medium": 1.0, "drug": 1.0})
    sensor: FlowSource = parts.outlet_sensor
    pump: SyringeMechanics = pumps["drug"]
    world.advance_to(100.0)
    assert sensor.true_flow_ul_min() == pytest.approx(2.0, rel=1e-6)
    assert not sensor.air_in_line()
    assert pump.back_pressure_kpa == pytest.approx(parts.network.inlet_pressure_kpa("drug"))
    line_sensor: FlowSource = parts.network.flow_source("line:drug")
    assert line_sensor.true_flow_ul_min() == pytest.approx(1.0, rel=1e-6)
    assert not line_sensor.air_in_line()
    with pytest.raises(KeyError):
        parts.network.flow_source("nowhere")


# --- volume accounting ---------------------------------------------------------------------


def test_conservation_through_start_stop_and_withdrawal() -> None:
    world, pumps, parts = _reference({"medium": 2.0, "drug": 1.0, "aux": 0.0})
    world.advance_to(50.0)
    pumps["aux"].rate_ul_min = 5.0
    world.advance_to(80.5)
    pumps["drug"].rate_ul_min = -0.5
    world.advance_to(120.25)
    pumps["medium"].rate_ul_min = 0.0
    world.advance_to(200.0)
    _assert_conserved(parts.network)


rate = st.floats(min_value=-1.0, max_value=20.0, allow_nan=False)


@settings(max_examples=25, deadline=None)
@given(
    schedule=st.lists(
        st.tuples(st.floats(min_value=0.05, max_value=200.0), rate, rate, rate),
        min_size=1,
        max_size=6,
    )
)
def test_property_conservation_for_random_schedules(
    schedule: list[tuple[float, float, float, float]],
) -> None:
    world, pumps, parts = _reference({"medium": 0.0, "drug": 0.0, "aux": 0.0})
    t, gross_ul = 0.0, 0.0
    for duration, medium, drug, aux in schedule:
        pumps["medium"].rate_ul_min, pumps["drug"].rate_ul_min = medium, drug
        pumps["aux"].rate_ul_min = aux
        t += duration
        gross_ul += (abs(medium) + abs(drug) + abs(aux)) * duration / 60.0
        world.advance_to(t)
        net = parts.network
        balance = net.outlet_volume_ul + net.leaked_volume_ul + net.held_volume_ul
        # Within 0.1 % of the volume moved (net pumped can cancel to zero).
        assert abs(balance - net.pumped_volume_ul) <= 1e-3 * gross_ul + 1e-12
        assert all(math.isfinite(p) for p in net.pressures_kpa().values())


# --- faults --------------------------------------------------------------------------------


def test_clog_raises_pressure_and_stalls_a_force_limited_pump() -> None:
    world, pumps, parts = _reference({"medium": 1.0, "drug": 1.0}, force_limit_kpa=20.0)
    net = parts.network
    world.advance_to(60.0)
    p_before = net.inlet_pressure_kpa("drug")
    assert p_before < 20.0
    net.start_clog("outlet", doubling_time_s=300.0)
    world.advance_to(3060.0)  # ten doublings
    r_clogged = net.resistance_kpa_s_ul("outlet")
    r_clean = parts.chip.outlet_tubing.resistance_kpa_s_ul(0.78e-3)
    assert r_clogged == pytest.approx(1024 * r_clean, rel=0.02)
    assert net.inlet_pressure_kpa("drug") > 2 * p_before
    # The pressure behind the clog follows R(t) Q (quasi-steady, flow still 2 uL/min).
    assert net.pressure_kpa("outlet") == pytest.approx(r_clogged * 2.0 / 60.0, rel=0.05)
    world.advance_to(8000.0)
    assert pumps["drug"].stalled and pumps["medium"].stalled
    _assert_conserved(net)
    net.clear_clog("outlet")
    assert net.resistance_kpa_s_ul("outlet") == pytest.approx(
        parts.chip.outlet_tubing.resistance_kpa_s_ul(0.78e-3)
    )


def test_leak_loses_flow_at_its_node() -> None:
    world, _, parts = _reference({"medium": 1.0, "drug": 1.0})
    net = parts.network
    world.advance_to(100.0)
    net.start_leak("manifold", resistance_kpa_s_ul=50.0)
    world.advance_to(300.0)
    leak_ul_min = net.pressure_kpa("manifold") / 50.0 * 60.0
    assert leak_ul_min > 0.1
    assert net.outlet_flow_ul_min() == pytest.approx(2.0 - leak_ul_min, rel=1e-3)
    assert net.leaked_volume_ul > 0.0
    _assert_conserved(net)
    net.stop_leak("manifold")
    world.advance_to(400.0)
    assert net.outlet_flow_ul_min() == pytest.approx(2.0, rel=1e-3)
    _assert_conserved(net)


def test_bubble_adds_compliance_dips_flow_and_passes_the_sensor() -> None:
    q = 10.0  # uL/min per inlet
    world, _, parts = _reference({"medium": q, "drug": q}, max_step_s=0.1)
    net, chip = parts.network, parts.chip
    world.advance_to(120.0)
    tau_before = net.slowest_time_constant_s
    p_before = net.inlet_pressure_kpa("drug")
    net.inject_bubble("drug", volume_ul=10.0)
    assert net.inlet_pressure_kpa("drug") < 0.8 * p_before  # compressed at once: pressure dips
    assert net.slowest_time_constant_s > 2 * tau_before  # compliance spike
    world.advance_to(121.0)
    assert net.edge_flow_ul_min("line:drug") < 0.9 * q  # flow transient
    path_ul = chip.dead_volume_ul("drug") + chip.chamber.volume_ul()  # syringe to outlet channel
    t_sensor = 120.0 + path_ul / q * 60.0 + net.spec.outlet_sensor_volume_ul / (2 * q) * 60.0
    seen: list[float] = []
    t = 121.0
    while t < t_sensor + 120.0:
        t += 0.1
        world.advance_to(t)
        if parts.outlet_sensor.air_in_line():
            seen.append(t)
    assert seen, "the bubble never reached the sensor"
    assert seen[0] == pytest.approx(t_sensor, abs=5.0)
    assert seen[-1] - seen[0] == pytest.approx(10.0 / (2 * q) * 60.0, abs=1.0)
    assert not net.bubbles
    kinds = [kind for _, kind, _ in net.events]
    assert kinds == ["bubble_through_chip", "bubble_at_sensor", "bubble_gone"]
    assert net.events[1][0] == pytest.approx(seen[0], abs=0.11)
    _assert_conserved(net)


def test_over_pressure_delaminates_the_chip() -> None:
    world, _, parts = _reference({"medium": 50.0, "drug": 50.0})
    net = parts.network
    net.set_resistance_factor("outlet", 1e6)
    world.advance_to(3000.0)
    assert net.delaminated_nodes
    assert net.events[0][1:] == ("delamination", net.delaminated_nodes[0])
    assert net.leaked_volume_ul > 0.0
    _assert_conserved(net)


def test_unknown_names_raise_key_errors() -> None:
    net = FluidicNetwork(ReferenceChip().network())
    with pytest.raises(KeyError, match="inlet"):
        net.attach_pump("sample", StubPump())
    with pytest.raises(KeyError, match="edge"):
        net.start_clog("nowhere", 10.0)
    with pytest.raises(KeyError, match="node"):
        net.start_leak("nowhere", 1.0)
