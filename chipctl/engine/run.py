"""One run of a protocol on a rig: the engine thread, its state machine and its safety net.

Thread topology (DESIGN.md, "Concurrency"):

- the **engine thread** (started by :meth:`Run.start`, or the caller's thread with
  :meth:`Run.run`) owns the session and every device: it runs the scheduler, which
  executes protocol steps, telemetry polls, interlock checks and heartbeats in time order
  on the clock;
- the **run-file writer thread** (inside :class:`chipctl.runfile.RunFileWriter`) owns the
  HDF5 file and is fed through a queue by the recorder calls;
- the **analysis worker** (:class:`chipctl.analysis.live.LiveAnalysis`, when the protocol
  images) segments frames off the engine thread;
- **any other thread** (the CLI's main thread, the GUI) reads :meth:`Run.status`
  snapshots and calls :meth:`Run.pause`, :meth:`Run.resume`, :meth:`Run.abort`,
  :meth:`Run.confirm` and :meth:`Run.call_manual`: each is queued to the engine thread
  (:meth:`Scheduler.call_soon_threadsafe`), so devices are only ever touched there.
  Listeners (:meth:`Run.add_listener`) are called on the engine or analysis thread and
  must return at once.

States::

    idle -> running <-> paused
    running | paused -> aborting -> aborted     (operator, an interlock, the protocol)
    running | paused -> completed | failed

Every transition is an event in the run file (source ``run``). Whatever ends the run (the
last step, an abort, a device fault, a full disk, an internal error), the engine thread
stops every pump and turns every valve that has a ``waste`` port to it before it records
the final state.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, NoReturn, TypeVar

import numpy as np

from chipctl.engine.listeners import ListenerSet, TeeRecorder
from chipctl.engine.scheduler import Scheduler
from chipctl.errors import ChipctlError, InputError, RunStateError
from chipctl.protocol.compile import CompiledProtocol, compile_protocol
from chipctl.protocol.interlocks import InterlockMonitor, Trip, effective_interlocks
from chipctl.protocol.model import ImageStep, Protocol, StepInfo, walk
from chipctl.protocol.preflight import Preflight, preflight
from chipctl.protocol.runner import StepRunner
from chipctl.rig import Rig
from chipctl.session import Recorder, Session
from drivers.errors import DeviceAlarm, DeviceError

__all__ = ["Run", "RunState", "RunStatus"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Free disk space below which the run warns, and below which it pauses.
DISK_WARN_BYTES = 1_000_000_000
DISK_PAUSE_BYTES = 200_000_000
#: How long after an abort request the pumps must be stopped (simulated seconds; tested).
ABORT_DEADLINE_S = 1.0


class RunState(Enum):
    """Where a run is in its life."""

    IDLE = "idle"
    RUNNING = "running"
    PAUSED = "paused"
    ABORTING = "aborting"
    COMPLETED = "completed"
    ABORTED = "aborted"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        """Tell whether the run has ended."""
        return self in (RunState.COMPLETED, RunState.ABORTED, RunState.FAILED)


@dataclass(frozen=True, slots=True)
class RunStatus:
    """A snapshot of a run, safe to read from any thread.

    Args:
        state: the run's state.
        step_index: number of primitive steps started so far, minus one (-1 before the first).
        step_label: ``"step 3 ('dose')"`` of the latest primitive step started.
        n_steps: number of primitive steps in the protocol (repeats counted once).
        t_s: time since the run started (run clock).
        expected_duration_s: the preflight's predicted duration.
        message: why the run ended, or why it is paused.
        step_name: the latest step's name (empty if it has none).
        pending_prompt: the operator prompt waiting for :meth:`Run.confirm`, if any.
        paused_s: total time spent paused so far.
        alarms: the alarm events so far (``"source: message"``), newest last.
    """

    state: RunState
    step_index: int
    step_label: str
    n_steps: int
    t_s: float
    expected_duration_s: float
    message: str = ""
    step_name: str = ""
    pending_prompt: str | None = None
    paused_s: float = 0.0
    alarms: tuple[str, ...] = ()

    @property
    def remaining_s(self) -> float:
        """Return the predicted time left (pauses extend it)."""
        return max(self.expected_duration_s + self.paused_s - self.t_s, 0.0)


class _RunAbort(Exception):
    """Raised inside the engine to end the run as aborted (not failed)."""


class Run:
    """Runs ``protocol`` on ``rig``, recording into ``recorder``.

    Args:
        protocol: a validated protocol.
        rig: the built (not yet connected) rig.
        recorder: the run file writer (or a memory recorder).
        out_dir: where the run file goes (the preflight checks the free space there).
        start_local: the local wall time the run starts (waits until a clock time).
        live_analysis: analyse frames as they arrive (when the protocol images).
        auto_confirm: answer operator prompts at once (default: on a simulated rig).

    Raises:
        ProtocolError: from the constructor, if the protocol fails compile or preflight.
    """

    def __init__(
        self,
        protocol: Protocol,
        rig: Rig,
        recorder: Recorder,
        *,
        out_dir: Any = None,
        start_local: dt.datetime | None = None,
        live_analysis: bool = True,
        auto_confirm: bool | None = None,
    ) -> None:
        """Compile and preflight the protocol on the rig; nothing moves yet."""
        self.protocol = protocol
        self.rig = rig
        self.start_local = start_local or dt.datetime.now().astimezone()
        self.auto_confirm = rig.simulated if auto_confirm is None else auto_confirm
        self.compiled: CompiledProtocol = compile_protocol(protocol, rig)
        self.preflight: Preflight = preflight(
            protocol, rig, out_dir=out_dir, start=self.start_local, compiled=self.compiled
        )
        self.interlocks = effective_interlocks(protocol, rig)
        self.listeners = ListenerSet()
        self.recorder = TeeRecorder(recorder, self.listeners)
        self.session = Session(rig, self.recorder)
        self.session.on_pump_alarm = self._pump_alarm
        self.acquisition = self._imaging(protocol, rig, recorder)
        self.analysis: Any = None
        if self.acquisition is not None and live_analysis:
            self.analysis = self._live_analysis(recorder)
        self.scheduler = Scheduler(rig.clock)
        self.monitor: InterlockMonitor | None = None
        self.runner: StepRunner | None = None
        self._lock = threading.Lock()
        self._state = RunState.IDLE
        self._message = ""
        self._step_count = -1
        self._step_info: StepInfo | None = None
        self._prompt: str | None = None
        self._paused_at_s: float | None = None
        self._paused_total_s = 0.0
        self._alarms: list[str] = []
        self._abort_reason: str | None = None
        self._pauses = 0
        self._disk_alarm = 0
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self.n_steps = sum(1 for _ in walk(self.compiled.steps))
        self.listeners.add_event_hook(self._note_alarm)

    def _note_alarm(self, t_s: float, source: str, kind: str, message: str) -> None:
        if kind == "alarm":
            with self._lock:
                self._alarms.append(f"{source}: {message}")

    # -- imaging -------------------------------------------------------------------

    def _imaging(self, protocol: Protocol, rig: Rig, recorder: Recorder) -> Any:
        """Plan the run's images and declare their stacks in the run file (before it opens)."""
        steps = [s for s in walk(self.compiled.steps) if isinstance(s, ImageStep)]
        if not steps:
            return None
        from chipctl.acquisition import Acquisition, ImagingPlan

        (device,) = rig.microscopes().values()  # preflight checked there is exactly one
        scope = device.microscope
        wanted_positions = {p for s in steps for p in (s.positions or scope.position_names())}
        wanted_channels = {c for s in steps for c in s.channels}
        if not hasattr(recorder, "declare_frames"):
            raise InputError("image steps need a run file to store their frames")
        plan = ImagingPlan(
            positions=tuple(p for p in scope.position_names() if p in wanted_positions),
            channels=tuple(c for c in scope.channel_names() if c in wanted_channels),
            frame_shape=device.setup.frame_shape,
            dtype=np.dtype(np.uint16),
            fluidic_columns=self._fluidic_columns(),
            pixel_size_um=device.setup.pixel_size_um,
            objective=device.setup.objective,
            magnification=device.setup.magnification,
            compression=device.setup.compression,
        )
        acquisition = Acquisition(
            scope,
            plan,
            recorder,  # type: ignore[arg-type]
            clock=rig.clock,
            on_event=self.recorder.event,  # lost frames reach the GUI too
        )
        acquisition.declare()
        acquisition.frame_listeners.append(self.listeners.frame)
        return acquisition

    def _live_analysis(self, recorder: Recorder) -> Any:
        """Declare the live analysis tables and hook the analysis to the frames."""
        try:
            from chipctl.analysis.live import LiveAnalysis
        except ImportError:  # pragma: no cover - the analysis package is part of chipctl
            return None
        plan = self.acquisition.plan

        def on_result(result: Any) -> None:
            row = result.chamber
            values = {k.split(".", 1)[1]: v for k, v in result.values().items()}
            self.listeners.analysis(row.position, row.t_s, values)

        analysis = LiveAnalysis(
            recorder,  # type: ignore[arg-type]  # the run file writer (checked above)
            plan.positions,
            plan.channels,
            on_result=on_result,
            # on the virtual clock nothing is real-time: wait for the analysis rather than
            # skip frames, so the same seed gives the same /analysis tables
            wait_when_full=self.rig.clock.is_virtual,
        )
        analysis.declare()
        self.acquisition.frame_listeners.append(analysis.on_frame)
        return analysis

    def _fluidic_columns(self) -> dict[str, str]:
        """Name the fluidic quantities stored with every frame: pump and flow readings.

        On a simulated rig the concentration each chamber is receiving is added from the
        simulator's ground truth (``sim_`` columns: no instrument measures it).
        """
        columns: dict[str, str] = {}
        for name, role in self.rig.roles.items():
            if role == "pump":
                columns[f"{name}_rate_ul_min"] = "uL/min"
                columns[f"{name}_delivered_ul"] = "uL"
            elif role == "flow":
                columns[f"{name}_flow_ul_min"] = "uL/min"
        if self.rig.bench is not None:
            for quantity, units in self.rig.bench.truth_units().items():
                if quantity.startswith("c_"):
                    columns[f"sim_{quantity}"] = units
        return columns

    def _fluidic_state(self, t_s: float) -> dict[str, float]:
        """Return the fluidic quantities now (latest telemetry; truth read afresh)."""
        state: dict[str, float] = {}
        for name, values in self.session.last_values.items():
            role = self.rig.roles.get(name)
            if role == "pump":
                state[f"{name}_rate_ul_min"] = values["rate_ul_min"]
                state[f"{name}_delivered_ul"] = values["delivered_ul"]
            elif role == "flow":
                state[f"{name}_flow_ul_min"] = values["flow_ul_min"]
        if self.rig.bench is not None:
            self.rig.world.advance_to(self.rig.clock.now_s())
            for quantity, value in self.rig.bench.truth().items():
                if quantity.startswith("c_"):
                    state[f"sim_{quantity}"] = value
        return state

    # -- signals for condition waits ---------------------------------------------------

    def signal(self, name: str) -> float | None:
        """Return the latest value of a signal (``"flow.flow_ul_min"``), None if unknown."""
        if name.startswith("analysis."):
            if self.analysis is None:
                return None
            latest: Mapping[str, float] = self.analysis.latest()
            return latest.get(name.removeprefix("analysis."))
        device, _, quantity = name.partition(".")
        values = self.session.last_values.get(device)
        if values is None:
            return None
        return values.get(quantity)

    # -- thread-safe surface ---------------------------------------------------------

    def status(self) -> RunStatus:
        """Return a consistent snapshot of the run."""
        with self._lock:
            info = self._step_info
            t_s = self.session.t_s() if self._state is not RunState.IDLE else 0.0
            paused_s = self._paused_total_s
            if self._paused_at_s is not None:
                paused_s += t_s - self._paused_at_s
            return RunStatus(
                self._state,
                self._step_count,
                info.label() if info else "",
                self.n_steps,
                t_s,
                self.preflight.duration_s,
                self._message,
                (info.name or "") if info else "",
                self._prompt,
                paused_s,
                tuple(self._alarms),
            )

    def add_listener(self, listener: object) -> None:
        """Add a listener (see :mod:`chipctl.engine.listeners` for its methods).

        Its methods are called on the engine or analysis thread and must return at once.
        """
        self.listeners.add(listener)

    def pause(self, reason: str = "operator") -> None:
        """Ask the run to pause at once (any thread); see the protocol's pause policy."""
        self.scheduler.call_soon_threadsafe(lambda: self._pause(reason))

    def resume(self) -> None:
        """Ask a paused run to go on (any thread)."""
        self.scheduler.call_soon_threadsafe(self._resume)

    def abort(self, reason: str = "operator abort") -> None:
        """Ask the run to stop now; pumps are stopped by the engine thread (any thread)."""
        with self._lock:
            if self._abort_reason is None:
                self._abort_reason = reason
            if self._state in (RunState.RUNNING, RunState.PAUSED):
                self._state = RunState.ABORTING
        self.scheduler.request_stop()

    def confirm(self) -> None:
        """Answer the pending operator prompt (any thread)."""

        def answer() -> None:
            if self.runner is not None and self.runner.confirm():
                with self._lock:
                    self._prompt = None

        self.scheduler.call_soon_threadsafe(answer)

    def call_manual(self, fn: Callable[[Session], T]) -> concurrent.futures.Future[T]:
        """Run ``fn(session)`` on the engine thread while the run is paused (any thread).

        Raises:
            RunStateError: the run is not paused (manual control is locked while a
                protocol runs).
        """
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        if self.status().state is not RunState.PAUSED:
            raise RunStateError(
                f"manual control is only allowed while the run is paused "
                f"(it is {self.status().state.value})"
            )

        def call() -> None:
            if self._state is not RunState.PAUSED:
                future.set_exception(RunStateError("the run is no longer paused"))
                return
            try:
                result = fn(self.session)
            except BaseException as exc:  # handed to the caller, never swallowed
                future.set_exception(exc)
                return
            self.session.event("operator", "manual", getattr(fn, "__name__", "manual action"))
            future.set_result(result)

        self.scheduler.call_soon_threadsafe(call)
        return future

    def join(self, timeout_s: float | None = None) -> None:
        """Wait for the engine thread started by :meth:`start` (no-op if not started)."""
        if self._thread is not None:
            self._thread.join(timeout_s)

    def start(self) -> threading.Thread:
        """Run on a new engine thread; returns it (``join()`` to wait)."""
        thread = threading.Thread(target=self.run, name="chipctl-engine", daemon=True)
        self._thread = thread
        thread.start()
        return thread

    # -- engine thread ---------------------------------------------------------------

    def _set_state(self, state: RunState, message: str = "") -> None:
        with self._lock:
            old = self._state
            self._state = state
            self._message = message
            if state is RunState.PAUSED and old is not RunState.PAUSED:
                self._paused_at_s = self.session.t_s()
            elif old is RunState.PAUSED and state is not RunState.PAUSED:
                if self._paused_at_s is not None:
                    self._paused_total_s += self.session.t_s() - self._paused_at_s
                self._paused_at_s = None
        if old is not state:
            self.session.event("run", state.value, message or f"{old.value} -> {state.value}")
        self.listeners.state(self.status())

    def _on_step(self, info: StepInfo) -> None:
        with self._lock:
            self._step_count += 1
            self._step_info = info

    def _on_prompt(self, message: str | None) -> None:
        with self._lock:
            self._prompt = message
        self.listeners.state(self.status())

    def _pause(self, reason: str) -> None:
        if self._state is not RunState.RUNNING or self.runner is None:
            return
        self.runner.pause(self.protocol.pause_policy)
        policy = self.protocol.pause_policy.value
        self._set_state(RunState.PAUSED, f"{reason} (pause policy: {policy})")
        self._pauses += 1
        number = self._pauses
        limit_s = self.protocol.max_pause_s

        def too_long() -> None:
            if self._state is RunState.PAUSED and self._pauses == number:
                self._protocol_abort(f"paused for longer than {limit_s:g} s ({reason})")

        self.scheduler.call_later(limit_s, too_long, name="pause limit")

    def _resume(self) -> None:
        if self._state is not RunState.PAUSED or self.runner is None:
            return
        self._set_state(RunState.RUNNING, "resumed")
        self.runner.resume()

    def _protocol_abort(self, reason: str) -> NoReturn:
        """The protocol or an interlock ends the run as aborted."""
        raise _RunAbort(reason)

    def _act(self, trip: Trip) -> None:
        """Carry out an interlock trip's action (engine thread)."""
        reason = f"interlock {trip.spec.kind} ({trip.device}): {trip.message}"
        match trip.spec.action:
            case "warn":
                pass
            case "pause":
                self._pause(reason)
            case "stop_pump":
                pump = trip.spec.scope or trip.device
                if pump not in self.rig.pumps() or self.runner is None:
                    self._protocol_abort(f"{reason} (no pump {pump!r} to stop)")
                if pump in self.session.lost_since:
                    # a pump that does not answer cannot be stopped alone: end the run now,
                    # so the other pumps stop at once (the lost one is tried last)
                    self._protocol_abort(f"{reason} ({pump} does not answer: aborting)")
                try:
                    self.runner.abandon_pump(pump, reason)
                except DeviceError as exc:
                    self._protocol_abort(f"{reason} (could not stop {pump}: {exc})")
            case "abort":
                self._protocol_abort(reason)
            case _:
                raise AssertionError(trip.spec.action)

    def _pump_alarm(self, pump: str, alarm: str) -> None:
        """A pump alarm: the interlocks act; without one covering it the run fails."""
        if self.monitor is not None and self.monitor.pump_alarm(pump, alarm):
            return
        raise DeviceAlarm(pump, f"pump alarm during the run: {alarm}", alarm=alarm)

    def _time_point_done(self, summary: object) -> None:
        """Let the live analysis finish the time point now (a wait on it need not wait)."""
        if self.analysis is not None:
            self.analysis.end_time_point()

    def _poll(self) -> None:
        self.session.poll()
        if self.session.recorder_error is not None:
            raise self.session.recorder_error  # a full disk: stop safely, say why
        self._check_disk()
        if self.runner is not None and not self.runner.paused:
            for pump in self.runner.stopped_short(self.session.last_values):
                self._pump_alarm(pump, "stopped_short")
        if self.monitor is not None:
            self.monitor.check()

    def _check_disk(self) -> None:
        """Warn when the run file's disk runs low; pause before it is full."""
        free_bytes = getattr(self.recorder.inner, "disk_free_bytes", None)
        if free_bytes is None:
            return
        free = int(free_bytes())
        if free < 0:
            return
        if free < DISK_PAUSE_BYTES and self._disk_alarm < 2:
            self._disk_alarm = 2
            self.session.event(
                "disk", "alarm", f"only {free / 1e6:.0f} MB free for the run file -> pause"
            )
            self._pause("disk nearly full: free space, then resume")
        elif free < DISK_WARN_BYTES and self._disk_alarm < 1:
            self._disk_alarm = 1
            self.session.event("disk", "alarm", f"only {free / 1e9:.2f} GB free for the run file")

    def run(self) -> RunState:
        """Run to the end on the calling thread; returns the final state.

        Device faults and internal errors end the run as ``failed`` (kept in
        :attr:`error`), an abort as ``aborted``; neither raises. Pumps are always
        stopped before this returns.
        """
        self.session.t0_s = self.rig.clock.now_s()  # run time starts now, not at preparation
        self._set_state(RunState.RUNNING, "started")
        done = threading.Event()
        final = RunState.FAILED
        message = ""
        try:
            self.session.open()
            self.session.event(
                "run",
                "started",
                f"{self.protocol.name}: {self.n_steps} steps, "
                f"expected {self.preflight.duration_s:g} s"
                + (
                    f"; parameters {self.protocol.overrides()}" if self.protocol.overrides() else ""
                ),
            )
            for spec in self.interlocks:
                self.session.event(
                    "run",
                    "interlock",
                    f"{spec.kind} ({spec.source}): {spec.action}"
                    + (f" scope {spec.scope}" if spec.scope else "")
                    + (f" limit {spec.limit:g}" if spec.limit is not None else "")
                    + (f" for {spec.hold_s:g} s" if spec.hold_s else ""),
                )
            start_ul = {row.pump: row.start_ul for row in self.preflight.ledger}
            self.monitor = InterlockMonitor(self.interlocks, self.session, self._act, start_ul)
            if self.analysis is not None:
                self.analysis.start()
            period_s = self.rig.config.telemetry_period_s
            self.scheduler.call_every(period_s, self._poll, name="telemetry")
            periods = [
                d.heartbeat_period_s
                for d in self.rig.devices.values()
                if d.heartbeat_period_s is not None
            ]
            if periods:
                self.scheduler.call_every(min(periods), self.session.heartbeat, name="heartbeat")
            self._schedule_faults()

            def finished() -> None:
                done.set()
                self.scheduler.request_stop()

            self.runner = StepRunner(
                self.compiled,
                self.session,
                self.scheduler,
                on_step=self._on_step,
                on_done=finished,
                on_abort=self._protocol_abort,
                on_prompt=self._on_prompt,
                on_pump_alarm=self._pump_alarm,
                on_time_point=self._time_point_done,
                signal=self.signal,
                acquisition=self.acquisition,
                fluidic_state=self._fluidic_state,
                auto_confirm=self.auto_confirm,
                start_local=self.start_local,
                poll_s=period_s,
            )
            if self._abort_reason is None:
                self.runner.start()
                self.scheduler.run()
            if done.is_set():
                final, message = RunState.COMPLETED, "all steps done"
            else:
                final = RunState.ABORTED
                message = self._abort_reason or "stopped before the end"
        except _RunAbort as exc:
            final, message = RunState.ABORTED, str(exc)
        except (DeviceError, ChipctlError) as exc:
            self.error = exc
            final, message = RunState.FAILED, str(exc)
        except BaseException as exc:  # an internal error must still stop the pumps
            self.error = exc
            final, message = RunState.FAILED, f"internal error: {type(exc).__name__}: {exc}"
            logger.exception("run failed with an internal error")
        finally:
            self._finish(final, message)
        return final

    def _schedule_faults(self) -> None:
        """Schedule the config's simulated faults, each recorded as an event when injected."""
        start_s = self.session.t0_s  # "at" counts from the run's t_s = 0
        for fault in self.rig.config.faults:

            def inject(device: str = fault.device, kind: str = fault.kind) -> None:
                self.rig.inject_fault(device, kind)
                self.session.event(device, "fault_injected", f"simulator: {kind}")

            self.scheduler.call_at(start_s + fault.at_s, inject, name=f"fault {fault.kind}")

    def _valves_to_waste(self) -> None:
        """Turn every valve with a ``waste`` port to it (the safe state); record failures."""
        for name, valve in self.rig.valves().items():
            try:
                position = self.rig.valve_position(name, "waste")
            except ValueError:
                continue
            try:
                valve.select(position)
                self.session.commanded(name, position)
                self.session.event(
                    name, "command", f"select position {position} (waste: safe state)"
                )
            except DeviceError as exc:
                self.session.event(name, "alarm", f"could not turn to waste: {exc}")

    def _finish(self, final: RunState, message: str) -> None:
        if final is RunState.ABORTED:
            with self._lock:
                self._state = RunState.ABORTING
            try:
                self.session.event("run", "aborting", message)
            except ChipctlError:
                pass
        kind = final.value
        stopped = False
        # from here on alarms are recorded but act on nothing: the run is ending anyway
        self.session.on_pump_alarm = None
        self.monitor = None
        try:
            try:
                failed = self.session.stop_all_pumps(f"run {kind}")
                stopped = True
                if failed and final is RunState.COMPLETED:
                    final, message = RunState.FAILED, f"could not stop {', '.join(failed)}"
                    kind = final.value
                if final is not RunState.COMPLETED:
                    self._valves_to_waste()
                self.session.poll()
            except ChipctlError as exc:  # e.g. the run file failed: pumps are stopped first
                if final is RunState.COMPLETED:
                    final, message, kind = RunState.FAILED, str(exc), "failed"
        finally:
            try:
                self.session.event("run", kind, message)
            except ChipctlError:
                pass  # the run file is what failed; the state below still says why
            try:
                # if stopping raised half-way, close() tries every pump again
                self.session.close(stop_pumps=not stopped)
            except ChipctlError:
                pass
            if self.analysis is not None:
                try:
                    self.analysis.stop(60.0)
                    stats = self.analysis.stats()
                    self.session.event(
                        "analysis",
                        "summary",
                        f"{stats.analysed} frames analysed, {stats.skipped} skipped (queue "
                        f"full: recompute with chipctl analyze), {stats.errors} errors",
                    )
                except Exception:  # the analysis must never keep the run from ending
                    logger.exception("live analysis did not stop cleanly")
            with self._lock:
                self._prompt = None
            self._set_state_final(final, message)

    def _set_state_final(self, final: RunState, message: str) -> None:
        with self._lock:
            if self._paused_at_s is not None:
                self._paused_total_s += self.session.t_s() - self._paused_at_s
                self._paused_at_s = None
            self._state = final
            self._message = message
        self.listeners.state(self.status())
