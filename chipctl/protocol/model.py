"""The protocol model: typed, frozen steps that the runner dispatches with ``match``.

A protocol file (TOML) or a Python script compiles to a :class:`Protocol`: metadata,
parameters, syringe contents, a chamber map, interlocks and a tree of steps. Steps are plain
data in canonical units; they know nothing about devices or time.

Two kinds of step:

- **primitives**, which the runner executes: :class:`PumpStep`, :class:`StopStep`,
  :class:`ValveStep`, :class:`WaitStep`, :class:`ImageStep`, :class:`PromptStep`, and the
  structure steps :class:`SequenceStep` (steps in order), :class:`ParallelStep` (branches
  side by side) and :class:`RepeatStep`;
- **actions** that say what the operator means and are compiled into primitives once the
  rig is known (:mod:`chipctl.protocol.compile`): :class:`PrimeStep`, :class:`PerfuseStep`,
  :class:`DoseStep`, :class:`ExchangeStep`, :class:`SampleStep`.

New kinds of step are new dataclasses in the :data:`Step` union, and mypy then points at
every ``match`` that does not handle them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum

from drivers.roles import PumpDirection

__all__ = [
    "ChamberMap",
    "Condition",
    "DoseProfile",
    "DoseStep",
    "ExchangeStep",
    "ImageStep",
    "InterlockSpec",
    "Parameter",
    "ParallelStep",
    "PausePolicy",
    "PerfuseStep",
    "PrimeStep",
    "PromptStep",
    "Protocol",
    "PumpStep",
    "RepeatStep",
    "SampleStep",
    "SequenceStep",
    "Step",
    "StepInfo",
    "StopStep",
    "SyringeContents",
    "ValveStep",
    "WaitStep",
    "walk",
]


@dataclass(frozen=True, slots=True)
class StepInfo:
    """Where a step came from, for messages, events and the run journal.

    Args:
        index: 1-based position among its siblings.
        name: the step's optional name.
        line: 1-based line of the step's table in the source file, where known.
        path: the step's address in the tree: ``"3"``, ``"3/2.1"`` (step 3, branch 2,
            step 1), ``"4/1"`` (step 4's first body step). Unique within a protocol.
    """

    index: int
    name: str | None = None
    line: int | None = None
    path: str = ""

    def label(self) -> str:
        """Return ``"step 3 ('dose')"`` or ``"step 3/2.1"``."""
        where = self.path or str(self.index)
        return f"step {where}" + (f" ({self.name!r})" if self.name else "")

    def child(
        self, index: int, name: str | None, line: int | None, branch: int | None = None
    ) -> StepInfo:
        """Return the info of child ``index`` (1-based), in branch ``branch`` if given."""
        base = self.path or str(self.index)
        path = f"{base}/{branch}.{index}" if branch is not None else f"{base}/{index}"
        return StepInfo(index, name, line, path)


# -- primitives -------------------------------------------------------------------------


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
class Condition:
    """A condition on a live signal, held for a time.

    Signals are named ``"<device>.<quantity>"`` for telemetry (``"flow.flow_ul_min"``,
    ``"chip.p_medium_kpa"``) and ``"analysis.<position>.<metric>"`` for live analysis
    (``"analysis.chamber 8.growth_rate_per_h"``).

    Args:
        signal: the signal's name.
        above: true while the signal is above this value.
        below: true while the signal is below this value.
        hold_s: how long it must hold before the condition is met.
    """

    signal: str
    above: float | None = None
    below: float | None = None
    hold_s: float = 0.0

    def holds(self, value: float) -> bool:
        """Tell whether ``value`` satisfies the bounds (NaN never does)."""
        if value != value:  # NaN
            return False
        if self.above is not None and not value > self.above:
            return False
        return not (self.below is not None and not value < self.below)

    def describe(self) -> str:
        """Return ``"flow.flow_ul_min > 1"``-style text."""
        parts = []
        if self.above is not None:
            parts.append(f"> {self.above:g}")
        if self.below is not None:
            parts.append(f"< {self.below:g}")
        text = f"{self.signal} {' and '.join(parts)}"
        return text + (f" for {self.hold_s:g} s" if self.hold_s else "")


@dataclass(frozen=True, slots=True)
class WaitStep:
    """Let time pass (pumps started without ``wait`` keep running).

    Exactly one of ``duration_s``, ``until_clock`` and ``condition`` is set.

    Args:
        info: where the step came from.
        duration_s: a fixed wait.
        until_clock: a local time of day ``(hour, minute)``: wait until it next comes.
        condition: wait until a signal condition holds.
        timeout_s: longest wait for a condition (None: no limit).
        on_timeout: what happens when the timeout passes: ``"continue"`` or ``"abort"``.
        expect_s: how long preflight assumes a condition wait takes (default: the timeout).
    """

    info: StepInfo
    duration_s: float | None = None
    until_clock: tuple[int, int] | None = None
    condition: Condition | None = None
    timeout_s: float | None = None
    on_timeout: str = "continue"
    expect_s: float | None = None


@dataclass(frozen=True, slots=True)
class StopStep:
    """Stop one pump, or every pump (``pump`` is None)."""

    info: StepInfo
    pump: str | None


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
        positions: the named positions to visit, or None for every position.
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


@dataclass(frozen=True, slots=True)
class PromptStep:
    """Ask the operator to confirm something; auto-confirmed on a simulated rig.

    Args:
        info: where the step came from.
        message: what the operator must do or confirm.
        timeout_s: abort the run if nobody confirms within this time (None: wait).
    """

    info: StepInfo
    message: str
    timeout_s: float | None = None


@dataclass(frozen=True, slots=True)
class SequenceStep:
    """Steps in order (what an action compiles into; also a branch's body)."""

    info: StepInfo
    steps: tuple[Step, ...]


@dataclass(frozen=True, slots=True)
class ParallelStep:
    """Branches that run side by side; the step ends when every branch has."""

    info: StepInfo
    branches: tuple[SequenceStep, ...]


@dataclass(frozen=True, slots=True)
class RepeatStep:
    """Run ``body`` ``count`` times."""

    info: StepInfo
    count: int
    body: SequenceStep


# -- actions (compiled into primitives against the rig) ----------------------------------


@dataclass(frozen=True, slots=True)
class PrimeStep:
    """Fill a pump's line up to the chip with what its syringe holds.

    Args:
        info: where the step came from.
        pump: the pump.
        rate_ul_min: the priming rate.
        volume_ul: the volume (None: the line's dead volume from the chip description).
    """

    info: StepInfo
    pump: str
    rate_ul_min: float
    volume_ul: float | None = None


@dataclass(frozen=True, slots=True)
class PerfuseStep:
    """Run several pumps at their rates for a duration, together.

    Args:
        info: where the step came from.
        rates_ul_min: pump -> infusion rate.
        duration_s: how long.
        wait: False starts the pumps and goes on at once.
    """

    info: StepInfo
    rates_ul_min: tuple[tuple[str, float], ...]
    duration_s: float
    wait: bool = True


class DoseProfile(Enum):
    """How the drug concentration at the chambers changes during a dose step."""

    CONSTANT = "constant"  # drug for the whole duration
    PULSE = "pulse"  # drug for ``on``, then washout for the rest
    STEP = "step"  # carrier only until ``start``, then drug to the end
    WASHOUT = "washout"  # carrier only (at the combined rate)


@dataclass(frozen=True, slots=True)
class DoseStep:
    """Expose the chambers to a drug profile through the drug and carrier inlets.

    The drug pump and the carrier (medium) pump run at equal rates while drug is on, so a
    dilution-ladder chip gives each chamber its fraction of the drug syringe's
    concentration; while drug is off the carrier runs at twice the rate, so the chambers'
    flow stays the same. Switching times are advanced by the time the drug front needs to
    reach the chambers through the tubing's dead volume, so the profile holds at the
    chambers, not at the pumps.

    Args:
        info: where the step came from.
        drug_pump: the pump whose syringe holds the drug.
        carrier_pump: the pump whose syringe holds drug-free medium.
        rate_ul_min: the rate of each inlet while drug is on.
        profile: the profile.
        duration_s: total duration of the step (at the chambers).
        on_s: how long drug is on, for a pulse.
        start_s: when drug starts, for a step.
    """

    info: StepInfo
    drug_pump: str
    carrier_pump: str
    rate_ul_min: float
    profile: DoseProfile
    duration_s: float
    on_s: float | None = None
    start_s: float | None = None


@dataclass(frozen=True, slots=True)
class ExchangeStep:
    """Draw a liquid from one port of a distribution-valve pump and dispense it to another.

    Used for seeding cells, washes and stains through a Cavro-style pump. Volumes larger
    than the syringe are moved in several strokes.

    Args:
        info: where the step came from.
        pump: the pump with the distribution valve.
        source: the port to draw from.
        target: the port to dispense to.
        volume_ul: the volume to move.
        rate_ul_min: the dispense rate.
        draw_rate_ul_min: the draw rate.
    """

    info: StepInfo
    pump: str
    source: str
    target: str
    volume_ul: float
    rate_ul_min: float
    draw_rate_ul_min: float


@dataclass(frozen=True, slots=True)
class SampleStep:
    """Send the chip's effluent to a sample port for a time, then back.

    Args:
        info: where the step came from.
        valve: the outlet selector valve.
        port: the sample port.
        duration_s: how long to collect.
        back_to: the port to return to (``"waste"``).
    """

    info: StepInfo
    valve: str
    port: str
    duration_s: float
    back_to: str = "waste"


Step = (
    PumpStep
    | WaitStep
    | StopStep
    | ValveStep
    | ImageStep
    | PromptStep
    | SequenceStep
    | ParallelStep
    | RepeatStep
    | PrimeStep
    | PerfuseStep
    | DoseStep
    | ExchangeStep
    | SampleStep
)


def walk(steps: tuple[Step, ...]) -> Iterator[Step]:
    """Yield every step of a tree, depth first, parents before children."""
    for step in steps:
        yield step
        match step:
            case SequenceStep():
                yield from walk(step.steps)
            case ParallelStep():
                yield from walk(step.branches)
            case RepeatStep():
                yield from walk((step.body,))
            case _:
                pass


# -- protocol-level tables ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Parameter:
    """A typed, overridable protocol parameter.

    Args:
        name: its name (used as ``"${name}"`` in step fields).
        kind: ``duration``, ``rate``, ``volume``, ``concentration``, ``pressure``,
            ``number``, ``integer``, ``text`` or ``boolean``.
        default: the default value, as written in the file.
        value: the value in effect (the default or an override), as written.
        minimum: the lowest allowed value (canonical units), if any.
        maximum: the highest allowed value (canonical units), if any.
        description: what it means, for people.
    """

    name: str
    kind: str
    default: str | int | float | bool
    value: str | int | float | bool
    minimum: float | None = None
    maximum: float | None = None
    description: str = ""


@dataclass(frozen=True, slots=True)
class SyringeContents:
    """What one pump's syringe holds at the start of the protocol.

    Args:
        pump: the pump.
        contents_nm: drug -> stock concentration (nM); empty for medium or buffer.
        fill_ul: the volume in the syringe at the start (None: full).
        label: a free-text description (``"culture medium"``).
    """

    pump: str
    contents_nm: dict[str, float] = field(default_factory=dict)
    fill_ul: float | None = None
    label: str = ""


@dataclass(frozen=True, slots=True)
class ChamberMap:
    """Which chambers are what, for the readout.

    Args:
        control: chambers that serve as the untreated reference.
        exclude: chambers left out of the analysis.
        labels: chamber -> condition label.
    """

    control: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)


class PausePolicy(Enum):
    """What the pumps do while a run is paused."""

    STOP_PUMPS = "stop_pumps"  # pumps stop; on resume they finish what was left
    KEEP_PERFUSING = "keep_perfusing"  # running pumps keep their rates; no new step starts


@dataclass(frozen=True, slots=True)
class InterlockSpec:
    """One interlock as written (protocol ``[[interlock]]`` or config ``[interlocks]``).

    Args:
        kind: ``pressure``, ``flow_deviation``, ``syringe_reserve``, ``pump_alarm``,
            ``bubble`` or ``lost_device``.
        action: ``warn``, ``pause``, ``stop_pump`` or ``abort``.
        scope: the device it concerns (None: every device it applies to).
        limit: the threshold in canonical units (kPa for pressure; fraction for a
            deviation tolerance or a syringe reserve).
        hold_s: how long the condition must last before the interlock trips.
        source: where it was declared (``"protocol"`` or ``"config"``).
    """

    kind: str
    action: str
    scope: str | None = None
    limit: float | None = None
    hold_s: float = 0.0
    source: str = "protocol"


@dataclass(frozen=True)
class Protocol:
    """A validated protocol.

    Args:
        name: the protocol's name.
        description: what it does, for people.
        source: the file path or built-in name it was loaded from.
        text: the exact source text (stored in the run file).
        steps: the top-level steps in order.
        parameters: the parameters, by name, with the values in effect.
        syringes: what each pump's syringe holds, by pump.
        chambers: the chamber map.
        interlocks: the protocol's interlocks.
        pause_policy: what pumps do while paused.
        max_pause_s: how long the run may stay paused before it is aborted.
        version: the protocol's own version text.
    """

    name: str
    description: str
    source: str
    text: str
    steps: tuple[Step, ...]
    parameters: dict[str, Parameter] = field(default_factory=dict)
    syringes: dict[str, SyringeContents] = field(default_factory=dict)
    chambers: ChamberMap = field(default_factory=ChamberMap)
    interlocks: tuple[InterlockSpec, ...] = ()
    pause_policy: PausePolicy = PausePolicy.STOP_PUMPS
    max_pause_s: float = 24 * 3600.0
    version: str = ""

    @property
    def sha256(self) -> str:
        """Return the SHA-256 of the source text (hex)."""
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    def overrides(self) -> dict[str, str]:
        """Return the parameters whose value differs from the default, as text."""
        return {p.name: str(p.value) for p in self.parameters.values() if p.value != p.default}

    def pumps(self) -> list[str]:
        """Return the names of the pumps the steps use, in order of first use."""
        names: list[str] = []

        def add(name: str | None) -> None:
            if name is not None and name not in names:
                names.append(name)

        for step in walk(self.steps):
            match step:
                case PumpStep() | StopStep() | PrimeStep() | ExchangeStep():
                    add(step.pump)
                case PerfuseStep():
                    for pump, _ in step.rates_ul_min:
                        add(pump)
                case DoseStep():
                    add(step.carrier_pump)
                    add(step.drug_pump)
                case _:
                    pass
        return names
