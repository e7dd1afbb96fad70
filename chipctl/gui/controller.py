"""Who holds the rig: manual control when idle, a protocol run otherwise.

:class:`RigController` is the GUI's one owner of the instrument. Devices are never shared:
while no protocol runs, a :class:`~chipctl.engine.manual.ManualControl` holds them; starting
a protocol closes it first (pumps stopped, links released), and when the run has ended
(completed, aborted or failed) manual control is opened again.

Thread topology (the GUI side of it):

- the **GUI thread** calls the controller's methods and receives its signals;
- the **lifecycle worker** (one thread, :data:`WORKER_NAME`) does everything that may take
  longer than a frame: building a rig and preflighting a protocol, closing manual control
  (it joins the manual engine thread), creating the run file and starting the run, and
  joining a finished run's engine thread and closing its file. Jobs run one at a time in
  the order given, so "close manual control, then start the run" cannot interleave;
- the **engine thread** of the run or of manual control calls the
  :class:`~chipctl.gui.bridge.EngineBridge` (a listener of both), which queues everything to
  the GUI thread.

Pause, resume, abort and confirm go straight to the run: they are thread-safe and only queue
a request to its engine thread, so they never block the GUI.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from PyQt5.QtCore import QObject, QTimer, pyqtSignal

import chipctl.api as api
from chipctl.config import InstrumentConfig
from chipctl.engine.manual import ManualCommand, ManualControl, ManualError
from chipctl.engine.run import RunState, RunStatus
from chipctl.errors import ChipctlError
from chipctl.gui.bridge import EngineBridge
from chipctl.rig import Rig, build_rig
from drivers.clock import Clock, RealClock, ScaledClock
from drivers.errors import DeviceError

__all__ = ["RigController", "WORKER_NAME"]

logger = logging.getLogger(__name__)

WORKER_NAME = "chipctl-gui-worker"
#: How often the run's status is read for the progress display.
STATUS_MS = 250


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, ChipctlError | DeviceError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


class RigController(QObject):
    """Owns the instrument for the GUI: manual control, or one protocol run at a time.

    Args:
        config: the instrument config (simulated or hardware).
        seed: the simulated world's seed.
        speed: the simulated clock's speed for manual control and the default for runs
            (None: real time for manual control, the virtual clock for runs).
        run_dir: where run files go by default.
        manual: open manual control when idle (False keeps the rig closed between runs).
    """

    #: "offline", "connecting", "manual", "starting", "running", "finishing", "closed".
    mode_changed = pyqtSignal(str)
    #: A :class:`RunStatus` snapshot, every :data:`STATUS_MS` while a run is on.
    status_changed = pyqtSignal(object)
    #: The run's :class:`~chipctl.api.RunHandle`, once its engine has started.
    run_started = pyqtSignal(object)
    #: The :class:`~chipctl.api.RunResult` once the run file is closed.
    run_ended = pyqtSignal(object)
    #: (request id, protocol, preflight) of a check.
    checked = pyqtSignal(int, object, object)
    #: (request id, one-line error) of a check that failed.
    check_failed = pyqtSignal(int, str)
    #: One line: something went wrong outside a check (a device, the run file...).
    error = pyqtSignal(str)
    _call = pyqtSignal(object)

    def __init__(
        self,
        config: InstrumentConfig,
        *,
        seed: int = 0,
        speed: float | None = None,
        run_dir: Path = Path("runs"),
        manual: bool = True,
    ) -> None:
        """Build the rig description (no I/O); call :meth:`open_manual` to connect."""
        super().__init__()
        self.config = config
        self.seed = seed
        self.speed = speed
        self.run_dir = run_dir
        self.auto_manual = manual
        #: The rig the panels describe (devices, syringes, ports); never connected itself.
        self.rig: Rig = build_rig(config, clock=RealClock(), seed=seed)
        self.bridge = EngineBridge(self)
        self.bridge.state.connect(self._state)
        self.manual: ManualControl | None = None
        self.handle: Any = None
        self.mode = "offline"
        self._checks = 0
        self._worker = ThreadPoolExecutor(1, thread_name_prefix=WORKER_NAME)
        self._closed = threading.Event()
        self._call.connect(self._run_on_gui)  # queued: runs worker results on the GUI thread
        self._timer = QTimer(self)
        self._timer.setInterval(STATUS_MS)
        self._timer.timeout.connect(self._poll_status)

    @property
    def simulated(self) -> bool:
        """Tell whether the rig is simulated."""
        return self.config.simulated

    # -- plumbing --------------------------------------------------------------------

    def _run_on_gui(self, fn: Callable[[], None]) -> None:
        if not self._closed.is_set():  # after shutdown the window may be gone
            fn()

    def _set_mode(self, mode: str) -> None:
        if mode != self.mode and not self._closed.is_set():
            self.mode = mode
            self.mode_changed.emit(mode)

    def _on_gui(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the GUI thread (from the worker)."""
        self._call.emit(fn)

    def _background(self, job: Callable[[], None]) -> Future[None]:
        """Run ``job`` on the lifecycle worker; an unexpected error is reported, not lost.

        After :meth:`shutdown` nothing runs any more (the future is cancelled).
        """
        if self._closed.is_set():
            future: Future[None] = Future()
            future.cancel()
            return future

        def guarded() -> None:
            try:
                job()
            except Exception as exc:
                logger.exception("GUI worker job failed")
                message = _one_line(exc)
                self._on_gui(lambda: self.error.emit(message))

        return self._worker.submit(guarded)

    def manual_clock(self) -> Clock:
        """Return the clock manual control runs on (real time, or scaled on a simulator)."""
        if self.simulated and self.speed is not None:
            return ScaledClock(self.speed)
        return RealClock()

    # -- manual control --------------------------------------------------------------

    def open_manual(self) -> None:
        """Connect the rig for manual control (in the background)."""
        if self.manual is not None or self.handle is not None:
            return
        self._set_mode("connecting")

        def job() -> None:
            rig = build_rig(self.config, clock=self.manual_clock(), seed=self.seed)
            manual = ManualControl(rig)
            manual.add_listener(self.bridge)
            try:
                manual.start().result()
                if self._closed.is_set():  # the window closed meanwhile
                    manual.close()
                    return
            except BaseException as exc:
                message = _one_line(exc)

                def failed() -> None:
                    self._set_mode("offline")
                    self.error.emit(message)

                self._on_gui(failed)
                return

            def opened() -> None:
                self.manual = manual
                self._set_mode("manual")

            self._on_gui(opened)

        self._background(job)

    def close_manual(self) -> Future[None]:
        """Close manual control (pumps stopped) in the background; the future says when."""
        manual, self.manual = self.manual, None
        if manual is None:
            done: Future[None] = Future()
            done.set_result(None)
            return done
        self._set_mode("offline")
        return self._background(manual.close)

    def execute(self, command: ManualCommand) -> Future[Any]:
        """Send a manual command to whoever holds the devices (the panel's executor).

        Raises:
            ManualError: nobody can take manual commands now (a protocol is running).
            RunStateError: the run is not paused.
        """
        if self.handle is not None:
            future: Future[Any] = self.handle.run.call_manual(command)
            return future
        if self.manual is not None:
            return self.manual.submit(command)
        raise ManualError("the instrument is not connected")

    def manual_allowed(self) -> bool:
        """Tell whether manual commands are accepted now (idle, or a paused run)."""
        if self.handle is not None:
            state = self.handle.run.status().state
            return bool(state is RunState.PAUSED)
        return self.manual is not None

    # -- protocols -------------------------------------------------------------------

    def check(self, protocol: str | Path, parameters: Mapping[str, str]) -> int:
        """Validate and preflight a protocol in the background; returns the request id.

        The answer is :attr:`checked` or :attr:`check_failed` with that id (a newer check
        makes older answers stale: compare the id).
        """
        self._checks += 1
        request = self._checks
        params = dict(parameters)

        def job() -> None:
            try:
                self.run_dir.mkdir(parents=True, exist_ok=True)
                proto, pre = api.check_protocol(
                    str(protocol), self.config, parameters=params, out_dir=self.run_dir
                )
            except (ChipctlError, DeviceError) as exc:
                message = str(exc)
                self._on_gui(lambda: self.check_failed.emit(request, message))
                return
            self._on_gui(lambda: self.checked.emit(request, proto, pre))

        self._background(job)
        return request

    def start_run(
        self,
        protocol: str | Path,
        parameters: Mapping[str, str],
        *,
        out: Path | None = None,
        speed: float | None = None,
        seed: int | None = None,
    ) -> None:
        """Close manual control, create the run file and start the run (in the background).

        Args:
            protocol: a protocol file or built-in name.
            parameters: parameter overrides, as text.
            out: the run file (default: a new file in :attr:`run_dir`).
            speed: the simulated clock's speed (None: the virtual clock).
            seed: the simulated world's seed (default: the controller's).
        """
        if self.handle is not None:
            self.error.emit("a run is already in progress")
            return
        manual, self.manual = self.manual, None
        self._set_mode("starting")
        params = dict(parameters)

        def job() -> None:
            if manual is not None:
                manual.close()
            try:
                if out is None:
                    self.run_dir.mkdir(parents=True, exist_ok=True)
                    name = Path(str(protocol)).stem
                    when = dt.datetime.now(dt.UTC)
                    path = api.default_run_path(name, when, self.run_dir)
                else:
                    path = out
                handle = api.prepare_run(
                    str(protocol),
                    self.config,
                    out=path,
                    seed=self.seed if seed is None else seed,
                    speed=speed if self.simulated else None,
                    parameters=params,
                )
            except (ChipctlError, DeviceError, OSError) as exc:
                message = _one_line(exc)

                def refused() -> None:
                    self._set_mode("offline")
                    self.error.emit(message)
                    if self.auto_manual:
                        self.open_manual()

                self._on_gui(refused)
                return
            handle.run.add_listener(self.bridge)
            if self._closed.is_set():  # the window closed meanwhile: nothing has moved
                handle.close(RunState.ABORTED)
                return
            handle.start()

            def started() -> None:
                self.handle = handle
                self._set_mode("running")
                self._timer.start()
                self.run_started.emit(handle)
                self._poll_status()

            self._on_gui(started)

        self._background(job)

    def pause(self, reason: str = "operator") -> None:
        """Pause the run (its pause policy says what pumps do)."""
        if self.handle is not None:
            self.handle.run.pause(reason)

    def resume(self) -> None:
        """Resume a paused run."""
        if self.handle is not None:
            self.handle.run.resume()

    def abort(self, reason: str = "operator abort") -> None:
        """Abort the run: pumps stop at once, valves go to waste, the file is closed."""
        if self.handle is not None:
            self.handle.run.abort(reason)

    def confirm(self) -> None:
        """Answer the run's pending operator prompt."""
        if self.handle is not None:
            self.handle.run.confirm()

    def status(self) -> RunStatus | None:
        """Return the run's status now (None when no run is on)."""
        return None if self.handle is None else self.handle.run.status()

    def _poll_status(self) -> None:
        if self.handle is not None:
            self.status_changed.emit(self.handle.run.status())

    def _state(self, status: RunStatus) -> None:
        """A state change from the engine (GUI thread, through the bridge)."""
        self.status_changed.emit(status)
        if status.state.finished and self.handle is not None and self.mode == "running":
            self._finish_run()

    def _finish_run(self) -> None:
        handle = self.handle
        self._set_mode("finishing")

        def job() -> None:
            result = handle.wait()

            def ended() -> None:
                # no flush needed: the final state came through the bridge's queue after
                # every event and sample of the run
                self._timer.stop()
                self.handle = None
                self._set_mode("offline")
                self.run_ended.emit(result)
                if self.auto_manual:
                    self.open_manual()

            self._on_gui(ended)

        self._background(job)

    # -- shutdown --------------------------------------------------------------------

    def shutdown(self, timeout_s: float = 30.0) -> None:
        """Abort any run and close everything, waiting for it (idempotent)."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._timer.stop()
        handle, self.handle = self.handle, None
        manual, self.manual = self.manual, None

        def job() -> None:
            if handle is not None:
                handle.run.abort("GUI closed")
                handle.wait()
            if manual is not None:
                manual.close()

        # queued behind any job in flight, which sees the closed flag and cleans up itself
        future = self._worker.submit(job)
        try:
            future.result(timeout_s)
        except Exception:
            logger.exception("shutdown did not complete cleanly")
        self._worker.shutdown(wait=False)
        self.mode = "closed"  # no signal: the window's widgets may be gone already
