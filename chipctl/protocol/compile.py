"""Compile a protocol's actions into primitive steps, against the rig that will run them.

Actions say what the operator means (prime this line, dose these chambers with this
profile, exchange the chamber contents with stain); the runner only knows primitives
(pump, stop, valve, wait, image, prompt, and the structure steps). Compiling needs the rig:
a line's dead volume comes from the config's ``[chip]`` table and the pump's ``inlet``, a
Cavro stroke from its syringe. Each action becomes a :class:`SequenceStep` (or a
:class:`ParallelStep`) that keeps the action's :class:`StepInfo`, so events and errors
still name the step the operator wrote; its parts get child paths (``"5/2"``).

Dose compilation (see :class:`chipctl.protocol.model.DoseStep`): while drug is on, drug
and carrier pumps run at the same rate (the dilution ladder's design point); while it is
off, the carrier runs alone at twice the rate, so the chambers' flow does not change. A
drug line that has not been primed with the drug holds drug-free liquid that must be
pushed through first: the drug pump is then started earlier by ``dead volume / rate``
when the profile allows it (a step profile), and the preflight reports the arrival delay
when it does not (drug from the first second).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from chipctl.chip import chamber_of
from chipctl.errors import ProtocolError
from chipctl.protocol.model import (
    DoseProfile,
    DoseStep,
    ExchangeStep,
    ImageStep,
    ParallelStep,
    PerfuseStep,
    PrimeStep,
    PromptStep,
    Protocol,
    PumpStep,
    RepeatStep,
    SampleStep,
    SequenceStep,
    Step,
    StepInfo,
    StopStep,
    ValveStep,
    WaitStep,
)
from chipctl.rig import Rig
from drivers.roles import PumpDirection, SyringePump

__all__ = ["CompiledProtocol", "DoseNote", "compile_protocol", "find_pump", "step_error"]


@dataclass(frozen=True)
class DoseNote:
    """What the compiler decided for one dose step, for the preflight and the run file.

    Args:
        path: the dose step's path.
        lead_s: how much earlier the drug pump starts than the profile's switch time.
        arrival_delay_s: how long after the drug pump starts the drug reaches the chambers
            (0 when the line was primed with the drug).
    """

    path: str
    lead_s: float
    arrival_delay_s: float


@dataclass(frozen=True)
class CompiledProtocol:
    """A protocol's steps as primitives.

    Args:
        protocol: the source protocol.
        steps: the top-level steps, every action replaced by primitives.
        doses: what was decided for each dose step.
    """

    protocol: Protocol
    steps: tuple[Step, ...]
    doses: tuple[DoseNote, ...] = ()


def step_error(protocol: Protocol, info: StepInfo, field_name: str, message: str) -> ProtocolError:
    """Return the one-line error for ``field_name`` of the step at ``info``."""
    return ProtocolError(
        protocol.source,
        message,
        line=info.line,
        step_index=info.path or info.index,
        step_name=info.name,
        field=field_name,
    )


def find_pump(
    protocol: Protocol, rig: Rig, info: StepInfo, name: str, field_name: str
) -> SyringePump:
    """Return the pump ``name`` of ``rig``, or the one-line error naming the step's field."""
    device = rig.devices.get(name)
    if device is None:
        known = ", ".join(rig.pumps()) or "none"
        raise step_error(
            protocol, info, field_name, f"no pump {name!r} on this rig (pumps: {known})"
        )
    if not isinstance(device, SyringePump):
        raise step_error(protocol, info, field_name, f"{name!r} is a {rig.roles[name]}, not a pump")
    return device


@dataclass
class _Compiler:
    protocol: Protocol
    rig: Rig
    primed: set[str] = field(default_factory=set)
    doses: list[DoseNote] = field(default_factory=list)

    def pump(self, info: StepInfo, name: str, field_name: str) -> SyringePump:
        return find_pump(self.protocol, self.rig, info, name, field_name)

    def dead_volume_ul(self, info: StepInfo, pump: str, field_name: str) -> float:
        inlet = self.rig.config.devices[pump].options.get("inlet")
        chip = self.rig.config.chip
        if chip is None or not isinstance(inlet, str) or inlet not in chip.dead_volume_ul:
            raise step_error(
                self.protocol,
                info,
                field_name,
                f"the rig's config gives no dead volume for {pump!r} (needs the pump's "
                "'inlet' and [chip] dead_volume); give the volume explicitly",
            )
        return chip.dead_volume_ul[inlet]

    # -- the tree ----------------------------------------------------------------------

    def steps(self, steps: tuple[Step, ...]) -> tuple[Step, ...]:
        return tuple(self.step(s) for s in steps)

    def step(self, step: Step) -> Step:
        match step:
            case SequenceStep():
                return SequenceStep(step.info, self.steps(step.steps))
            case ParallelStep():
                before = set(self.primed)
                branches = []
                after: set[str] = set(before)
                for branch in step.branches:
                    self.primed = set(before)
                    branches.append(SequenceStep(branch.info, self.steps(branch.steps)))
                    after |= self.primed
                self.primed = after
                return ParallelStep(step.info, tuple(branches))
            case RepeatStep():
                return RepeatStep(
                    step.info, step.count, SequenceStep(step.body.info, self.steps(step.body.steps))
                )
            case PrimeStep():
                return self.prime(step)
            case PerfuseStep():
                return self.perfuse(step)
            case DoseStep():
                return self.dose(step)
            case ExchangeStep():
                return self.exchange(step)
            case SampleStep():
                return self.sample(step)
            case ImageStep():
                return self.image(step)
            case PumpStep() | StopStep() | ValveStep() | WaitStep() | PromptStep():
                return step

    def image(self, step: ImageStep) -> Step:
        """Name a chamber imaged in several fields, and get all its fields.

        ``positions = ["chamber 3"]`` on a microscope with fields ``"chamber 3a"``...
        ``"chamber 3c"`` images the three; a field or any other position stays as it is
        (the preflight checks that it exists).
        """
        if step.positions is None:
            return step
        scopes = list(self.rig.microscopes().values())
        if len(scopes) != 1:
            return step  # the preflight says what is wrong
        known = scopes[0].microscope.position_names()
        expanded: list[str] = []
        for name in step.positions:
            fields = [p for p in known if chamber_of(p) == name and p != name]
            new = fields if name not in known and fields else [name]
            expanded += [p for p in new if p not in expanded]
        return replace(step, positions=tuple(expanded))

    def prime(self, step: PrimeStep) -> Step:
        self.pump(step.info, step.pump, "pump")
        volume_ul = step.volume_ul
        if volume_ul is None:
            volume_ul = self.dead_volume_ul(step.info, step.pump, "volume")
        self.primed.add(step.pump)
        return PumpStep(step.info, step.pump, PumpDirection.INFUSE, step.rate_ul_min, volume_ul)

    def perfuse(self, step: PerfuseStep) -> Step:
        parts: list[Step] = []
        for number, (pump, rate) in enumerate(step.rates_ul_min, start=1):
            self.pump(step.info, pump, "rates")
            info = step.info.child(number, f"{step.info.name or 'perfuse'}: {pump}", step.info.line)
            parts.append(
                PumpStep(info, pump, PumpDirection.INFUSE, rate, None, step.duration_s, step.wait)
            )
        if not step.wait or len(parts) == 1:
            return SequenceStep(step.info, tuple(parts))
        return ParallelStep(
            step.info,
            tuple(SequenceStep(p.info, (p,)) for p in parts),
        )

    def dose(self, step: DoseStep) -> Step:
        self.pump(step.info, step.drug_pump, "drug_pump")
        self.pump(step.info, step.carrier_pump, "carrier_pump")
        total_s = step.duration_s
        match step.profile:
            case DoseProfile.CONSTANT:
                phases = [(0.0, total_s, True)]
            case DoseProfile.PULSE:
                assert step.on_s is not None
                phases = [(0.0, step.on_s, True), (step.on_s, total_s, False)]
            case DoseProfile.STEP:
                assert step.start_s is not None
                phases = [(0.0, step.start_s, False), (step.start_s, total_s, True)]
            case DoseProfile.WASHOUT:
                phases = [(0.0, total_s, False)]
        arrival_s = 0.0
        lead_s = 0.0
        if step.drug_pump not in self.primed and any(on for _, _, on in phases):
            dead_ul = self.dead_volume_ul(step.info, step.drug_pump, "drug_pump")
            arrival_s = dead_ul / step.rate_ul_min * 60.0
            first_on = next(t0 for t0, _, on in phases if on)
            lead_s = min(arrival_s, first_on)
            if lead_s > 0:
                phases = _advance_first_on(phases, lead_s)
            arrival_s -= lead_s
        if any(on for _, _, on in phases):
            self.primed.add(step.drug_pump)
        self.doses.append(DoseNote(step.info.path, lead_s, arrival_s))
        parts: list[Step] = []
        for number, (t0_s, t1_s, on) in enumerate(phases, start=1):
            duration_s = t1_s - t0_s
            if duration_s <= 0:
                continue
            name = f"{step.info.name or 'dose'}: {'drug' if on else 'washout'}"
            info = step.info.child(number, name, step.info.line)
            if on:
                carrier = PumpStep(
                    info.child(1, name, info.line),
                    step.carrier_pump,
                    PumpDirection.INFUSE,
                    step.rate_ul_min,
                    None,
                    duration_s,
                )
                drug = PumpStep(
                    info.child(2, name, info.line),
                    step.drug_pump,
                    PumpDirection.INFUSE,
                    step.rate_ul_min,
                    None,
                    duration_s,
                )
                parts.append(
                    ParallelStep(
                        info,
                        (SequenceStep(carrier.info, (carrier,)), SequenceStep(drug.info, (drug,))),
                    )
                )
            else:
                parts.append(
                    PumpStep(
                        info,
                        step.carrier_pump,
                        PumpDirection.INFUSE,
                        2.0 * step.rate_ul_min,
                        None,
                        duration_s,
                    )
                )
        return SequenceStep(step.info, tuple(parts))

    def exchange(self, step: ExchangeStep) -> Step:
        pump = self.pump(step.info, step.pump, "pump")
        if step.pump not in self.rig.valves():
            raise step_error(
                self.protocol, step.info, "pump", f"{step.pump!r} has no distribution valve"
            )
        for port, field_name in ((step.source, "from"), (step.target, "to")):
            try:
                self.rig.valve_position(step.pump, port)
            except ValueError as exc:
                raise step_error(self.protocol, step.info, field_name, str(exc)) from None
        stroke_ul = pump.syringe.volume_ul
        strokes = max(1, math.ceil(step.volume_ul / stroke_ul - 1e-9))
        per_stroke_ul = step.volume_ul / strokes
        parts: list[Step] = []
        label = step.info.name or "exchange"
        number = 0

        def info(what: str) -> StepInfo:
            nonlocal number
            number += 1
            return step.info.child(number, f"{label}: {what}", step.info.line)

        for stroke in range(1, strokes + 1):
            suffix = f" ({stroke}/{strokes})" if strokes > 1 else ""
            parts.append(ValveStep(info(f"to {step.source}{suffix}"), step.pump, step.source))
            parts.append(
                PumpStep(
                    info(f"draw{suffix}"),
                    step.pump,
                    PumpDirection.WITHDRAW,
                    step.draw_rate_ul_min,
                    per_stroke_ul,
                )
            )
            parts.append(ValveStep(info(f"to {step.target}{suffix}"), step.pump, step.target))
            parts.append(
                PumpStep(
                    info(f"dispense{suffix}"),
                    step.pump,
                    PumpDirection.INFUSE,
                    step.rate_ul_min,
                    per_stroke_ul,
                )
            )
        return SequenceStep(step.info, tuple(parts))

    def sample(self, step: SampleStep) -> Step:
        label = step.info.name or "sample"
        return SequenceStep(
            step.info,
            (
                ValveStep(
                    step.info.child(1, f"{label}: to {step.port}", step.info.line),
                    step.valve,
                    step.port,
                ),
                WaitStep(
                    step.info.child(2, f"{label}: collect", step.info.line),
                    duration_s=step.duration_s,
                ),
                ValveStep(
                    step.info.child(3, f"{label}: to {step.back_to}", step.info.line),
                    step.valve,
                    step.back_to,
                ),
            ),
        )


def _advance_first_on(
    phases: list[tuple[float, float, bool]], lead_s: float
) -> list[tuple[float, float, bool]]:
    """Move the first off->on switch ``lead_s`` earlier (the previous phase shrinks)."""
    result = list(phases)
    for index, (t0, t1, on) in enumerate(result):
        if on and index > 0:
            p0, p1, p_on = result[index - 1]
            result[index - 1] = (p0, p1 - lead_s, p_on)
            result[index] = (t0 - lead_s, t1, on)
            break
    return result


def compile_protocol(protocol: Protocol, rig: Rig) -> CompiledProtocol:
    """Compile ``protocol``'s actions into primitives for ``rig``.

    Raises:
        ProtocolError: an action names a device the rig lacks, or needs a fact the config
            does not give (naming file, step and field).
    """
    compiler = _Compiler(protocol, rig)
    steps = compiler.steps(protocol.steps)
    return CompiledProtocol(protocol, steps, tuple(compiler.doses))
