"""Drug transport: line delays, dilution fractions, CSTR chambers, PDMS loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.chip import INLETS, ReferenceFluidics, build_reference_fluidics
from simulator.drug import pdms_loss_rate_per_s
from simulator.physics.network import GROUND, NetworkSpec
from simulator.world import World

LOG_SPACED = 10.0 ** (-np.arange(8) / 2.0)


class StubPump:
    """A SyringeMechanics stand-in with a settable constant rate."""

    def __init__(self, rate_ul_min: float = 0.0) -> None:
        self.rate_ul_min = rate_ul_min
        self.last_step_displaced_ul = 0.0
        self.back_pressure_kpa = 0.0

    def step(self, t0_s: float, t1_s: float) -> None:
        self.last_step_displaced_ul = self.rate_ul_min * (t1_s - t0_s) / 60.0


def _setup(
    rates_ul_min: dict[str, float], max_step_s: float = 1.0
) -> tuple[World, dict[str, StubPump], ReferenceFluidics]:
    world = World(max_step_s=max_step_s)
    pumps = {name: StubPump(rates_ul_min.get(name, 0.0)) for name in INLETS}
    for pump in pumps.values():
        world.add(pump)
    parts = build_reference_fluidics(world, pumps=pumps)
    world.advance_to(0.0)
    return world, pumps, parts


def _independent_fractions(spec: NetworkSpec, q_ul_s: dict[str, float]) -> np.ndarray:
    """Steady Kirchhoff solve, then mixing node by node in order of falling pressure."""
    idx = {name: i for i, name in enumerate(spec.nodes)}
    n = len(spec.nodes)
    g = np.zeros((n, n))
    for e in spec.edges:
        a, b = idx[e.upstream], idx.get(e.downstream)
        g[a, a] += 1 / e.resistance_kpa_s_ul
        if b is not None:
            g[b, b] += 1 / e.resistance_kpa_s_ul
            g[a, b] -= 1 / e.resistance_kpa_s_ul
            g[b, a] -= 1 / e.resistance_kpa_s_ul
    src = np.zeros(n)
    for port in spec.inlets:
        src[idx[port.node]] = q_ul_s[port.name]
    p = np.linalg.solve(g, src)
    frac = np.zeros((n, len(spec.inlets)))
    for j, port in enumerate(spec.inlets):
        frac[idx[port.node], j] = 1.0
    syringes = {idx[port.node] for port in spec.inlets}
    for i in np.argsort(-p):
        if i in syringes:
            continue
        total, mix = 0.0, np.zeros(len(spec.inlets))
        for e in spec.edges:
            if e.downstream == GROUND:
                continue
            a, b = idx[e.upstream], idx[e.downstream]
            q = (p[a] - p[b]) / e.resistance_kpa_s_ul
            if b == i and q > 0:
                total, mix = total + q, mix + q * frac[a]
            elif a == i and q < 0:
                total, mix = total - q, mix - q * frac[b]
        frac[i] = mix / total if total > 0 else 0.0
    return np.array([frac[idx[f"mix:{k}"]] for k in range(8)])


# --- dilution fractions --------------------------------------------------------------------


@pytest.mark.parametrize("q_ul_min", [20.0 / 60.0, 5.0])
def test_fractions_are_log_spaced_at_equal_rates(q_ul_min: float) -> None:
    world, _, parts = _setup({"medium": q_ul_min, "drug": q_ul_min})
    world.advance_to(300.0)
    assert np.allclose(parts.drug.chamber_drug_fractions(), LOG_SPACED, rtol=1e-6)
    assert np.allclose(parts.drug.chamber_drug_fractions("medium"), 1 - LOG_SPACED, rtol=1e-6)


@pytest.mark.parametrize(("q_medium", "q_drug"), [(1.0, 2.0), (1.0, 0.8), (0.2, 1.7)])
def test_fractions_follow_the_network_at_unequal_rates(q_medium: float, q_drug: float) -> None:
    world, _, parts = _setup({"medium": q_medium, "drug": q_drug})
    world.advance_to(600.0)
    got = parts.drug.chamber_drug_fractions()
    spec = parts.chip.network()
    expected = _independent_fractions(
        spec, {"medium": q_medium / 60, "drug": q_drug / 60, "aux": 0.0}
    )
    assert np.allclose(got, expected[:, 1], rtol=1e-5, atol=1e-12)
    # More drug than medium raises every fraction, less lowers it; order is kept.
    assert np.all(np.diff(got) < 0)
    assert np.all((got[1:] > LOG_SPACED[1:]) if q_drug > q_medium else (got[1:] < LOG_SPACED[1:]))
    # Drug mass balance: all drug entering leaves through chambers and bypass.
    net = parts.network
    drug_out = np.sum(net.chamber_flows_ul_min() * got) + net.edge_flow_ul_min("bypass") * got[0]
    assert drug_out == pytest.approx(q_drug, rel=1e-5)


def test_too_little_drug_flow_reverses_the_ladder() -> None:
    # At a third of the medium flow mix:0 falls below mix:1, the transfer channels run
    # backwards, and the drug reaches chamber 0 (diluted) and the bypass only.
    world, _, parts = _setup({"medium": 1.0, "drug": 1 / 3})
    world.advance_to(600.0)
    got = parts.drug.chamber_drug_fractions()
    assert parts.network.edge_flow_ul_min("transfer:0") < 0.0
    assert 0.0 < got[0] < 1.0
    assert np.allclose(got[1:], 0.0, atol=1e-12)


def test_medium_off_gives_pure_drug_and_drug_off_gives_none() -> None:
    world, pumps, parts = _setup({"medium": 0.0, "drug": 1.0})
    world.advance_to(600.0)
    assert np.allclose(parts.drug.chamber_drug_fractions(), 1.0)
    pumps["drug"].rate_ul_min, pumps["medium"].rate_ul_min = 0.0, 1.0
    world.advance_to(1200.0)
    assert np.allclose(parts.drug.chamber_drug_fractions(), 0.0, atol=1e-9)


def test_aux_wash_reaches_every_chamber() -> None:
    world, _, parts = _setup({"aux": 2.0})
    world.advance_to(600.0)
    assert np.allclose(parts.drug.chamber_drug_fractions("aux"), 1.0)


# --- plug-flow delay -----------------------------------------------------------------------


@pytest.mark.parametrize("q_ul_h", [20.0, 60.0])
def test_drug_arrives_after_dead_volume_over_flow(q_ul_h: float) -> None:
    world, _, parts = _setup({"medium": q_ul_h / 60, "drug": q_ul_h / 60})
    world.advance_to(600.0)
    parts.drug.set_inlet_contents("drug", {"mmae": 10.0})
    dead_ul = parts.chip.dead_volume_ul("drug")
    assert dead_ul == pytest.approx(98.17 + 4.0, rel=1e-3)  # tubing + fitting + on-chip
    expected_s = 600.0 + dead_ul / q_ul_h * 3600.0
    world.advance_to(expected_s - 2.0)
    assert parts.drug.line_end_concentration_nm("drug", "mmae") == 0.0
    world.advance_to(expected_s + 2.0)
    assert parts.drug.line_end_concentration_nm("drug", "mmae") == 10.0
    (t_arrival, inlet, contents), *_ = parts.drug.arrivals
    assert inlet == "drug" and contents == {"mmae": 10.0}
    assert t_arrival == pytest.approx(expected_s, abs=1.0)  # within one world step


def test_arrival_follows_a_flow_change_in_transit() -> None:
    world, pumps, parts = _setup({"medium": 1.0, "drug": 1.0})
    world.advance_to(300.0)
    parts.drug.set_inlet_contents("drug", {"mmae": 1.0})
    world.advance_to(1800.0)  # 25 uL of the dead volume travelled at 1 uL/min
    pumps["drug"].rate_ul_min = 4.0
    remaining_ul = parts.chip.dead_volume_ul("drug") - 25.0
    world.advance_to(1800.0 + remaining_ul / 4.0 * 60.0 + 60.0)
    t_arrival = parts.drug.arrivals[0][0]
    # The line refills its compliance in well under a step after the change.
    assert t_arrival == pytest.approx(1800.0 + remaining_ul / 4.0 * 60.0, abs=1.5)


# --- chambers ------------------------------------------------------------------------------


def test_chambers_approach_inlet_with_the_residence_time_constant() -> None:
    q = 1.0
    world, _, parts = _setup({"medium": q, "drug": q})
    world.advance_to(300.0)
    parts.drug.set_inlet_contents("drug", {"dox": 100.0}, primed=True)
    flows_ul_min = parts.network.chamber_flows_ul_min()
    tau_s = parts.chip.chamber.volume_ul() / flows_ul_min[0] * 60.0
    world.advance_to(300.0 + tau_s)
    conc = parts.drug.chamber_concentrations_nm("dox")
    assert np.allclose(conc, 100.0 * LOG_SPACED * (1 - math.exp(-1.0)), rtol=1e-3)
    world.advance_to(300.0 + 10 * tau_s)
    assert np.allclose(parts.drug.chamber_concentrations_nm("dox"), 100.0 * LOG_SPACED, rtol=1e-3)
    # All drug entering leaves at steady state: effluent = q_drug C / (q_drug + q_medium).
    assert parts.drug.effluent_concentration_nm("dox") == pytest.approx(50.0, rel=1e-3)


def test_washout_decays_with_the_same_time_constant() -> None:
    q = 2.0
    world, _, parts = _setup({"medium": q, "drug": q})
    parts.drug.set_inlet_contents("drug", {"dox": 100.0}, primed=True)
    world.advance_to(3600.0)
    start = parts.drug.chamber_concentrations_nm("dox")
    parts.drug.set_inlet_contents("drug", {}, primed=True)
    tau_s = parts.chip.chamber.volume_ul() / parts.network.chamber_flows_ul_min()[0] * 60.0
    world.advance_to(3600.0 + 2 * tau_s)
    conc = parts.drug.chamber_concentrations_nm("dox")
    assert np.allclose(conc, start * math.exp(-2.0), rtol=1e-6)


def test_pdms_loss_lowers_the_steady_chamber_concentration() -> None:
    q = 1.0
    world, _, parts = _setup({"medium": q, "drug": q})
    world.advance_to(300.0)
    tau_s = parts.chip.chamber.volume_ul() / parts.network.chamber_flows_ul_min()[0] * 60.0
    k = pdms_loss_rate_per_s(3.0, tau_s)  # paclitaxel-like, logP 3 [V, R25]: > 90 % lost
    parts.drug.set_species("ptx", pdms_loss_rate_per_s=k)
    parts.drug.set_species("dox", pdms_loss_rate_per_s=pdms_loss_rate_per_s(1.3, tau_s))
    parts.drug.set_inlet_contents("drug", {"ptx": 100.0, "dox": 100.0}, primed=True)
    world.advance_to(300.0 + 20 * tau_s)
    ptx = parts.drug.chamber_concentrations_nm("ptx")
    dox = parts.drug.chamber_concentrations_nm("dox")
    assert ptx[0] == pytest.approx(100.0 / (1 + k * tau_s), rel=1e-3)
    assert ptx[0] == pytest.approx(5.0, rel=1e-3)
    assert dox[0] == pytest.approx(95.0, rel=1e-3)


def test_pdms_loss_rate_thresholds() -> None:
    assert pdms_loss_rate_per_s(1.0, 100.0) == pytest.approx(0.05 / 0.95 / 100.0)
    assert pdms_loss_rate_per_s(4.0, 100.0) == pytest.approx(0.95 / 0.05 / 100.0)
    assert (
        pdms_loss_rate_per_s(2.47, 100.0)
        < pdms_loss_rate_per_s(2.55, 100.0)
        < pdms_loss_rate_per_s(2.62, 100.0)
    )


def test_history_is_sampled_and_interpolable() -> None:
    world, _, parts = _setup({"medium": 1.0, "drug": 1.0})
    parts.drug.set_inlet_contents("drug", {"dox": 10.0}, primed=True)
    world.advance_to(3600.0)
    t_s, conc = parts.drug.history("dox")
    assert conc.shape == (len(t_s), 8)
    assert np.all(np.diff(t_s) > 0) and np.max(np.diff(t_s)) <= 60.0 + 1e-9
    assert t_s[-1] == pytest.approx(3600.0)
    assert np.all(np.diff(conc[:, 0]) >= -1e-12)  # filling only rises
    mid = parts.drug.concentration_at_nm("dox", 1800.0)
    assert np.all((mid > 0) & (mid < conc[-1] + 1e-12))
    t_none, c_none = parts.drug.history("unknown")
    assert c_none.shape == (len(t_none), 8) and not c_none.any()


def test_unknown_inlet_raises() -> None:
    _, _, parts = _setup({})
    with pytest.raises(KeyError, match="inlet"):
        parts.drug.set_inlet_contents("sample", {"x": 1.0})


# --- properties ----------------------------------------------------------------------------

step = st.tuples(
    st.floats(min_value=1.0, max_value=3000.0),
    st.floats(min_value=-0.5, max_value=10.0),
    st.floats(min_value=-0.5, max_value=10.0),
    st.floats(min_value=0.0, max_value=10.0),
    st.one_of(st.none(), st.floats(min_value=0.0, max_value=1000.0)),
)


@settings(max_examples=25, deadline=None)
@given(schedule=st.lists(step, min_size=1, max_size=6))
def test_property_concentrations_stay_within_bounds(
    schedule: list[tuple[float, float, float, float, float | None]],
) -> None:
    world, pumps, parts = _setup({}, max_step_s=5.0)
    t, stock_max = 0.0, 0.0
    for duration, medium, drug, aux, new_stock in schedule:
        pumps["medium"].rate_ul_min, pumps["drug"].rate_ul_min = medium, drug
        pumps["aux"].rate_ul_min = aux
        if new_stock is not None:
            parts.drug.set_inlet_contents("drug", {"x": new_stock})
            stock_max = max(stock_max, new_stock)
        t += duration
        world.advance_to(t)
        conc = parts.drug.chamber_concentrations_nm("x")
        assert np.all(conc >= 0.0)
        assert np.all(conc <= stock_max * (1 + 1e-9) + 1e-12)
        fractions = parts.drug.chamber_inlet_fractions()
        assert np.all(fractions >= 0.0) and np.all(fractions.sum(axis=1) <= 1 + 1e-9)
        net = parts.network
        balance = net.outlet_volume_ul + net.leaked_volume_ul + net.held_volume_ul
        assert balance == pytest.approx(net.pumped_volume_ul, rel=1e-3, abs=1e-6)
