"""Load and validate TOML protocol files into :class:`chipctl.protocol.model.Protocol`.

The file format (documented in the README)::

    [protocol]
    name = "medium-24h"
    description = "Perfuse medium for a day."

    [[step]]
    name = "perfuse"          # optional
    action = "infuse"         # infuse | withdraw | wait | stop | valve | image
    pump = "medium"
    rate = "2 uL/min"
    duration = "24 h"         # or volume = "150 uL"
    wait = true               # optional: false starts the pump and goes on at once

Every error is one line naming the file, the line, the step (number and name) and the
field (:class:`chipctl.errors.ProtocolError`). Protocol files are data: nothing in them is
evaluated or imported.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from typing import Any

from chipctl.errors import ProtocolError
from chipctl.protocol.catalog import resolve_protocol
from chipctl.protocol.model import (
    ImageStep,
    Protocol,
    PumpStep,
    Step,
    StepInfo,
    StopStep,
    ValveStep,
    WaitStep,
)
from chipctl.units import DURATION, FLOW_RATE, VOLUME, Dimension, UnitError, parse_quantity
from drivers.roles import PumpDirection

__all__ = ["ACTIONS", "load_protocol", "parse_protocol"]

_STEP_HEADER = re.compile(r"^\s*\[\[\s*step\s*\]\]")
_TOML_LINE = re.compile(r"at line (\d+)")


class _StepContext:
    """Builds errors that name the file, line, step and field of one step."""

    def __init__(self, source: str, lines: list[str], info: StepInfo) -> None:
        self.source = source
        self.lines = lines
        self.info = info

    def _field_line(self, field: str) -> int | None:
        if self.info.line is None:
            return None
        pattern = re.compile(rf"^\s*{re.escape(field)}\s*=")
        for number in range(self.info.line, len(self.lines)):
            if number > self.info.line and _STEP_HEADER.match(self.lines[number]):
                break
            if pattern.match(self.lines[number]):
                return number + 1
        return self.info.line

    def error(self, message: str, field: str | None = None) -> ProtocolError:
        line = self._field_line(field) if field else self.info.line
        return ProtocolError(
            self.source,
            message,
            line=line,
            step_index=self.info.index,
            step_name=self.info.name,
            field=field,
        )


def _quantity(ctx: _StepContext, table: dict[str, Any], field: str, dim: Dimension) -> float:
    try:
        value = parse_quantity(table[field], dim)
    except UnitError as exc:
        raise ctx.error(str(exc), field) from None
    if value <= 0:
        raise ctx.error(f"must be > 0, got {table[field]!r}", field)
    return value


def _string(ctx: _StepContext, table: dict[str, Any], field: str) -> str:
    if field not in table:
        raise ctx.error("missing", field)
    value = table[field]
    if not isinstance(value, str) or not value.strip():
        raise ctx.error(f"must be a non-empty string, got {value!r}", field)
    return value.strip()


def _check_keys(ctx: _StepContext, table: dict[str, Any], allowed: set[str]) -> None:
    for key in table:
        if key not in allowed:
            raise ctx.error(f"unknown field (allowed: {', '.join(sorted(allowed))})", key)


def _pump_step(direction: PumpDirection) -> Callable[[_StepContext, dict[str, Any]], Step]:
    def build(ctx: _StepContext, table: dict[str, Any]) -> Step:
        _check_keys(ctx, table, {"action", "name", "pump", "rate", "volume", "duration", "wait"})
        pump = _string(ctx, table, "pump")
        if "rate" not in table:
            raise ctx.error("missing", "rate")
        rate_ul_min = _quantity(ctx, table, "rate", FLOW_RATE)
        has_volume, has_duration = "volume" in table, "duration" in table
        if has_volume == has_duration:
            raise ctx.error("give exactly one of 'volume' or 'duration'", "volume")
        volume_ul = _quantity(ctx, table, "volume", VOLUME) if has_volume else None
        duration_s = _quantity(ctx, table, "duration", DURATION) if has_duration else None
        wait = table.get("wait", True)
        if not isinstance(wait, bool):
            raise ctx.error(f"must be true or false, got {wait!r}", "wait")
        return PumpStep(ctx.info, pump, direction, rate_ul_min, volume_ul, duration_s, wait)

    return build


def _wait_step(ctx: _StepContext, table: dict[str, Any]) -> Step:
    _check_keys(ctx, table, {"action", "name", "duration"})
    if "duration" not in table:
        raise ctx.error("missing", "duration")
    return WaitStep(ctx.info, _quantity(ctx, table, "duration", DURATION))


def _stop_step(ctx: _StepContext, table: dict[str, Any]) -> Step:
    _check_keys(ctx, table, {"action", "name", "pump"})
    return StopStep(ctx.info, _string(ctx, table, "pump"))


def _valve_step(ctx: _StepContext, table: dict[str, Any]) -> Step:
    _check_keys(ctx, table, {"action", "name", "valve", "position"})
    valve = _string(ctx, table, "valve")
    if "position" not in table:
        raise ctx.error("missing", "position")
    position = table["position"]
    if isinstance(position, bool) or not isinstance(position, int | str):
        raise ctx.error(f"must be a position number or a port name, got {position!r}", "position")
    if isinstance(position, int) and position < 1:
        raise ctx.error(f"positions start at 1, got {position}", "position")
    if isinstance(position, str) and not position.strip():
        raise ctx.error("must not be empty", "position")
    return ValveStep(ctx.info, valve, position.strip() if isinstance(position, str) else position)


#: Most time points one image step may schedule (a week hourly is 169).
MAX_TIME_POINTS = 10_000


def _names(ctx: _StepContext, table: dict[str, Any], field: str) -> tuple[str, ...]:
    value = table[field]
    if not isinstance(value, list) or not value:
        raise ctx.error("must be a non-empty list of names", field)
    if not all(isinstance(v, str) and v.strip() for v in value):
        raise ctx.error("every entry must be a non-empty string", field)
    names = tuple(v.strip() for v in value)
    if len(set(names)) != len(names):
        raise ctx.error("names must not repeat", field)
    return names


def _image_step(ctx: _StepContext, table: dict[str, Any]) -> Step:
    _check_keys(ctx, table, {"action", "name", "positions", "channels", "every", "duration", "at"})
    if "positions" not in table:
        raise ctx.error('missing (a list of position names, or "all")', "positions")
    positions = None if table["positions"] == "all" else _names(ctx, table, "positions")
    if "channels" not in table:
        raise ctx.error("missing", "channels")
    channels = _names(ctx, table, "channels")
    if "at" in table:
        if "every" in table or "duration" in table:
            raise ctx.error("give either 'at' or 'every' with 'duration', not both", "at")
        at = table["at"]
        if not isinstance(at, list) or not at:
            raise ctx.error('must be a non-empty list of times such as ["0 h", "24 h"]', "at")
        times: list[float] = []
        for text in at:
            try:
                times.append(parse_quantity(text, DURATION))
            except UnitError as exc:
                raise ctx.error(str(exc), "at") from None
        if any(t < 0 for t in times):
            raise ctx.error("times must not be negative", "at")
        times_s = tuple(sorted(set(times)))
    else:
        for field in ("every", "duration"):
            if field not in table:
                raise ctx.error("missing (or give 'at' instead)", field)
        every_s = _quantity(ctx, table, "every", DURATION)
        duration_s = _quantity(ctx, table, "duration", DURATION)
        count = int(duration_s / every_s + 1e-9) + 1
        if count > MAX_TIME_POINTS:
            raise ctx.error(f"{count} time points; at most {MAX_TIME_POINTS}", "every")
        times_s = tuple(i * every_s for i in range(count))
    if len(times_s) > MAX_TIME_POINTS:
        raise ctx.error(f"{len(times_s)} time points; at most {MAX_TIME_POINTS}", "at")
    return ImageStep(ctx.info, positions, channels, times_s)


#: action name -> step builder
ACTIONS: dict[str, Callable[[_StepContext, dict[str, Any]], Step]] = {
    "infuse": _pump_step(PumpDirection.INFUSE),
    "withdraw": _pump_step(PumpDirection.WITHDRAW),
    "wait": _wait_step,
    "stop": _stop_step,
    "valve": _valve_step,
    "image": _image_step,
}


def parse_protocol(text: str, source: str) -> Protocol:
    """Parse and validate protocol ``text`` read from ``source``.

    Raises:
        ProtocolError: one line naming file, line, step and field.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = _TOML_LINE.search(str(exc))
        raise ProtocolError(
            source, f"not valid TOML: {exc}", line=int(match.group(1)) if match else None
        ) from None
    unknown = sorted(set(data) - {"protocol", "step"})
    if unknown:
        raise ProtocolError(
            source, f"unknown table(s) {', '.join(unknown)} (expected [protocol] and [[step]])"
        )
    meta = data.get("protocol")
    if not isinstance(meta, dict):
        raise ProtocolError(source, "missing [protocol] table with at least a name")
    unknown = sorted(set(meta) - {"name", "description"})
    if unknown:
        raise ProtocolError(source, f"[protocol]: unknown field(s) {', '.join(unknown)}")
    name = meta.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ProtocolError(source, "[protocol] needs a non-empty string 'name'", field="name")
    description = meta.get("description", "")
    if not isinstance(description, str):
        raise ProtocolError(source, "[protocol] 'description' must be a string")
    tables = data.get("step")
    if not isinstance(tables, list) or not tables:
        raise ProtocolError(source, "the protocol has no [[step]] tables")
    lines = text.splitlines()
    header_lines = [i for i, line in enumerate(lines) if _STEP_HEADER.match(line)]
    steps: list[Step] = []
    for position, table in enumerate(tables):
        line = header_lines[position] + 1 if position < len(header_lines) else None
        step_name = table.get("name") if isinstance(table, dict) else None
        info = StepInfo(
            position + 1,
            step_name if isinstance(step_name, str) else None,
            line,
        )
        ctx = _StepContext(source, lines, info)
        if not isinstance(table, dict):
            raise ctx.error("must be a table")
        if "name" in table and not isinstance(table["name"], str):
            raise ctx.error("must be a string", "name")
        action = _string(ctx, table, "action")
        builder = ACTIONS.get(action)
        if builder is None:
            raise ctx.error(f"unknown action {action!r} (known: {', '.join(ACTIONS)})", "action")
        steps.append(builder(ctx, table))
    return Protocol(
        name=name.strip(),
        description=description.strip(),
        source=source,
        text=text,
        steps=tuple(steps),
    )


def load_protocol(ref: str) -> Protocol:
    """Load the protocol at path ``ref``, or the built-in protocol named ``ref``."""
    text, source = resolve_protocol(ref)
    return parse_protocol(text, source)
