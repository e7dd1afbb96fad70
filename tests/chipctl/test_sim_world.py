"""The simulated chip behind the real drivers: what a run file shows for physical events."""

import numpy as np
import pytest

from chipctl.api import run_protocol
from chipctl.config import parse_config, reference_rig_config
from chipctl.protocol.loader import parse_protocol
from chipctl.runfile import RunFile

PERFUSE = """\
[protocol]
name = "perfuse"

[[step]]
action = "infuse"
pump = "medium"
rate = "2 uL/min"
duration = "{hours} h"
wait = false

[[step]]
action = "infuse"
pump = "drug"
rate = "2 uL/min"
duration = "{hours} h"
"""


def _run(tmp_path, hours, faults="", name="run"):
    config = parse_config(reference_rig_config().text + faults, "rig.toml")
    protocol = parse_protocol(PERFUSE.format(hours=hours), "perfuse.toml")
    result = run_protocol(protocol, config, out=tmp_path / f"{name}.h5", seed=3)
    run = RunFile(result.path)
    return result, run


def test_drug_arrives_after_dead_volume_over_flow_and_fills_log_spaced_chambers(tmp_path):
    result, run = _run(tmp_path, hours=8)
    assert result.ok, result.message
    with run:
        chip = run.telemetry("chip")
    t_s = chip["t_s"]
    c1 = chip["c_t_vc_mmae_chamber1_nm"]
    # dead volume of the drug line: 0.5 m of 0.5 mm tubing + fittings = 102.2 uL, at 2 uL/min
    arrival_s = 102.2 / 2.0 * 60.0
    assert np.all(c1[t_s < 0.9 * arrival_s] == 0.0)
    assert c1[t_s > 1.3 * arrival_s].max() > 0.0
    final = np.array([chip[f"c_t_vc_mmae_chamber{k}_nm"][-1] for k in range(1, 9)])
    ratios = final[:-1] / final[1:]
    # the ladder's fractions are 10^(-k/2): each chamber ~3.16x the next, at steady state
    assert np.allclose(ratios, 10**0.5, rtol=0.05), ratios
    assert final[0] == pytest.approx(20.0, rel=0.05)  # the stock in the drug syringe


def test_pumped_volume_leaves_through_the_outlet(tmp_path):
    result, run = _run(tmp_path, hours=4)
    with run:
        chip = run.telemetry("chip")
        flow = run.telemetry("flow")
    outlet_ul = np.trapezoid(chip["q_outlet_ul_min"], chip["t_s"] / 60.0)
    pumped_ul = result.delivered_ul["medium"] + result.delivered_ul["drug"]
    assert pumped_ul == pytest.approx(960.0, rel=1e-3)
    assert outlet_ul == pytest.approx(pumped_ul, rel=0.01)
    # the outlet flow sensor reads the outlet flow, within its noise
    steady = flow["t_s"] > 600
    assert np.median(flow["flow_ul_min"][steady]) == pytest.approx(4.0, abs=0.15)


def test_a_clog_raises_the_inlet_pressure_until_the_interlock_aborts(tmp_path):
    faults = '\n[[fault]]\ndevice = "chip"\nkind = "clog"\nat = "1 h"\n'
    result, run = _run(tmp_path, hours=4, faults=faults, name="clog")
    # the reference rig's pressure interlock (50 kPa, abort) ends the run
    assert result.state.value == "aborted" and "interlock pressure" in result.message
    with run:
        chip = run.telemetry("chip")
        events = run.events()
    t_s = chip["t_s"]
    before = chip["p_medium_kpa"][(t_s > 1800) & (t_s < 3600)].mean()
    peak = chip["p_medium_kpa"][t_s > 3600].max()
    assert peak > 4 * before and peak >= 50.0
    assert 3600 < result.duration_s < 4 * 3600
    assert any(e.source == "chip" and e.kind == "fault_injected" for e in events)
