"""The protocol step model: typed, frozen steps that the runner dispatches with ``match``.

A protocol file (TOML) or a Python script compiles to a :class:`Protocol`: metadata and a
tuple of steps. Steps are plain data in canonical units; they know nothing about devices
or time. New kinds of step (dose, exchange, image, branches...) are new dataclasses in the
:data:`Step` union, and mypy then points at every ``match`` that does not handle them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from drivers.roles import PumpDirection

__all__ = [
    "ImageStep",
    "Protocol",
    "PumpStep",
    "Step",
    "StepInfo",
    "StopStep",
    "ValveStep",
    "WaitStep",
]


@dataclass(frozen=True, slots=True)
class StepInfo:
    """Where a step came from, for messages and events.

    Args:
        index: 1-based position in the protocol.
        name: the step's optional name.
        line: 1-based line of the step's table in the source file, where known.
    """

    index: int
    name: str | None = None
    line: int | None = None

    def label(self) -> str:
        """Return ``"step 3 ('dose')"`` or ``"step 3"``."""
        return f"step {self.index}" + (f" ({self.name!r})" if self.name else "")


@dataclass(frozen=True, slots=True)
class PumpStep:
    """Run one pump in one direction at a rate, for a volume or a duration.

    A duration is turned into a target volume (``rate x duration``) and sent to the pump,
    so the pump stops by itself even if the controller dies.

    Args:
        info: where the step came from.
        pump: the pump's name in the instrument config.
        direction: infuse or withdraw.
        rate_ul_min: the rate.
        volume_ul: the volume to move, if given as a volume.
        duration_s: the time to run, if given as a duration.
        wait: whether the next step waits for this one to finish (False: start it and go on).
    """

    info: StepInfo
    pump: str
    direction: PumpDirection
    rate_ul_min: float
    volume_ul: float | None = None
    duration_s: float | None = None
    wait: bool = True

    @property
    def target_volume_ul(self) -> float:
        """Return the volume this step moves."""
        if self.volume_ul is not None:
            return self.volume_ul
        assert self.duration_s is not None  # guaranteed by the loader
        return self.rate_ul_min * self.duration_s / 60.0

    @property
    def expected_duration_s(self) -> float:
        """Return how long the pump runs."""
        return self.target_volume_ul / self.rate_ul_min * 60.0


@dataclass(frozen=True, slots=True)
class WaitStep:
    """Let time pass (pumps started without ``wait`` keep running)."""

    info: StepInfo
    duration_s: float


@dataclass(frozen=True, slots=True)
class StopStep:
    """Stop one pump."""

    info: StepInfo
    pump: str


@dataclass(frozen=True, slots=True)
class ValveStep:
    """Turn a selector valve to a position (a number, or a port name from the config)."""

    info: StepInfo
    valve: str
    position: int | str


@dataclass(frozen=True, slots=True)
class ImageStep:
    """Image positions in channels on a schedule, alongside the steps that follow.

    The step starts the schedule and the protocol goes on at once; the run ends only
    when every schedule has taken its last time point.

    Args:
        info: where the step came from.
        positions: the named positions to visit, or None for every chamber.
        channels: the channel presets to acquire at each position.
        times_s: when to image, in seconds after the step starts (sorted, first may be 0).
    """

    info: StepInfo
    positions: tuple[str, ...] | None
    channels: tuple[str, ...]
    times_s: tuple[float, ...]

    @property
    def duration_s(self) -> float:
        """Return when the last time point is taken, after the step starts."""
        return self.times_s[-1]


Step = PumpStep | WaitStep | StopStep | ValveStep | ImageStep


@dataclass(frozen=True)
class Protocol:
    """A validated protocol.

    Args:
        name: the protocol's name.
        description: what it does, for people.
        source: the file path or built-in name it was loaded from.
        text: the exact source text (stored in the run file).
        steps: the steps in order.
    """

    name: str
    description: str
    source: str
    text: str
    steps: tuple[Step, ...]

    @property
    def sha256(self) -> str:
        """Return the SHA-256 of the source text (hex)."""
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    def pumps(self) -> list[str]:
        """Return the names of the pumps the protocol uses, in order of first use."""
        names: list[str] = []
        for step in self.steps:
            if isinstance(step, PumpStep | StopStep) and step.pump not in names:
                names.append(step.pump)
        return names
