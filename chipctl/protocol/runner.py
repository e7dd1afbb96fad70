"""Execute a compiled protocol's step tree as callbacks on the engine's scheduler.

The runner walks the tree with continuations: a sequence starts its next step when the
previous one calls back, a parallel step starts every branch and calls back when the last
one has, a repeat runs its body ``count`` times. Primitives:

- a pump step sends the pump its rate and target volume (the pump stops by itself even if
  the controller dies) and, if the protocol waits for it, checks the pump's status when it
  should be done and until it has stopped; a stall or alarm is the interlocks' business
  (the run engine decides), a pump that stopped short fails the run;
- waits are timers; a wait on a condition re-checks the signal every ``poll_s``;
- image steps start a schedule of time points that run alongside, one at a time, each
  driven as start + poll so interlocks keep being checked while the microscope moves;
- a prompt is answered by :meth:`StepRunner.confirm` (auto-confirmed on a simulated rig).

**Pause** (:meth:`StepRunner.pause`) happens at once and is safe at any moment: protocol
timers (waits, pump checks, time points not yet started) are frozen with their remaining
time, no new step starts, and under the ``stop_pumps`` policy every pump the protocol is
running is stopped with the volume it still owes remembered; :meth:`StepRunner.resume`
restarts those pumps for what they owe and thaws the timers. A time point already imaging
finishes. All device I/O happens on the engine thread.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from chipctl.engine.scheduler import Scheduler, Task
from chipctl.protocol.compile import CompiledProtocol
from chipctl.protocol.model import (
    ImageStep,
    ParallelStep,
    PausePolicy,
    PromptStep,
    PumpStep,
    RepeatStep,
    SequenceStep,
    Step,
    StepInfo,
    StopStep,
    ValveStep,
    WaitStep,
)
from chipctl.protocol.preflight import seconds_until_clock
from chipctl.session import Session
from drivers.errors import DeviceAlarm, DeviceError, ReplyError, TransportError
from drivers.roles import PumpDirection, PumpStatus, SyringePump

if TYPE_CHECKING:
    from chipctl.acquisition import Acquisition, TimePoint

__all__ = ["ActivePump", "StepRunner"]

#: Longest interval between status checks of a pump step that overran its expected end.
RECHECK_MAX_S = 10.0
#: Shortest interval between such checks.
RECHECK_MIN_S = 0.5
#: How short of its target volume a pump step may end and still count as done: the larger
#: of a fraction of the target (a Cavro moves in whole plunger increments) and a volume.
SHORTFALL_REL = 0.01
SHORTFALL_UL = 0.2
#: How long a pump step tolerates not hearing from its pump before the run fails. The pump
#: holds its own target volume and stops by itself, so a brief link loss is ridden out.
LINK_GRACE_S = 60.0

Done = Callable[[], None]


@dataclass
class ActivePump:
    """A pump movement the protocol started and that may still be running.

    ``baseline_ul`` and ``target_ul`` change when a pause stops the pump and a resume
    restarts it for what it still owes.
    """

    step: PumpStep
    pump: SyringePump
    baseline_ul: float
    target_ul: float
    started_s: float
    owed_ul: float = 0.0
    abandoned: str = ""
    silent_since_s: float | None = None

    @property
    def expected_s(self) -> float:
        """Return how long the present movement takes."""
        return self.target_ul / self.step.rate_ul_min * 60.0


def _moved_ul(status: PumpStatus, direction: PumpDirection) -> float:
    """Return the pump's volume counter in ``direction``."""
    return status.infused_ul if direction is PumpDirection.INFUSE else status.withdrawn_ul


@dataclass
class _Timer:
    due_s: float
    callback: Done
    name: str
    task: Task | None = None
    remaining_s: float = 0.0


@dataclass
class _Schedule:
    step: ImageStep
    taken: int = 0


@dataclass
class _Hold:
    """What the runner does while paused: continuations waiting for resume."""

    waiting: list[Done] = field(default_factory=list)


class StepRunner:
    """Runs a compiled protocol on ``scheduler``; see the module docstring.

    Args:
        compiled: the compiled protocol.
        session: the open session (devices, events).
        scheduler: the engine's scheduler.
        on_step: called with each primitive step's info as it starts.
        on_done: called once, when the last step and every image schedule have finished.
        on_abort: called with a reason when the protocol itself asks to abort (a condition
            wait's timeout, an unanswered prompt).
        on_prompt: called with a prompt's message when it waits for the operator, and with
            None when it is answered.
        on_pump_alarm: called when a waited-for pump step finds its pump alarmed, so the
            interlocks can act before the step decides.
        on_time_point: called with each imaging time point's summary when it is done.
        signal: returns a live signal's value (``"flow.flow_ul_min"``), None if unknown.
        acquisition: takes the images (required if the protocol has image steps).
        fluidic_state: the fluidic quantities recorded with every frame, at a run time.
        auto_confirm: answer prompts at once (simulated rigs).
        start_local: the run's local start time (for waits until a clock time).
        poll_s: how often a condition wait re-checks its signal.
    """

    def __init__(
        self,
        compiled: CompiledProtocol,
        session: Session,
        scheduler: Scheduler,
        *,
        on_step: Callable[[StepInfo], None],
        on_done: Done,
        on_abort: Callable[[str], None],
        on_prompt: Callable[[str | None], None] = lambda message: None,
        on_pump_alarm: Callable[[str, str], None] = lambda pump, alarm: None,
        on_time_point: Callable[[object], None] = lambda summary: None,
        signal: Callable[[str], float | None] = lambda name: None,
        acquisition: Acquisition | None = None,
        fluidic_state: Callable[[float], Mapping[str, float]] | None = None,
        auto_confirm: bool = False,
        start_local: dt.datetime | None = None,
        poll_s: float = 10.0,
    ) -> None:
        """Prepare; :meth:`start` schedules the first step."""
        self.compiled = compiled
        self.session = session
        self.scheduler = scheduler
        self._on_step = on_step
        self._on_done = on_done
        self._on_abort = on_abort
        self._on_prompt = on_prompt
        self._on_pump_alarm = on_pump_alarm
        self._on_time_point = on_time_point
        self._signal = signal
        self.acquisition = acquisition
        self._fluidic_state = fluidic_state or (lambda t_s: {})
        self.auto_confirm = auto_confirm
        self.start_local = start_local or dt.datetime.now().astimezone()
        self.poll_s = poll_s
        self.active: dict[str, ActivePump] = {}
        self.paused = False
        self._hold = _Hold()
        self._timers: dict[int, _Timer] = {}
        self._timer_ids = itertools.count()
        self._steps_done = False
        self._schedules_left = 0
        self._imaging = False
        self._due: deque[tuple[_Schedule, int, float]] = deque()
        self._prompt: Done | None = None
        self.frames_taken = 0

    # -- timers that a pause freezes --------------------------------------------------

    def _timer(self, delay_s: float, callback: Done, name: str) -> None:
        key = next(self._timer_ids)
        timer = _Timer(self.scheduler.clock.now_s() + max(delay_s, 0.0), callback, name)

        def fire() -> None:
            self._timers.pop(key, None)
            callback()

        timer.callback = fire
        self._timers[key] = timer
        if self.paused:
            timer.remaining_s = max(delay_s, 0.0)
        else:
            timer.task = self.scheduler.call_at(timer.due_s, fire, name=name)

    def _freeze_timers(self) -> None:
        now_s = self.scheduler.clock.now_s()
        for timer in self._timers.values():
            if timer.task is not None:
                timer.task.cancel()
                timer.task = None
                timer.remaining_s = max(timer.due_s - now_s, 0.0)

    def _thaw_timers(self) -> None:
        now_s = self.scheduler.clock.now_s()
        for timer in self._timers.values():
            if timer.task is None:
                timer.due_s = now_s + timer.remaining_s
                timer.task = self.scheduler.call_at(timer.due_s, timer.callback, name=timer.name)

    def _then(self, done: Done) -> None:
        """Continue with ``done`` now, or on resume if paused (the safe point)."""
        if self.paused:
            self._hold.waiting.append(done)
        else:
            done()

    # -- the tree -----------------------------------------------------------------------

    def start(self) -> None:
        """Schedule the first step now."""

        def finished() -> None:
            self._steps_done = True
            self._maybe_done()

        self.scheduler.call_later(
            0.0,
            lambda: self._then(lambda: self._sequence(self.compiled.steps, 0, finished)),
            name="protocol",
        )

    def _maybe_done(self) -> None:
        if self._steps_done and self._schedules_left == 0 and not self._imaging:
            self._on_done()

    def _sequence(self, steps: tuple[Step, ...], index: int, done: Done) -> None:
        if index >= len(steps):
            done()
            return
        self._exec(steps[index], lambda: self._then(lambda: self._sequence(steps, index + 1, done)))

    def _exec(self, step: Step, done: Done) -> None:
        match step:
            case SequenceStep():
                self.session.event("protocol", "step_started", step.info.label())

                def seq_done() -> None:
                    self.session.event("protocol", "step_completed", step.info.label())
                    done()

                self._sequence(step.steps, 0, seq_done)
                return
            case ParallelStep():
                self.session.event(
                    "protocol",
                    "step_started",
                    f"{step.info.label()}: {len(step.branches)} branches",
                )
                left = [len(step.branches)]

                def branch_done() -> None:
                    left[0] -= 1
                    if left[0] == 0:
                        self.session.event("protocol", "step_completed", step.info.label())
                        done()

                for branch in step.branches:
                    self._sequence(branch.steps, 0, branch_done)
                return
            case RepeatStep():
                self._repeat(step, 1, done)
                return
            case _:
                pass
        self._on_step(step.info)
        self.session.event("protocol", "step_started", step.info.label())

        def completed() -> None:
            self.session.event("protocol", "step_completed", step.info.label())
            done()

        match step:
            case PumpStep():
                self._pump_step(step, completed)
            case WaitStep():
                self._wait_step(step, completed)
            case ValveStep():
                self._valve_step(step, completed)
            case StopStep():
                names = [step.pump] if step.pump is not None else self.session.rig.pumps()
                for name in names:
                    self.session.pump(name).stop()
                    self.active.pop(name, None)
                    self.session.event(name, "command", "stop")
                completed()
            case ImageStep():
                self._start_schedule(step)
                completed()
            case PromptStep():
                self._prompt_step(step, completed)
            case _:
                raise AssertionError(f"uncompiled step {step!r}")

    def _valve_step(self, step: ValveStep, done: Done, first_s: float | None = None) -> None:
        position = self.session.rig.valve_position(step.valve, step.position)
        first_s = self.scheduler.clock.now_s() if first_s is None else first_s
        try:
            self.session.rig.valves()[step.valve].select(position)
        except (TransportError, ReplyError) as exc:  # lost, or garbled on the way back
            retry = self._retry_on_link_loss(
                f"turn {step.valve} ({step.info.label()})",
                step.valve,
                first_s,
                lambda: self._valve_step(step, done, first_s),
            )
            retry(exc)
            return
        self.session.commanded(step.valve, position)
        label = f" ({step.position})" if isinstance(step.position, str) else ""
        self.session.event(step.valve, "command", f"select position {position}{label}")
        done()

    def _repeat(self, step: RepeatStep, number: int, done: Done) -> None:
        self.session.event(
            "protocol", "step_started", f"{step.info.label()}: round {number}/{step.count}"
        )

        def round_done() -> None:
            if number < step.count:
                self._then(lambda: self._repeat(step, number + 1, done))
            else:
                self.session.event("protocol", "step_completed", step.info.label())
                done()

        self._sequence(step.body.steps, 0, round_done)

    # -- pumps ----------------------------------------------------------------------------

    def _start_pump(self, active: ActivePump) -> None:
        pump, step = active.pump, active.step
        if step.direction is PumpDirection.INFUSE:
            pump.infuse(step.rate_ul_min, active.target_ul)
        else:
            pump.withdraw(step.rate_ul_min, active.target_ul)
        self.session.event(
            step.pump,
            "command",
            f"{step.direction.value} {active.target_ul:.6g} uL at {step.rate_ul_min:g} uL/min",
        )

    def _retry_on_link_loss(
        self, what: str, device: str, first_s: float, attempt: Callable[[], None]
    ) -> Callable[[DeviceError], None]:
        """Return a handler that retries ``attempt`` while the link is lost, up to the grace.

        A garbled reply (:class:`~drivers.errors.ReplyError`) counts as a lost link, as in
        the session's polls: the command is sent again (the start of a pump step re-reads
        the pump's counter first).
        """

        def handle(exc: DeviceError) -> None:
            silent_s = self.scheduler.clock.now_s() - first_s
            if silent_s >= LINK_GRACE_S:
                raise TransportError(device, f"no contact for {silent_s:.0f} s: {what}") from exc
            self.session.event(device, "link_lost", f"{exc}; retrying: {what}")
            self._timer(RECHECK_MAX_S, attempt, what)

        return handle

    def _pump_step(self, step: PumpStep, done: Done, first_s: float | None = None) -> None:
        pump = self.session.pump(step.pump)
        first_s = self.scheduler.clock.now_s() if first_s is None else first_s
        try:
            baseline_ul = _moved_ul(pump.read_status(), step.direction)
            active = ActivePump(
                step, pump, baseline_ul, step.target_volume_ul, self.scheduler.clock.now_s()
            )
            self._start_pump(active)
        except (TransportError, ReplyError) as exc:
            # the pump keeps its state; a brief link loss is ridden out like a step's checks
            retry = self._retry_on_link_loss(
                f"start {step.info.label()}",
                step.pump,
                first_s,
                lambda: self._pump_step(step, done, first_s),
            )
            retry(exc)
            return
        self.active[step.pump] = active
        if not step.wait:
            done()
            return
        self._timer(active.expected_s, lambda: self._check_pump(active, done), step.info.label())

    def _check_pump(self, active: ActivePump, done: Done) -> None:
        """Check a waited-for pump step: done, still running, short or out of touch."""
        step, pump = active.step, active.pump
        if active.abandoned:
            self.session.event(
                "protocol", "step_ended_early", f"{step.info.label()}: {active.abandoned}"
            )
            done()
            return
        now_s = self.scheduler.clock.now_s()
        try:
            status = pump.read_status()
        except TransportError as exc:
            if active.silent_since_s is None:
                active.silent_since_s = now_s
            silent_s = now_s - active.silent_since_s
            if silent_s >= LINK_GRACE_S:
                raise TransportError(
                    pump.name, f"no contact for {silent_s:.0f} s during {step.info.label()}"
                ) from exc
            self.session.event(pump.name, "link_lost", f"{exc}; retrying")
            self._timer(RECHECK_MAX_S, lambda: self._check_pump(active, done), step.info.label())
            return
        active.silent_since_s = None
        if status.running:
            overrun_s = now_s - active.started_s - active.expected_s
            delay_s = min(max(overrun_s, RECHECK_MIN_S), RECHECK_MAX_S)
            self._timer(delay_s, lambda: self._check_pump(active, done), step.info.label())
            return
        if status.stalled or status.alarm:
            # the interlocks decide what an alarm means (stop this pump, pause, abort);
            # if they let the protocol go on, a step that cannot complete fails the run
            alarm = status.alarm or "stall"
            self._on_pump_alarm(pump.name, alarm)
            if active.abandoned:
                self._check_pump(active, done)
                return
            if self.paused:
                self._timer(
                    RECHECK_MAX_S, lambda: self._check_pump(active, done), step.info.label()
                )
                return
            raise DeviceAlarm(pump.name, f"{alarm} during {step.info.label()}", alarm=alarm)
        moved_ul = _moved_ul(status, step.direction) - active.baseline_ul
        shortfall_ul = active.target_ul - moved_ul
        if shortfall_ul > max(SHORTFALL_REL * step.target_volume_ul, SHORTFALL_UL):
            raise DeviceAlarm(
                pump.name,
                f"stopped after {moved_ul:.4g} of {active.target_ul:.4g} uL "
                f"during {step.info.label()}",
                alarm="stopped_early",
            )
        if self.active.get(step.pump) is active:
            del self.active[step.pump]
        done()

    def stopped_short(self, last_values: Mapping[str, Mapping[str, float]]) -> list[str]:
        """Return the pumps the protocol is running that stopped before their target.

        Checked at every telemetry poll, so a pump that stops short (end of travel, power
        cut, a stall it cleared itself) is noticed within one poll, also in a step started
        with ``wait = false``, which nothing else waits for. A background pump that reached
        its target is forgotten here.
        """
        short: list[str] = []
        for name, active in list(self.active.items()):
            values = last_values.get(name)
            if values is None or values.get("running", 1.0) or active.abandoned:
                continue
            key = "infused_ul" if active.step.direction is PumpDirection.INFUSE else "withdrawn_ul"
            moved_ul = values.get(key, 0.0) - active.baseline_ul
            owed_ul = active.target_ul - moved_ul
            if owed_ul > max(SHORTFALL_REL * active.target_ul, SHORTFALL_UL):
                if self.scheduler.clock.now_s() - active.started_s > RECHECK_MAX_S:
                    short.append(name)
            elif not active.step.wait:
                del self.active[name]
        return short

    def abandon_pump(self, name: str, reason: str) -> None:
        """Stop pump ``name`` for good (an interlock's ``stop_pump``); its step ends early."""
        active = self.active.pop(name, None)
        self.session.pump(name).stop()
        self.session.event(name, "command", f"stop ({reason})")
        if active is not None:
            active.abandoned = reason
            if not active.step.wait:  # nothing waits for it: say so now
                self.session.event(
                    "protocol", "step_ended_early", f"{active.step.info.label()}: {reason}"
                )

    # -- pause and resume ------------------------------------------------------------------

    def pause(self, policy: PausePolicy) -> None:
        """Freeze the protocol at once; stop its pumps under ``stop_pumps`` (engine thread)."""
        if self.paused:
            return
        self.paused = True
        self._freeze_timers()
        if policy is not PausePolicy.STOP_PUMPS:
            return
        for name, active in list(self.active.items()):
            status = active.pump.read_status()
            moved_ul = _moved_ul(status, active.step.direction) - active.baseline_ul
            owed_ul = active.target_ul - moved_ul
            if status.running:
                active.pump.stop()
                self.session.event(name, "command", f"stop (paused; {owed_ul:.4g} uL still owed)")
            if owed_ul > max(SHORTFALL_REL * active.target_ul, SHORTFALL_UL):
                # also a pump the fault already stopped (a stall): resume restarts it
                active.owed_ul = owed_ul
            else:
                active.owed_ul = 0.0
                if not active.step.wait:
                    del self.active[name]

    def resume(self) -> None:
        """Restart paused pumps for what they owe, thaw timers, continue (engine thread)."""
        if not self.paused:
            return
        now_s = self.scheduler.clock.now_s()
        for active in self.active.values():
            if active.owed_ul > 0:
                status = active.pump.read_status()
                active.baseline_ul = _moved_ul(status, active.step.direction)
                active.target_ul = active.owed_ul
                active.started_s = now_s
                active.owed_ul = 0.0
                self._start_pump(active)
        self.paused = False
        self._thaw_timers()
        waiting, self._hold.waiting = self._hold.waiting, []
        for continuation in waiting:
            continuation()

    # -- waits and prompts ---------------------------------------------------------------

    def _wait_step(self, step: WaitStep, done: Done) -> None:
        if step.duration_s is not None:
            self._timer(step.duration_s, done, step.info.label())
            return
        if step.until_clock is not None:
            hour, minute = step.until_clock
            wait_s = seconds_until_clock(self.start_local, self.session.t_s(), hour, minute)
            self._timer(wait_s, done, step.info.label())
            return
        condition = step.condition
        assert condition is not None
        started_s = self.scheduler.clock.now_s()
        held_since: list[float | None] = [None]

        def check() -> None:
            now_s = self.scheduler.clock.now_s()
            value = self._signal(condition.signal)
            if value is not None and condition.holds(value):
                if held_since[0] is None:
                    held_since[0] = now_s
                if now_s - (held_since[0] or now_s) >= condition.hold_s:
                    self.session.event(
                        "protocol", "condition_met", f"{step.info.label()}: {condition.describe()}"
                    )
                    done()
                    return
            else:
                held_since[0] = None
            if step.timeout_s is not None and now_s - started_s >= step.timeout_s:
                message = (
                    f"{step.info.label()}: {condition.describe()} not met in {step.timeout_s:g} s"
                )
                if step.on_timeout == "abort":
                    self._on_abort(message)
                    return
                self.session.event("protocol", "condition_timeout", message + "; going on")
                done()
                return
            delay_s = self.poll_s
            since = held_since[0]
            if since is not None:
                delay_s = min(delay_s, max(condition.hold_s - (now_s - since), 0.0))
            if step.timeout_s is not None:
                delay_s = min(delay_s, max(started_s + step.timeout_s - now_s, 0.0))
            self._timer(delay_s, check, step.info.label())

        check()

    def _prompt_step(self, step: PromptStep, done: Done) -> None:
        if self.auto_confirm:
            self.session.event(
                "protocol", "prompt", f"{step.message} (auto-confirmed: simulated rig)"
            )
            done()
            return
        self.session.event("protocol", "prompt", f"{step.message} (waiting for the operator)")
        answered = [False]

        def answer() -> None:
            if answered[0]:
                return
            answered[0] = True
            self._prompt = None
            self._on_prompt(None)
            self.session.event("protocol", "prompt_confirmed", step.message)
            done()

        self._prompt = answer
        self._on_prompt(step.message)
        if step.timeout_s is not None:

            def expire() -> None:
                if not answered[0]:
                    answered[0] = True
                    self._prompt = None
                    self._on_abort(f"{step.info.label()}: nobody confirmed in {step.timeout_s:g} s")

            self._timer(step.timeout_s, expire, step.info.label())

    def confirm(self) -> bool:
        """Answer the pending prompt (engine thread); False if none is pending."""
        if self._prompt is None:
            return False
        self._prompt()
        return True

    # -- imaging -----------------------------------------------------------------------

    def _start_schedule(self, step: ImageStep) -> None:
        if self.acquisition is None:
            raise RuntimeError("an image step needs an acquisition (no microscope set up)")
        schedule = _Schedule(step)
        self._schedules_left += 1
        for number, offset_s in enumerate(step.times_s):
            due_s = self.scheduler.clock.now_s() + offset_s
            self._timer(
                offset_s,
                functools.partial(self._time_point_due, schedule, number, due_s),
                f"{step.info.label()} time point {number + 1}",
            )

    def _time_point_due(self, schedule: _Schedule, number: int, due_s: float) -> None:
        self._due.append((schedule, number, due_s))
        if not self._imaging:
            self._next_time_point()

    def _next_time_point(self) -> None:
        assert self.acquisition is not None
        if not self._due:
            self._imaging = False
            self._maybe_done()
            return
        schedule, number, due_s = self._due.popleft()
        step = schedule.step
        self._imaging = True
        late_s = self.scheduler.clock.now_s() - due_s
        if late_s > 1.0:
            self.session.event(
                "imaging",
                "late",
                f"{step.info.label()} time point {number + 1} started {late_s:.0f} s late "
                "(the previous time point was still imaging, or the run was paused)",
            )
        point = self.acquisition.start(
            self.session.t_s(),
            self._fluidic_state,
            positions=step.positions,
            channels=step.channels,
        )
        self._drive(schedule, number, point)

    def _drive(self, schedule: _Schedule, number: int, point: TimePoint) -> None:
        delay_s = point.step()
        if delay_s is not None:
            self.scheduler.call_later(
                delay_s, lambda: self._drive(schedule, number, point), name="imaging"
            )
            return
        step = schedule.step
        summary = point.summary()
        self.frames_taken += summary.frames
        self.session.event(
            "imaging",
            "time_point",
            f"{step.info.label()} time point {number + 1}/{len(step.times_s)}: "
            f"{summary.frames} frames at {len(summary.positions)} positions in "
            f"{summary.elapsed_s:.1f} s",
        )
        self._on_time_point(summary)
        schedule.taken += 1
        if schedule.taken == len(step.times_s):
            self._schedules_left -= 1
        self._next_time_point()
