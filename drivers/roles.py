"""Role interfaces: what the engine needs of a pump, a valve, a flow sensor.

Each role is a small abstract class whose public methods validate their arguments
(before any I/O) and then call an abstract ``_do_*`` hook that a vendor driver
implements, in the manner of python-microscope's ``FilterWheel`` (aesthetics-anchors §5.8):
every driver gets the same validation for free, and one contract suite tests it once.

Units are in the names: ``_ul`` microlitres, ``_ul_min`` microlitres per minute, ``_mm``
millimetres, ``_s`` seconds, ``_c`` degrees Celsius. Queries are explicit ``read_*``
methods, never properties, because they do I/O.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import Enum

__all__ = [
    "Device",
    "FlowReading",
    "FlowSensor",
    "PumpDirection",
    "PumpStatus",
    "Syringe",
    "SyringePump",
    "Valve",
]


@dataclass(frozen=True, slots=True)
class Syringe:
    """A syringe as mounted on a pump.

    Args:
        name: catalogue name, e.g. ``"BD Plastipak 10 mL"``.
        inner_diameter_mm: barrel inner diameter; sets the volume per plunger travel.
        volume_ul: nominal capacity.
    """

    name: str
    inner_diameter_mm: float
    volume_ul: float

    def __post_init__(self) -> None:
        """Reject impossible syringes."""
        if not (math.isfinite(self.inner_diameter_mm) and self.inner_diameter_mm > 0):
            raise ValueError(f"syringe inner diameter must be > 0 mm, got {self.inner_diameter_mm}")
        if not (math.isfinite(self.volume_ul) and self.volume_ul > 0):
            raise ValueError(f"syringe volume must be > 0 uL, got {self.volume_ul}")

    @property
    def area_mm2(self) -> float:
        """Return the plunger area (mm^2); 1 mm of travel moves ``area_mm2`` uL."""
        return math.pi * (self.inner_diameter_mm / 2.0) ** 2


class PumpDirection(Enum):
    """Which way the plunger moves."""

    INFUSE = "infuse"
    WITHDRAW = "withdraw"


@dataclass(frozen=True, slots=True)
class PumpStatus:
    """One status reading of a syringe pump.

    Volumes count since ``connect()`` (drivers clear the pump's counters then).

    Args:
        running: the motor is moving.
        direction: the current (or last) direction.
        rate_ul_min: the rate the pump is running at; 0 when stopped.
        infused_ul: total volume infused.
        withdrawn_ul: total volume withdrawn.
        stalled: the pump reports a stall (force limit exceeded, occlusion).
        alarm: a short alarm name (``"stall"``, ``"end_of_travel"``, ``"reset"``...) or None.
    """

    running: bool
    direction: PumpDirection
    rate_ul_min: float
    infused_ul: float
    withdrawn_ul: float
    stalled: bool = False
    alarm: str | None = None

    @property
    def delivered_ul(self) -> float:
        """Return the net volume pushed out of the syringe (infused minus withdrawn)."""
        return self.infused_ul - self.withdrawn_ul


class Device(ABC):
    """What every instrument device has: a name, a lifecycle, and a watchdog hook.

    Constructors do no I/O: :meth:`connect` does. Each role below adds its own commands.

    Args:
        name: the device's name in the instrument config.
    """

    #: Period at which :meth:`heartbeat` must be called while a run is in progress, or
    #: None if the device needs none (New Era safe mode has a communication watchdog).
    heartbeat_period_s: float | None = None

    def __init__(self, *, name: str) -> None:
        """Remember the name; no I/O."""
        self.name = name

    @abstractmethod
    def connect(self) -> None:
        """Open the link, check the device answers, and set it up for use."""

    @abstractmethod
    def close(self) -> None:
        """Release the link (does not stop a pump: call ``stop()`` first)."""

    @abstractmethod
    def reconnect(self) -> None:
        """Re-open the link after it was lost and re-read the device's state.

        Unlike :meth:`connect`, this changes nothing on the device (counters, settings): it
        resynchronises the driver with what the device now reports, so nothing drifts
        silently. Raises :class:`drivers.errors.TransportError` if the link is still gone.
        """

    def heartbeat(self) -> None:
        """Keep the device's communication watchdog alive (default: nothing to do)."""
        return


class SyringePump(Device):
    """A syringe pump: infuse or withdraw at a rate, for a volume or until stopped.

    Subclasses implement the ``_do_*`` hooks and :meth:`_rate_limits_ul_min`. The public
    methods validate first (``ValueError`` before any byte is sent).

    Args:
        name: the device's name in the instrument config.
        syringe: the syringe mounted at start.
    """

    def __init__(self, *, name: str, syringe: Syringe) -> None:
        """Remember name and syringe; no I/O (that is :meth:`connect`)."""
        super().__init__(name=name)
        self._syringe = syringe

    @property
    def syringe(self) -> Syringe:
        """Get the mounted syringe (cached; no I/O)."""
        return self._syringe

    # -- limits ----------------------------------------------------------------------

    @abstractmethod
    def _rate_limits_ul_min(self, syringe: Syringe) -> tuple[float, float]:
        """Return (min, max) rate for ``syringe`` on this pump model."""

    def rate_range_ul_min(self, syringe: Syringe | None = None) -> tuple[float, float]:
        """Return the (min, max) rate in uL/min this pump can run ``syringe`` at."""
        return self._rate_limits_ul_min(syringe or self._syringe)

    def check_rate(self, rate_ul_min: float, syringe: Syringe | None = None) -> None:
        """Raise ``ValueError`` if ``rate_ul_min`` is outside this pump's range."""
        if not (math.isfinite(rate_ul_min) and rate_ul_min > 0):
            raise ValueError(f"{self.name}: rate must be > 0 uL/min, got {rate_ul_min:g}")
        low, high = self.rate_range_ul_min(syringe)
        if not low <= rate_ul_min <= high:
            syr = syringe or self._syringe
            raise ValueError(
                f"{self.name}: rate {rate_ul_min:g} uL/min is outside {low:.4g}..{high:.4g} "
                f"uL/min for a {syr.name} ({syr.inner_diameter_mm:g} mm) syringe"
            )

    def check_volume(self, volume_ul: float) -> None:
        """Raise ``ValueError`` if ``volume_ul`` cannot be pumped from the mounted syringe."""
        if not (math.isfinite(volume_ul) and volume_ul > 0):
            raise ValueError(f"{self.name}: volume must be > 0 uL, got {volume_ul:g}")
        if volume_ul > self._syringe.volume_ul:
            raise ValueError(
                f"{self.name}: volume {volume_ul:g} uL exceeds the {self._syringe.name} "
                f"capacity of {self._syringe.volume_ul:g} uL"
            )

    # -- commands --------------------------------------------------------------------

    def set_syringe(self, syringe: Syringe) -> None:
        """Mount another syringe: sends its diameter (and volume) to the pump."""
        self._do_set_syringe(syringe)
        self._syringe = syringe

    def infuse(self, rate_ul_min: float, volume_ul: float | None = None) -> None:
        """Start infusing at ``rate_ul_min``; stop by itself after ``volume_ul`` if given."""
        self._start(PumpDirection.INFUSE, rate_ul_min, volume_ul)

    def withdraw(self, rate_ul_min: float, volume_ul: float | None = None) -> None:
        """Start withdrawing at ``rate_ul_min``; stop by itself after ``volume_ul`` if given."""
        self._start(PumpDirection.WITHDRAW, rate_ul_min, volume_ul)

    def _start(self, direction: PumpDirection, rate_ul_min: float, volume_ul: float | None) -> None:
        self.check_rate(rate_ul_min)
        if volume_ul is not None:
            self.check_volume(volume_ul)
        self._do_run(direction, rate_ul_min, volume_ul)

    def stop(self) -> None:
        """Stop the motor. Safe to call at any time, also when already stopped."""
        self._do_stop()

    def read_status(self) -> PumpStatus:
        """Query the pump's state."""
        return self._do_read_status()

    # -- hooks -----------------------------------------------------------------------

    @abstractmethod
    def _do_set_syringe(self, syringe: Syringe) -> None:
        """Send the syringe's diameter (and volume, if the pump takes it)."""

    @abstractmethod
    def _do_run(
        self, direction: PumpDirection, rate_ul_min: float, volume_ul: float | None
    ) -> None:
        """Set rate (and target volume, or none) and start the motor."""

    @abstractmethod
    def _do_stop(self) -> None:
        """Stop the motor."""

    @abstractmethod
    def _do_read_status(self) -> PumpStatus:
        """Return the current status."""


class Valve(Device):
    """A selector valve with ``n_positions`` numbered ports (1-based, as on the device).

    Args:
        name: the device's name in the instrument config.
        n_positions: number of selectable positions.
    """

    def __init__(self, *, name: str, n_positions: int) -> None:
        """Remember name and size; no I/O."""
        if n_positions < 2:
            raise ValueError(f"{name}: a valve needs at least 2 positions, got {n_positions}")
        super().__init__(name=name)
        self.n_positions = n_positions

    def select(self, position: int) -> None:
        """Move to ``position`` (1..n_positions) and return when it is there."""
        if not 1 <= position <= self.n_positions:
            raise ValueError(f"{self.name}: position must be 1..{self.n_positions}, got {position}")
        self._do_select(position)

    def read_position(self) -> int:
        """Query the current position."""
        return self._do_read_position()

    @abstractmethod
    def _do_select(self, position: int) -> None:
        """Move to ``position`` (already validated)."""

    @abstractmethod
    def _do_read_position(self) -> int:
        """Return the current position."""


@dataclass(frozen=True, slots=True)
class FlowReading:
    """One flow-sensor sample.

    Args:
        flow_ul_min: volumetric flow (signed: negative is reverse flow).
        temperature_c: liquid temperature.
        air_in_line: the sensor flags a bubble.
        high_flow: the flow exceeds the sensor's calibrated range.
    """

    flow_ul_min: float
    temperature_c: float
    air_in_line: bool = False
    high_flow: bool = False


class FlowSensor(Device):
    """A liquid flow sensor that is read on demand.

    Args:
        name: the device's name in the instrument config.
    """

    @abstractmethod
    def read(self) -> FlowReading:
        """Return the latest sample."""
