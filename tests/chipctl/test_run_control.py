"""Run control on the virtual clock: pause policies, resume, abort, prompts, condition waits.

Operator actions are scheduled on the run's own scheduler at fixed simulated times, so each
test is deterministic (no threads racing the virtual clock).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from chipctl.config import reference_rig_config
from chipctl.engine.run import Run, RunState
from chipctl.protocol.loader import parse_protocol
from chipctl.rig import build_rig
from chipctl.session import MemoryRecorder
from drivers.clock import VirtualClock

HEADER = '[protocol]\nname = "t"\n{extra}\n'

PERFUSE_2H = """
[[step]]
name = "perfuse"
action = "infuse"
pump = "medium"
rate = "2 uL/min"
duration = "2 h"
"""


def _run(text: str, **kwargs: object) -> tuple[Run, MemoryRecorder]:
    rig = build_rig(reference_rig_config(), clock=VirtualClock(), seed=0)
    recorder = MemoryRecorder()
    run = Run(parse_protocol(text, "t.toml"), rig, recorder, **kwargs)  # type: ignore[arg-type]
    return run, recorder


def _at(run: Run, t_s: float, action: Callable[[], None]) -> None:
    """Do ``action`` on the engine thread at run time ``t_s`` (the clock starts at 0)."""
    run.scheduler.call_at(t_s, action, name="test action")


def _events(recorder: MemoryRecorder, source: str | None = None, kind: str | None = None):
    return [
        e
        for e in recorder.events
        if (source is None or e[1] == source) and (kind is None or e[2] == kind)
    ]


def _delivered(run: Run, pump: str) -> float:
    return run.session.last_values[pump]["delivered_ul"]


def test_pause_stops_pumps_and_resume_delivers_what_was_owed():
    run, recorder = _run(HEADER.format(extra="") + PERFUSE_2H)
    _at(run, 3600.0, lambda: run._pause("test"))
    _at(run, 3600.0 + 1800.0, run._resume)
    assert run.run() is RunState.COMPLETED
    # exactly the target volume, and the run took the pause longer
    assert _delivered(run, "medium") == pytest.approx(240.0, rel=1e-3)
    assert run.status().t_s == pytest.approx(2 * 3600 + 1800, abs=15)
    assert run.status().paused_s == pytest.approx(1800, abs=1)
    states = [e[2] for e in _events(recorder, "run") if e[2] in ("running", "paused")]
    assert states == ["running", "paused", "running"]
    stops = [e for e in _events(recorder, "medium", "command") if "paused" in e[3]]
    assert len(stops) == 1 and "owed" in stops[0][3]


def test_keep_perfusing_policy_leaves_pumps_running_while_paused():
    extra = 'pause_policy = "keep_perfusing"'
    run, recorder = _run(HEADER.format(extra=extra) + PERFUSE_2H)
    seen: dict[str, float] = {}

    def look() -> None:
        run.session.poll()
        seen["running"] = run.session.last_values["medium"]["running"]

    _at(run, 3600.0, lambda: run._pause("test"))
    _at(run, 3600.0 + 900.0, look)
    _at(run, 3600.0 + 1800.0, run._resume)
    assert run.run() is RunState.COMPLETED
    assert seen["running"] == 1.0
    assert not [e for e in _events(recorder, "medium", "command") if "paused" in e[3]]
    # the pump stopped by itself at its target: the pause did not make it deliver more
    assert _delivered(run, "medium") == pytest.approx(240.0, rel=1e-3)


def test_abort_stops_pumps_within_a_second_and_turns_valves_to_waste():
    text = HEADER.format(extra="") + (
        '[[step]]\naction = "valve"\nvalve = "outlet"\nposition = "sample 2"\n' + PERFUSE_2H
    )
    run, recorder = _run(text)
    _at(run, 1800.0, lambda: run.abort("test abort"))
    assert run.run() is RunState.ABORTED
    assert run.status().message == "test abort"
    aborting = _events(recorder, "run", "aborting")[0][0]
    stop = next(e for e in _events(recorder, "medium", "command") if "stop" in e[3])
    assert 0.0 <= stop[0] - aborting <= 1.0
    assert any("waste" in e[3] for e in _events(recorder, "outlet", "command"))
    kinds = [e[2] for e in _events(recorder, "run")]
    assert kinds.index("aborting") < kinds.index("aborted")


def test_a_prompt_waits_for_the_operator_on_hardware_like_runs():
    text = HEADER.format(extra="") + (
        '[[step]]\naction = "prompt"\nmessage = "stain loaded?"\n' + PERFUSE_2H
    )
    run, recorder = _run(text, auto_confirm=False)
    pending: list[str | None] = []
    _at(run, 600.0, lambda: pending.append(run.status().pending_prompt))
    _at(run, 601.0, lambda: run.runner.confirm() if run.runner else None)
    assert run.run() is RunState.COMPLETED
    assert pending == ["stain loaded?"]
    confirmed = _events(recorder, "protocol", "prompt_confirmed")
    assert confirmed and confirmed[0][0] == pytest.approx(601.0, abs=1.0)
    started = next(e for e in _events(recorder, "medium", "command") if "infuse" in e[3])
    assert started[0] >= 601.0


def test_a_prompt_is_auto_confirmed_on_the_simulated_rig():
    text = HEADER.format(extra="") + '[[step]]\naction = "prompt"\nmessage = "ok?"\n'
    run, recorder = _run(text)
    assert run.run() is RunState.COMPLETED
    assert "auto-confirmed" in _events(recorder, "protocol", "prompt")[0][3]


def test_a_condition_wait_ends_when_the_signal_holds():
    text = HEADER.format(extra="") + (
        '[[step]]\naction = "infuse"\npump = "medium"\nrate = "2 uL/min"\n'
        'duration = "2 h"\nwait = false\n'
        '[[step]]\nname = "flowing"\naction = "wait"\n'
        'until = { signal = "flow.flow_ul_min", above = 1.5, for = "5 min" }\n'
        'timeout = "1 h"\n'
        '[[step]]\naction = "stop"\npump = "medium"\n'
    )
    run, recorder = _run(text)
    assert run.run() is RunState.COMPLETED
    met = _events(recorder, "protocol", "condition_met")
    assert len(met) == 1
    # the flow rises within a few minutes (tubing compliance), then must hold 5 min
    assert 300.0 <= met[0][0] <= 1800.0
    assert _delivered(run, "medium") < 240.0 * 0.5


def test_a_condition_wait_that_times_out_can_abort_the_run():
    text = HEADER.format(extra="") + (
        '[[step]]\nname = "never"\naction = "wait"\n'
        'until = { signal = "flow.flow_ul_min", above = 100.0 }\n'
        'timeout = "30 min"\non_timeout = "abort"\n'
    )
    run, _ = _run(text)
    assert run.run() is RunState.ABORTED
    assert "not met in 1800 s" in run.status().message


def test_manual_control_is_refused_unless_paused():
    run, _ = _run(HEADER.format(extra="") + PERFUSE_2H)
    from chipctl.errors import RunStateError

    with pytest.raises(RunStateError, match="paused"):
        run.call_manual(lambda session: None)


def test_parallel_branches_and_repeat_run_side_by_side():
    text = (
        HEADER.format(extra="")
        + """
[[step]]
action = "parallel"

[[step.branch]]
[[step.branch.step]]
action = "infuse"
pump = "medium"
rate = "2 uL/min"
duration = "1 h"

[[step.branch]]
[[step.branch.step]]
action = "repeat"
count = 3
[[step.branch.step.step]]
action = "sample"
valve = "outlet"
port = "sample 1"
duration = "10 min"
"""
    )
    run, recorder = _run(text)
    assert run.run() is RunState.COMPLETED
    assert run.status().t_s == pytest.approx(3600.0, abs=15.0)
    to_sample = [e for e in _events(recorder, "outlet", "command") if "sample 1" in e[3]]
    # each round: 10 min of collection plus the valve's own switching time (~1 s)
    assert [e[0] for e in to_sample] == pytest.approx([0.0, 600.0, 1200.0], abs=5.0)
