"""Manual control of an idle rig: pumps, valves, the microscope, outside any protocol.

The operator GUI drives a rig by hand while no protocol runs. :class:`ManualControl` opens a
:class:`~chipctl.session.Session` on the rig and keeps it alive on its own engine thread, with
the same scheduler a run uses (telemetry poll every config period, heartbeats for safe-mode
watchdogs), so a pump started by hand is watched like one started by a protocol.

Thread topology:

- the **manual engine thread** (started by :meth:`ManualControl.start`) owns the session and
  every device. It runs a :class:`~chipctl.engine.scheduler.Scheduler`: periodic telemetry
  polls and heartbeats, and the operator's commands, which other threads hand over with
  :meth:`ManualControl.submit` (through the scheduler's thread-safe inbox);
- **any other thread** (the GUI's) only calls :meth:`ManualControl.submit`, which returns a
  :class:`concurrent.futures.Future` at once, and :meth:`ManualControl.close`;
- listeners (:meth:`ManualControl.add_listener`) are called on the engine thread with every
  event and telemetry sample and must return at once (the GUI queues them to its thread).

Commands are the :class:`ManualCommand` objects below (start or stop a pump, turn a valve,
snap images, move the stage). Each validates as a protocol step does (the pump's rate range
for its syringe, the syringe's capacity, the valve's named ports, the microscope's channels
and positions, the stage's travel limits): :meth:`ManualCommand.check` needs only the rig, so
a form can reject bad input before anything is sent, and the command checks again on the
engine thread. The same commands run during a paused protocol through ``Run.call_manual``,
since each is simply a callable taking the session.

On a virtual clock no periodic task is scheduled (the scheduler would otherwise run virtual
time as fast as the CPU allows, polling thousands of times a second); every command is
followed by one telemetry poll instead, so listeners still see the effect of each command.

Whatever ends it (:meth:`ManualControl.close`, an error on the engine thread), every pump is
stopped before the devices are closed (:meth:`Session.close`).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from chipctl.chip import chamber_of
from chipctl.engine.scheduler import Scheduler
from chipctl.errors import InputError
from chipctl.microscope import MicroscopeDevice
from chipctl.rig import Rig
from chipctl.session import Session
from drivers.camera.roles import ChannelImage, Microscope, StagePosition
from drivers.roles import PumpDirection, SyringePump

__all__ = [
    "ManualCommand",
    "ManualControl",
    "ManualError",
    "MoveStage",
    "SelectValve",
    "Snap",
    "StartPump",
    "StopPump",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Events and samples a manual session keeps for late listeners (older ones are dropped:
#: a manual session may stay open for days and has no run file).
KEEP_EVENTS = 1000
KEEP_SAMPLES = 5000
#: Longest a manual stage move may take before it counts as failed.
MOVE_TIMEOUT_S = 60.0


class ManualError(InputError):
    """Raised for a manual command the rig cannot do (one line naming device and value)."""


class ManualCommand(Protocol):
    """A command the operator gives by hand; a callable taking the open session."""

    def check(self, rig: Rig) -> None:
        """Raise :class:`ManualError` if the command cannot run on ``rig`` (no I/O)."""
        ...

    def __call__(self, session: Session) -> Any:
        """Check again and execute on the engine thread; record what was done."""
        ...


def _pump(rig: Rig, name: str) -> SyringePump:
    device = rig.devices.get(name)
    if not isinstance(device, SyringePump):
        known = ", ".join(rig.pumps()) or "none"
        raise ManualError(f"no pump {name!r} on this rig (pumps: {known})")
    return device


def named_position(scope: Microscope, name: str) -> str:
    """Return the stage position ``name`` means: itself, or a chamber's middle field.

    Raises:
        ManualError: no such position or chamber, naming the known positions.
    """
    known = scope.position_names()
    if name in known:
        return name
    fields = [p for p in known if chamber_of(p) == name]
    if fields:
        return fields[(len(fields) - 1) // 2]
    raise ManualError(f"{scope.name}: no position {name!r} (positions: {', '.join(known)})")


def _microscope(rig: Rig, name: str | None) -> MicroscopeDevice:
    scopes = rig.microscopes()
    if name is None and len(scopes) == 1:
        return next(iter(scopes.values()))
    if name is None or name not in scopes:
        known = ", ".join(scopes) or "none"
        raise ManualError(f"no microscope {name!r} on this rig (microscopes: {known})")
    return scopes[name]


@dataclass(frozen=True)
class StartPump:
    """Start a pump infusing or withdrawing at a rate, for a volume or until stopped.

    Args:
        pump: the pump's name in the instrument config.
        rate_ul_min: the rate (checked against the pump's range for its syringe).
        direction: infuse or withdraw.
        volume_ul: stop by itself after this volume (None: run until stopped or empty).
    """

    pump: str
    rate_ul_min: float
    direction: PumpDirection = PumpDirection.INFUSE
    volume_ul: float | None = None

    def check(self, rig: Rig) -> None:
        """Check the pump exists, and rate and volume as a protocol's pump step is checked."""
        device = _pump(rig, self.pump)
        try:
            device.check_rate(self.rate_ul_min)
            if self.volume_ul is not None:
                device.check_volume(self.volume_ul)
        except ValueError as exc:
            raise ManualError(str(exc)) from None

    def __call__(self, session: Session) -> None:
        """Send rate (and target volume) and start the motor."""
        self.check(session.rig)
        device = session.pump(self.pump)
        verb = "infuse" if self.direction is PumpDirection.INFUSE else "withdraw"
        if self.direction is PumpDirection.INFUSE:
            device.infuse(self.rate_ul_min, self.volume_ul)
        else:
            device.withdraw(self.rate_ul_min, self.volume_ul)
        amount = f" {self.volume_ul:g} uL" if self.volume_ul is not None else ""
        session.event(
            self.pump, "command", f"manual: {verb}{amount} at {self.rate_ul_min:g} uL/min"
        )


@dataclass(frozen=True)
class StopPump:
    """Stop a pump (always allowed)."""

    pump: str

    def check(self, rig: Rig) -> None:
        """Check the pump exists."""
        _pump(rig, self.pump)

    def __call__(self, session: Session) -> None:
        """Send stop."""
        self.check(session.rig)
        session.pump(self.pump).stop()
        session.event(self.pump, "command", "manual: stop")


@dataclass(frozen=True)
class SelectValve:
    """Turn a selector valve (or a pump's distribution valve) to a position.

    Args:
        valve: the valve's name.
        position: a position number, or a port name from the config's ``ports``.
    """

    valve: str
    position: int | str

    def resolved(self, rig: Rig) -> int:
        """Return the position number (:class:`ManualError` if there is no such port)."""
        if self.valve not in rig.valves():
            known = ", ".join(rig.valves()) or "none"
            raise ManualError(f"no valve {self.valve!r} on this rig (valves: {known})")
        try:
            return rig.valve_position(self.valve, self.position)
        except ValueError as exc:
            raise ManualError(str(exc)) from None

    def check(self, rig: Rig) -> None:
        """Check the valve and the position as a protocol's valve step is checked."""
        self.resolved(rig)

    def __call__(self, session: Session) -> int:
        """Turn the valve; return the position number reached."""
        number = self.resolved(session.rig)
        session.rig.valves()[self.valve].select(number)
        label = f"{self.position!r} ({number})" if isinstance(self.position, str) else str(number)
        session.event(self.valve, "command", f"manual: select {label}")
        return number


@dataclass(frozen=True)
class Snap:
    """Take one image per channel, at a named position or where the stage stands.

    Args:
        channels: channel preset names, in order.
        position: a named position to move to first (None: stay).
        microscope: the microscope's name (None: the rig's only one).
    """

    channels: tuple[str, ...]
    position: str | None = None
    microscope: str | None = None

    def check(self, rig: Rig) -> None:
        """Check channels and position against the microscope's presets and positions."""
        scope = _microscope(rig, self.microscope).microscope
        if not self.channels:
            raise ManualError(f"{scope.name}: choose at least one channel to snap")
        for channel in self.channels:
            if channel not in scope.channel_names():
                known = ", ".join(scope.channel_names())
                raise ManualError(f"{scope.name}: no channel {channel!r} (channels: {known})")
        if self.position is not None:
            named_position(scope, self.position)

    def __call__(self, session: Session) -> list[ChannelImage]:
        """Move (if asked), snap every channel; return the images (not stored anywhere)."""
        self.check(session.rig)
        device = _microscope(session.rig, self.microscope)
        scope = device.microscope
        if self.position is not None:
            images = scope.acquire_at(named_position(scope, self.position), self.channels)
        else:
            images = scope.acquire(self.channels)
        where = self.position or "current position"
        session.event(device.name, "command", f"manual: snap {', '.join(self.channels)} at {where}")
        return images


@dataclass(frozen=True)
class MoveStage:
    """Move the microscope stage to a named position or to coordinates.

    Args:
        position: a named position (e.g. ``"chamber 3b"``; a chamber imaged in several
            fields, ``"chamber 3"``, means its middle field), or None to use coordinates.
        x_um: target X when no position is named.
        y_um: target Y when no position is named.
        z_um: target Z (None: leave Z).
        microscope: the microscope's name (None: the rig's only one).
    """

    position: str | None = None
    x_um: float | None = None
    y_um: float | None = None
    z_um: float | None = None
    microscope: str | None = None

    def check(self, rig: Rig) -> None:
        """Check the target is named or complete (travel limits are the stage's to check)."""
        scope = _microscope(rig, self.microscope).microscope
        if self.position is not None:
            named_position(scope, self.position)
        elif self.x_um is None or self.y_um is None:
            raise ManualError(f"{scope.name}: give a named position or both x and y")

    def __call__(self, session: Session) -> StagePosition:
        """Move, wait on the clock until the stage stops; return where it stands."""
        self.check(session.rig)
        device = _microscope(session.rig, self.microscope)
        try:
            if self.position is not None:
                where = named_position(device.microscope, self.position)
                device.microscope.move_to(where)
            else:
                assert self.x_um is not None and self.y_um is not None  # check() saw to it
                device.stage.move_to(self.x_um, self.y_um, self.z_um)
                device.stage.wait_until_stopped(session.clock, timeout_s=MOVE_TIMEOUT_S)
                where = f"x {self.x_um:g} um, y {self.y_um:g} um"
        except ValueError as exc:  # outside the stage's travel limits
            raise ManualError(str(exc)) from None
        session.event(device.name, "command", f"manual: move stage to {where}")
        return device.stage.read_position_um()


class _ListeningRecorder:
    """Keeps the latest events and samples, and hands each to the listeners at once."""

    def __init__(self, listeners: list[Any]) -> None:
        self.events: deque[tuple[float, str, str, str]] = deque(maxlen=KEEP_EVENTS)
        self.samples: deque[tuple[str, float, dict[str, float]]] = deque(maxlen=KEEP_SAMPLES)
        self._listeners = listeners

    def event(self, t_s: float, source: str, kind: str, message: str) -> None:
        self.events.append((t_s, source, kind, message))
        for listener in list(self._listeners):
            method = getattr(listener, "on_event", None)
            if method is not None:
                _safely(method, t_s, source, kind, message)

    def telemetry(self, device: str, t_s: float, values: Mapping[str, float]) -> None:
        self.samples.append((device, t_s, dict(values)))
        for listener in list(self._listeners):
            method = getattr(listener, "on_telemetry", None)
            if method is not None:
                _safely(method, device, t_s, values)


def _safely(method: Callable[..., Any], *args: Any) -> None:
    """Call a listener; a broken listener is logged, never allowed to stop the engine."""
    try:
        method(*args)
    except Exception:
        logger.exception("manual-control listener %r failed", method)


class ManualControl:
    """Holds a rig open for manual control on its own engine thread.

    Args:
        rig: the built (not yet connected) rig; nobody else may use its devices meanwhile.
    """

    def __init__(self, rig: Rig) -> None:
        """Prepare; nothing is connected until :meth:`start`."""
        self.rig = rig
        self._listeners: list[Any] = []
        self.recorder = _ListeningRecorder(self._listeners)
        self.session = Session(rig, self.recorder)
        self.scheduler = Scheduler(rig.clock)
        self._thread: threading.Thread | None = None
        self._opened: Future[None] = Future()
        self._closed = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._pending: set[Future[Any]] = set()
        self.error: BaseException | None = None

    # -- listeners -------------------------------------------------------------------

    def add_listener(self, listener: Any) -> None:
        """Call ``listener``'s ``on_event`` / ``on_telemetry`` (any it has) on the engine thread."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Any) -> None:
        """Stop calling ``listener``."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    # -- life cycle ------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Tell whether the engine thread is alive (devices open or opening)."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> Future[None]:
        """Start the engine thread, which connects every device; returns when that is done.

        The future fails with the :class:`~drivers.errors.DeviceError` of a device that did
        not connect (the others are closed again, and the thread ends).
        """
        with self._lock:
            if self._thread is not None:
                raise ManualError("manual control is already started")
            self._thread = threading.Thread(target=self._engine, name="chipctl-manual", daemon=True)
            self._thread.start()
        return self._opened

    def submit(self, fn: Callable[[Session], T]) -> Future[T]:
        """Run ``fn(session)`` on the engine thread; returns its future at once (any thread).

        A command still queued when the session closes fails with :class:`ManualError`.

        Raises:
            ManualError: the session is not open, or closing.
        """
        future: Future[T] = Future()
        with self._lock:
            if self._closed.is_set() or self._thread is None:
                raise ManualError("manual control is not open")
            self._pending.add(future)

        def task() -> None:
            with self._lock:
                self._pending.discard(future)
            if not future.set_running_or_notify_cancel():
                return
            try:
                result = fn(self.session)
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(result)
            if self.rig.clock.is_virtual:
                self.session.poll()  # no periodic poll on a virtual clock (module docstring)

        self.scheduler.call_soon_threadsafe(task)
        self._wake.set()
        return future

    def close(self, timeout_s: float | None = 30.0) -> None:
        """Stop every pump, close the devices and end the engine thread (idempotent).

        Args:
            timeout_s: how long to wait for the engine thread (real seconds).
        """
        self._closed.set()
        self.scheduler.request_stop()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)

    # -- engine thread ---------------------------------------------------------------

    def _engine(self) -> None:
        try:
            self.session.open()
        except BaseException as exc:
            self.error = exc
            self._closed.set()
            self._opened.set_exception(exc)
            return
        self._opened.set_result(None)
        try:
            self.session.event("manual", "started", "manual control")
            self.session.poll()
            if not self.rig.clock.is_virtual:
                period_s = self.rig.config.telemetry_period_s
                self.scheduler.call_every(period_s, self.session.poll, name="telemetry")
                periods = [
                    d.heartbeat_period_s
                    for d in self.rig.devices.values()
                    if d.heartbeat_period_s is not None
                ]
                if periods:
                    self.scheduler.call_every(
                        min(periods), self.session.heartbeat, name="heartbeat"
                    )
                self.scheduler.run()
            else:
                while not self._closed.is_set():
                    self._wake.wait()
                    self._wake.clear()
                    self.scheduler.run()  # runs the inbox, then returns (no timed tasks)
        except BaseException as exc:  # a device fault in a periodic poll: stop safely
            self.error = exc
            logger.exception("manual control stopped by an error")
            self.session.event("manual", "error", f"manual control stopped: {exc}")
        finally:
            self._fail_pending()
            self.session.close()

    def _fail_pending(self) -> None:
        """Fail every command still queued: the scheduler has stopped and will not run it."""
        with self._lock:
            self._closed.set()
            pending, self._pending = self._pending, set()
        for future in pending:
            if future.set_running_or_notify_cancel():
                future.set_exception(ManualError("manual control closed before the command ran"))


def snap_channels(rig: Rig) -> Sequence[str]:
    """Return the channel names of the rig's only microscope (empty without one)."""
    scopes = rig.microscopes()
    if len(scopes) != 1:
        return ()
    return tuple(next(iter(scopes.values())).microscope.channel_names())
