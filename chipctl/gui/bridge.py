"""The thread-safe bridge from the engine's listener calls to the Qt (GUI) thread.

The engine calls its listeners on its own threads (the engine thread for events, telemetry
and frames; the analysis worker for analysis results) and they must return at once. The
:class:`EngineBridge` is such a listener: each call only appends to a queue (frames: replaces
the latest frame of its position and channel) and, if the queue was empty, emits a signal.
That signal reaches the bridge's slot on the GUI thread through a queued connection (the
bridge lives there), which drains the queue in batches and re-emits them as Qt signals:
``events``, ``telemetry``, ``frames``, ``analysis``. So however fast a run on the virtual
clock produces data, the GUI thread gets one wake-up per batch, never one per sample, and the
engine never waits for the GUI.

A drain hands over at most :data:`DRAIN_BATCH` items per signal and stops after
:data:`DRAIN_BUDGET_S` of work, to be resumed at the event loop's next turn, so input,
timers and painting keep going while a burst (a run on the virtual clock) is worked off.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, is_dataclass
from typing import Any

import numpy as np
from PyQt5.QtCore import QObject, QTimer, pyqtSignal, pyqtSlot

from drivers.clock import RealClock

__all__ = ["DRAIN_BATCH", "DRAIN_BUDGET_S", "EngineBridge"]

#: Queue items handed over per signal.
DRAIN_BATCH = 500
#: GUI time one drain may take before it yields to the event loop (seconds).
DRAIN_BUDGET_S = 0.015


class EngineBridge(QObject):
    """A run or manual-control listener whose data arrive as Qt signals on the GUI thread.

    Signals (all on the GUI thread, each carrying a list in arrival order):
        events: ``(t_s, source, kind, message)`` tuples.
        telemetry: ``(device, t_s, values)`` tuples.
        frames: ``(record, pixels)`` pairs, the latest of each position and channel.
        analysis: ``(position, t_s, values)`` tuples.
        state: a :class:`~chipctl.engine.run.RunStatus` at each state change.
    """

    events = pyqtSignal(list)
    telemetry = pyqtSignal(list)
    frames = pyqtSignal(list)
    analysis = pyqtSignal(list)
    state = pyqtSignal(object)
    _wake = pyqtSignal()

    def __init__(self, parent: QObject | None = None) -> None:
        """Create the bridge on the GUI thread."""
        super().__init__(parent)
        self._lock = threading.Lock()
        self._queue: deque[tuple[str, Any]] = deque()
        self._frames: dict[tuple[str, str], tuple[Any, np.ndarray[Any, Any]]] = {}
        self._woken = False
        self._wake.connect(self._drain)  # queued: the emitter is on another thread
        self.received = 0
        self._clock = RealClock()

    # -- listener interface (any thread; returns at once) ------------------------------

    def _put(self, kind: str, item: Any) -> None:
        with self._lock:
            self._queue.append((kind, item))
            wake = not self._woken
            self._woken = True
        if wake:
            self._wake.emit()

    def on_event(self, t_s: float, source: str, kind: str, message: str) -> None:
        """Queue an event."""
        self._put("event", (t_s, source, kind, message))

    def on_telemetry(self, device: str, t_s: float, values: Mapping[str, float]) -> None:
        """Queue a telemetry sample (the values are copied)."""
        self._put("telemetry", (device, t_s, dict(values)))

    def on_frame(self, record: Any, pixels: np.ndarray[Any, Any]) -> None:
        """Keep the latest frame of its position and channel (pixels are copied)."""
        key = (str(record.position), str(record.channel))
        copy = np.array(pixels, copy=True)
        with self._lock:
            fresh = key not in self._frames
            self._frames[key] = (record, copy)
        if fresh:
            self._put("frame", key)

    def on_analysis(self, *args: Any) -> None:
        """Queue a chamber's analysis result.

        Accepts ``(position, t_s, values)`` (the run's listener interface) or one result
        object with a ``chamber`` row (what :class:`chipctl.analysis.live.LiveAnalysis`
        hands its ``on_result``); values are keyed by metric (``growth_rate_per_h``...).
        """
        if len(args) == 3:
            position, t_s, values = args
            plain = {str(k).rpartition(".")[2]: float(v) for k, v in dict(values).items()}
        else:
            row = args[0].chamber
            position, t_s = row.position, row.t_s
            items = (
                asdict(row).items()
                if is_dataclass(row) and not isinstance(row, type)
                else vars(row).items()
            )
            plain = {
                name: float(value)
                for name, value in items
                if isinstance(value, int | float) and not isinstance(value, bool)
            }
        self._put("analysis", (str(position), float(t_s), plain))

    def on_state(self, status: Any) -> None:
        """Queue a run-state change."""
        self._put("state", status)

    # -- GUI thread --------------------------------------------------------------------

    @pyqtSlot()
    def _drain(self) -> None:
        """Hand what is queued to the signals' receivers, in batches, within a time budget."""
        start_s = self._clock.now_s()
        while True:
            more = self._drain_batch()
            if not more:
                return
            if self._clock.now_s() - start_s > DRAIN_BUDGET_S:
                QTimer.singleShot(0, self._drain)
                return

    def _drain_batch(self) -> bool:
        """Emit one batch; returns whether items are left."""
        with self._lock:
            n = min(len(self._queue), DRAIN_BATCH)
            items = [self._queue.popleft() for _ in range(n)]
            more = bool(self._queue)
            if not more:
                self._woken = False
            frames: list[tuple[Any, np.ndarray[Any, Any]]] = []
            for kind, key in items:
                if kind == "frame":
                    frame = self._frames.pop(key, None)
                    if frame is not None:
                        frames.append(frame)
        self.received += n
        events = [item for kind, item in items if kind == "event"]
        telemetry = [item for kind, item in items if kind == "telemetry"]
        analysis = [item for kind, item in items if kind == "analysis"]
        states = [item for kind, item in items if kind == "state"]
        if events:
            self.events.emit(events)
        if telemetry:
            self.telemetry.emit(telemetry)
        if frames:
            self.frames.emit(frames)
        if analysis:
            self.analysis.emit(analysis)
        for status in states:
            self.state.emit(status)
        return more

    def flush(self) -> None:
        """Drain everything now (GUI thread; for tests and before a run's final state)."""
        while True:
            with self._lock:
                if not self._queue:
                    self._woken = False
                    return
            self._drain_batch()
