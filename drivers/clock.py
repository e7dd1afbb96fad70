"""Clocks: the only place in chipctl that reads time or sleeps.

Every wait and every timestamp in the project goes through a :class:`Clock`, so that the
same code runs on real time (hardware, live demos) and on virtual time (tests, a 3-day
protocol simulated in seconds). A meta-test forbids ``time.sleep``, ``time.time`` and
``time.monotonic`` anywhere else.

Times are seconds (``t_s``) from an arbitrary origin; only differences are meaningful.
Wall-clock (UTC) time is not a clock's business: it only labels a run file (when the run
really happened, simulated or not) and is read where the run file is written.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "RealClock", "ReplayClock", "ScaledClock", "VirtualClock"]


@runtime_checkable
class Clock(Protocol):
    """Time source and sleeper shared by the engine, the drivers and the simulator glue."""

    @property
    def is_virtual(self) -> bool:
        """Tell whether time is simulated (sleeps return at once and advance time)."""
        ...

    def now_s(self) -> float:
        """Return the current time in seconds (monotonic, arbitrary origin)."""
        ...

    def sleep_s(self, duration_s: float) -> None:
        """Block the calling thread for ``duration_s`` seconds of this clock's time."""
        ...

    def sleep_until_s(self, t_s: float) -> None:
        """Block until :meth:`now_s` reaches ``t_s`` (returns at once if it already has)."""
        ...


class RealClock:
    """Monotonic real time.

    ``sleep_until_s`` sleeps against an absolute deadline, so a periodic loop written as
    ``next_s += period_s; clock.sleep_until_s(next_s)`` does not drift (perf-limits §6:
    a naive ``sleep(period)`` drifts 0.7-1 % at 10 ms).
    """

    is_virtual = False

    def now_s(self) -> float:
        """Return ``time.monotonic()``."""
        return time.monotonic()

    def sleep_s(self, duration_s: float) -> None:
        """Sleep ``duration_s`` seconds of real time (negative durations return at once)."""
        if duration_s > 0:
            time.sleep(duration_s)

    def sleep_until_s(self, t_s: float) -> None:
        """Sleep until the monotonic clock reaches ``t_s``."""
        self.sleep_s(t_s - time.monotonic())


class ScaledClock:
    """Real time running ``speed`` times faster: for demos and GUI runs of long protocols.

    Simulated devices see ``now_s`` advance ``speed`` seconds per real second. It is still
    a real-time clock in the sense that sleeping takes wall time.
    """

    is_virtual = False

    def __init__(self, speed: float) -> None:
        """Create a clock that runs ``speed`` (> 0) times faster than real time."""
        if not speed > 0:
            raise ValueError(f"clock speed must be > 0, got {speed}")
        self.speed = float(speed)
        self._origin_real_s = time.monotonic()

    def now_s(self) -> float:
        """Return scaled seconds since the clock was created."""
        return (time.monotonic() - self._origin_real_s) * self.speed

    def sleep_s(self, duration_s: float) -> None:
        """Sleep ``duration_s`` scaled seconds (``duration_s / speed`` real seconds)."""
        if duration_s > 0:
            time.sleep(duration_s / self.speed)

    def sleep_until_s(self, t_s: float) -> None:
        """Sleep until the scaled time reaches ``t_s``."""
        self.sleep_s(t_s - self.now_s())


class VirtualClock:
    """Simulated time: sleeping returns at once and moves time forward.

    Time never goes backwards. Thread-safe: the engine thread sleeps, other threads (the
    GUI, the run-file writer) may read ``now_s`` at any moment.

    Args:
        start_s: the initial time.
    """

    is_virtual = True

    def __init__(self, start_s: float = 0.0) -> None:
        """Create a virtual clock at ``start_s``."""
        self._now_s = float(start_s)
        self._lock = threading.Lock()

    def now_s(self) -> float:
        """Return the current virtual time."""
        with self._lock:
            return self._now_s

    def sleep_s(self, duration_s: float) -> None:
        """Advance virtual time by ``duration_s`` (negative durations do nothing)."""
        if duration_s > 0:
            with self._lock:
                self._now_s += duration_s

    def sleep_until_s(self, t_s: float) -> None:
        """Advance virtual time to ``t_s`` if it lies in the future."""
        with self._lock:
            if t_s > self._now_s:
                self._now_s = t_s

    def advance_s(self, duration_s: float) -> None:
        """Move time forward by ``duration_s``; an alias of :meth:`sleep_s` for tests."""
        self.sleep_s(duration_s)


class ReplayClock:
    """Virtual time until :meth:`go_live`, then real time (optionally scaled) from there.

    Used to resume a simulated run after a crash: the run is re-simulated from its seed on
    virtual time up to the moment of the crash (as fast as the computer allows), then goes
    on in the clock mode it was started with. Time never goes backwards across the switch.
    """

    def __init__(self, start_s: float = 0.0) -> None:
        """Create a clock in virtual mode at ``start_s``."""
        self._virtual = VirtualClock(start_s)
        self._speed: float | None = None
        self._live_origin_s = 0.0
        self._live_real_s = 0.0

    @property
    def is_virtual(self) -> bool:
        """Tell whether the clock is still virtual."""
        return self._speed is None

    def go_live(self, speed: float = 1.0) -> None:
        """From now on, advance ``speed`` seconds per real second (``speed`` > 0)."""
        if not speed > 0:
            raise ValueError(f"clock speed must be > 0, got {speed}")
        self._live_origin_s = self._virtual.now_s()
        self._live_real_s = time.monotonic()
        self._speed = float(speed)

    def now_s(self) -> float:
        """Return the current time."""
        if self._speed is None:
            return self._virtual.now_s()
        return self._live_origin_s + (time.monotonic() - self._live_real_s) * self._speed

    def sleep_s(self, duration_s: float) -> None:
        """Sleep ``duration_s`` (instantly while virtual)."""
        if self._speed is None:
            self._virtual.sleep_s(duration_s)
        elif duration_s > 0:
            time.sleep(duration_s / self._speed)

    def sleep_until_s(self, t_s: float) -> None:
        """Sleep until the clock reaches ``t_s``."""
        if self._speed is None:
            self._virtual.sleep_until_s(t_s)
        else:
            self.sleep_s(t_s - self.now_s())
