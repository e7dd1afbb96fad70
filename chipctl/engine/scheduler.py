"""A discrete-event scheduler on a :class:`drivers.clock.Clock`.

Protocol steps, telemetry polls, heartbeats and (later) imaging and interlock checks are
all timed callbacks in one heap, executed one at a time on the engine thread. Waiting for
the next due callback goes through the clock: under a virtual clock it is instant, so a
3-day protocol runs as fast as its callbacks; under a real clock the wait is cut into
slices of at most :data:`MAX_REAL_WAIT_S` so a stop request is honoured promptly.

Periodic tasks are rescheduled against absolute deadlines (``next += period``), so they do
not drift (perf-limits §6).

Only the engine thread calls :meth:`Scheduler.run`; :meth:`Scheduler.request_stop` and
:meth:`Scheduler.call_soon_threadsafe` may be called from any thread.
"""

from __future__ import annotations

import heapq
import itertools
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from drivers.clock import Clock

__all__ = ["MAX_REAL_WAIT_S", "Scheduler", "Task"]

#: Longest uninterrupted real-time wait, so stop requests are seen within this time.
MAX_REAL_WAIT_S = 0.1


@dataclass(order=True)
class Task:
    """A scheduled callback; ordered by due time, then by scheduling order."""

    due_s: float
    seq: int
    callback: Callable[[], None] = field(compare=False)
    name: str = field(compare=False, default="")
    period_s: float | None = field(compare=False, default=None)
    cancelled: bool = field(compare=False, default=False)
    first_s: float = field(compare=False, default=0.0)
    count: int = field(compare=False, default=0)

    def cancel(self) -> None:
        """Do not run this task (again)."""
        self.cancelled = True


class Scheduler:
    """Runs timed callbacks in due-time order on a clock.

    Args:
        clock: the run's clock.
    """

    def __init__(self, clock: Clock) -> None:
        """Create an empty scheduler."""
        self.clock = clock
        self._heap: list[Task] = []
        self._seq = itertools.count()
        self._stop = threading.Event()
        self._inbox: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()

    def call_at(self, due_s: float, callback: Callable[[], None], *, name: str = "") -> Task:
        """Run ``callback`` when the clock reaches ``due_s`` (engine thread only)."""
        task = Task(due_s, next(self._seq), callback, name)
        heapq.heappush(self._heap, task)
        return task

    def call_later(self, delay_s: float, callback: Callable[[], None], *, name: str = "") -> Task:
        """Run ``callback`` ``delay_s`` seconds from now (engine thread only)."""
        return self.call_at(self.clock.now_s() + max(delay_s, 0.0), callback, name=name)

    def call_every(
        self,
        period_s: float,
        callback: Callable[[], None],
        *,
        first_s: float | None = None,
        name: str = "",
    ) -> Task:
        """Run ``callback`` every ``period_s`` seconds, first at ``first_s`` (default: now)."""
        if not period_s > 0:
            raise ValueError(f"period must be > 0 s, got {period_s}")
        due_s = self.clock.now_s() if first_s is None else first_s
        task = Task(due_s, next(self._seq), callback, name, period_s, first_s=due_s)
        heapq.heappush(self._heap, task)
        return task

    def call_soon_threadsafe(self, callback: Callable[[], None]) -> None:
        """Queue ``callback`` from any thread; it runs on the engine thread at its next turn."""
        self._inbox.put(callback)

    def request_stop(self) -> None:
        """Make :meth:`run` return after the callback in progress (any thread)."""
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        """Tell whether a stop was requested."""
        return self._stop.is_set()

    def _drain_inbox(self) -> None:
        while True:
            try:
                callback = self._inbox.get_nowait()
            except queue.Empty:
                return
            callback()

    def _wait_until(self, due_s: float) -> bool:
        """Wait on the clock until ``due_s``; False if interrupted by a stop or an inbox item."""
        if self.clock.is_virtual:
            self.clock.sleep_until_s(due_s)
            return True
        while not self._stop.is_set() and self._inbox.empty():
            remaining_s = due_s - self.clock.now_s()
            if remaining_s <= 0:
                return True
            self.clock.sleep_s(min(remaining_s, MAX_REAL_WAIT_S))
        return False

    def run(self) -> None:
        """Execute tasks in order until :meth:`request_stop` (or nothing is left).

        An exception from a callback propagates to the caller (the engine decides what a
        failure means); the scheduler's state stays consistent.
        """
        while not self._stop.is_set():
            self._drain_inbox()
            if self._stop.is_set():
                break
            while self._heap and self._heap[0].cancelled:
                heapq.heappop(self._heap)
            if not self._heap:
                if self._inbox.empty():
                    return
                continue
            task = self._heap[0]
            if not self._wait_until(task.due_s):
                continue
            heapq.heappop(self._heap)
            if task.period_s is not None:
                # the same object is pushed back, so its cancel() works across repetitions;
                # due times are first + n * period, so they do not accumulate rounding
                task.count += 1
                task.due_s = task.first_s + task.count * task.period_s
                task.seq = next(self._seq)
                heapq.heappush(self._heap, task)
            task.callback()
