"""Fan-out of a run's events, telemetry, frames, analysis results and states to listeners.

The GUI, the CLI's progress display and tests watch a run through listeners instead of
reading the run file the engine is writing. A listener is any object with some of these
methods (all optional)::

    on_event(t_s, source, kind, message)
    on_telemetry(device, t_s, values)
    on_frame(record, pixels)               # chipctl.acquisition.FrameRecord, ndarray
    on_analysis(position, t_s, values)
    on_state(status)                       # chipctl.engine.run.RunStatus

They are called on the engine thread (or the analysis worker) and must return at once: a
GUI queues the call to its own thread. A listener that raises is logged and removed, so a
broken display can never stop an experiment.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from chipctl.session import Recorder

__all__ = ["ListenerSet", "TeeRecorder"]

logger = logging.getLogger(__name__)

EventHook = Callable[[float, str, str, str], None]


class ListenerSet:
    """The listeners of one run; thread-safe to add to while the run goes on."""

    def __init__(self) -> None:
        """Start with none."""
        self._lock = threading.Lock()
        self._listeners: list[object] = []
        self._hooks: list[EventHook] = []

    def add(self, listener: object) -> None:
        """Add a listener (see the module docstring for its methods)."""
        with self._lock:
            self._listeners.append(listener)

    def remove(self, listener: object) -> None:
        """Remove a listener (no error if absent)."""
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def add_event_hook(self, hook: EventHook) -> None:
        """Add an internal event hook (never removed; must not raise)."""
        self._hooks.append(hook)

    def _call(self, method: str, *args: Any) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            fn = getattr(listener, method, None)
            if fn is None:
                continue
            try:
                fn(*args)
            except Exception:
                logger.exception("listener %r failed in %s; removed", listener, method)
                self.remove(listener)

    def event(self, t_s: float, source: str, kind: str, message: str) -> None:
        """Pass an event on."""
        for hook in self._hooks:
            hook(t_s, source, kind, message)
        self._call("on_event", t_s, source, kind, message)

    def telemetry(self, device: str, t_s: float, values: Mapping[str, float]) -> None:
        """Pass a telemetry row on."""
        self._call("on_telemetry", device, t_s, values)

    def frame(self, record: Any, pixels: Any) -> None:
        """Pass a frame on (its pixels must not be modified)."""
        self._call("on_frame", record, pixels)

    def analysis(self, position: str, t_s: float, values: Mapping[str, float]) -> None:
        """Pass a chamber's analysis result on."""
        self._call("on_analysis", position, t_s, values)

    def state(self, status: Any) -> None:
        """Pass a state change on."""
        self._call("on_state", status)


class TeeRecorder:
    """A recorder that also hands every event and telemetry row to the listeners.

    Everything else (frame stacks, tables) goes straight to the wrapped recorder.
    """

    def __init__(self, recorder: Recorder, listeners: ListenerSet) -> None:
        """Wrap ``recorder``."""
        self.inner = recorder
        self.listeners = listeners

    def event(self, t_s: float, source: str, kind: str, message: str) -> None:
        """Record an event, then tell the listeners."""
        self.inner.event(t_s, source, kind, message)
        self.listeners.event(t_s, source, kind, message)

    def telemetry(self, device: str, t_s: float, values: Mapping[str, float]) -> None:
        """Record a telemetry row, then tell the listeners."""
        self.inner.telemetry(device, t_s, values)
        self.listeners.telemetry(device, t_s, values)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
