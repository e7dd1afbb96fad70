"""One run of a protocol on a rig: the engine thread, its state machine and its safety net.

Thread topology (DESIGN.md, "Concurrency"):

- the **engine thread** (started by :meth:`Run.start`, or the caller's thread with
  :meth:`Run.run`) owns the session and every device: it runs the scheduler, which
  executes protocol steps, telemetry polls and heartbeats in time order on the clock;
- the **run-file writer thread** (inside :class:`chipctl.runfile.RunFileWriter`) owns the
  HDF5 file and is fed through a queue by the recorder calls;
- **any other thread** (the CLI's main thread, later the GUI) only reads
  :meth:`Run.status` snapshots and calls :meth:`Run.abort`, which is thread-safe.

States: ``idle -> running -> completed | aborted | failed``. Whatever ends the run (the
last step, an abort, a device fault, an internal error), the engine thread stops every
pump before it records the final state (:meth:`Session.close`).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np

from chipctl.engine.scheduler import Scheduler
from chipctl.errors import ChipctlError, InputError
from chipctl.protocol.model import ImageStep, Protocol
from chipctl.protocol.preflight import Preflight, preflight
from chipctl.protocol.runner import StepRunner
from chipctl.rig import Rig
from chipctl.session import Recorder, Session
from drivers.errors import DeviceAlarm, DeviceError

__all__ = ["Run", "RunState", "RunStatus"]

logger = logging.getLogger(__name__)


class RunState(Enum):
    """Where a run is in its life."""

    IDLE = "idle"
    RUNNING = "running"
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
        step_index: 0-based index of the current step (-1 before the first).
        step_label: ``"step 3 ('dose')"``.
        n_steps: number of steps.
        t_s: time since the run started (run clock).
        expected_duration_s: the preflight's predicted duration.
        message: why the run ended, when it has.
        step_name: the current step's name (empty if it has none).
    """

    state: RunState
    step_index: int
    step_label: str
    n_steps: int
    t_s: float
    expected_duration_s: float
    message: str = ""
    step_name: str = ""


class Run:
    """Runs ``protocol`` on ``rig``, recording into ``recorder``.

    Args:
        protocol: a validated protocol.
        rig: the built (not yet connected) rig.
        recorder: the run file writer (or a memory recorder).

    Raises:
        ProtocolError: from the constructor, if the protocol fails preflight on this rig.
    """

    def __init__(self, protocol: Protocol, rig: Rig, recorder: Recorder) -> None:
        """Preflight the protocol on the rig; nothing moves yet."""
        self.protocol = protocol
        self.rig = rig
        self.recorder = recorder
        self.preflight: Preflight = preflight(protocol, rig)
        self.session = Session(rig, recorder)
        self.session.on_pump_alarm = self._pump_alarm
        self.acquisition = self._imaging(protocol, rig, recorder)
        self.scheduler = Scheduler(rig.clock)
        self._lock = threading.Lock()
        self._state = RunState.IDLE
        self._message = ""
        self._step_index = -1
        self._abort_reason: str | None = None
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def _pump_alarm(self, pump: str, alarm: str) -> None:
        """Fail the run on a pump alarm (stall, watchdog, reset...): pumps are then stopped."""
        raise DeviceAlarm(pump, f"pump alarm during the run: {alarm}", alarm=alarm)

    # -- imaging -------------------------------------------------------------------

    def _imaging(self, protocol: Protocol, rig: Rig, recorder: Recorder) -> Any:
        """Plan the run's images and declare their stacks in the run file (before it opens)."""
        steps = [s for s in protocol.steps if isinstance(s, ImageStep)]
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
        acquisition = Acquisition(scope, plan, recorder, clock=rig.clock)  # type: ignore[arg-type]
        acquisition.declare()
        return acquisition

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

    # -- thread-safe surface ---------------------------------------------------------

    def status(self) -> RunStatus:
        """Return a consistent snapshot of the run."""
        with self._lock:
            index = self._step_index
            label = self.protocol.steps[index].info.label() if index >= 0 else ""
            t_s = self.session.t_s() if self._state is not RunState.IDLE else 0.0
            return RunStatus(
                self._state,
                index,
                label,
                len(self.protocol.steps),
                t_s,
                self.preflight.duration_s,
                self._message,
                (self.protocol.steps[index].info.name or "") if index >= 0 else "",
            )

    def abort(self, reason: str = "operator abort") -> None:
        """Ask the run to stop now; pumps are stopped by the engine thread (any thread)."""
        with self._lock:
            if self._abort_reason is None:
                self._abort_reason = reason
        self.scheduler.request_stop()

    def join(self) -> None:
        """Wait for the engine thread started by :meth:`start` (no-op if not started)."""
        if self._thread is not None:
            self._thread.join()

    def start(self) -> threading.Thread:
        """Run on a new engine thread; returns it (``join()`` to wait)."""
        thread = threading.Thread(target=self.run, name="chipctl-engine", daemon=True)
        self._thread = thread
        thread.start()
        return thread

    # -- engine thread ---------------------------------------------------------------

    def _set_state(self, state: RunState, message: str = "") -> None:
        with self._lock:
            self._state = state
            self._message = message

    def _on_step(self, index: int) -> None:
        with self._lock:
            self._step_index = index

    def run(self) -> RunState:
        """Run to the end on the calling thread; returns the final state.

        Device faults and internal errors end the run as ``failed`` (kept in
        :attr:`error`), an :meth:`abort` as ``aborted``; neither raises. Pumps are always
        stopped before this returns.
        """
        self._set_state(RunState.RUNNING)
        done = threading.Event()
        final = RunState.FAILED
        message = ""
        try:
            self.session.open()
            self.session.event(
                "run",
                "started",
                f"{self.protocol.name}: {len(self.protocol.steps)} steps, "
                f"expected {self.preflight.duration_s:g} s",
            )
            period_s = self.rig.config.telemetry_period_s
            self.scheduler.call_every(period_s, self.session.poll, name="telemetry")
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

            runner = StepRunner(
                self.protocol,
                self.session,
                self.scheduler,
                on_step=self._on_step,
                on_done=finished,
                acquisition=self.acquisition,
                fluidic_state=self._fluidic_state,
            )
            if self._abort_reason is None:
                runner.start()
                self.scheduler.run()
            if done.is_set():
                final, message = RunState.COMPLETED, "all steps done"
            else:
                final = RunState.ABORTED
                message = self._abort_reason or "stopped before the end"
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

    def _finish(self, final: RunState, message: str) -> None:
        kind = final.value if final is not RunState.RUNNING else "failed"
        stopped = False
        try:
            failed = self.session.stop_all_pumps(f"run {kind}")
            stopped = True
            if failed and final is RunState.COMPLETED:
                final, message = RunState.FAILED, f"could not stop {', '.join(failed)}"
                kind = final.value
            self.session.poll()
        finally:
            self.session.event("run", kind, message)
            # if stopping raised half-way, close() tries every pump again
            self.session.close(stop_pumps=not stopped)
            self._set_state(final, message)
