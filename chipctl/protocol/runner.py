"""Execute a protocol's steps as callbacks on the engine's scheduler.

Each step starts when the previous one has finished (or at once, after a pump step with
``wait = false``). A pump step sends the pump its rate and target volume and then checks
the pump's status when it should be done, and again until it has stopped by itself; a
stall or alarm during the step fails the run. All device I/O happens on the engine thread.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from chipctl.engine.scheduler import Scheduler
from chipctl.protocol.model import (
    ImageStep,
    Protocol,
    PumpStep,
    Step,
    StopStep,
    ValveStep,
    WaitStep,
)
from chipctl.session import Session
from drivers.errors import DeviceAlarm, TransportError
from drivers.roles import PumpDirection, PumpStatus, SyringePump

if TYPE_CHECKING:
    from chipctl.acquisition import Acquisition, TimePoint

__all__ = ["StepRunner"]

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


@dataclass
class _PumpWatch:
    """A pump step being waited for: which, since when, and from what volume."""

    index: int
    step: PumpStep
    pump: SyringePump
    started_s: float
    baseline_ul: float
    silent_since_s: float | None = None


def _moved_ul(status: PumpStatus, direction: PumpDirection) -> float:
    """Return the pump's volume counter in ``direction``."""
    return status.infused_ul if direction is PumpDirection.INFUSE else status.withdrawn_ul


class StepRunner:
    """Runs the steps of ``protocol`` one after the other on ``scheduler``.

    Image steps start a schedule of time points and the next step begins at once; the
    time points run alongside, one at a time (a time point that comes due while another
    is still imaging waits for it, and the delay is recorded). Each time point is driven
    as start + poll on the scheduler, so telemetry and other steps go on while the
    microscope moves. The protocol is done when the last step and every schedule are.

    Args:
        protocol: the protocol.
        session: the open session (devices, events).
        scheduler: the engine's scheduler.
        on_step: called with the index (0-based) of each step as it starts.
        on_done: called once, when the last step and every image schedule have finished.
        acquisition: takes the images (required if the protocol has image steps).
        fluidic_state: the fluidic quantities recorded with every frame, at a run time.
    """

    def __init__(
        self,
        protocol: Protocol,
        session: Session,
        scheduler: Scheduler,
        *,
        on_step: Callable[[int], None],
        on_done: Callable[[], None],
        acquisition: Acquisition | None = None,
        fluidic_state: Callable[[float], Mapping[str, float]] | None = None,
    ) -> None:
        """Prepare; :meth:`start` schedules the first step."""
        self.protocol = protocol
        self.session = session
        self.scheduler = scheduler
        self._on_step = on_step
        self._on_done = on_done
        self.acquisition = acquisition
        self._fluidic_state = fluidic_state or (lambda t_s: {})
        self.current_index = -1
        self._steps_done = False
        self._schedules_left = 0
        self._imaging = False
        self._due: deque[tuple[ImageStep, int, float]] = deque()
        self.frames_taken = 0

    def start(self) -> None:
        """Schedule the first step now."""
        self.scheduler.call_later(0.0, lambda: self._run(0), name="step 1")

    def _next(self, index: int) -> None:
        self.session.event("protocol", "step_completed", self.protocol.steps[index].info.label())
        if index + 1 < len(self.protocol.steps):
            self._run(index + 1)
        else:
            self._steps_done = True
            self._maybe_done()

    def _maybe_done(self) -> None:
        if self._steps_done and self._schedules_left == 0 and not self._imaging:
            self._on_done()

    def _run(self, index: int) -> None:
        step: Step = self.protocol.steps[index]
        self.current_index = index
        self._on_step(index)
        self.session.event("protocol", "step_started", step.info.label())
        match step:
            case PumpStep():
                self._pump_step(index, step)
            case WaitStep():
                self.scheduler.call_later(
                    step.duration_s, lambda: self._next(index), name=step.info.label()
                )
            case ValveStep():
                position = self.session.rig.valve_position(step.valve, step.position)
                self.session.rig.valves()[step.valve].select(position)
                label = f" ({step.position})" if isinstance(step.position, str) else ""
                self.session.event(step.valve, "command", f"select position {position}{label}")
                self._next(index)
            case StopStep():
                self.session.pump(step.pump).stop()
                self.session.event(step.pump, "command", "stop")
                self._next(index)
            case ImageStep():
                self._start_schedule(step)
                self._next(index)

    def _pump_step(self, index: int, step: PumpStep) -> None:
        pump = self.session.pump(step.pump)
        volume_ul = step.target_volume_ul
        baseline_ul = _moved_ul(pump.read_status(), step.direction)
        if step.direction is PumpDirection.INFUSE:
            pump.infuse(step.rate_ul_min, volume_ul)
        else:
            pump.withdraw(step.rate_ul_min, volume_ul)
        self.session.event(
            step.pump,
            "command",
            f"{step.direction.value} {volume_ul:g} uL at {step.rate_ul_min:g} uL/min",
        )
        if not step.wait:
            self._next(index)
            return
        watch = _PumpWatch(index, step, pump, self.scheduler.clock.now_s(), baseline_ul)
        self._check_pump_later(watch, step.expected_duration_s)

    def _check_pump_later(self, watch: _PumpWatch, delay_s: float) -> None:
        self.scheduler.call_later(
            delay_s, lambda: self._check_pump(watch), name=watch.step.info.label()
        )

    def _check_pump(self, watch: _PumpWatch) -> None:
        """Check a waited-for pump step: done, still running, short, alarmed or out of touch."""
        step, pump = watch.step, watch.pump
        now_s = self.scheduler.clock.now_s()
        try:
            status = pump.read_status()
        except TransportError as exc:
            if watch.silent_since_s is None:
                watch.silent_since_s = now_s
            silent_s = now_s - watch.silent_since_s
            if silent_s >= LINK_GRACE_S:
                raise TransportError(
                    pump.name, f"no contact for {silent_s:.0f} s during {step.info.label()}"
                ) from exc
            self.session.event(pump.name, "link_lost", f"{exc}; retrying")
            self._check_pump_later(watch, RECHECK_MAX_S)
            return
        watch.silent_since_s = None
        if status.stalled or status.alarm:
            alarm = status.alarm or "stall"
            raise DeviceAlarm(pump.name, f"{alarm} during {step.info.label()}", alarm=alarm)
        if status.running:
            overrun_s = now_s - watch.started_s - step.expected_duration_s
            self._check_pump_later(watch, min(max(overrun_s, RECHECK_MIN_S), RECHECK_MAX_S))
            return
        moved_ul = _moved_ul(status, step.direction) - watch.baseline_ul
        shortfall_ul = step.target_volume_ul - moved_ul
        if shortfall_ul > max(SHORTFALL_REL * step.target_volume_ul, SHORTFALL_UL):
            raise DeviceAlarm(
                pump.name,
                f"stopped after {moved_ul:.4g} of {step.target_volume_ul:.4g} uL "
                f"during {step.info.label()}",
                alarm="stopped_early",
            )
        self._next(watch.index)

    # -- imaging -------------------------------------------------------------------

    def _start_schedule(self, step: ImageStep) -> None:
        if self.acquisition is None:
            raise RuntimeError("an image step needs an acquisition (no microscope set up)")
        start_s = self.scheduler.clock.now_s()
        self._schedules_left += 1
        for number, offset_s in enumerate(step.times_s):
            due_s = start_s + offset_s
            self.scheduler.call_at(
                due_s,
                functools.partial(self._time_point_due, step, number, due_s),
                name=f"{step.info.label()} time point {number + 1}",
            )

    def _time_point_due(self, step: ImageStep, number: int, due_s: float) -> None:
        self._due.append((step, number, due_s))
        if not self._imaging:
            self._next_time_point()

    def _next_time_point(self) -> None:
        assert self.acquisition is not None
        if not self._due:
            self._imaging = False
            self._maybe_done()
            return
        step, number, due_s = self._due.popleft()
        self._imaging = True
        late_s = self.scheduler.clock.now_s() - due_s
        if late_s > 1.0:
            self.session.event(
                "imaging",
                "late",
                f"{step.info.label()} time point {number + 1} started {late_s:.0f} s late "
                "(the previous time point was still imaging)",
            )
        point = self.acquisition.start(
            self.session.t_s(),
            self._fluidic_state,
            positions=step.positions,
            channels=step.channels,
        )
        self._drive(step, number, point)

    def _drive(self, step: ImageStep, number: int, point: TimePoint) -> None:
        delay_s = point.step()
        if delay_s is not None:
            self.scheduler.call_later(
                delay_s, lambda: self._drive(step, number, point), name="imaging"
            )
            return
        summary = point.summary()
        self.frames_taken += summary.frames
        self.session.event(
            "imaging",
            "time_point",
            f"{step.info.label()} time point {number + 1}/{len(step.times_s)}: "
            f"{summary.frames} frames at {len(summary.positions)} positions in "
            f"{summary.elapsed_s:.1f} s",
        )
        if number + 1 == len(step.times_s):
            self._schedules_left -= 1
        self._next_time_point()
