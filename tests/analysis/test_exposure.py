"""Delivered exposure: plug-flow lines, ladder fractions, well-mixed chambers, sim truth."""

from __future__ import annotations

import math

import numpy as np
import pytest

from chipctl.analysis.exposure import (
    ChipModel,
    InletSupply,
    LineFlow,
    chip_model_from_config,
    compute_exposure,
    exposure_from_run,
    line_flow,
    valve_connected,
)
from chipctl.api import run_protocol
from chipctl.config import reference_rig_config
from chipctl.errors import ConfigError
from chipctl.protocol.loader import parse_protocol
from chipctl.runfile import open_run
from chipctl.runfile.reader import Event

DEAD_UL = 10.0
V_CH_UL = 2.0


def model(*, drug_nm=50.0, share=0.2):
    """Two chambers (fractions 1 and 0.1), both of the same flow share in every mode."""
    shares = (share, share)
    return ChipModel(
        chamber_names=("chamber 1", "chamber 2"),
        fractions=(1.0, 0.1),
        chamber_volume_ul=V_CH_UL,
        flow_share=shares,
        flow_share_diluent_only=shares,
        flow_share_drug_only=shares,
        supplies=(
            InletSupply("medium", "medium", DEAD_UL, {}),
            InletSupply("drug", "drug", DEAD_UL, {"x": drug_nm}),
        ),
    )


def telemetry(t_s, rate_ul_min, *, resolution_ul=None):
    """Pump telemetry sampled at ``t_s``: set rate, running flag, delivered counter."""
    t = np.asarray(t_s, dtype=float)
    rate = np.asarray(rate_ul_min, dtype=float)
    volume = np.concatenate([[0.0], np.cumsum(rate[:-1] / 60.0 * np.diff(t))])
    if resolution_ul:
        volume = np.round(volume / resolution_ul) * resolution_ul
    return {
        "t_s": t,
        "rate_ul_min": rate,
        "running": (rate > 0).astype(float),
        "delivered_ul": volume,
    }


def test_front_arrives_after_one_dead_volume_then_chambers_wash_in():
    t = np.arange(0.0, 4000.0, 10.0)
    rate = np.where(t >= 100.0, 1.0, 0.0)  # both pumps start at 100 s at 1 uL/min
    flows = {"medium": line_flow(telemetry(t, rate)), "drug": line_flow(telemetry(t, rate))}
    (exposure,) = compute_exposure(model(), flows)
    front_s = 100.0 + DEAD_UL / (1.0 / 60.0)  # 700 s
    assert exposure.front_s == pytest.approx(front_s, abs=1e-3)
    q_ch_ul_s = 0.2 * 2.0 / 60.0
    for when in (650.0, 800.0, 1500.0, 3500.0):
        expected = np.array([50.0, 5.0]) * max(
            0.0, 1.0 - math.exp(-(when - front_s) * q_ch_ul_s / V_CH_UL)
        )
        assert exposure.at(when) == pytest.approx(expected, rel=1e-3, abs=1e-6)
    # "arrived" = the top chamber at 1 % of the stock, a few seconds after the front
    tau_s = V_CH_UL / q_ch_ul_s
    assert exposure.arrival_s - front_s == pytest.approx(-tau_s * math.log(0.99), abs=10.0)
    assert exposure.nominal_nm == pytest.approx([50.0, 5.0])
    assert exposure.off_design_s == 0.0


def test_a_primed_line_is_not_exposure_until_the_drug_pump_runs_with_the_carrier():
    t = np.arange(0.0, 6000.0, 10.0)
    prime = np.where(t < 60.0, 10.0, 0.0)  # 10 uL/min for 60 s: exactly one dead volume
    drug = np.where(t >= 3000.0, 1.0, prime)
    medium = np.where(t >= 60.0, np.where(t >= 3000.0, 1.0, 2.0), 0.0)
    flows = {"medium": line_flow(telemetry(t, medium)), "drug": line_flow(telemetry(t, drug))}
    (exposure,) = compute_exposure(model(), flows)
    assert exposure.front_s == pytest.approx(60.0, abs=1e-3)
    assert exposure.at(2990.0) == pytest.approx([0.0, 0.0], abs=1e-9)
    assert 3000.0 <= exposure.arrival_s <= 3030.0


def test_coarse_volume_counters_do_not_change_the_exposure():
    # some pumps count in 0.1 uL steps: at 0.5 uL/min that is a step every 12 s, so most
    # 10 s samples show no movement at all
    t = np.arange(0.0, 8000.0, 10.0)
    rate = np.where(t >= 100.0, 0.5, 0.0)
    exact = compute_exposure(
        model(), {k: line_flow(telemetry(t, rate)) for k in ("medium", "drug")}
    )[0]
    coarse = compute_exposure(
        model(),
        {k: line_flow(telemetry(t, rate, resolution_ul=0.1)) for k in ("medium", "drug")},
    )[0]
    assert coarse.at(7000.0) == pytest.approx(exact.at(7000.0), rel=0.01)
    assert coarse.front_s == pytest.approx(exact.front_s, abs=15.0)


def test_unequal_rates_are_reported_as_off_design():
    t = np.arange(0.0, 3000.0, 10.0)
    flows = {
        "medium": line_flow(telemetry(t, np.full(t.size, 1.0))),
        "drug": line_flow(telemetry(t, np.full(t.size, 1.3))),
    }
    (exposure,) = compute_exposure(model(), flows)
    front_s = DEAD_UL / (1.3 / 60.0)
    assert exposure.off_design_s == pytest.approx(t[-1] - front_s, abs=20.0)


def test_a_valve_pump_feeds_its_line_only_on_the_chip_port():
    t = np.arange(0.0, 100.0, 10.0)
    events = [
        Event(15.0, "exchanger", "command", "select position 3 (stain)"),
        Event(45.0, "exchanger", "command", "select position 4"),
        Event(70.0, "other", "command", "select position 3 (stain)"),
    ]
    ports = ("cell suspension", "wash buffer", "stain", "chip", "waste", "spare")
    connected = valve_connected(t, events, "exchanger", ports)
    assert connected.tolist() == [True, True, False, False, False, True, True, True, True, True]
    flow = line_flow(telemetry(t, np.full(t.size, 6.0)), connected=connected)
    # 6 uL/min while on the chip port: 0-20 s and 50-90 s
    assert flow.volume_ul[-1] == pytest.approx(6.0 / 60.0 * 60.0)


def test_a_pump_that_stops_between_samples_stops_where_its_counter_stopped():
    t = np.array([0.0, 10.0, 20.0, 30.0])
    tel = {
        "t_s": t,
        "rate_ul_min": np.array([60.0, 60.0, 0.0, 0.0]),
        "running": np.array([1.0, 1.0, 0.0, 0.0]),
        "delivered_ul": np.array([0.0, 10.0, 14.0, 14.0]),
    }
    flow = line_flow(tel)
    assert isinstance(flow, LineFlow)
    assert np.interp(14.0, flow.t_s, flow.volume_ul) == pytest.approx(14.0)
    assert np.interp(12.0, flow.t_s, flow.volume_ul) == pytest.approx(12.0)
    assert np.interp(25.0, flow.t_s, flow.volume_ul) == pytest.approx(14.0)


def test_chip_model_from_the_reference_rig_config():
    m = chip_model_from_config(reference_rig_config().text, "reference")
    assert m.chamber_names == tuple(f"chamber {k}" for k in range(1, 9))
    assert m.fractions[7] == pytest.approx(10.0**-3.5, rel=1e-4)
    drug = next(s for s in m.supplies if s.inlet == "drug")
    assert drug.contents_nm == {"t-vc-mmae": pytest.approx(20.0)}
    assert drug.dead_volume_ul == pytest.approx(102.2)
    aux = next(s for s in m.supplies if s.inlet == "aux")
    assert aux.ports is not None and "chip" in aux.ports
    # a protocol's syringe table replaces the config's contents
    other = chip_model_from_config(
        reference_rig_config().text, "reference", syringe_contents={"drug": {"mmae": 5.0}}
    )
    assert next(s for s in other.supplies if s.inlet == "drug").contents_nm == {"mmae": 5.0}


def test_a_config_without_a_chip_table_assumes_the_reference_chip_and_says_so():
    text = """
[devices.drug]
driver = "newera"
link = "sim://newera/bus1"
inlet = "drug"
contents = { "t-vc-mmae" = "2 nM" }
"""
    m = chip_model_from_config(text, "old.toml")
    assert len(m.chamber_names) == 8
    assert any("no [chip] table" in note for note in m.notes)


def test_bad_contents_name_the_key_in_one_line():
    text = """
[devices.drug]
driver = "newera"
link = "sim://newera/bus1"
inlet = "drug"
contents = { "t-vc-mmae" = "2 uL" }
"""
    with pytest.raises(ConfigError, match=r"old.toml: devices.drug.contents.t-vc-mmae: ") as info:
        chip_model_from_config(text, "old.toml")
    assert "\n" not in str(info.value)


SHORT_DOSE = """
[protocol]
name = "short dose"
description = "prime, 1 h baseline, 3 h drug, 2 h washout"

[syringes.drug]
contents = { "t-vc-mmae" = "20 nM" }

[[step]]
name = "prime drug"
action = "prime"
pump = "drug"
rate = "15 uL/min"

[[step]]
name = "baseline"
action = "dose"
drug_pump = "drug"
carrier_pump = "medium"
rate = "1 uL/min"
profile = "washout"
duration = "1 h"

[[step]]
name = "exposure"
action = "dose"
drug_pump = "drug"
carrier_pump = "medium"
rate = "1 uL/min"
profile = "constant"
duration = "3 h"

[[step]]
name = "washout"
action = "dose"
drug_pump = "drug"
carrier_pump = "medium"
rate = "1 uL/min"
profile = "washout"
duration = "2 h"
"""


def test_exposure_matches_the_simulated_chip(tmp_path):
    """The exposure computed from logged flows against the simulator's own chambers."""
    result = run_protocol(
        parse_protocol(SHORT_DOSE, "short.toml"), sim=True, out=tmp_path / "dose.h5", seed=3
    )
    assert result.ok, result.message
    with open_run(result.path) as run:
        _, (exposure,) = exposure_from_run(run)
        truth = run.telemetry("chip")  # simulated rigs record the simulator's ground truth
    t = truth["t_s"]
    nominal = 20.0 * 10.0 ** (-0.5 * np.arange(8))
    assert exposure.nominal_nm == pytest.approx(nominal, rel=1e-4)
    for k in range(8):
        true = truth[f"c_t_vc_mmae_chamber{k + 1}_nm"]
        ours = np.interp(t, exposure.t_s, exposure.conc_nm[:, k])
        # baseline, wash-in, plateau and washout, all within 1 % of the chamber's plateau
        assert np.max(np.abs(ours - true)) < 0.01 * nominal[k], f"chamber {k + 1}"
    # the primed line holds drug at the chip, but the chambers see it when the exposure
    # starts (1 h of baseline after priming), and it is that time GR starts from
    started = next(e.t_s for e in run_events(result.path) if "exposure" in e.message)
    assert exposure.front_s < started
    assert started <= exposure.arrival_s <= started + 60.0


def run_events(path):
    with open_run(path) as run:
        return run.events()
