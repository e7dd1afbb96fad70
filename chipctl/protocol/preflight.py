"""Preflight: check a protocol against an instrument before anything moves.

Checks that every pump a step names exists and is a pump, that every rate is within that
pump's range for its syringe, that every volume fits the syringe, and that the volume
infused over the whole protocol does not exceed what the syringe holds (syringes start
full). It also predicts the duration and the volume each pump moves, which the run's
progress display and summary use. Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from chipctl.errors import ProtocolError
from chipctl.protocol.model import (
    ImageStep,
    Protocol,
    PumpStep,
    Step,
    StopStep,
    ValveStep,
    WaitStep,
)
from chipctl.rig import Rig
from drivers.roles import PumpDirection, SyringePump

__all__ = ["Preflight", "preflight"]


@dataclass(frozen=True)
class Preflight:
    """What a protocol will do on a rig.

    Args:
        duration_s: predicted run time (steps that wait, and pumps still running at the end).
        infused_ul: volume each pump infuses.
        withdrawn_ul: volume each pump withdraws.
        step_start_s: predicted start time of each step.
        frames: number of images the protocol takes.
        image_bytes: the size of those images, uncompressed.
    """

    duration_s: float
    infused_ul: dict[str, float] = field(default_factory=dict)
    withdrawn_ul: dict[str, float] = field(default_factory=dict)
    step_start_s: tuple[float, ...] = ()
    frames: int = 0
    image_bytes: int = 0


def _error(protocol: Protocol, step: Step, field_name: str, message: str) -> ProtocolError:
    return ProtocolError(
        protocol.source,
        message,
        line=step.info.line,
        step_index=step.info.index,
        step_name=step.info.name,
        field=field_name,
    )


def _pump(protocol: Protocol, rig: Rig, step: PumpStep | StopStep) -> SyringePump:
    device = rig.devices.get(step.pump)
    if device is None:
        known = ", ".join(rig.pumps()) or "none"
        raise _error(protocol, step, "pump", f"no pump {step.pump!r} on this rig (pumps: {known})")
    if not isinstance(device, SyringePump):
        raise _error(
            protocol, step, "pump", f"{step.pump!r} is a {rig.roles[step.pump]}, not a pump"
        )
    return device


def _check_image(protocol: Protocol, rig: Rig, step: ImageStep) -> tuple[int, int]:
    """Check an image step against the rig's microscope; return (frames, bytes)."""
    scopes = rig.microscopes()
    if len(scopes) != 1:
        found = "none" if not scopes else ", ".join(scopes)
        message = f"needs exactly one microscope on the rig (found: {found})"
        raise _error(protocol, step, "action", message)
    (device,) = scopes.values()
    known_positions = device.microscope.position_names()
    for position in step.positions or ():
        if position not in known_positions:
            message = f"no position {position!r} (positions: {', '.join(known_positions)})"
            raise _error(protocol, step, "positions", message)
    known_channels = device.microscope.channel_names()
    for channel in step.channels:
        if channel not in known_channels:
            message = f"no channel {channel!r} (channels: {', '.join(known_channels)})"
            raise _error(protocol, step, "channels", message)
    n_positions = len(step.positions) if step.positions else len(known_positions)
    frames = len(step.times_s) * n_positions * len(step.channels)
    height, width = device.setup.frame_shape
    return frames, frames * height * width * 2


def preflight(protocol: Protocol, rig: Rig) -> Preflight:
    """Check ``protocol`` against ``rig`` and predict what it does.

    Raises:
        ProtocolError: naming the file, step and field of the first problem.
    """
    now_s = 0.0
    busy_until_s: dict[str, float] = {}
    infused: dict[str, float] = {}
    withdrawn: dict[str, float] = {}
    starts: list[float] = []
    frames = 0
    image_bytes = 0
    for step in protocol.steps:
        starts.append(now_s)
        match step:
            case PumpStep():
                pump = _pump(protocol, rig, step)
                try:
                    pump.check_rate(step.rate_ul_min)
                except ValueError as exc:
                    raise _error(protocol, step, "rate", str(exc)) from None
                try:
                    pump.check_volume(step.target_volume_ul)
                except ValueError as exc:
                    field_name = "volume" if step.volume_ul is not None else "duration"
                    raise _error(protocol, step, field_name, str(exc)) from None
                if busy_until_s.get(step.pump, 0.0) > now_s:
                    raise _error(
                        protocol,
                        step,
                        "pump",
                        f"{step.pump!r} is still running a step started with wait = false; "
                        "stop it or wait first",
                    )
                end_s = now_s + step.expected_duration_s
                busy_until_s[step.pump] = end_s
                ledger = infused if step.direction is PumpDirection.INFUSE else withdrawn
                ledger[step.pump] = ledger.get(step.pump, 0.0) + step.target_volume_ul
                net_ul = infused.get(step.pump, 0.0) - withdrawn.get(step.pump, 0.0)
                if net_ul > pump.syringe.volume_ul * (1 + 1e-9):
                    raise _error(
                        protocol,
                        step,
                        "volume" if step.volume_ul is not None else "duration",
                        f"by this step {step.pump!r} has infused {net_ul:g} uL, more than its "
                        f"{pump.syringe.name} holds ({pump.syringe.volume_ul:g} uL)",
                    )
                if step.wait:
                    now_s = end_s
            case WaitStep():
                now_s += step.duration_s
            case ValveStep():
                if step.valve not in rig.valves():
                    known = ", ".join(rig.valves()) or "none"
                    message = f"no valve {step.valve!r} on this rig (valves: {known})"
                    raise _error(protocol, step, "valve", message)
                try:
                    rig.valve_position(step.valve, step.position)
                except ValueError as exc:
                    raise _error(protocol, step, "position", str(exc)) from None
            case ImageStep():
                step_frames, step_bytes = _check_image(protocol, rig, step)
                frames += step_frames
                image_bytes += step_bytes
                key = f"image:{step.info.index}"
                busy_until_s[key] = now_s + step.duration_s
            case StopStep():
                _pump(protocol, rig, step)
                end_s = busy_until_s.get(step.pump, 0.0)
                if end_s > now_s:
                    # the pump is cut short: only the volume pumped until now counts
                    busy_until_s[step.pump] = now_s
    return Preflight(
        duration_s=max([now_s, *busy_until_s.values()]),
        infused_ul=infused,
        withdrawn_ul=withdrawn,
        step_start_s=tuple(starts),
        frames=frames,
        image_bytes=image_bytes,
    )
