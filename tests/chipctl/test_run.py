"""The engine on the virtual clock: delivered volumes, determinism, safety on every way out."""

import h5py
import numpy as np
import pytest

import chipctl
from chipctl.api import run_protocol
from chipctl.config import parse_config, reference_rig_config
from chipctl.engine.run import Run, RunState
from chipctl.errors import ProtocolError
from chipctl.protocol.loader import parse_protocol
from chipctl.rig import build_rig
from chipctl.runfile import RunFile
from chipctl.session import MemoryRecorder
from drivers.clock import VirtualClock

DAY = """\
[protocol]
name = "day"

[[step]]
action = "infuse"
pump = "medium"
rate = "2 uL/min"
duration = "24 h"
"""


def test_24h_at_2_ul_min_delivers_2880_ul(tmp_path):
    result = run_protocol(parse_protocol(DAY, "day.toml"), sim=True, out=tmp_path / "day.h5")
    assert result.state is RunState.COMPLETED
    assert result.delivered_ul["medium"] == pytest.approx(2880.0, rel=1e-3)
    assert result.duration_s == pytest.approx(86400.0, abs=60.0)
    with RunFile(tmp_path / "day.h5") as run:
        assert run.status == "completed"
        tel = run.telemetry("medium")
        assert tel["delivered_ul"][-1] == pytest.approx(2880.0, rel=1e-3)
        # telemetry every 10 s over the day, plus the final poll
        assert len(tel["t_s"]) >= 8640
        assert np.all(np.diff(tel["t_s"]) >= 0)
        kinds = [(e.source, e.kind) for e in run.events()]
        assert ("run", "completed") in kinds
        assert ("medium", "command") in kinds


def _dataset_contents(path):
    out = {}
    with h5py.File(path, "r") as f:

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                out[name] = obj[()]

        f.visititems(visit)
        attrs = {k: v for k, v in f.attrs.items() if k not in ("started_utc", "ended_utc")}
    return out, attrs


def test_same_seed_same_run_file(tmp_path):
    a = run_protocol("perfusion-check", sim=True, out=tmp_path / "a.h5", seed=7)
    b = run_protocol("perfusion-check", sim=True, out=tmp_path / "b.h5", seed=7)
    assert a.ok and b.ok
    data_a, attrs_a = _dataset_contents(a.path)
    data_b, attrs_b = _dataset_contents(b.path)
    assert attrs_a == attrs_b
    assert data_a.keys() == data_b.keys()
    for key in data_a:
        assert np.array_equal(data_a[key], data_b[key]), key


def test_preflight_rejects_a_rate_beyond_the_syringe_before_anything_moves(tmp_path):
    text = DAY.replace('"2 uL/min"', '"900 mL/min"')
    with pytest.raises(ProtocolError, match=r"step 1: field 'rate': .*outside"):
        run_protocol(parse_protocol(text, "fast.toml"), sim=True, out=tmp_path / "x.h5")
    assert not (tmp_path / "x.h5").exists()


def test_preflight_rejects_more_volume_than_the_syringe_holds(tmp_path):
    text = DAY.replace('"24 h"', '"200 h"')
    with pytest.raises(ProtocolError, match="field 'duration'"):
        run_protocol(parse_protocol(text, "long.toml"), sim=True, out=tmp_path / "x.h5")


def test_preflight_rejects_an_unknown_pump():
    text = DAY.replace('pump = "medium"', 'pump = "mediun"')
    rig = build_rig(reference_rig_config(), clock=VirtualClock())
    with pytest.raises(ProtocolError, match=r"field 'pump': no pump 'mediun' .*medium"):
        Run(parse_protocol(text, "typo.toml"), rig, MemoryRecorder())


def _stopped(rig, name):
    emulator = rig.emulator_of(name)
    running = getattr(emulator, "running", None)
    if running is None:  # the New Era emulator names it is_running
        running = emulator.is_running
    return not running


def test_abort_stops_every_pump():
    clock = VirtualClock()
    rig = build_rig(reference_rig_config(), clock=clock)
    text = DAY + '\n[[step]]\naction = "wait"\nduration = "1 h"\n'
    text = text.replace('duration = "24 h"', 'duration = "24 h"\nwait = false')
    recorder = MemoryRecorder()
    run = Run(parse_protocol(text, "abort.toml"), rig, recorder)
    # abort from inside the run, 10 simulated minutes in
    run.scheduler.call_at(600.0, lambda: run.abort("test abort"))
    assert run.run() is RunState.ABORTED
    assert _stopped(rig, "medium")
    assert any(e[1:3] == ("medium", "command") and "stop" in e[3] for e in recorder.events)
    assert run.status().message == "test abort"


def test_device_fault_fails_the_run_and_stops_the_other_pumps():
    clock = VirtualClock()
    rig = build_rig(reference_rig_config(), clock=clock)
    text = """\
[protocol]
name = "two"

[[step]]
action = "infuse"
pump = "drug"
rate = "2 uL/min"
duration = "10 h"
wait = false

[[step]]
action = "infuse"
pump = "medium"
rate = "2 uL/min"
duration = "10 h"
"""
    recorder = MemoryRecorder()
    run = Run(parse_protocol(text, "stall.toml"), rig, recorder)
    run.scheduler.call_at(3600.0, lambda: rig.inject_fault("medium", "inject_stall"))
    assert run.run() is RunState.ABORTED  # by the rig's default interlock
    assert "stall" in run.status().message
    assert _stopped(rig, "drug") and _stopped(rig, "medium")
    assert any(e[2] == "alarm" for e in recorder.events)


def test_an_internal_error_still_stops_the_pumps():
    clock = VirtualClock()
    rig = build_rig(reference_rig_config(), clock=clock)
    text = DAY.replace('duration = "24 h"', 'duration = "24 h"\nwait = false') + (
        '\n[[step]]\naction = "wait"\nduration = "2 h"\n'
    )
    run = Run(parse_protocol(text, "bug.toml"), rig, MemoryRecorder())

    def boom():
        raise RuntimeError("bug in a callback")

    run.scheduler.call_at(60.0, boom)
    assert run.run() is RunState.FAILED
    assert "RuntimeError" in run.status().message
    assert _stopped(rig, "medium")


def test_public_api_is_exported():
    assert callable(chipctl.run_protocol) and chipctl.__version__


def _faulty_rig(fault_lines):
    from chipctl.config import parse_config

    text = reference_rig_config().text + "\n" + fault_lines
    return build_rig(parse_config(text, "faulty.toml"), clock=VirtualClock())


TEN_HOURS = DAY.replace('"24 h"', '"10 h"')


def test_a_scheduled_stall_fails_the_run_with_an_alarm():
    rig = _faulty_rig('[[fault]]\ndevice = "medium"\nkind = "inject_stall"\nat = "2 h"\n')
    recorder = MemoryRecorder()
    run = Run(parse_protocol(TEN_HOURS, "ten.toml"), rig, recorder)
    assert run.run() is RunState.ABORTED  # by the rig's default interlock
    assert "stall" in run.status().message
    injected = [e for e in recorder.events if e[2] == "fault_injected"]
    assert len(injected) == 1 and injected[0][0] == pytest.approx(7200.0)
    assert any(e[1] == "medium" and e[2] == "alarm" for e in recorder.events)
    medium = [values for device, _, values in recorder.samples if device == "medium"]
    # stalled 2 h into a 2 uL/min infusion: 240 uL delivered, and no more after the stall
    assert medium[-1]["delivered_ul"] == pytest.approx(240.0, rel=1e-3)
    assert medium[-1]["stalled"] == 1.0


def test_a_short_link_loss_is_ridden_out_and_announced():
    rig = _faulty_rig(
        '[[fault]]\ndevice = "medium"\nkind = "no_reply"\nat = "2 h"\n'
        '[[fault]]\ndevice = "medium"\nkind = "link_ok"\nat = "120.5 min"\n'
    )
    recorder = MemoryRecorder()
    run = Run(parse_protocol(TEN_HOURS, "ten.toml"), rig, recorder)
    assert run.run() is RunState.COMPLETED
    kinds = [e[2] for e in recorder.events if e[1] == "medium"]
    assert "link_lost" in kinds and "reconnected" in kinds
    last = [s for s in recorder.samples if s[0] == "medium"][-1][2]
    assert last["delivered_ul"] == pytest.approx(1200.0, rel=1e-3)


def test_a_long_link_loss_fails_the_run():
    rig = _faulty_rig('[[fault]]\ndevice = "medium"\nkind = "no_reply"\nat = "599 min"\n')
    recorder = MemoryRecorder()
    run = Run(parse_protocol(TEN_HOURS, "ten.toml"), rig, recorder)
    assert run.run() is RunState.ABORTED  # by the rig's default interlock
    assert "interlock lost_device" in run.status().message


def test_faults_are_refused_on_hardware_and_checked_on_simulators():
    from chipctl.config import parse_config
    from chipctl.errors import ConfigError

    hw = (
        '[devices.m]\ndriver = "harvard"\nlink = "serial:///dev/x"\nsyringe = "BD Plastipak 1 mL"\n'
    )
    with pytest.raises(ConfigError, match="only be scheduled on a simulated rig"):
        parse_config(hw + '[[fault]]\ndevice = "m"\nkind = "garble"\nat = "1 h"\n', "hw.toml")
    with pytest.raises(ConfigError, match=r"fault\[1\].kind: .*no fault 'explode'"):
        _faulty_rig('[[fault]]\ndevice = "medium"\nkind = "explode"\nat = "1 h"\n')


def test_the_engine_heartbeat_keeps_the_safe_mode_watchdog_quiet(monkeypatch):
    """The reference rig's New Era runs in safe mode: silence for 10 s stops it."""
    text = DAY.replace('pump = "medium"', 'pump = "drug"').replace('"24 h"', '"2 h"')
    rig = build_rig(reference_rig_config(), clock=VirtualClock())
    assert rig.devices["drug"].heartbeat_period_s is not None
    recorder = MemoryRecorder()
    assert Run(parse_protocol(text, "hb.toml"), rig, recorder).run() is RunState.COMPLETED
    assert not any(e[1] == "drug" and e[2] == "alarm" for e in recorder.events)

    # the same run with the heartbeat switched off and slow telemetry: the watchdog trips
    from chipctl.session import Session

    monkeypatch.setattr(Session, "heartbeat", lambda self: None)
    config = parse_config(
        reference_rig_config().text.replace(
            'telemetry_period = "10 s"', 'telemetry_period = "60 s"'
        ),
        "slow.toml",
    )
    rig = build_rig(config, clock=VirtualClock())
    recorder = MemoryRecorder()
    run = Run(parse_protocol(text, "hb.toml"), rig, recorder)
    assert run.run() is RunState.ABORTED  # by the rig's default interlock
    assert any(e[1] == "drug" and e[2] == "alarm" and "watchdog" in e[3] for e in recorder.events)


def test_a_pump_that_stops_short_of_its_target_is_noticed_at_the_next_poll():
    # a power cut of the medium pump one hour into a two-hour infusion: it stops, silently;
    # the next telemetry poll sees it short of its target and the pump_alarm interlock aborts
    rig = _faulty_rig('[[fault]]\ndevice = "medium"\nkind = "power_on_reset"\nat = "1 h"\n')
    recorder = MemoryRecorder()
    text = DAY.replace('"24 h"', '"2 h"')
    run = Run(parse_protocol(text, "cut.toml"), rig, recorder)
    assert run.run() is RunState.ABORTED
    assert "pump alarm: stopped_short" in run.status().message
    assert 3600.0 <= run.status().t_s <= 3600.0 + 2 * 10.0


def test_a_pump_alarm_in_a_background_step_fails_the_run():
    # the drug pump runs alongside (wait = false) and stalls: the telemetry poll catches it
    rig = _faulty_rig('[[fault]]\ndevice = "drug"\nkind = "inject_stall"\nat = "1 h"\n')
    text = (
        DAY.replace('pump = "medium"', 'pump = "drug"').replace(
            'duration = "24 h"', 'duration = "3 h"\nwait = false'
        )
        + '\n[[step]]\naction = "wait"\nduration = "3 h"\n'
    )
    recorder = MemoryRecorder()
    run = Run(parse_protocol(text, "bg.toml"), rig, recorder)
    assert run.run() is RunState.ABORTED  # by the rig's default interlock
    assert "interlock pump_alarm" in run.status().message
    failed_at = next(e[0] for e in recorder.events if e[1:3] == ("run", "aborted"))
    assert 3600 <= failed_at <= 3600 + 10 + 1  # within one telemetry period of the stall
