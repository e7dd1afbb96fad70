"""Every interlock kind, tripped by an injected fault on the simulated rig, with each action.

For each kind (pressure, flow_deviation, syringe_reserve, pump_alarm, bubble, lost_device)
a *scenario* names a protocol, the fault that trips the interlock (injected at a seeded
random time in a window, see tests/reliability/test_fault_matrix.py) and what an operator
can do about it. The interlock is declared in the protocol (``[[interlock]]``), so it
replaces the rig's default of that kind, and each action is run in turn:

- ``warn``: an alarm event, nothing else; the operator repairs what can be repaired;
- ``pause``: the run pauses at once and its pumps stop (the ``stop_pumps`` policy); the
  operator comes 5 min later, finds the run paused and the pumps stopped, then repairs and
  resumes (the run completes with every volume delivered), or aborts if nothing can be
  repaired;
- ``stop_pump``: the pump the interlock names stops for good, the step that was using it
  ends early and the protocol goes on to completion;
- ``abort``: the run aborts; every pump has its stop command within
  :data:`~chipctl.engine.run.ABORT_DEADLINE_S` simulated seconds of the alarm.

Every case writes a run file and checks the ``interlock:<kind>`` alarm event in it (at or
after the fault, ending ``-> <action>``), that the file is valid and complete, that no
exception escaped the engine thread, and that the final status message says what
happened. Where chipctl does not do what its documentation says, the case is marked
``xfail(strict=True)`` with the reason.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from chipctl.engine.run import ABORT_DEADLINE_S, RunState
from chipctl.protocol.loader import load_protocol, parse_protocol
from tests.reliability.test_fault_matrix import (
    FAULT_SEED,
    PERIOD_S,
    Operator,
    Outcome,
    check_delivered_as_planned,
    check_pumps_safe,
    check_run_file,
    faulty_config,
    pump_moving,
    run_with_faults,
)

ACTIONS = ("warn", "pause", "stop_pump", "abort")
#: How long the operator takes to come after the alarm.
OPERATOR_S = 300.0

PERFUSION_CHECK = load_protocol("perfusion-check").text

#: Four hours of medium at 2 uL/min (long enough for a clog to build up), then a wait.
FOUR_HOURS_THEN_WAIT = """\
[protocol]
name = "four-hours"

[[step]]
name = "perfuse"
action = "infuse"
pump = "medium"
rate = "2 uL/min"
duration = "4 h"

[[step]]
name = "settle"
action = "wait"
duration = "10 min"
"""

#: Two hours of medium, then a pause in the protocol: the wait shows the protocol going on
#: after its pump was stopped.
TWO_HOURS_THEN_WAIT = """\
[protocol]
name = "two-hours"

[[step]]
name = "perfuse"
action = "infuse"
pump = "medium"
rate = "2 uL/min"
duration = "2 h"

[[step]]
name = "settle"
action = "wait"
duration = "10 min"
"""

#: 300 uL from a syringe the operator filled with only 700 uL: the 5 % reserve of the
#: 10 mL syringe (500 uL) is reached after 200 uL. No emulator fault moves the host's
#: volume ledger, so the short fill is this scenario's fault.
SHORT_FILL = """\
[protocol]
name = "short-fill"

[syringes.medium]
label = "culture medium, short fill"
fill = "700 uL"

[[step]]
name = "perfuse"
action = "infuse"
pump = "medium"
rate = "15 uL/min"
volume = "300 uL"

[[step]]
name = "settle"
action = "wait"
duration = "10 min"
"""


@dataclass(frozen=True)
class Scenario:
    """How one interlock kind is tripped.

    Args:
        kind: the interlock kind.
        protocol: the protocol text (the interlock table is appended).
        fault: ``(device, fault)`` injected at a seeded time in ``window_s`` (None: the
            protocol itself trips it).
        window_s: the run times the fault time is drawn from.
        fields: the interlock's fields besides kind and action (``limit``, ``for``...).
        trips_on: the device the trip names (``Trip.device``).
        pump: the pump a ``stop_pump`` interlock names (``device = ...``).
        fix: ``(device, fault)`` the operator injects to repair, if anything can be.
        warn_end: the final state and message pattern of the ``warn`` run.
        warn_fix: whether the operator repairs after a mere warning too.
        passes: the fault goes by itself (a bubble): the operator resumes without repair.
        xfails: why an action does not work as documented yet, by action.
    """

    kind: str
    protocol: str
    fault: tuple[str, str] | None
    window_s: tuple[float, float]
    fields: Mapping[str, str]
    trips_on: str
    pump: str
    fix: tuple[str, str] | None = None
    warn_end: tuple[RunState, str] = (RunState.COMPLETED, r"^all steps done$")
    warn_fix: bool = True
    passes: bool = False
    xfails: Mapping[str, str] = field(default_factory=dict)

    def fault_time_s(self) -> float | None:
        """Return the seeded random fault time (None if no fault is injected)."""
        if self.fault is None:
            return None
        lo, hi = self.window_s
        draw = random.Random(f"{FAULT_SEED}:interlock:{self.kind}").random()
        return round(lo + draw * (hi - lo), 1)

    def protocol_text(self, action: str) -> str:
        """Return the protocol with this scenario's interlock and ``action``."""
        fields = dict(self.fields)
        if action == "stop_pump" and self.pump:
            fields.setdefault("device", self.pump)
        lines = ["", "[[interlock]]", f'kind = "{self.kind}"', f'action = "{action}"']
        lines += [f'{key} = "{value}"' for key, value in fields.items()]
        return self.protocol + "\n".join(lines) + "\n"


SCENARIOS = [
    Scenario(
        "pressure",
        FOUR_HOURS_THEN_WAIT,
        ("chip", "clog"),
        (60.0, 600.0),
        {"limit": "20 kPa"},
        trips_on="chip.p_medium_kpa",
        pump="medium",
        fix=("chip", "unclog"),
    ),
    Scenario(
        "flow_deviation",
        PERFUSION_CHECK,
        ("chip", "leak"),
        (900.0, 3000.0),
        {"tolerance": "30 %", "for": "1 min"},
        trips_on="flow",
        pump="drug",
    ),
    Scenario(
        "syringe_reserve",
        SHORT_FILL,
        None,
        (0.0, 0.0),
        {"reserve": "5 %"},
        trips_on="medium",
        pump="medium",
    ),
    Scenario(
        "pump_alarm",
        TWO_HOURS_THEN_WAIT,
        ("medium", "inject_stall"),
        (600.0, 6000.0),
        {},
        trips_on="medium",
        pump="medium",
        fix=("medium", "clear_stall"),
        # warned only, nobody clears the stall: the step finds its pump stalled when it
        # should have ended, and fails the run
        warn_end=(RunState.FAILED, r"^medium: stall during step 1 \('perfuse'\)$"),
        warn_fix=False,
    ),
    Scenario(
        "bubble",
        PERFUSION_CHECK,
        ("chip", "bubble"),
        (50.0, 700.0),
        {},
        trips_on="flow",
        pump="medium",
        passes=True,
    ),
    Scenario(
        "lost_device",
        PERFUSION_CHECK,
        ("flow", "no_reply"),
        (900.0, 3000.0),
        {"for": "60 s"},
        trips_on="flow",
        pump="",  # the flow sensor is no pump: stop_pump falls back to abort
        fix=("flow", "link_ok"),
    ),
]


FIGURES: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def _print_figures() -> Iterator[None]:
    yield
    if FIGURES:
        print("\ninterlock figures (simulated s):")
        print("kind-action | fault at | trip after | final state | message")
        for row in FIGURES:
            print(row)


def _params() -> list[object]:
    params: list[object] = []
    for scenario in SCENARIOS:
        for action in ACTIONS:
            reason = scenario.xfails.get(action)
            marks = [pytest.mark.xfail(reason=reason, strict=True)] if reason else []
            if scenario.kind == "pressure":
                marks.append(pytest.mark.slow)  # the clog takes 2 simulated hours to trip
            params.append(
                pytest.param(scenario, action, id=f"{scenario.kind}-{action}", marks=marks)
            )
    return params


def _operator(scenario: Scenario, action: str) -> Operator | None:
    source = f"interlock:{scenario.kind}"
    if action == "warn" and scenario.fix is not None and scenario.warn_fix:
        return Operator(source, after_s=OPERATOR_S, fix=scenario.fix)
    if action == "pause":
        then = "resume" if scenario.fix is not None or scenario.passes else "abort"
        return Operator(source, after_s=OPERATOR_S, fix=scenario.fix, then=then)
    return None


@pytest.mark.parametrize(("scenario", "action"), _params())
def test_interlock(scenario: Scenario, action: str, tmp_path: Path) -> None:
    at_s = scenario.fault_time_s()
    faults = [] if scenario.fault is None or at_s is None else [(*scenario.fault, at_s)]
    protocol = parse_protocol(scenario.protocol_text(action), f"{scenario.kind}-{action}.toml")
    operator = _operator(scenario, action)
    outcome = run_with_faults(
        protocol, faulty_config(faults), tmp_path / "run.h5", operator=operator
    )
    result = outcome.result
    assert not outcome.engine_errors, outcome.engine_errors

    # the trip: an alarm event in the run file, naming the device and the action
    trips = outcome.of(f"interlock:{scenario.kind}", "alarm")
    assert trips, (result.state, result.message, result.alarms)
    trip = trips[0]
    assert trip.message.startswith(f"{scenario.trips_on}: ")
    assert trip.message.endswith(f"-> {action}")
    assert at_s is None or trip.t_s >= at_s

    FIGURES.append(
        f"{scenario.kind}-{action} | {at_s if at_s is not None else '-'} | "
        f"{trip.t_s - (at_s or 0.0):.1f} | {result.state.value} | {result.message[:70]}"
    )
    if action == "warn":
        check_warned(outcome, scenario, operator)
    elif action == "pause":
        assert operator is not None
        check_paused(outcome, scenario, operator, trip.t_s)
    elif action == "stop_pump":
        check_pump_stopped(outcome, scenario, trip.t_s)
    else:
        expected = rf"^interlock {scenario.kind} \({re.escape(scenario.trips_on)}\): "
        assert re.search(expected, result.message), result.message
        check_run_file(outcome, at_s, scenario.fault and scenario.fault[0], RunState.ABORTED)
        assert check_pumps_safe(outcome, trip.t_s, set()) <= ABORT_DEADLINE_S


def check_warned(outcome: Outcome, scenario: Scenario, operator: Operator | None) -> None:
    """A warning changes nothing: no pause, no abort, no stopped pump."""
    state, message = scenario.warn_end
    result = outcome.result
    assert re.search(message, result.message), (result.state, result.message)
    fault_at_s = scenario.fault_time_s()
    check_run_file(outcome, fault_at_s, scenario.fault and scenario.fault[0], state)
    assert not outcome.of("run", "paused") and not outcome.of("run", "aborting")
    interlock_stops = [e for e in outcome.events if "stop (interlock" in e.message]
    assert not interlock_stops
    if operator is not None and state is RunState.COMPLETED:
        # repaired: the interlock re-arms, and the protocol delivered all it should
        assert outcome.of(f"interlock:{scenario.kind}", "alarm_cleared")
        check_delivered_as_planned(outcome)


def check_paused(outcome: Outcome, scenario: Scenario, operator: Operator, trip_s: float) -> None:
    """The run paused at the trip with its pumps stopped; the operator resumed or aborted."""
    result = outcome.result
    paused = outcome.first("run", "paused")
    assert paused.t_s == pytest.approx(trip_s)
    assert f"interlock {scenario.kind} ({scenario.trips_on})" in paused.message
    assert "pause policy: stop_pumps" in paused.message
    # the pumps the protocol was running stop at once (a stalled one had already stopped)
    stops = [e for e in outcome.events if e.message.startswith("stop (paused")]
    assert all(0 <= e.t_s - trip_s <= ABORT_DEADLINE_S for e in stops)
    assert stops or scenario.fault == (scenario.trips_on, "inject_stall")
    # what the operator found 5 min later
    assert operator.state is RunState.PAUSED
    assert not any(operator.moving.values()), operator.moving
    fault_at_s = scenario.fault_time_s()
    faulty = scenario.fault and scenario.fault[0]
    if operator.then == "resume":
        resumed = [e for e in outcome.of("run", "running") if e.message == "resumed"]
        assert resumed and resumed[0].t_s == pytest.approx(trip_s + OPERATOR_S)
        check_run_file(outcome, fault_at_s, faulty, RunState.COMPLETED)
        assert result.message == "all steps done"
        check_delivered_as_planned(outcome)
        # the time paused is added to the run, not taken from the protocol
        assert result.preflight is not None
        assert result.duration_s >= result.preflight.duration_s + OPERATOR_S
    else:
        check_run_file(outcome, fault_at_s, faulty, RunState.ABORTED)
        assert result.message.startswith(f"operator abort after interlock:{scenario.kind}: ")
        check_pumps_safe(outcome, outcome.first("run", "aborting").t_s, set())


def check_pump_stopped(outcome: Outcome, scenario: Scenario, trip_s: float) -> None:
    """The named pump stopped for good at the trip; the protocol went on to its end."""
    result = outcome.result
    fault_at_s = scenario.fault_time_s()
    faulty = scenario.fault and scenario.fault[0]
    if not scenario.pump:
        # nothing to stop: the interlock falls back to aborting the run
        assert re.search(r"\(no pump '\w+' to stop\)$", result.message), result.message
        check_run_file(outcome, fault_at_s, faulty, RunState.ABORTED)
        check_pumps_safe(outcome, trip_s, set())
        return
    check_run_file(outcome, fault_at_s, faulty, RunState.COMPLETED)
    assert result.message == "all steps done"
    pump = scenario.pump
    stop = [e for e in outcome.of(pump, "command") if e.message.startswith("stop (interlock")]
    assert stop and 0 <= stop[0].t_s - trip_s <= ABORT_DEADLINE_S
    assert f"interlock {scenario.kind}" in stop[0].message
    assert not pump_moving(outcome.rig, pump)
    # for good: nothing starts it again
    later = [
        e
        for e in outcome.of(pump, "command")
        if e.t_s > stop[0].t_s and e.message.split()[0] in ("infuse", "withdraw")
    ]
    assert not later, later
    # the step that was using it ended early, and the protocol went on after it
    ended = outcome.first("protocol", "step_ended_early")
    assert ended.t_s >= trip_s
    assert any(e.t_s >= ended.t_s for e in outcome.of("protocol", "step_started"))
    preflight = result.preflight
    assert preflight is not None
    planned = {row.pump: row.infused_ul - row.withdrawn_ul for row in preflight.ledger}
    assert result.delivered_ul[pump] < planned[pump] - 1.0


def test_stop_pump_on_a_lost_pump_ends_the_run_within_the_deadline(tmp_path: Path) -> None:
    fields = {"device": "medium", "for": "60 s"}
    scenario = Scenario(
        "lost_device",
        PERFUSION_CHECK,
        ("medium", "no_reply"),
        (900.0, 3000.0),
        fields,
        "medium",
        "medium",
    )
    at_s = scenario.fault_time_s()
    assert at_s is not None
    protocol = parse_protocol(scenario.protocol_text("stop_pump"), "lost-pump.toml")
    outcome = run_with_faults(
        protocol, faulty_config([("medium", "no_reply", at_s)]), tmp_path / "run.h5"
    )
    assert not outcome.engine_errors
    assert outcome.result.state in (RunState.ABORTED, RunState.FAILED)
    assert "interlock lost_device (medium)" in outcome.result.message
    trip = outcome.first("interlock:lost_device", "alarm")
    check_pumps_safe(outcome, trip.t_s, {"medium"})
    assert trip.t_s <= at_s + 60.0 + 2 * PERIOD_S
