"""Hydraulic formulas against the worked numbers of the domain reference (section 1)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from simulator.physics import hydraulics as hy
from simulator.physics.dilution import design_serial_dilution
from simulator.physics.mixing import MixingSolver
from simulator.physics.network import (
    GROUND,
    ChamberPort,
    Edge,
    InletPort,
    NetworkSpec,
    RCPropagator,
)

MU = 0.78e-3  # Pa s, the reference's worked-number viscosity
Q_1UL_MIN = hy.ul_min_to_m3_s(1.0)


# --- resistances: table of section 1.1 ----------------------------------------------------


def test_ptfe_tubing_worked_number() -> None:
    r = hy.tube_resistance_pa_s_m3(0.5, 0.5e-3, MU)
    assert r == pytest.approx(2.5e11, rel=0.02)
    assert r * Q_1UL_MIN == pytest.approx(4.2, rel=0.02)


def test_peek_tubing_worked_number() -> None:
    r = hy.tube_resistance_pa_s_m3(0.5, 0.254e-3, MU)
    assert r == pytest.approx(3.8e12, rel=0.02)
    assert r * Q_1UL_MIN == pytest.approx(64.0, rel=0.02)


def test_medium_channel_worked_number() -> None:
    r = hy.rectangular_channel_resistance_pa_s_m3(10e-3, 500e-6, 100e-6, MU)
    assert r == pytest.approx(2.1e11, rel=0.03)
    assert r * Q_1UL_MIN == pytest.approx(3.6, rel=0.03)


def test_hagen_poiseuille_formula_exactly() -> None:
    r = hy.tube_resistance_pa_s_m3(2.0, 1e-3, 1e-3)
    assert r == pytest.approx(8 * 1e-3 * 2.0 / (math.pi * 0.5e-3**4), rel=1e-12)


@pytest.mark.parametrize(("aspect", "error"), [(1.0, 0.140), (0.75, 0.026), (0.5, 0.0015)])
def test_closed_form_error_against_series(aspect: float, error: float) -> None:
    w = 100e-6
    series = hy.rectangular_channel_resistance_pa_s_m3(1e-2, w, aspect * w, MU)
    approx = hy.rectangular_channel_resistance_approx_pa_s_m3(1e-2, w, aspect * w, MU)
    assert approx / series - 1.0 == pytest.approx(error, abs=0.003)


def test_closed_form_matches_series_for_flat_channels() -> None:
    series = hy.rectangular_channel_resistance_pa_s_m3(1e-2, 400e-6, 100e-6, MU)
    approx = hy.rectangular_channel_resistance_approx_pa_s_m3(1e-2, 400e-6, 100e-6, MU)
    assert approx == pytest.approx(series, rel=1e-4)


def test_rectangular_resistance_is_symmetric_in_width_and_height() -> None:
    a = hy.rectangular_channel_resistance_pa_s_m3(1e-2, 300e-6, 50e-6, MU)
    b = hy.rectangular_channel_resistance_pa_s_m3(1e-2, 50e-6, 300e-6, MU)
    assert a == pytest.approx(b, rel=1e-12)


def test_square_channel_known_coefficient() -> None:
    # Square duct: R = 28.45 mu L / h^4 (Bruus 2008, 28.4 to 3 digits).
    r = hy.rectangular_channel_resistance_pa_s_m3(1.0, 1e-3, 1e-3, 1.0)
    assert r * 1e-3**4 == pytest.approx(28.45, rel=1e-3)


def test_collagen_gel_worked_number() -> None:
    r = hy.darcy_resistance_pa_s_m3(1e-3, 1.3e-3 * 0.25e-3, 1e-12, MU)
    assert r == pytest.approx(2.4e12, rel=0.02)
    assert r * Q_1UL_MIN == pytest.approx(40.0, rel=0.02)


def test_non_positive_geometry_is_rejected() -> None:
    with pytest.raises(ValueError, match="inner_diameter_m"):
        hy.tube_resistance_pa_s_m3(1.0, 0.0, MU)


# --- volumes, compliances, shear: sections 1.6, 1.4, 1.9 -----------------------------------


def test_tubing_dead_volume_worked_number() -> None:
    assert hy.tube_volume_ul(0.5, 0.5e-3) == pytest.approx(98.0, rel=0.01)


def test_bubble_compliance_worked_numbers() -> None:
    assert hy.gas_compliance_m3_pa(1e-9) == pytest.approx(1e-14, rel=0.02)
    assert hy.gas_compliance_m3_pa(10e-9) == pytest.approx(1e-13, rel=0.02)


def test_water_compliance_worked_number() -> None:
    assert hy.liquid_compliance_m3_pa(10e-6) == pytest.approx(4.6e-15, rel=1e-9)


def test_ptfe_tube_compliance_order_of_magnitude() -> None:
    c = hy.tube_compliance_m3_pa(1.0, 0.5e-3, 0.5e-3, hy.PTFE_YOUNGS_MODULUS_PA)
    assert c == pytest.approx(4e-16, rel=0.05)
    soft = hy.tube_compliance_m3_pa(1.0, 0.5e-3, 0.5e-3, 0.5e6)
    assert soft / c == pytest.approx(1e3)


def test_syringe_compliance_adds_liquid_and_stopper() -> None:
    c = hy.syringe_compliance_m3_pa(5e-6, 1e-14)
    assert c == pytest.approx(5e-6 * 4.6e-10 + 1e-14)


def test_pdms_compliance_formula() -> None:
    c = hy.pdms_channel_compliance_m3_pa(2e-3, 1e-2, 1.5e6, alpha=0.5)
    assert c == pytest.approx(2 / 3 * 0.5 * 4e-6 * 1e-2 / 1.5e6)


@pytest.mark.parametrize(("flow_ul_min", "dyn_cm2"), [(0.1, 0.016), (1.0, 0.16), (10.0, 1.6)])
def test_wall_shear_worked_numbers(flow_ul_min: float, dyn_cm2: float) -> None:
    tau = hy.rectangular_wall_shear_pa(hy.ul_min_to_m3_s(flow_ul_min), 500e-6, 100e-6, MU)
    assert hy.pa_to_dyn_cm2(tau) == pytest.approx(dyn_cm2, rel=0.05)


def test_circular_shear_formula() -> None:
    tau = hy.circular_wall_shear_pa(1e-9, 1e-3, 1e-3)
    assert tau == pytest.approx(4 * 1e-3 * 1e-9 / (math.pi * 0.5e-3**3))


def test_unit_conversions_round_trip() -> None:
    assert hy.m3_s_to_ul_min(hy.ul_min_to_m3_s(7.5)) == pytest.approx(7.5)
    assert hy.pa_s_m3_to_kpa_s_ul(2.5e11) == pytest.approx(0.25)
    assert hy.kpa_s_ul_to_pa_s_m3(0.25) == pytest.approx(2.5e11)
    assert hy.m3_pa_to_ul_kpa(1e-14) == pytest.approx(0.01)
    assert hy.ul_kpa_to_m3_pa(0.01) == pytest.approx(1e-14)
    # dP = R Q is consistent across unit systems: 0.25 kPa s/uL at 1 uL/min = 4.17 Pa.
    assert 0.25 * (1.0 / 60.0) * 1e3 == pytest.approx(2.5e11 * Q_1UL_MIN)


# --- the exact RC propagator ---------------------------------------------------------------


def _single_rc(r_kpa_s_ul: float, c_ul_kpa: float) -> RCPropagator:
    return RCPropagator(["a"], np.array([c_ul_kpa]), [Edge("out", "a", GROUND, r_kpa_s_ul)], ["a"])


@pytest.mark.parametrize("dt_s", [1e-3, 0.1, 1.0, 50.0])
def test_propagator_matches_analytic_rc_charge(dt_s: float) -> None:
    r, c, q = 2.0, 0.5, 0.3  # tau = 1 s
    m = _single_rc(r, c).step_matrix(dt_s)
    y = m @ np.array([0.0, q])
    p_exact = r * q * (1 - math.exp(-dt_s / (r * c)))
    assert y[0] == pytest.approx(p_exact, rel=1e-9)
    # Outflow volume = pumped - stored.
    assert y[1] == pytest.approx(q * dt_s - c * p_exact, rel=1e-9, abs=1e-15)


def test_propagator_steady_state() -> None:
    prop = _single_rc(2.0, 0.5)
    assert prop.steady_state_kpa(np.array([0.3]))[0] == pytest.approx(0.6)
    assert prop.slowest_time_constant_s == pytest.approx(1.0)


# --- dilution design and mixing ------------------------------------------------------------


def test_dilution_design_gives_equal_chamber_flows_and_positive_resistances() -> None:
    d = design_serial_dilution(
        n_chambers=8,
        dilution_ratio=10**-0.5,
        design_inlet_flow_ul_s=1.0,
        manifold_pressure_kpa=1.0,
        chamber_resistance_kpa_s_ul=1e-3,
        outlet_resistance_kpa_s_ul=1e-3,
    )
    assert np.allclose(d.fractions, 10 ** (-np.arange(8) / 2))
    assert 8 * d.chamber_flow_per_inlet_flow + d.bypass_flow_per_inlet_flow == pytest.approx(2.0)
    assert min(d.diluent_kpa_s_ul + d.transfer_kpa_s_ul + d.restrictor_kpa_s_ul) > 0.0


def test_dilution_design_rejects_impossible_pressures() -> None:
    with pytest.raises(ValueError, match="pressures"):
        design_serial_dilution(
            n_chambers=8,
            dilution_ratio=0.5,
            design_inlet_flow_ul_s=1.0,
            manifold_pressure_kpa=1e-3,
            chamber_resistance_kpa_s_ul=1.0,
            outlet_resistance_kpa_s_ul=1.0,
        )


def test_mixing_of_a_y_junction() -> None:
    spec = NetworkSpec(
        nodes=("sa", "sb", "j"),
        compliance_ul_kpa=(1.0, 1.0, 1.0),
        edges=(
            Edge("la", "sa", "j", 1.0),
            Edge("lb", "sb", "j", 1.0),
            Edge("out", "j", GROUND, 1.0),
        ),
        inlets=(InletPort("a", "sa", "la", 1.0, 0.0), InletPort("b", "sb", "lb", 1.0, 0.0)),
        chambers=(ChamberPort("j", "la", 1.0, 0.0),),
        outlet_edge="out",
    )
    f = MixingSolver(spec, ["sa", "sb"]).fractions(np.array([1.0, 3.0, 4.0]))
    assert f[2] == pytest.approx([0.25, 0.75])
    # Reversed flow in "lb": b's syringe withdraws, the junction only holds a's fluid.
    f = MixingSolver(spec, ["sa", "sb"]).fractions(np.array([2.0, -1.0, 1.0]))
    assert f[2] == pytest.approx([1.0, 0.0])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"compliance_ul_kpa": (1.0, 0.0)}, "positive compliance"),
        ({"nodes": ("a", "atm")}, "unique"),
        ({"edges": (Edge("e", "a", "nowhere", 1.0),)}, "unknown or identical"),
        ({"edges": (Edge("e", "a", GROUND, 0.0),)}, "positive resistance"),
        ({"outlet_edge": "missing"}, "outlet"),
    ],
)
def test_network_spec_validation(change: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {
        "nodes": ("a", "b"),
        "compliance_ul_kpa": (1.0, 1.0),
        "edges": (Edge("e", "a", GROUND, 1.0), Edge("f", "b", "a", 1.0)),
        "inlets": (),
        "chambers": (),
        "outlet_edge": "e",
    }
    fields.update(change)
    with pytest.raises(ValueError, match=message):
        NetworkSpec(**fields)  # type: ignore[arg-type]
