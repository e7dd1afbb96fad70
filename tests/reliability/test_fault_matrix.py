"""The fault matrix: every fault the emulators can inject, at a seeded random point of a real run.

Each case schedules one fault (``[[fault]]`` in the instrument config) on the simulated
reference rig while a protocol runs, writes a real run file, and checks, in this order:

1. the **reaction** the case documents (docs/faults.md), one of

   - ``retry``: the link comes back within the ``lost_device`` hold; the loss and the
     return are events, the run completes and every pump delivered what the preflight
     predicted;
   - ``alarm``: an alarm event names the fault and the run goes on to completion;
   - ``pause``: an interlock pauses the run (its pumps stop under the ``stop_pumps``
     policy); the test plays the operator and aborts it;
   - ``abort``: an interlock aborts the run;
   - ``fail``: a device error ends the run as failed;
   - ``end``: abort or fail, either is safe (only for cases marked xfail, where the fix
     may take either route);

2. **safety**: after an abort every pump has a ``stop`` command event within
   :data:`ABORT_DEADLINE_S` simulated seconds of the alarm that decided it (after a
   failure, within that time of the first stop: the engine stops the pumps as soon as the
   error reaches it); a pump whose link is dead has a ``could not stop pump`` alarm
   instead; every reachable pump's emulator has really stopped;
3. the **run file**: it opens, its status is the run's final state, its events are in time
   order, the final state is recorded once with the run's message and followed by the
   session's close, the fault is recorded when it was injected, the telemetry of every
   device has no gap up to the fault and carries units, and the pump volumes in the file
   are those the run reported;
4. the **final status** message says what happened (a pattern per case), and no
   exception escaped the engine thread.

The fault time is drawn uniformly from the case's *window*: the stretch of the protocol
where the fault is meaningful (a valve jam before the valve moves, a bubble early enough
to reach the sensor before the end). Draws are seeded by the case's name, so CI is
repeatable; ``CHIPCTL_FAULT_SEED=N`` draws another set of points to explore.

Where chipctl's reaction is wrong, a case is marked ``xfail(strict=True)`` with the reason
(``Case.xfail``), so that the fix flips it; no case is marked today (docs/faults.md lists
what the matrix does not prove).

Run with ``-s`` to print the figures (fault time, reaction time, stop latency, wall time)
that docs/faults.md quotes.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path

import numpy as np
import pytest

from chipctl.api import RunResult, run_protocol
from chipctl.chip import field_name
from chipctl.config import InstrumentConfig, parse_config, reference_rig_config
from chipctl.engine.run import ABORT_DEADLINE_S, Run, RunState
from chipctl.errors import ConfigError
from chipctl.protocol.loader import parse_interlock, parse_protocol
from chipctl.protocol.model import Protocol
from chipctl.rig import Rig, build_rig
from chipctl.runfile import RunFile
from chipctl.runfile.images import image_stacks, read_stack
from chipctl.runfile.reader import Event
from drivers.clock import RealClock, VirtualClock

#: Reseeds every case's fault time (0: the times CI runs).
FAULT_SEED = int(os.environ.get("CHIPCTL_FAULT_SEED", "0"))
#: The simulated world's seed (patient, tumoroids, noise).
WORLD_SEED = 7

REFERENCE = reference_rig_config()
PERIOD_S = REFERENCE.telemetry_period_s
LOST_HOLD_S = parse_interlock(
    "lost_device", REFERENCE.interlocks["lost_device"], kind="lost_device", origin="config"
).hold_s
#: How long a transient link fault lasts: well inside the lost_device hold.
GLITCH_S = 30.0
#: Link faults every emulator has (simulator.faults.CommFaults).
LINK_FAULTS = ("no_reply", "garble", "partial", "disconnected")
PUMPS = tuple(name for name, device in REFERENCE.devices.items() if device.syringe is not None)

# -- protocols ------------------------------------------------------------------------------

#: Two exchanges through the Cavro (about 17 min): the built-in protocols that use the
#: exchanger run for days, so its faults are rehearsed on this short one.
EXCHANGE_CHECK = """\
[protocol]
name = "exchange-check"
description = "Two 100 uL washes of the chip through the exchanger."

[syringes.exchanger]
label = "wash buffer"
fill = "0 uL"

[[step]]
name = "wash 1"
action = "exchange"
pump = "exchanger"
from = "wash buffer"
to = "chip"
volume = "100 uL"
rate = "15 uL/min"
draw_rate = "50 uL/min"

[[step]]
name = "wash 2"
action = "exchange"
pump = "exchanger"
from = "wash buffer"
to = "chip"
volume = "100 uL"
rate = "15 uL/min"
draw_rate = "50 uL/min"
"""

#: The positions image-check visits: the first field of chambers 1 and 2 ("chamber 1a"
#: when the microscope images each chamber in several fields, else "chamber 1").
IMAGED = [
    field_name(k, 1, REFERENCE.devices["microscope"].options.get("fields_per_chamber", 1))
    for k in (1, 2)
]

#: One hour of perfusion imaged every 10 min at two chambers (14 frames).
IMAGE_CHECK = f"""\
[protocol]
name = "image-check"
description = "Perfuse medium for 1 h while imaging two chambers every 10 min."

[[step]]
name = "perfuse"
action = "infuse"
pump = "medium"
rate = "2 uL/min"
duration = "1 h"
wait = false

[[step]]
name = "timelapse"
action = "image"
positions = [{", ".join(f'"{p}"' for p in IMAGED)}]
channels = ["brightfield"]
every = "10 min"
duration = "1 h"
"""

#: Protocols whose cases take a few seconds (hours of simulated time, or rendered frames).
SLOW_PROTOCOLS = ("medium-24h", "image-check")

PROTOCOLS: dict[str, str | Protocol] = {
    "perfusion-check": "perfusion-check",
    "medium-24h": "medium-24h",
    "exchange-check": parse_protocol(EXCHANGE_CHECK, "exchange-check.toml"),
    "image-check": parse_protocol(IMAGE_CHECK, "image-check.toml"),
}

# perfusion-check's timeline (s): prime medium 1-401, prime drug 401-801, outlet to
# "sample 1" at 801, both pumps perfuse in the background 802-4402, outlet to waste at 4402.
PRIME_MEDIUM = (50.0, 390.0)
BEFORE_PERFUSION = (410.0, 790.0)
PERFUSING = (900.0, 4300.0)
WHOLE_RUN = (50.0, 4300.0)
#: Ends 30 s of silence just after the pumps' and the outlet's commands at 801 s.
OVER_THE_801_S_COMMANDS = (775.0, 800.0)


class Reaction(Enum):
    """What chipctl is documented to do about a fault (docs/faults.md)."""

    RETRY = "retry"
    ALARM = "alarm"
    PAUSE = "pause"
    ABORT = "abort"
    FAIL = "fail"
    END = "abort or fail"


@dataclass(frozen=True)
class Case:
    """One cell of the matrix.

    Args:
        device: the faulty device (``chip`` for the simulated chip).
        kind: the fault (a link fault or an emulator fault method).
        window_s: the run times the fault time is drawn from.
        reaction: the documented reaction.
        message: a pattern the final status message must match.
        protocol: a key of :data:`PROTOCOLS`.
        clear_after_s: clear a link fault (``link_ok``) this long after it started.
        alarm_source: the alarm event that decides an abort, pause or warning.
        xfail: why chipctl does not react as documented yet.
        label: tells apart cases of the same fault (in the test id).
        detect_within_s: the longest the run may take to notice the fault.
    """

    device: str
    kind: str
    window_s: tuple[float, float]
    reaction: Reaction
    message: str
    protocol: str = "perfusion-check"
    clear_after_s: float | None = None
    alarm_source: str | None = None
    xfail: str | None = None
    label: str = ""
    detect_within_s: float | None = None

    @property
    def id(self) -> str:
        """Return the pytest id (``medium-no_reply-glitch``)."""
        suffix = self.label or ("glitch" if self.clear_after_s is not None else "")
        return "-".join(p for p in (self.device, self.kind, suffix) if p)

    def fault_time_s(self) -> float:
        """Return this case's seeded random fault time (0.1 s resolution)."""
        lo, hi = self.window_s
        draw = random.Random(f"{FAULT_SEED}:{self.id}").random()
        return round(lo + draw * (hi - lo), 1)


def _link_cases() -> list[Case]:
    """Every link fault on every serial device: a 30 s glitch, and a link that stays dead."""
    cases = []
    for device in ("medium", "drug", "exchanger", "outlet", "flow"):
        for kind in LINK_FAULTS:
            if device == "drug" and kind == "disconnected":
                # the New Era runs in safe mode: 10 s without a byte from the host and it
                # stops itself with a watchdog alarm, which the pump_alarm interlock acts on
                glitch = _pump_alarm_abort(device, kind, "watchdog", PERFUSING)
                cases.append(replace(glitch, clear_after_s=GLITCH_S))
            else:
                cases.append(
                    Case(
                        device,
                        kind,
                        PERFUSING,
                        Reaction.RETRY,
                        r"^all steps done$",
                        clear_after_s=GLITCH_S,
                    )
                )
            lost = Case(
                device,
                kind,
                PERFUSING,
                Reaction.ABORT,
                rf"^interlock lost_device \({device}\): no answer for \d+ s$",
                alarm_source="interlock:lost_device",
                label="lost",
            )
            cases.append(lost)
    for device, kind in itertools.product(("medium", "outlet"), ("no_reply", "garble")):
        cases.append(
            Case(
                device,
                kind,
                OVER_THE_801_S_COMMANDS,
                Reaction.RETRY,
                r"^all steps done$",
                clear_after_s=GLITCH_S,
                label="glitch-over-a-command",
            )
        )
    return cases


def _pump_alarm_abort(
    device: str,
    kind: str,
    alarm: str,
    window_s: tuple[float, float],
    protocol: str = "perfusion-check",
    label: str = "",
) -> Case:
    """A fault the pump reports as an alarm, which the pump_alarm interlock aborts on."""
    return Case(
        device,
        kind,
        window_s,
        Reaction.ABORT,
        rf"^interlock pump_alarm \({device}\): pump alarm: {alarm}$",
        protocol=protocol,
        alarm_source="interlock:pump_alarm",
        label=label,
    )


DEVICE_CASES = [
    _pump_alarm_abort("medium", "inject_stall", "stall", WHOLE_RUN),
    _pump_alarm_abort("drug", "inject_stall", "stall", WHOLE_RUN),
    _pump_alarm_abort("drug", "power_cycle", "reset", WHOLE_RUN),
    # a pump that stops short is noticed at the next poll (Run._poll -> stopped_short),
    # also in a background step, and handed to the pump_alarm interlock (abort)
    replace(
        _pump_alarm_abort("medium", "power_on_reset", "stopped_short", PRIME_MEDIUM),
        label="waited-step",
        detect_within_s=2 * PERIOD_S,
    ),
    _pump_alarm_abort(
        "medium", "power_on_reset", "stopped_short", PERFUSING, label="background-step"
    ),
    _pump_alarm_abort(
        "medium", "syringe_empty", "stopped_short", PRIME_MEDIUM, label="waited-step"
    ),
    _pump_alarm_abort(
        "medium", "syringe_empty", "stopped_short", BEFORE_PERFUSION, label="background-step"
    ),
    _pump_alarm_abort(
        "exchanger", "inject_overload", "occlusion", (5.0, 1000.0), protocol="exchange-check"
    ),
    Case(
        "exchanger",
        "jam_valve",
        (5.0, 630.0),
        Reaction.FAIL,
        r"^exchanger: pump reports error 10: valve overload",
        protocol="exchange-check",
    ),
    _pump_alarm_abort(
        "exchanger", "power_on_reset", "stopped_short", (5.0, 1000.0), protocol="exchange-check"
    ),
    Case(
        "outlet",
        "jam",
        WHOLE_RUN,
        Reaction.FAIL,
        r"^outlet: valve reports error 66: positioning error",
    ),
    Case(
        "outlet",
        "power_on_reset",
        PERFUSING,
        Reaction.ALARM,
        r"^all steps done$",
        alarm_source="outlet",
    ),
    Case(
        "flow",
        "inject_sensor_reset",
        WHOLE_RUN,
        Reaction.ALARM,
        r"^all steps done$",
        alarm_source="flow",
    ),
    Case(
        "chip",
        "clog",
        (600.0, 3600.0),
        Reaction.ABORT,
        r"^interlock pressure \(chip\.p_medium_kpa\): [\d.]+ kPa over the 50 kPa limit$",
        protocol="medium-24h",
        alarm_source="interlock:pressure",
    ),
    Case(
        "chip",
        "leak",
        (50.0, 3500.0),
        Reaction.PAUSE,
        r"^operator abort after interlock:flow_deviation: flow: flow [\d.]+ uL/min, expected",
        alarm_source="interlock:flow_deviation",
    ),
    Case(
        "chip",
        "bubble",
        (50.0, 800.0),
        Reaction.ALARM,
        r"^all steps done$",
        alarm_source="interlock:bubble",
    ),
    _pump_alarm_abort(
        "medium",
        "inject_stall",
        "stall",
        (300.0, 3300.0),
        protocol="image-check",
        label="while-imaging",
    ),
    # a camera that delivers no frame any more: each frame is tried 3 times (FRAME_RETRIES
    # + 1, each costing the frame timeout), then the time point's FrameTimeout fails the run
    Case(
        "microscope",
        "camera_lost",
        (300.0, 3300.0),
        Reaction.FAIL,
        r"^microscope: no frame of chamber \w+ / brightfield in 3 tries; last: "
        r"microscope-camera: no frame within [\d.]+ s of the trigger \(lost\)$",
        protocol="image-check",
    ),
]

CASES = _link_cases() + DEVICE_CASES

# -- running a faulty rig --------------------------------------------------------------------


def faulty_config(faults: Sequence[tuple[str, str, float]]) -> InstrumentConfig:
    """Return the reference rig with ``(device, kind, at_s)`` faults scheduled."""
    tables = "".join(
        f'\n[[fault]]\ndevice = "{device}"\nkind = "{kind}"\nat = "{at_s!r} s"\n'
        for device, kind, at_s in faults
    )
    return parse_config(REFERENCE.text + tables, "faulty-rig.toml")


@contextlib.contextmanager
def engine_errors() -> Iterator[list[BaseException]]:
    """Collect exceptions that escape any thread (the engine thread must never raise)."""
    caught: list[BaseException] = []
    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        caught.append(args.exc_value if args.exc_value is not None else args.exc_type())

    threading.excepthook = hook
    try:
        yield caught
    finally:
        threading.excepthook = previous


@dataclass
class Outcome:
    """A finished faulty run: what the API said, the engine, and the run file's events."""

    result: RunResult
    run: Run
    events: list[Event]
    engine_errors: list[BaseException]
    wall_s: float = 0.0

    @property
    def rig(self) -> Rig:
        """Return the run's rig (its emulators tell the true state)."""
        return self.run.rig

    def of(self, source: str, kind: str | None = None) -> list[Event]:
        """Return the events of ``source`` (and ``kind``)."""
        return [e for e in self.events if e.source == source and kind in (None, e.kind)]

    def first(self, source: str, kind: str) -> Event:
        """Return the first event of ``source`` and ``kind`` (fails the test if none)."""
        found = self.of(source, kind)
        assert found, f"no {source}/{kind} event; events: {self.events[-12:]}"
        return found[0]


def run_with_faults(
    protocol: str | Protocol,
    config: InstrumentConfig,
    path: Path,
    *,
    operator: Callable[[Run], None] | None = None,
) -> Outcome:
    """Run ``protocol`` on ``config`` into the run file ``path`` and read the file back.

    Args:
        operator: called with the run before it starts (to add listeners that act like
            an operator: resume or abort a paused run).
    """
    runs: list[Run] = []

    def ready(run: Run) -> None:
        runs.append(run)
        if operator is not None:
            operator(run)

    wall = RealClock()
    started_s = wall.now_s()
    with engine_errors() as errors:
        result = run_protocol(protocol, config, out=path, seed=WORLD_SEED, run_ready=ready)
    wall_s = wall.now_s() - started_s
    with RunFile(path) as run_file:
        events = run_file.events()
    return Outcome(result, runs[0], events, errors, wall_s)


class Operator:
    """Plays the operator: called by an alarm, comes ``after_s`` later (run clock) and acts.

    Attach it with ``run_with_faults(..., operator=Operator(...))``. It acts on the engine
    thread, as :meth:`Run.call_manual` would.

    Args:
        source: the alarm event source that calls the operator (``"interlock:bubble"``).
        after_s: how long the operator takes to come.
        fix: ``(device, fault)`` the operator injects to repair the fault
            (``("chip", "unclog")``), or None.
        then: ``"resume"`` or ``"abort"`` the run once fixed, or None.

    Attributes:
        alarm: the alarm message that called the operator.
        came_s: when the operator came (run time).
        moving: each pump's true motion when the operator came.
        state: the run's state when the operator came.
    """

    def __init__(
        self,
        source: str,
        *,
        after_s: float = 300.0,
        fix: tuple[str, str] | None = None,
        then: str | None = None,
    ) -> None:
        """Remember what to do."""
        self.source = source
        self.after_s = after_s
        self.fix = fix
        self.then = then
        self.alarm: str | None = None
        self.came_s: float | None = None
        self.moving: dict[str, bool] = {}
        self.state: RunState | None = None
        self._run: Run | None = None

    def __call__(self, run: Run) -> None:
        """Attach to ``run`` (a ``run_ready`` callback)."""
        self._run = run
        run.add_listener(self)

    def on_event(self, t_s: float, source: str, kind: str, message: str) -> None:
        """On the engine thread: the first alarm from ``source`` calls the operator."""
        if source != self.source or kind != "alarm" or self.alarm is not None:
            return
        self.alarm = message
        assert self._run is not None
        self._run.scheduler.call_later(self.after_s, self._come, name="operator")

    def _come(self) -> None:
        run = self._run
        assert run is not None
        rig = run.rig
        rig.world.advance_to(rig.clock.now_s())
        self.came_s = run.session.t_s()
        self.state = run.status().state
        self.moving = {pump: pump_moving(rig, pump) for pump in rig.pumps()}
        if self.fix is not None:
            device, fault = self.fix
            rig.inject_fault(device, fault)
            run.session.event("operator", "manual", f"{fault} on {device}")
        if self.then == "abort":
            run.abort(f"operator abort after {self.source}: {self.alarm}")
        elif self.then == "resume":
            run.resume()


# -- checks ----------------------------------------------------------------------------------


def pump_moving(rig: Rig, pump: str) -> bool:
    """Tell whether a pump's emulator is moving its plunger (the truth, not the driver)."""
    emulator = rig.emulator_of(pump)
    for attribute in ("running", "is_running", "executing"):
        value = getattr(emulator, attribute, None)
        if isinstance(value, bool):
            return value
    raise AssertionError(f"{pump}: cannot tell whether {type(emulator).__name__} is moving")


def check_pumps_safe(outcome: Outcome, decided_s: float, unreachable: set[str]) -> float:
    """Check every reachable pump was stopped within the deadline; return the latency.

    Args:
        decided_s: when the run decided to stop (the deciding alarm).
        unreachable: pumps whose link is dead: a 'could not stop pump' alarm is expected
            instead of a stop command, at any time after ``decided_s``.
    """
    latency_s = 0.0
    for pump in outcome.rig.pumps():
        if pump in unreachable:
            tries = [
                e
                for e in outcome.of(pump, "alarm")
                if e.message.startswith("could not stop") and e.t_s >= decided_s
            ]
            assert tries, f"{pump}: no attempt to stop it is recorded"
            continue
        stops = [
            e
            for e in outcome.of(pump, "command")
            if e.message.startswith("stop") and e.t_s >= decided_s - 1e-9
        ]
        assert stops, f"{pump}: no stop command after t = {decided_s:.1f} s"
        latency_s = max(latency_s, stops[0].t_s - decided_s)
        assert stops[0].t_s - decided_s <= ABORT_DEADLINE_S + 1e-9, (pump, stops[0], decided_s)
        assert not pump_moving(outcome.rig, pump), f"{pump} still moving after the stop"
    return latency_s


def check_run_file(
    outcome: Outcome, fault_at_s: float | None, faulty: str | None, expected: RunState
) -> None:
    """Check the run file is valid, says how the run ended, and is complete up to the fault.

    Args:
        fault_at_s: when ``faulty`` got its fault (None: no fault was injected; the
            telemetry must then be complete to the end).
        faulty: the faulty device.
        expected: the run's expected final state.
    """
    result = outcome.result
    assert result.state is expected, (result.state, result.message, result.alarms)
    with RunFile(result.path) as run_file:
        assert run_file.status == expected.value
        assert run_file.attrs["simulated"] and run_file.attrs["seed"] == WORLD_SEED
        events = run_file.events()
        times = [e.t_s for e in events]
        assert times == sorted(times), "events out of time order"
        kinds = [(e.source, e.kind) for e in events]
        final = max(i for i, k in enumerate(kinds) if k[0] == "run")
        assert kinds[final] == ("run", expected.value) and kinds.count(kinds[final]) == 1
        assert events[final].message == result.message
        assert ("session", "closed") in kinds[final:]
        if fault_at_s is None:
            fault_at_s = events[final].t_s
        else:
            injected = [e for e in events if e.kind == "fault_injected" and e.source == faulty]
            assert injected and injected[0].t_s == pytest.approx(fault_at_s, abs=1e-6)
        first_poll_s = next(e.t_s for e in events if (e.source, e.kind) == ("run", "started"))
        for device in run_file.telemetry_devices():
            table = run_file.telemetry(device)
            units = run_file.units(device)
            assert all(units[column] for column in table), (device, units)
            t_s = table["t_s"]
            assert np.all(np.diff(t_s) >= 0), device
            before = t_s[t_s <= fault_at_s]
            assert before.size and before[0] <= first_poll_s + PERIOD_S, device
            gaps = np.diff(np.concatenate([before, [fault_at_s]]))
            # a poll can be held up by a retry (0.5 s timeouts), never skipped
            assert gaps.max(initial=0.0) <= PERIOD_S + 5.0, (device, gaps.max())
        for pump, delivered_ul in result.delivered_ul.items():
            file_ul = run_file.telemetry(pump)["delivered_ul"][-1]
            assert file_ul == pytest.approx(delivered_ul, abs=1e-6), pump


def check_delivered_as_planned(outcome: Outcome) -> None:
    """Check each pump delivered what the preflight predicted (within 1 %)."""
    preflight = outcome.result.preflight
    assert preflight is not None
    for row in preflight.ledger:
        planned_ul = row.infused_ul - row.withdrawn_ul
        got_ul = outcome.result.delivered_ul[row.pump]
        assert got_ul == pytest.approx(planned_ul, rel=0.01, abs=0.2), row.pump


# -- figures for docs/faults.md --------------------------------------------------------------

FIGURES: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def _print_figures() -> Iterator[None]:
    yield
    if FIGURES:
        print("\nfault matrix figures (simulated s; wall s):")
        print(
            "case | fault at | final state | decided after | stop latency | unreachable pump "
            "still moving | wall | message"
        )
        for row in FIGURES:
            print(row)


# -- the matrix ------------------------------------------------------------------------------


def _params() -> list[object]:
    params: list[object] = []
    for case in CASES:
        marks = [pytest.mark.xfail(reason=case.xfail, strict=True)] if case.xfail else []
        if case.protocol in SLOW_PROTOCOLS:
            marks.append(pytest.mark.slow)
        params.append(pytest.param(case, id=case.id, marks=marks))
    return params


@pytest.mark.parametrize("case", _params())
def test_fault(case: Case, tmp_path: Path) -> None:
    at_s = case.fault_time_s()
    faults = [(case.device, case.kind, at_s)]
    if case.clear_after_s is not None:
        faults.append((case.device, "link_ok", at_s + case.clear_after_s))
    operator = None
    if case.reaction is Reaction.PAUSE:
        assert case.alarm_source is not None
        operator = Operator(case.alarm_source, then="abort")
    outcome = run_with_faults(
        PROTOCOLS[case.protocol], faulty_config(faults), tmp_path / "run.h5", operator=operator
    )
    result = outcome.result
    assert not outcome.engine_errors, outcome.engine_errors
    assert re.search(case.message, result.message), (result.state, result.message, result.alarms)

    expected = {
        Reaction.RETRY: RunState.COMPLETED,
        Reaction.ALARM: RunState.COMPLETED,
        Reaction.PAUSE: RunState.ABORTED,
        Reaction.ABORT: RunState.ABORTED,
        Reaction.FAIL: RunState.FAILED,
        Reaction.END: result.state if result.state is not RunState.COMPLETED else None,
    }[case.reaction]
    assert expected is not None, f"the run completed: {result.message}; alarms {result.alarms}"
    check_run_file(outcome, at_s, case.device, expected)

    lost_link = case.clear_after_s is None and case.kind in LINK_FAULTS
    unreachable = {case.device} if lost_link and case.device in PUMPS else set()
    decided_s = latency_s = float("nan")
    if case.reaction in (Reaction.RETRY, Reaction.ALARM):
        check_delivered_as_planned(outcome)
        check_telemetry_goes_on(outcome, case.device)
    if case.reaction is Reaction.RETRY:
        assert not [e for e in outcome.events if e.kind == "alarm"], result.alarms
        if case.clear_after_s is not None:
            check_ridden_out(outcome, case.device, at_s, at_s + case.clear_after_s)
    elif case.reaction is Reaction.ALARM:
        assert case.alarm_source is not None
        assert outcome.first(case.alarm_source, "alarm").t_s >= at_s
    elif case.reaction is Reaction.PAUSE:
        assert case.alarm_source is not None
        decided_s = outcome.first(case.alarm_source, "alarm").t_s
        paused = outcome.first("run", "paused")
        assert paused.t_s == pytest.approx(decided_s)
        assert case.alarm_source.removeprefix("interlock:") in paused.message
        # the stop_pumps pause policy: the pumps the protocol was running stop at once
        stops = [e for e in outcome.events if e.message.startswith("stop (paused")]
        assert stops and all(e.t_s - decided_s <= ABORT_DEADLINE_S for e in stops)
        assert operator is not None and operator.state is RunState.PAUSED
        assert not any(operator.moving.values()), operator.moving
        latency_s = check_pumps_safe(outcome, outcome.first("run", "aborting").t_s, unreachable)
    else:
        if case.alarm_source is not None:
            decided_s = outcome.first(case.alarm_source, "alarm").t_s
        else:
            # a failure is an exception in the engine, which stops the pumps at once: the
            # first of those stops marks it (the check is then that all came together)
            decided_s = min(e.t_s for e in outcome.events if e.message.endswith("(run failed)"))
        assert decided_s >= at_s
        if case.detect_within_s is not None:
            assert decided_s - at_s <= case.detect_within_s
        latency_s = check_pumps_safe(outcome, decided_s, unreachable)
        if case.alarm_source == "interlock:lost_device":
            # the hold counts from the first poll that found the device silent
            assert decided_s <= at_s + LOST_HOLD_S + 2 * PERIOD_S
    if case.protocol == "image-check":
        check_frames(outcome)
    moving = [p for p in sorted(unreachable) if pump_moving(outcome.rig, p)]
    FIGURES.append(
        f"{case.id} | {at_s:.1f} | {result.state.value} | {decided_s - at_s:.1f} | "
        f"{latency_s:.3f} | {','.join(moving) or '-'} | {outcome.wall_s:.2f} | "
        f"{result.message[:90]}"
    )


def check_telemetry_goes_on(outcome: Outcome, device: str) -> None:
    """Check the device is read to the end of the run (telemetry recovered from the fault)."""
    with RunFile(outcome.result.path) as run_file:
        if device not in run_file.telemetry_devices():
            return  # a device without telemetry (the microscope)
        t_s = run_file.telemetry(device)["t_s"]
    end_s = outcome.first("run", outcome.result.state.value).t_s
    assert t_s[-1] >= end_s - PERIOD_S - 5.0, f"{device}: no telemetry after {t_s[-1]:.0f} s"


def check_ridden_out(outcome: Outcome, device: str, lost_s: float, back_s: float) -> None:
    """Check a link outage was noticed by the polls and its end announced."""
    noticed = [
        e
        for e in outcome.of(device)
        if e.kind in ("link_lost", "error") and lost_s <= e.t_s <= back_s + PERIOD_S
    ]
    assert noticed, f"the outage of {device} left no event"
    if any(e.kind == "link_lost" for e in noticed):
        back = outcome.first(device, "reconnected")
        assert lost_s <= back.t_s <= back_s + 2 * PERIOD_S


def check_frames(outcome: Outcome) -> None:
    """Check every frame the run reported is in the run file, readable, taken before the end."""
    time_points = outcome.of("imaging", "time_point")
    reported = 0
    for event in time_points:
        match = re.search(r": (\d+) frames", event.message)
        assert match, event
        reported += int(match.group(1))
    end_s = outcome.events[-1].t_s
    with RunFile(outcome.result.path) as run_file:
        stored = 0
        for stack in image_stacks(run_file):
            if not stack.n_frames:
                continue
            frames, meta = read_stack(run_file, stack.position, stack.channel)
            assert frames.shape[0] == stack.n_frames and frames.max() > frames.min()
            assert np.all(meta["t_point_s"] <= end_s)
            stored += stack.n_frames
    assert time_points and stored == reported


# -- safety of pumps the host cannot reach ---------------------------------------------------


def test_a_new_era_in_safe_mode_stops_itself_when_its_link_dies(tmp_path: Path) -> None:
    """The abort cannot reach a pump whose port is gone; the New Era's watchdog stops it."""
    at_s = Case("drug", "disconnected", PERFUSING, Reaction.ABORT, "").fault_time_s()
    outcome = run_with_faults(
        "perfusion-check", faulty_config([("drug", "disconnected", at_s)]), tmp_path / "r.h5"
    )
    assert outcome.result.state is RunState.ABORTED
    pump = outcome.rig.emulator_of("drug")
    assert not pump_moving(outcome.rig, "drug") and pump.alarm == "T"  # T: safe-mode timeout
    # it stopped safe_timeout (10 s) after the last packet it got: the last poll before
    # the port went, at most one telemetry period earlier
    timeout_s = pump.safe_timeout_s
    perfused_ul = pump.infused_ul - 100.0  # after priming 100 uL
    stopped_s = 801.6 + perfused_ul / 2.0 * 60.0  # 2 uL/min from 801.6 s
    assert at_s - PERIOD_S + timeout_s - 1.0 <= stopped_s <= at_s + timeout_s + 1.0


# -- faults on the microscope (no serial link: SimMicroscope.FAULTS) -------------------------

#: The simulated microscope's faults, as the config error lists them.
SCOPE_FAULTS = "drop_frame, camera_lost, camera_ok"


@pytest.mark.slow  # an image-check run (SLOW_PROTOCOLS)
def test_a_dropped_camera_frame_is_retried(tmp_path: Path) -> None:
    """The first frame after the fault is lost: recorded, taken again at once, stored."""
    case = Case("microscope", "drop_frame", (300.0, 3300.0), Reaction.RETRY, r"^all steps done$")
    at_s = case.fault_time_s()
    outcome = run_with_faults(
        PROTOCOLS["image-check"],
        faulty_config([("microscope", "drop_frame", at_s)]),
        tmp_path / "r.h5",
    )
    result = outcome.result
    assert not outcome.engine_errors, outcome.engine_errors
    assert re.search(case.message, result.message), (result.state, result.message)
    check_run_file(outcome, at_s, "microscope", RunState.COMPLETED)
    check_delivered_as_planned(outcome)
    assert not [e for e in outcome.events if e.kind == "alarm"], result.alarms
    (lost,) = outcome.of("microscope", "frame_lost")
    match = re.fullmatch(
        r"frame lost \((chamber \w+) / brightfield\), retrying \(1 of 2\): "
        r"microscope-camera: no frame within ([\d.]+) s of the trigger \(lost\)",
        lost.message,
    )
    assert match, lost.message
    position, timeout_s = match.group(1), float(match.group(2))
    assert at_s < lost.t_s < at_s + 600.0 + 5.0  # the next time point (every 10 min)
    with RunFile(result.path) as run_file:
        _, meta = read_stack(run_file, position, "brightfield")
    # taken again at once: the position has a frame exposed when the loss was noticed
    assert np.min(np.abs(meta["t_s"] - lost.t_s)) < 1e-6, (lost.t_s, meta["t_s"])
    check_frames(outcome)
    points = outcome.of("imaging", "time_point")
    assert len(points) == 7
    # the time point with the loss took one frame timeout longer than the others (but the
    # first, which starts with the stage in place)
    elapsed_s = [float(e.message.rsplit(" in ", 1)[1].removesuffix(" s")) for e in points]
    lossy = next(i for i, e in enumerate(points) if e.t_s >= lost.t_s)
    normal_s = max(s for i, s in enumerate(elapsed_s[1:], start=1) if i != lossy)
    # (times are printed to 0.1 s, and the normal ones differ by up to 0.1 s)
    assert elapsed_s[lossy] - normal_s == pytest.approx(timeout_s, abs=0.25), elapsed_s
    FIGURES.append(
        f"{case.id} | {at_s:.1f} | {result.state.value} | {lost.t_s - at_s:.1f} | - | - | "
        f"{outcome.wall_s:.2f} | lost at {lost.t_s:.1f} s, retried after {timeout_s:g} s; "
        f"time point {elapsed_s[lossy]:.1f} s, others <= {normal_s:.1f} s"
    )


@pytest.mark.parametrize(
    ("kind", "problem"),
    [
        ("no_reply", r"no fault 'no_reply' \(a link fault: it has no serial link\)"),
        ("link_ok", r"no fault 'link_ok' \(a link fault: it has no serial link\)"),
        ("jam", r"no fault 'jam'"),
        ("snap", r"no fault 'snap'"),  # a method of the microscope, not a fault
    ],
    ids=["no_reply", "link_ok", "jam", "snap"],
)
def test_a_fault_on_the_microscope_is_one_config_line(kind: str, problem: str) -> None:
    config = faulty_config([("microscope", kind, 60.0)])
    with pytest.raises(ConfigError) as info:
        build_rig(config, clock=VirtualClock())
    line = str(info.value)
    assert re.fullmatch(
        rf"faulty-rig\.toml: fault\[1\]\.kind: microscope: the SimMicroscope emulator has "
        rf"{problem}; its faults: {SCOPE_FAULTS}",
        line,
    ), line


def test_a_fault_on_a_vendor_camera_is_refused_naming_the_device() -> None:
    """A vendor camera in place of the rendered one has no simulated faults."""
    text = REFERENCE.text.replace(
        "[devices.microscope]\n",
        '[devices.microscope]\ncamera = { driver = "basler", emulated = true }\n',
    )
    fault = '\n[[fault]]\ndevice = "microscope"\nkind = "drop_frame"\nat = "60 s"\n'
    with pytest.raises(ConfigError, match=r"^vendor\.toml: fault\[1\]\.device: microscope: "):
        build_rig(parse_config(text + fault, "vendor.toml"), clock=VirtualClock())


def test_the_rig_injects_microscope_faults() -> None:
    rig = build_rig(REFERENCE, clock=VirtualClock())
    scope = rig.emulator_of("microscope")
    rig.inject_fault("microscope", "drop_frame")
    assert [scope.frame_arrives() for _ in range(2)] == [False, True]
    rig.inject_fault("microscope", "camera_lost")
    assert not scope.frame_arrives() and not scope.frame_arrives()
    rig.inject_fault("microscope", "camera_ok")
    assert scope.frame_arrives()
    with pytest.raises(ValueError, match=r"^microscope: .* no fault 'garble'"):
        rig.inject_fault("microscope", "garble")


@pytest.mark.parametrize(("device", "kind"), [("outlet", "inject_error"), ("drug", "inject_alarm")])
def test_a_fault_that_needs_an_argument_is_refused_by_the_config(device: str, kind: str) -> None:
    with pytest.raises(ConfigError, match=rf"fault\[1\]\.kind: .*{kind}"):
        build_rig(faulty_config([(device, kind, 60.0)]), clock=VirtualClock())


def test_every_injectable_fault_is_in_the_matrix() -> None:
    """A fault method added to an emulator must get a row here (and in docs/faults.md).

    An emulator that lists its faults (``FAULTS``: the simulated microscope, whose other
    public methods are the renderer's) is checked on that list; the others on every public
    method.
    """
    plumbing = {"advance_to", "receive", "take_output", "step", "truth", "truth_units"}
    not_faults = {
        "clear_stall",
        "clear_jam",
        "load_syringe",
        "unclog",
        "rate_limits_ul_min",
        "camera_ok",
    }
    rig = build_rig(REFERENCE, clock=VirtualClock())
    emulators: dict[str, object] = {name: rig.emulator_of(name) for name in REFERENCE.devices}
    emulators["chip"] = rig.bench
    covered = {(c.device, c.kind) for c in CASES} | {
        ("outlet", "inject_error"),
        ("drug", "inject_alarm"),
        ("microscope", "drop_frame"),  # test_a_dropped_camera_frame_is_retried
    }
    missing = []
    for name, emulator in emulators.items():
        listed = getattr(emulator, "FAULTS", None)
        for attribute in dir(type(emulator)) if listed is None else listed:
            if attribute.startswith("_") or attribute in plumbing | not_faults:
                continue
            if isinstance(getattr(type(emulator), attribute), property):
                continue
            if callable(getattr(emulator, attribute)) and (name, attribute) not in covered:
                missing.append(f"{name}.{attribute}")
    assert not missing, f"faults not in the matrix: {missing}"
    assert {"drop_frame", "camera_lost"} <= set(rig.emulator_of("microscope").FAULTS)
