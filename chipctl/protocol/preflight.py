"""Preflight: check a protocol against an instrument before anything moves, and predict it.

The preflight walks the compiled step tree (:mod:`chipctl.protocol.compile`) on a model
timeline, the way the runner will execute it, and

- checks every device a step names, every rate against the pump's range for its syringe,
  every valve position, every image position and channel;
- keeps a volume ledger per syringe (start fill, every draw and dispense, stops that cut a
  pump short) and refuses a protocol that would run a syringe dry or overfill it, giving
  the time each syringe would reach its reserve;
- predicts the peak pressure at each chip inlet from the config's chip resistances and
  compares it with the chip's rating and the pressure interlock;
- counts frames and bytes and compares them with the free disk space;
- gives the total duration and a step timeline.

The run reports the same figures afterwards (tests hold preflight and simulated runs to
1 % on duration and volumes). Nothing here does I/O except reading the free disk space.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import shutil
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from chipctl.chip import chamber_of
from chipctl.errors import ProtocolError
from chipctl.protocol.compile import (
    CompiledProtocol,
    DoseNote,
    compile_protocol,
    find_pump,
    step_error,
)
from chipctl.protocol.model import (
    ImageStep,
    ParallelStep,
    PromptStep,
    Protocol,
    PumpStep,
    RepeatStep,
    SequenceStep,
    Step,
    StepInfo,
    StopStep,
    ValveStep,
    WaitStep,
)
from chipctl.rig import Rig
from chipctl.units import format_duration
from drivers.roles import PumpDirection, SyringePump

__all__ = ["LedgerRow", "Preflight", "TimelineRow", "preflight", "seconds_until_clock"]

#: Bytes of telemetry per device and poll, for the disk estimate (generous).
TELEMETRY_BYTES_PER_ROW = 120
#: Margin kept free on the disk beyond the predicted size.
DISK_MARGIN = 1.2


@dataclass(frozen=True)
class TimelineRow:
    """One step on the predicted timeline.

    Args:
        path: the step's path (``"3/2.1"``).
        label: the step's label.
        kind: the primitive's kind (``"infuse"``, ``"wait"``, ``"image"``...).
        start_s: predicted start (run time).
        end_s: predicted end (run time; equal to start for instant steps).
        detail: what it does, in words.
    """

    path: str
    label: str
    kind: str
    start_s: float
    end_s: float
    detail: str = ""


@dataclass(frozen=True)
class LedgerRow:
    """The predicted volume ledger of one syringe.

    Args:
        pump: the pump.
        syringe: the syringe's name.
        capacity_ul: what it holds when full.
        start_ul: the fill at the start.
        infused_ul: total dispensed.
        withdrawn_ul: total drawn.
        end_ul: the fill at the end.
        min_ul: the lowest fill during the run.
        min_at_s: when the lowest fill is reached.
    """

    pump: str
    syringe: str
    capacity_ul: float
    start_ul: float
    infused_ul: float
    withdrawn_ul: float
    end_ul: float
    min_ul: float
    min_at_s: float


@dataclass(frozen=True)
class Preflight:
    """What a protocol will do on a rig.

    Args:
        duration_s: predicted run time (steps, pumps still running, image schedules).
        infused_ul: volume each pump infuses.
        withdrawn_ul: volume each pump withdraws.
        timeline: every primitive step with its predicted start and end.
        ledger: the syringe ledgers.
        peak_pressure_kpa: predicted peak pressure per chip inlet (empty without chip data).
        pressure_limit_kpa: the lower of the chip rating and the pressure interlock.
        frames: number of images the protocol takes.
        image_bytes: the size of those images, uncompressed.
        disk_needed_bytes: images plus telemetry, with margin.
        disk_free_bytes: free space where the run file goes (-1 if unknown).
        doses: what the compiler decided for each dose step.
        warnings: things that do not stop the run but an operator should know.
    """

    duration_s: float
    infused_ul: dict[str, float] = field(default_factory=dict)
    withdrawn_ul: dict[str, float] = field(default_factory=dict)
    timeline: tuple[TimelineRow, ...] = ()
    ledger: tuple[LedgerRow, ...] = ()
    peak_pressure_kpa: dict[str, float] = field(default_factory=dict)
    pressure_limit_kpa: float | None = None
    frames: int = 0
    image_bytes: int = 0
    disk_needed_bytes: int = 0
    disk_free_bytes: int = -1
    doses: tuple[DoseNote, ...] = ()
    warnings: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """Return the preflight as JSON-ready data."""
        return asdict(self)

    def json_text(self) -> str:
        """Return the preflight as indented JSON text."""
        return json.dumps(self.to_json(), indent=2)

    def table(self, max_rows: int = 60) -> str:
        """Return a readable report: summary, ledger, pressures, disk, timeline."""
        out = [f"duration   {format_duration(self.duration_s)} ({self.duration_s:g} s)"]
        if self.ledger:
            out.append("")
            out.append(
                f"{'syringe':<12}{'capacity':>10}{'start':>10}{'infused':>10}"
                f"{'drawn':>10}{'end':>10}{'lowest':>10}  at"
            )
            for row in self.ledger:
                out.append(
                    f"{row.pump:<12}{row.capacity_ul:>8.0f}uL{row.start_ul:>8.0f}uL"
                    f"{row.infused_ul:>8.1f}uL{row.withdrawn_ul:>8.1f}uL{row.end_ul:>8.1f}uL"
                    f"{row.min_ul:>8.1f}uL  {format_duration(row.min_at_s)}"
                )
        if self.peak_pressure_kpa:
            limit = f" (limit {self.pressure_limit_kpa:g} kPa)" if self.pressure_limit_kpa else ""
            peaks = ", ".join(f"{k} {v:.3g} kPa" for k, v in self.peak_pressure_kpa.items())
            out.append("")
            out.append(f"peak pressure {peaks}{limit}")
        for note in self.doses:
            if note.arrival_delay_s > 0 or note.lead_s > 0:
                out.append(
                    f"dose step {note.path}: drug pump starts {note.lead_s / 60:.1f} min early; "
                    f"drug reaches the chambers {note.arrival_delay_s / 60:.1f} min after that"
                )
        out.append("")
        free = "unknown" if self.disk_free_bytes < 0 else f"{self.disk_free_bytes / 1e9:.1f} GB"
        out.append(
            f"images     {self.frames} frames, {self.image_bytes / 1e9:.2f} GB uncompressed; "
            f"disk needed {self.disk_needed_bytes / 1e9:.2f} GB, free {free}"
        )
        for warning in self.warnings:
            out.append(f"warning: {warning}")
        out.append("")
        out.append(f"{'start':>12} {'end':>12}  step")
        rows = self.timeline
        shown = rows if len(rows) <= max_rows else rows[: max_rows - 1]
        for item in shown:
            out.append(
                f"{format_duration(item.start_s):>12} {format_duration(item.end_s):>12}  "
                f"{item.label}: {item.detail}"
            )
        if len(rows) > len(shown):
            out.append(f"{'':>25}... {len(rows) - len(shown)} more steps (see --json)")
        return "\n".join(out)


_error = step_error


def seconds_until_clock(start: dt.datetime, t_s: float, hour: int, minute: int) -> float:
    """Return how long after run time ``t_s`` the local clock next shows ``hour:minute``."""
    now = start + dt.timedelta(seconds=t_s)
    target = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if target <= now:
        target += dt.timedelta(days=1)
    return (target - now).total_seconds()


@dataclass
class _Move:
    """A pump movement on the model timeline: ``rate`` (signed: infuse < 0) from t0 to t1."""

    pump: str
    t0_s: float
    t1_s: float
    rate_ul_s: float
    step: PumpStep


class _Walker:
    def __init__(self, protocol: Protocol, rig: Rig, start: dt.datetime) -> None:
        self.protocol = protocol
        self.rig = rig
        self.start = start
        self.moves: list[_Move] = []
        self.busy_until_s: dict[str, float] = {}
        self.timeline: list[TimelineRow] = []
        self.frames = 0
        self.image_bytes = 0
        self.end_s = 0.0
        self.warnings: list[str] = []

    def pump(self, info: StepInfo, name: str) -> SyringePump:
        return find_pump(self.protocol, self.rig, info, name, "pump")

    def row(self, step: Step, kind: str, t0: float, t1: float, detail: str) -> None:
        self.timeline.append(TimelineRow(step.info.path, step.info.label(), kind, t0, t1, detail))
        self.end_s = max(self.end_s, t1)

    def walk(self, steps: tuple[Step, ...], now_s: float) -> float:
        for step in steps:
            now_s = self.one(step, now_s)
        return now_s

    def one(self, step: Step, now_s: float) -> float:
        match step:
            case SequenceStep():
                return self.walk(step.steps, now_s)
            case ParallelStep():
                ends = [self.walk(branch.steps, now_s) for branch in step.branches]
                return max(ends)
            case RepeatStep():
                for _ in range(step.count):
                    now_s = self.walk(step.body.steps, now_s)
                return now_s
            case PumpStep():
                return self.pump_step(step, now_s)
            case WaitStep():
                if step.duration_s is not None:
                    wait_s = step.duration_s
                    detail = f"wait {format_duration(wait_s)}"
                elif step.until_clock is not None:
                    hour, minute = step.until_clock
                    wait_s = seconds_until_clock(self.start, now_s, hour, minute)
                    detail = f"wait until {hour:02d}:{minute:02d} (from a start now)"
                else:
                    assert step.condition is not None
                    wait_s = step.expect_s if step.expect_s is not None else step.timeout_s or 0.0
                    assumed = format_duration(wait_s)
                    detail = f"wait until {step.condition.describe()} (assumed {assumed})"
                    self.check_signal(step)
                self.row(step, "wait", now_s, now_s + wait_s, detail)
                return now_s + wait_s
            case StopStep():
                names = [step.pump] if step.pump is not None else self.rig.pumps()
                for name in names:
                    self.pump(step.info, name)
                    for move in self.moves:
                        if move.pump == name and move.t1_s > now_s:
                            move.t1_s = max(move.t0_s, now_s)
                    self.busy_until_s[name] = min(self.busy_until_s.get(name, 0.0), now_s)
                self.row(step, "stop", now_s, now_s, f"stop {step.pump or 'all pumps'}")
                return now_s
            case ValveStep():
                if step.valve not in self.rig.valves():
                    known = ", ".join(self.rig.valves()) or "none"
                    message = f"no valve {step.valve!r} on this rig (valves: {known})"
                    raise _error(self.protocol, step.info, "valve", message)
                try:
                    position = self.rig.valve_position(step.valve, step.position)
                except ValueError as exc:
                    raise _error(self.protocol, step.info, "position", str(exc)) from None
                self.row(
                    step, "valve", now_s, now_s, f"{step.valve} to {step.position} ({position})"
                )
                return now_s
            case ImageStep():
                frames, size = self.image(step)
                self.frames += frames
                self.image_bytes += size
                self.row(
                    step,
                    "image",
                    now_s,
                    now_s + step.duration_s,
                    f"{len(step.times_s)} time points, {frames} frames (alongside)",
                )
                return now_s
            case PromptStep():
                self.row(step, "prompt", now_s, now_s, f"operator: {step.message}")
                return now_s
            case _:
                raise AssertionError(f"uncompiled step {step!r}")

    def pump_step(self, step: PumpStep, now_s: float) -> float:
        pump = self.pump(step.info, step.pump)
        try:
            pump.check_rate(step.rate_ul_min)
        except ValueError as exc:
            raise _error(self.protocol, step.info, "rate", str(exc)) from None
        try:
            pump.check_volume(step.target_volume_ul)
        except ValueError as exc:
            field_name = "volume" if step.volume_ul is not None else "duration"
            raise _error(self.protocol, step.info, field_name, str(exc)) from None
        if self.busy_until_s.get(step.pump, 0.0) > now_s + 1e-9:
            raise _error(
                self.protocol,
                step.info,
                "pump",
                f"{step.pump!r} is still running an earlier step at this point "
                f"(until {format_duration(self.busy_until_s[step.pump])}); stop it or wait first",
            )
        end_s = now_s + step.expected_duration_s
        self.busy_until_s[step.pump] = end_s
        sign = -1.0 if step.direction is PumpDirection.INFUSE else 1.0
        self.moves.append(_Move(step.pump, now_s, end_s, sign * step.rate_ul_min / 60.0, step))
        detail = (
            f"{step.pump} {step.direction.value} {step.target_volume_ul:.4g} uL at "
            f"{step.rate_ul_min:g} uL/min" + ("" if step.wait else " (goes on at once)")
        )
        self.row(step, step.direction.value, now_s, end_s, detail)
        return end_s if step.wait else now_s

    def image(self, step: ImageStep) -> tuple[int, int]:
        scopes = self.rig.microscopes()
        if len(scopes) != 1:
            found = "none" if not scopes else ", ".join(scopes)
            message = f"needs exactly one microscope on the rig (found: {found})"
            raise _error(self.protocol, step.info, "action", message)
        (device,) = scopes.values()
        known_positions = device.microscope.position_names()
        for position in step.positions or ():
            if position not in known_positions:
                message = f"no position {position!r} (positions: {', '.join(known_positions)})"
                raise _error(self.protocol, step.info, "positions", message)
        known_channels = device.microscope.channel_names()
        for channel in step.channels:
            if channel not in known_channels:
                message = f"no channel {channel!r} (channels: {', '.join(known_channels)})"
                raise _error(self.protocol, step.info, "channels", message)
        n_positions = len(step.positions) if step.positions else len(known_positions)
        frames = len(step.times_s) * n_positions * len(step.channels)
        height, width = device.setup.frame_shape
        return frames, frames * height * width * 2

    def check_signal(self, step: WaitStep) -> None:
        assert step.condition is not None
        device = step.condition.signal.split(".", 1)[0]
        if device == "analysis":
            if not self.rig.microscopes():
                raise _error(
                    self.protocol,
                    step.info,
                    "until",
                    "waits on analysis, but the rig has no microscope",
                )
            return
        if device != "chip" and device not in self.rig.devices:
            known = ", ".join([*self.rig.devices, "chip", "analysis"])
            raise _error(
                self.protocol,
                step.info,
                "until",
                f"no device {device!r} for signal {step.condition.signal!r} (known: {known})",
            )
        if device == "chip" and self.rig.bench is None:
            raise _error(
                self.protocol,
                step.info,
                "until",
                "'chip.*' signals exist only on the simulated chip",
            )


def _ledger(
    protocol: Protocol, rig: Rig, moves: list[_Move]
) -> tuple[tuple[LedgerRow, ...], dict[str, float], dict[str, float]]:
    """Integrate the moves per syringe; refuse running dry or overfilling."""
    rows: list[LedgerRow] = []
    infused: dict[str, float] = {}
    withdrawn: dict[str, float] = {}
    for name in dict.fromkeys(m.pump for m in moves):
        pump = rig.devices[name]
        assert isinstance(pump, SyringePump)
        mine = sorted((m for m in moves if m.pump == name), key=lambda m: m.t0_s)
        capacity = pump.syringe.volume_ul
        declared = protocol.syringes.get(name)
        if declared is not None and declared.fill_ul is not None:
            start = declared.fill_ul
        else:
            start = capacity if mine[0].rate_ul_s < 0 else 0.0
        if start > capacity * (1 + 1e-9):
            raise ProtocolError(
                protocol.source,
                f"[syringes.{name}] fill {start:g} uL is more than the {pump.syringe.name} "
                f"holds ({capacity:g} uL)",
            )
        # events: rate changes at move starts and ends; integrate piecewise
        edges = sorted({t for m in mine for t in (m.t0_s, m.t1_s)})
        level = start
        lowest, lowest_at = start, 0.0
        for t0, t1 in itertools.pairwise(edges):
            rate = sum(m.rate_ul_s for m in mine if m.t0_s <= t0 and m.t1_s >= t1)
            before = level
            level += rate * (t1 - t0)
            if level < lowest:
                lowest, lowest_at = level, t1
            tolerance = 1e-6 * capacity
            if level < -tolerance or level > capacity + tolerance:
                # the moment it crosses empty (or full) inside this interval
                edge = 0.0 if level < 0 else capacity
                t1 = t0 + (edge - before) / rate if rate else t1
                step = next(m.step for m in mine if m.t0_s <= t0 and m.t1_s >= t1 and m.rate_ul_s)
                what = "runs dry" if level < 0 else "overfills"
                raise ProtocolError(
                    protocol.source,
                    f"the {pump.syringe.name} of {name!r} {what} at {format_duration(t1)} "
                    f"(starts with {start:g} uL, holds {capacity:g} uL)",
                    line=step.info.line,
                    step_index=step.info.path,
                    step_name=step.info.name,
                    field="volume" if step.volume_ul is not None else "duration",
                )
        inf = sum(-m.rate_ul_s * (m.t1_s - m.t0_s) for m in mine if m.rate_ul_s < 0)
        wd = sum(m.rate_ul_s * (m.t1_s - m.t0_s) for m in mine if m.rate_ul_s > 0)
        if inf:
            infused[name] = inf
        if wd:
            withdrawn[name] = wd
        rows.append(
            LedgerRow(name, pump.syringe.name, capacity, start, inf, wd, level, lowest, lowest_at)
        )
    return tuple(rows), infused, withdrawn


def _pressures(rig: Rig, moves: list[_Move]) -> dict[str, float]:
    """Predict the peak pressure per inlet: p = R_inlet Q_inlet + R_outlet Q_total.

    Uses the ``[chip] resistance`` table (kPa s/uL per inlet and ``outlet``) when the
    config gives one; otherwise nothing is predicted.
    """
    chip = rig.config.chip
    if chip is None or not chip.resistance_kpa_s_ul:
        return {}
    inlets = {
        name: str(rig.config.devices[name].options.get("inlet"))
        for name in dict.fromkeys(m.pump for m in moves)
        if rig.config.devices[name].options.get("inlet") is not None
    }
    edges = sorted({t for m in moves for t in (m.t0_s, m.t1_s)})
    peaks: dict[str, float] = {}
    r_out = chip.resistance_kpa_s_ul.get("outlet", 0.0)
    for t0, t1 in itertools.pairwise(edges):
        flows: dict[str, float] = {}
        for m in moves:
            if m.pump in inlets and m.t0_s <= t0 and m.t1_s >= t1 and m.rate_ul_s < 0:
                flows[inlets[m.pump]] = flows.get(inlets[m.pump], 0.0) - m.rate_ul_s
        total = sum(flows.values())
        for inlet, q in flows.items():
            r_in = chip.resistance_kpa_s_ul.get(inlet, 0.0)
            peaks[inlet] = max(peaks.get(inlet, 0.0), r_in * q + r_out * total)
    return peaks


def _pressure_limit(protocol: Protocol, rig: Rig) -> float | None:
    limits = [i.limit for i in protocol.interlocks if i.kind == "pressure" and i.limit]
    default = rig.config.interlocks.get("pressure")
    if not limits and isinstance(default, Mapping) and "limit" in default:
        from chipctl.units import PRESSURE, UnitError, parse_quantity

        try:
            limits.append(parse_quantity(default["limit"], PRESSURE))
        except UnitError:
            pass
    if rig.config.chip is not None:
        limits.append(rig.config.chip.pressure_rating_kpa)
    return min((x for x in limits if x is not None), default=None)


def _check_scopes(protocol: Protocol, rig: Rig) -> None:
    """Refuse interlocks and chamber names that point at nothing on this rig.

    A typo in an interlock's ``device`` would silently disable it; a chamber map naming a
    position the microscope lacks would silently leave the readout without its control.
    """
    known = [*rig.devices, "chip"]
    for number, spec in enumerate(protocol.interlocks, start=1):
        if spec.scope is not None and spec.scope not in known:
            raise ProtocolError(
                protocol.source,
                f"interlock {number} ({spec.kind}): no device {spec.scope!r} on this rig "
                f"(devices: {', '.join(known)})",
                field="device",
            )
    scopes = rig.microscopes()
    if scopes:
        (device,) = list(scopes.values())[:1]
        positions = list(device.microscope.position_names())
    elif rig.config.chip is not None:
        positions = list(rig.config.chip.chamber_names)
    else:
        return
    # a chamber imaged in several fields is named by its chamber ("chamber 3" for 3a..3c)
    positions += [c for c in dict.fromkeys(chamber_of(p) for p in positions) if c not in positions]
    chambers = protocol.chambers
    for field_name, names in (
        ("control", chambers.control),
        ("exclude", chambers.exclude),
        ("labels", tuple(chambers.labels)),
    ):
        for name in names:
            if name not in positions:
                raise ProtocolError(
                    protocol.source,
                    f"[chambers]: no position {name!r} on this rig "
                    f"(positions: {', '.join(positions)})",
                    field=field_name,
                )


def _free_bytes(folder: Path | None) -> int:
    if folder is None:
        return -1
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return shutil.disk_usage(probe).free
    except OSError:
        return -1


def preflight(
    protocol: Protocol,
    rig: Rig,
    *,
    out_dir: Path | None = None,
    start: dt.datetime | None = None,
    compiled: CompiledProtocol | None = None,
) -> Preflight:
    """Check ``protocol`` against ``rig`` and predict what it does.

    Args:
        protocol: the validated protocol.
        rig: the rig that will run it.
        out_dir: where the run file goes (for the disk check); None skips it.
        start: the local start time (for waits until a clock time); default now.
        compiled: the protocol compiled for this rig (compiled here if not given).

    Raises:
        ProtocolError: naming the file, step and field of the first problem.
    """
    compiled = compiled or compile_protocol(protocol, rig)
    start = start or dt.datetime.now().astimezone()
    walker = _Walker(protocol, rig, start)
    end_s = walker.walk(compiled.steps, 0.0)
    duration_s = max([end_s, walker.end_s, *walker.busy_until_s.values()])
    ledger, infused, withdrawn = _ledger(protocol, rig, walker.moves)
    peaks = _pressures(rig, walker.moves)
    limit = _pressure_limit(protocol, rig)
    warnings = list(walker.warnings)
    for inlet, peak in peaks.items():
        if limit is not None and peak > limit:
            raise ProtocolError(
                protocol.source,
                f"predicted pressure at the {inlet} inlet {peak:.3g} kPa exceeds the limit "
                f"{limit:g} kPa (chip rating or pressure interlock); lower the rates",
            )
        if limit is not None and peak > 0.5 * limit:
            warnings.append(
                f"{inlet} inlet reaches {peak:.3g} kPa, over half the {limit:g} kPa limit"
            )
    _check_scopes(protocol, rig)
    n_devices = len(rig.devices) + (1 if rig.bench is not None else 0)
    polls = duration_s / max(rig.config.telemetry_period_s, 1e-3)
    telemetry_bytes = int(polls * n_devices * TELEMETRY_BYTES_PER_ROW)
    needed = int((walker.image_bytes + telemetry_bytes) * DISK_MARGIN)
    free = _free_bytes(out_dir)
    if free >= 0 and needed > free:
        raise ProtocolError(
            protocol.source,
            f"the run needs about {needed / 1e9:.2f} GB on disk; {free / 1e9:.2f} GB are free "
            f"in {out_dir}",
        )
    for note in compiled.doses:
        if note.arrival_delay_s > 600:
            warnings.append(
                f"dose step {note.path}: the drug reaches the chambers "
                f"{note.arrival_delay_s / 60:.0f} min after the dose starts (line not primed)"
            )
    return Preflight(
        duration_s=duration_s,
        infused_ul=infused,
        withdrawn_ul=withdrawn,
        timeline=tuple(walker.timeline),
        ledger=ledger,
        peak_pressure_kpa=peaks,
        pressure_limit_kpa=limit,
        frames=walker.frames,
        image_bytes=walker.image_bytes,
        disk_needed_bytes=needed,
        disk_free_bytes=free,
        doses=compiled.doses,
        warnings=tuple(warnings),
    )
