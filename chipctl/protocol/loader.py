"""Load and validate TOML protocol files into :class:`chipctl.protocol.model.Protocol`.

The language is documented in full in the README ("Protocol language"). In short::

    [protocol]
    name = "adc-dose-response"
    description = "..."
    pause_policy = "stop_pumps"          # or "keep_perfusing"
    max_pause = "24 h"                   # a run paused longer is aborted

    [parameters.exposure]                # typed, overridable: --set exposure="48 h"
    type = "duration"
    default = "72 h"
    min = "1 h"
    max = "14 d"

    [syringes.drug]                      # what each pump's syringe holds
    contents = { "t-vc-mmae" = "20 nM" }
    fill = "10 mL"

    [chambers]
    control = ["chamber 8"]

    [[interlock]]
    kind = "pressure"
    limit = "50 kPa"
    action = "abort"

    [[step]]
    name = "treat"
    action = "dose"                      # see ACTIONS
    drug_pump = "drug"
    carrier_pump = "medium"
    rate = "2 uL/min"
    profile = "constant"
    duration = "${exposure}"

Branches nest: ``[[step]] action = "parallel"`` then ``[[step.branch]]`` then
``[[step.branch.step]]``; a repeat's body is ``[[step.step]]``.

Every error is one line naming the file, the line, the step (its path, e.g. ``step 3/2.1``)
and the field (:class:`chipctl.errors.ProtocolError`). Protocol files are data: nothing in
them is evaluated or imported; ``${name}`` is replaced only by a declared parameter's value,
as a whole field value.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from chipctl.errors import ProtocolError
from chipctl.protocol.catalog import resolve_protocol
from chipctl.protocol.model import (
    ChamberMap,
    Condition,
    DoseProfile,
    DoseStep,
    ExchangeStep,
    ImageStep,
    InterlockSpec,
    ParallelStep,
    Parameter,
    PausePolicy,
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
    SyringeContents,
    ValveStep,
    WaitStep,
)
from chipctl.units import (
    CONCENTRATION,
    DURATION,
    FLOW_RATE,
    PRESSURE,
    VOLUME,
    Dimension,
    UnitError,
    parse_quantity,
)
from drivers.roles import PumpDirection

__all__ = [
    "ACTIONS",
    "INTERLOCK_ACTIONS",
    "INTERLOCK_KINDS",
    "MAX_DEPTH",
    "MAX_NESTING",
    "MAX_STEPS",
    "MAX_VOLUME_UL",
    "InterlockError",
    "load_protocol",
    "parse_duration",
    "parse_interlock",
    "parse_protocol",
]

_HEADER = re.compile(r"^\s*\[\[\s*([^\]]*?)\s*\]\]")
_ANY_HEADER = re.compile(r"^\s*\[")
_TOML_LINE = re.compile(r"at line (\d+)")
_PARAM_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
_DURATION_PART = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([A-Za-z]+)\s*")
_CLOCK_TIME = re.compile(r"^([01]?[0-9]|2[0-3]):([0-5][0-9])$")
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")

#: Deepest nesting of branches and repeats.
MAX_DEPTH = 8
#: Most steps a protocol may hold once repeats are counted.
MAX_STEPS = 100_000
#: Most time points one image step may schedule (a week hourly is 169).
MAX_TIME_POINTS = 10_000
#: How long a run may stay paused before it is aborted (cells cannot wait forever).
DEFAULT_MAX_PAUSE_S = 24 * 3600.0
#: Longest duration anything may have (a protocol beyond a year is a typo).
MAX_DURATION_S = 366 * 86400.0
#: Largest volume anything may have (a litre through a chip is a typo, and an exchange of
#: it would compile into thousands of strokes).
MAX_VOLUME_UL = 1e6
#: Deepest nesting of tables and arrays in the file (steps nest at most MAX_DEPTH deep,
#: which is four levels each at most); deeper data would exhaust Python's recursion.
MAX_NESTING = 64

PARAMETER_KINDS: dict[str, Dimension | None] = {
    "duration": DURATION,
    "rate": FLOW_RATE,
    "volume": VOLUME,
    "concentration": CONCENTRATION,
    "pressure": PRESSURE,
    "number": None,
    "integer": None,
    "text": None,
    "boolean": None,
}

INTERLOCK_KINDS = (
    "pressure",
    "flow_deviation",
    "syringe_reserve",
    "pump_alarm",
    "bubble",
    "lost_device",
)
INTERLOCK_ACTIONS = ("warn", "pause", "stop_pump", "abort")


def parse_duration(text: object) -> float:
    """Parse a duration, also compound ones such as ``"2 h 30 min"``, into seconds.

    Raises:
        UnitError: not a duration.
    """
    if isinstance(text, str):
        parts = _DURATION_PART.findall(text)
        if len(parts) > 1 and _DURATION_PART.sub("", text) == "":
            return sum(parse_quantity(f"{number} {unit}", DURATION) for number, unit in parts)
    return parse_quantity(text, DURATION)


def _key(name: object) -> str:
    """Return a key as written in TOML: bare if it can be, else quoted (never a line break)."""
    text = str(name)
    return text if _BARE_KEY.match(text) else repr(text)


def _keys(names: Iterator[object] | list[str]) -> str:
    return ", ".join(_key(name) for name in names)


def _nesting(data: object) -> int:
    """Return how deep tables and arrays nest in ``data``, up to ``MAX_NESTING + 1``.

    Iterative, so data nested thousands of levels deep (which tomllib reads from dotted
    keys and table headers) cannot exhaust the recursion limit here.
    """
    deepest = 0
    pending: list[tuple[object, int]] = [(data, 1)]
    while pending and deepest <= MAX_NESTING:
        value, depth = pending.pop()
        if isinstance(value, dict):
            deepest = max(deepest, depth)
            pending.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            deepest = max(deepest, depth)
            pending.extend((v, depth + 1) for v in value)
    return deepest


# -- locating lines -----------------------------------------------------------------------


def _step_header_lines(lines: list[str]) -> list[int]:
    """Return the 0-based lines of every ``[[...step]]`` header, in file order."""
    found = []
    for number, line in enumerate(lines):
        match = _HEADER.match(line)
        if match and match.group(1).replace(" ", "").split(".")[-1] == "step":
            found.append(number)
    return found


def _count_step_tables(tables: object) -> int:
    if not isinstance(tables, list):
        return 0
    total = 0
    for table in tables:
        if not isinstance(table, dict):
            continue
        total += 1 + _count_step_tables(table.get("step"))
        branches = table.get("branch")
        if isinstance(branches, list):
            for branch in branches:
                if isinstance(branch, dict):
                    total += _count_step_tables(branch.get("step"))
    return total


@dataclass
class _Source:
    """The file being parsed: its name, lines, and the next step header to hand out."""

    name: str
    lines: list[str]
    headers: list[int]
    next_header: int = 0

    def take_line(self) -> int | None:
        """Return the 0-based header line of the next step table in file order."""
        if self.next_header < len(self.headers):
            self.next_header += 1
            return self.headers[self.next_header - 1]
        return None

    def field_line(self, start: int | None, field: str) -> int | None:
        """Return the 1-based line of ``field = ...`` in the table starting at ``start``."""
        if start is None:
            return None
        key = re.escape(field)
        pattern = re.compile(rf"""^\s*(?:{key}|"{key}"|'{key}')\s*[=.]""")
        for number in range(start + 1, len(self.lines)):
            if _ANY_HEADER.match(self.lines[number]):
                break
            if pattern.match(self.lines[number]):
                return number + 1
        return start + 1

    def table_line(self, header: str, field: str | None = None) -> int | None:
        """Return the 1-based line of ``[header]`` (or of ``field`` inside it)."""
        pattern = re.compile(rf"^\s*\[\s*{re.escape(header)}\s*\]")
        for number, line in enumerate(self.lines):
            if pattern.match(line):
                return self.field_line(number, field) if field else number + 1
        return None


class _StepContext:
    """Builds errors that name the file, line, step and field of one step."""

    def __init__(self, source: _Source, info: StepInfo, header_line: int | None) -> None:
        self.source = source
        self.info = info
        self.header_line = header_line

    def error(self, message: str, field: str | None = None) -> ProtocolError:
        line = (
            self.source.field_line(self.header_line, field)
            if field
            else (None if self.header_line is None else self.header_line + 1)
        )
        return ProtocolError(
            self.source.name,
            message,
            line=line,
            step_index=self.info.path or self.info.index,
            step_name=self.info.name,
            field=field,
        )


# -- field readers -------------------------------------------------------------------------


def _quantity(
    ctx: _StepContext, table: dict[str, Any], field: str, dim: Dimension, *, zero_ok: bool = False
) -> float:
    if field not in table:
        raise ctx.error("missing", field)
    try:
        value = (
            parse_duration(table[field]) if dim is DURATION else parse_quantity(table[field], dim)
        )
    except UnitError as exc:
        raise ctx.error(str(exc), field) from None
    if value < 0 or (value == 0 and not zero_ok):
        raise ctx.error(f"must be {'>=' if zero_ok else '>'} 0, got {table[field]!r}", field)
    if dim is DURATION and value > MAX_DURATION_S:
        raise ctx.error(f"{table[field]!r} is longer than a year", field)
    if dim is VOLUME and value > MAX_VOLUME_UL:
        raise ctx.error(f"{table[field]!r} is more than a litre", field)
    return value


def _string(ctx: _StepContext, table: dict[str, Any], field: str) -> str:
    if field not in table:
        raise ctx.error("missing", field)
    value = table[field]
    if not isinstance(value, str) or not value.strip():
        raise ctx.error(f"must be a non-empty string, got {value!r}", field)
    return value.strip()


def _bool(ctx: _StepContext, table: dict[str, Any], field: str, default: bool) -> bool:
    value = table.get(field, default)
    if not isinstance(value, bool):
        raise ctx.error(f"must be true or false, got {value!r}", field)
    return value


def _check_keys(ctx: _StepContext, table: dict[str, Any], allowed: set[str]) -> None:
    allowed = allowed | {"action", "name"}
    for key in table:
        if key not in allowed:
            raise ctx.error(f"unknown field (allowed: {', '.join(sorted(allowed))})", key)


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


# -- step builders -------------------------------------------------------------------------

_Builder = Callable[[_StepContext, dict[str, Any], "_Parser"], Step]


def _pump_step(direction: PumpDirection) -> _Builder:
    def build(ctx: _StepContext, table: dict[str, Any], _: _Parser) -> Step:
        _check_keys(ctx, table, {"pump", "rate", "volume", "duration", "wait"})
        pump = _string(ctx, table, "pump")
        rate_ul_min = _quantity(ctx, table, "rate", FLOW_RATE)
        has_volume, has_duration = "volume" in table, "duration" in table
        if has_volume == has_duration:
            raise ctx.error("give exactly one of 'volume' or 'duration'", "volume")
        volume_ul = _quantity(ctx, table, "volume", VOLUME) if has_volume else None
        duration_s = _quantity(ctx, table, "duration", DURATION) if has_duration else None
        wait = _bool(ctx, table, "wait", True)
        return PumpStep(ctx.info, pump, direction, rate_ul_min, volume_ul, duration_s, wait)

    return build


def _finite(value: object) -> float | None:
    """Return ``value`` as a float if it is a finite number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer beyond a float
        return None
    return number if math.isfinite(number) else None


def _condition(ctx: _StepContext, value: object) -> Condition:
    if not isinstance(value, dict):
        raise ctx.error(
            'must be a clock time "HH:MM" or a condition '
            '{ signal = "flow.flow_ul_min", above = 1.0 }',
            "until",
        )
    unknown = sorted(set(value) - {"signal", "above", "below", "for"})
    if unknown:
        raise ctx.error(f"unknown key(s) {_keys(unknown)} in the condition", "until")
    signal = value.get("signal")
    if not isinstance(signal, str) or "." not in signal:
        raise ctx.error(
            'the condition needs signal = "<device>.<quantity>" or "analysis.<position>.<metric>"',
            "until",
        )
    bounds: dict[str, float | None] = {}
    for key in ("above", "below"):
        bound = value.get(key)
        if bound is not None and _finite(bound) is None:
            raise ctx.error(f"{key} must be a finite number, got {bound!r}", "until")
        bounds[key] = None if bound is None else _finite(bound)
    if bounds["above"] is None and bounds["below"] is None:
        raise ctx.error("the condition needs 'above' or 'below'", "until")
    hold_s = 0.0
    if "for" in value:
        try:
            hold_s = parse_duration(value["for"])
        except UnitError as exc:
            raise ctx.error(f"for: {exc}", "until") from None
    return Condition(signal.strip(), bounds["above"], bounds["below"], hold_s)


def _wait_step(ctx: _StepContext, table: dict[str, Any], _: _Parser) -> Step:
    _check_keys(ctx, table, {"duration", "until", "timeout", "on_timeout", "expect"})
    if ("duration" in table) == ("until" in table):
        raise ctx.error("give exactly one of 'duration' or 'until'", "duration")
    if "duration" in table:
        for key in ("timeout", "on_timeout", "expect"):
            if key in table:
                raise ctx.error("only for a wait 'until' a condition", key)
        return WaitStep(ctx.info, duration_s=_quantity(ctx, table, "duration", DURATION))
    until = table["until"]
    if isinstance(until, str):
        match = _CLOCK_TIME.match(until.strip())
        if match is None:
            raise ctx.error(f'a clock time must be "HH:MM" (24 h), got {until!r}', "until")
        for key in ("timeout", "on_timeout", "expect"):
            if key in table:
                raise ctx.error("only for a wait 'until' a condition", key)
        return WaitStep(ctx.info, until_clock=(int(match.group(1)), int(match.group(2))))
    condition = _condition(ctx, until)
    timeout_s = _quantity(ctx, table, "timeout", DURATION) if "timeout" in table else None
    on_timeout = table.get("on_timeout", "continue")
    if on_timeout not in ("continue", "abort"):
        raise ctx.error(f'must be "continue" or "abort", got {on_timeout!r}', "on_timeout")
    if on_timeout == "abort" and timeout_s is None:
        raise ctx.error("needs a 'timeout'", "on_timeout")
    expect_s = (
        _quantity(ctx, table, "expect", DURATION, zero_ok=True) if "expect" in table else None
    )
    if expect_s is None and timeout_s is None:
        raise ctx.error(
            "a condition wait needs a 'timeout' or an 'expect' (for the preflight's timeline)",
            "until",
        )
    return WaitStep(
        ctx.info,
        condition=condition,
        timeout_s=timeout_s,
        on_timeout=on_timeout,
        expect_s=expect_s,
    )


def _stop_step(ctx: _StepContext, table: dict[str, Any], _: _Parser) -> Step:
    _check_keys(ctx, table, {"pump"})
    pump = _string(ctx, table, "pump")
    return StopStep(ctx.info, None if pump == "all" else pump)


def _valve_step(ctx: _StepContext, table: dict[str, Any], _: _Parser) -> Step:
    _check_keys(ctx, table, {"valve", "position"})
    valve = _string(ctx, table, "valve")
    return ValveStep(ctx.info, valve, _position(ctx, table, "position"))


def _position(ctx: _StepContext, table: dict[str, Any], field: str) -> int | str:
    if field not in table:
        raise ctx.error("missing", field)
    position = table[field]
    if isinstance(position, bool) or not isinstance(position, int | str):
        raise ctx.error(f"must be a position number or a port name, got {position!r}", field)
    if isinstance(position, int) and not 1 <= position <= 1000:
        raise ctx.error(f"positions start at 1, got {position}", field)
    if isinstance(position, str):
        if not position.strip():
            raise ctx.error("must not be empty", field)
        return position.strip()
    return position


def _image_step(ctx: _StepContext, table: dict[str, Any], _: _Parser) -> Step:
    _check_keys(ctx, table, {"positions", "channels", "every", "duration", "at"})
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
        if len(at) > MAX_TIME_POINTS:
            raise ctx.error(f"{len(at)} time points; at most {MAX_TIME_POINTS}", "at")
        times: list[float] = []
        for text in at:
            try:
                times.append(parse_duration(text))
            except UnitError as exc:
                raise ctx.error(str(exc), "at") from None
        if any(t < 0 or t > MAX_DURATION_S for t in times):
            raise ctx.error("times must not be negative, nor beyond a year", "at")
        times_s = tuple(sorted(set(times)))
    else:
        for field in ("every", "duration"):
            if field not in table:
                raise ctx.error("missing (or give 'at' instead)", field)
        every_s = _quantity(ctx, table, "every", DURATION)
        duration_s = _quantity(ctx, table, "duration", DURATION, zero_ok=True)
        intervals = duration_s / every_s  # inf for a denormal 'every': no int() of it
        count = int(intervals + 1e-9) + 1 if intervals < MAX_TIME_POINTS else MAX_TIME_POINTS + 1
        if count > MAX_TIME_POINTS:
            raise ctx.error(f"{intervals + 1:.4g} time points; at most {MAX_TIME_POINTS}", "every")
        times_s = tuple(i * every_s for i in range(count))
    return ImageStep(ctx.info, positions, channels, times_s)


def _prompt_step(ctx: _StepContext, table: dict[str, Any], _: _Parser) -> Step:
    _check_keys(ctx, table, {"message", "timeout"})
    message = _string(ctx, table, "message")
    timeout_s = _quantity(ctx, table, "timeout", DURATION) if "timeout" in table else None
    return PromptStep(ctx.info, message, timeout_s)


def _prime_step(ctx: _StepContext, table: dict[str, Any], _: _Parser) -> Step:
    _check_keys(ctx, table, {"pump", "rate", "volume"})
    pump = _string(ctx, table, "pump")
    rate = _quantity(ctx, table, "rate", FLOW_RATE)
    volume = _quantity(ctx, table, "volume", VOLUME) if "volume" in table else None
    return PrimeStep(ctx.info, pump, rate, volume)


def _perfuse_step(ctx: _StepContext, table: dict[str, Any], _: _Parser) -> Step:
    _check_keys(ctx, table, {"rates", "duration", "wait"})
    rates = table.get("rates")
    if not isinstance(rates, dict) or not rates:
        raise ctx.error('missing: a table of pump = rate, e.g. { medium = "2 uL/min" }', "rates")
    parsed: list[tuple[str, float]] = []
    for pump, text in rates.items():
        try:
            rate = parse_quantity(text, FLOW_RATE)
        except UnitError as exc:
            raise ctx.error(f"{_key(pump)}: {exc}", "rates") from None
        if rate <= 0:
            raise ctx.error(f"{_key(pump)}: must be > 0, got {text!r}", "rates")
        parsed.append((str(pump), rate))
    duration_s = _quantity(ctx, table, "duration", DURATION)
    return PerfuseStep(ctx.info, tuple(parsed), duration_s, _bool(ctx, table, "wait", True))


def _dose_step(ctx: _StepContext, table: dict[str, Any], _: _Parser) -> Step:
    _check_keys(
        ctx,
        table,
        {"drug_pump", "carrier_pump", "rate", "profile", "duration", "on", "start"},
    )
    drug = _string(ctx, table, "drug_pump")
    carrier = _string(ctx, table, "carrier_pump")
    if drug == carrier:
        raise ctx.error("the drug and the carrier need two pumps", "carrier_pump")
    rate = _quantity(ctx, table, "rate", FLOW_RATE)
    text = table.get("profile", "constant")
    try:
        profile = DoseProfile(text)
    except ValueError:
        known = ", ".join(p.value for p in DoseProfile)
        raise ctx.error(f"unknown profile {text!r} (known: {known})", "profile") from None
    duration_s = _quantity(ctx, table, "duration", DURATION)
    on_s = start_s = None
    if profile is DoseProfile.PULSE:
        on_s = _quantity(ctx, table, "on", DURATION)
        if on_s >= duration_s:
            raise ctx.error("a pulse must be shorter than the step's duration", "on")
    elif "on" in table:
        raise ctx.error('only for profile = "pulse"', "on")
    if profile is DoseProfile.STEP:
        start_s = _quantity(ctx, table, "start", DURATION)
        if start_s >= duration_s:
            raise ctx.error("the drug must start before the step ends", "start")
    elif "start" in table:
        raise ctx.error('only for profile = "step"', "start")
    return DoseStep(ctx.info, drug, carrier, rate, profile, duration_s, on_s, start_s)


def _exchange_step(ctx: _StepContext, table: dict[str, Any], _: _Parser) -> Step:
    _check_keys(ctx, table, {"pump", "from", "to", "volume", "rate", "draw_rate"})
    pump = _string(ctx, table, "pump")
    source = _string(ctx, table, "from")
    target = table.get("to", "chip")
    if not isinstance(target, str) or not target.strip():
        raise ctx.error("must be a port name", "to")
    if source == target.strip():
        raise ctx.error("must differ from 'from'", "to")
    volume = _quantity(ctx, table, "volume", VOLUME)
    rate = _quantity(ctx, table, "rate", FLOW_RATE)
    draw = _quantity(ctx, table, "draw_rate", FLOW_RATE) if "draw_rate" in table else rate
    return ExchangeStep(ctx.info, pump, source, target.strip(), volume, rate, draw)


def _sample_step(ctx: _StepContext, table: dict[str, Any], _: _Parser) -> Step:
    _check_keys(ctx, table, {"valve", "port", "duration", "back_to"})
    valve = _string(ctx, table, "valve")
    port = _string(ctx, table, "port")
    duration_s = _quantity(ctx, table, "duration", DURATION)
    back = table.get("back_to", "waste")
    if not isinstance(back, str) or not back.strip():
        raise ctx.error("must be a port name", "back_to")
    return SampleStep(ctx.info, valve, port, duration_s, back.strip())


def _parallel_step(ctx: _StepContext, table: dict[str, Any], parser: _Parser) -> Step:
    _check_keys(ctx, table, {"branch"})
    branches = table.get("branch")
    if not isinstance(branches, list) or len(branches) < 2:
        raise ctx.error("needs at least two [[step.branch]] tables, each with steps", "branch")
    built: list[SequenceStep] = []
    for number, branch in enumerate(branches, start=1):
        if not isinstance(branch, dict):
            raise ctx.error(f"branch {number} must be a table", "branch")
        unknown = sorted(set(branch) - {"name", "step"})
        if unknown:
            raise ctx.error(f"branch {number}: unknown field(s) {_keys(unknown)}", "branch")
        name = branch.get("name")
        if name is not None and not isinstance(name, str):
            raise ctx.error(f"branch {number}: name must be a string", "branch")
        info = StepInfo(number, name, None, f"{ctx.info.path}/{number}")
        steps = parser.steps(branch.get("step"), ctx, branch=number)
        built.append(SequenceStep(info, steps))
    return ParallelStep(ctx.info, tuple(built))


def _repeat_step(ctx: _StepContext, table: dict[str, Any], parser: _Parser) -> Step:
    _check_keys(ctx, table, {"count", "step"})
    count = table.get("count")
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 10_000:
        raise ctx.error(f"must be an integer 1..10000, got {count!r}", "count")
    body = parser.steps(table.get("step"), ctx)
    runs = count * sum(_weight(step) for step in body)
    if runs > MAX_STEPS:
        raise ctx.error(f"runs {runs} steps once repeated; at most {MAX_STEPS}", "count")
    return RepeatStep(ctx.info, count, SequenceStep(ctx.info, body))


def _weight(step: Step) -> int:
    """Return how many steps ``step`` runs, repeats counted (actions count once)."""
    match step:
        case RepeatStep():
            return step.count * sum(_weight(s) for s in step.body.steps)
        case ParallelStep():
            return sum(_weight(s) for branch in step.branches for s in branch.steps)
        case SequenceStep():
            return sum(_weight(s) for s in step.steps)
        case _:
            return 1


#: action name -> step builder
ACTIONS: dict[str, _Builder] = {
    "infuse": _pump_step(PumpDirection.INFUSE),
    "withdraw": _pump_step(PumpDirection.WITHDRAW),
    "wait": _wait_step,
    "stop": _stop_step,
    "valve": _valve_step,
    "image": _image_step,
    "prompt": _prompt_step,
    "prime": _prime_step,
    "perfuse": _perfuse_step,
    "dose": _dose_step,
    "exchange": _exchange_step,
    "sample": _sample_step,
    "parallel": _parallel_step,
    "repeat": _repeat_step,
}


# -- protocol-level tables ------------------------------------------------------------------


class _Parser:
    """Parses the step tree, handing out header lines in file order."""

    def __init__(self, source: _Source, params: Mapping[str, Parameter]) -> None:
        self.source = source
        self.params = params
        self.depth = 0
        self.count = 0

    def steps(
        self, tables: object, parent: _StepContext | None = None, *, branch: int | None = None
    ) -> tuple[Step, ...]:
        if not isinstance(tables, list) or not tables:
            if parent is None:
                raise ProtocolError(self.source.name, "the protocol has no [[step]] tables")
            raise parent.error("has no steps (add [[...step]] tables under it)", "step")
        self.depth += 1
        if self.depth > MAX_DEPTH:
            assert parent is not None
            raise parent.error(f"branches and repeats nest deeper than {MAX_DEPTH}", "step")
        built: list[Step] = []
        for index, table in enumerate(tables, start=1):
            header = self.source.take_line()
            name = table.get("name") if isinstance(table, dict) else None
            line = None if header is None else header + 1
            if parent is None:
                info = StepInfo(index, name if isinstance(name, str) else None, line, str(index))
            else:
                info = parent.info.child(
                    index, name if isinstance(name, str) else None, line, branch
                )
            ctx = _StepContext(self.source, info, header)
            if not isinstance(table, dict):
                raise ctx.error("must be a table")
            table = {
                key: value
                if key in ("step", "branch")  # nested steps: substituted when parsed
                else _substitute(value, self.params, partial(ctx.error, field=key))
                for key, value in table.items()
            }
            if table.get("name") != name and isinstance(table.get("name"), str):
                info = replace(info, name=table["name"])
                ctx = _StepContext(self.source, info, header)
            if "name" in table and not isinstance(table["name"], str):
                raise ctx.error("must be a string", "name")
            self.count += 1
            if self.count > MAX_STEPS:
                raise ctx.error(f"more than {MAX_STEPS} steps")
            action = _string(ctx, table, "action")
            builder = ACTIONS.get(action)
            if builder is None:
                known = ", ".join(ACTIONS)
                raise ctx.error(f"unknown action {action!r} (known: {known})", "action")
            built.append(builder(ctx, table, self))
        self.depth -= 1
        if parent is None:
            runs = sum(_weight(step) for step in built)
            if runs > MAX_STEPS:
                raise ProtocolError(
                    self.source.name, f"runs {runs} steps once repeated; at most {MAX_STEPS}"
                )
        return tuple(built)


def _error(src: _Source, header: str, message: str, field: str | None = None) -> ProtocolError:
    line = src.table_line(header, field.split(".")[-1] if field else None)
    return ProtocolError(src.name, f"[{header}]: {message}", line=line, field=field)


def _parameters(src: _Source, table: object, overrides: Mapping[str, str]) -> dict[str, Parameter]:
    if table is None:
        table = {}
    if not isinstance(table, dict):
        raise ProtocolError(src.name, "[parameters] must be a table of [parameters.<name>]")
    params: dict[str, Parameter] = {}
    for name, spec in table.items():
        header = f"parameters.{_key(name)}"
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise _error(src, header, "parameter names are letters, digits and _")
        if not isinstance(spec, dict):
            raise _error(src, header, "must be a table with type and default")
        unknown = sorted(set(spec) - {"type", "default", "min", "max", "description"})
        if unknown:
            raise _error(src, header, f"unknown field(s) {_keys(unknown)}")
        kind = spec.get("type")
        if not isinstance(kind, str) or kind not in PARAMETER_KINDS:
            known = ", ".join(PARAMETER_KINDS)
            raise _error(src, header, f"type must be one of {known}, got {kind!r}", "type")
        if "default" not in spec:
            raise _error(src, header, "missing", "default")
        description = spec.get("description", "")
        if not isinstance(description, str):
            raise _error(src, header, "must be a string", "description")
        bounds: dict[str, float | None] = {"min": None, "max": None}
        for key in ("min", "max"):
            if key in spec:
                try:
                    bounds[key] = _param_number(kind, spec[key])
                except ValueError as exc:
                    raise _error(src, header, str(exc), key) from None
        default = spec["default"]
        param = Parameter(name, kind, default, default, bounds["min"], bounds["max"], description)
        try:
            _check_param_value(param, default)
        except ValueError as exc:
            raise _error(src, header, str(exc), "default") from None
        params[name] = param
    for name, text in overrides.items():
        if name not in params:
            known = ", ".join(params) or "none"
            raise ProtocolError(
                src.name,
                f"--set {_key(name)}: the protocol has no such parameter (parameters: {known})",
            )
        param = params[name]
        value = _from_text(param.kind, text)
        try:
            _check_param_value(param, value)
        except ValueError as exc:
            raise ProtocolError(src.name, f"--set {_key(name)}={text!r}: {exc}") from None
        params[name] = Parameter(
            name, param.kind, param.default, value, param.minimum, param.maximum, param.description
        )
    return params


def _from_text(kind: str, text: str) -> str | int | float | bool:
    """Turn a ``--set`` value (text) into the parameter's TOML type."""
    if kind == "integer":
        try:
            return int(text)
        except ValueError:
            return text
    if kind == "number":
        try:
            return float(text)
        except ValueError:
            return text
    if kind == "boolean":
        return {"true": True, "false": False}.get(text.strip().lower(), text)
    return text


def _param_number(kind: str, value: object) -> float:
    dim = PARAMETER_KINDS[kind]
    if dim is not None:
        try:
            return parse_duration(value) if dim is DURATION else parse_quantity(value, dim)
        except UnitError as exc:
            raise ValueError(str(exc)) from None
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    if kind in ("number", "integer") and numeric:
        number = _finite(value)
        if number is None:
            raise ValueError(f"{value!r} is not a finite {kind}")
        return number
    raise ValueError(f"{value!r} is not {'an' if kind[0] in 'aeiou' else 'a'} {kind}")


def _check_param_value(param: Parameter, value: object) -> None:
    kind = param.kind
    if kind == "text":
        if not isinstance(value, str):
            raise ValueError(f"{value!r} is not text")
        return
    if kind == "boolean":
        if not isinstance(value, bool):
            raise ValueError(f"{value!r} is not true or false")
        return
    if kind == "integer" and (isinstance(value, bool) or not isinstance(value, int)):
        raise ValueError(f"{value!r} is not an integer")
    number = _param_number(kind, value)
    if param.minimum is not None and number < param.minimum:
        raise ValueError(f"{value!r} is below the minimum")
    if param.maximum is not None and number > param.maximum:
        raise ValueError(f"{value!r} is above the maximum")


def _substitute(
    value: Any, params: Mapping[str, Parameter], fail: Callable[[str], ProtocolError]
) -> Any:
    """Replace whole-value ``"${name}"`` strings by parameter values, recursively.

    ``fail`` builds the error for a bad reference, naming where the value is.
    """
    if isinstance(value, str):
        match = _PARAM_REF.match(value.strip())
        if match is None:
            if "${" in value:
                raise fail(
                    f'{value!r}: a parameter reference must be the whole value, e.g. "${{dose}}"'
                )
            return value
        name = match.group(1)
        if name not in params:
            known = ", ".join(params) or "none"
            raise fail(f"{value!r}: no parameter {name!r} (parameters: {known})")
        return params[name].value
    if isinstance(value, list):
        return [_substitute(v, params, fail) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, params, fail) for k, v in value.items()}
    return value


def _syringes(
    src: _Source, table: object, params: Mapping[str, Parameter]
) -> dict[str, SyringeContents]:
    if table is None:
        return {}
    if not isinstance(table, dict):
        raise ProtocolError(src.name, "[syringes] must be a table of [syringes.<pump>]")
    result: dict[str, SyringeContents] = {}
    for pump, raw in table.items():
        header = f"syringes.{_key(pump)}"
        if not isinstance(raw, dict):
            raise _error(src, header, "must be a table")
        unknown = sorted(set(raw) - {"contents", "fill", "label"})
        if unknown:
            raise _error(src, header, f"unknown field(s) {_keys(unknown)}")
        spec = {
            key: _substitute(value, params, partial(_error, src, header, field=key))
            for key, value in raw.items()
        }
        contents = spec.get("contents", {})
        if not isinstance(contents, dict):
            raise _error(src, header, 'must be a table such as { "drug-x" = "20 nM" }', "contents")
        contents_nm: dict[str, float] = {}
        for drug, text in contents.items():
            try:
                contents_nm[str(drug)] = parse_quantity(text, CONCENTRATION)
            except UnitError as exc:
                raise _error(src, header, f"{_key(drug)}: {exc}", "contents") from None
            if contents_nm[str(drug)] < 0:
                raise _error(src, header, f"{_key(drug)}: must not be negative", "contents")
        fill = None
        if "fill" in spec:
            try:
                fill = parse_quantity(spec["fill"], VOLUME)
            except UnitError as exc:
                raise _error(src, header, str(exc), "fill") from None
            if fill < 0:
                raise _error(src, header, "must not be negative", "fill")
        label = spec.get("label", "")
        if not isinstance(label, str):
            raise _error(src, header, "must be a string", "label")
        result[pump] = SyringeContents(pump, contents_nm, fill, label)
    return result


def _chambers(src: _Source, table: object) -> ChamberMap:
    if table is None:
        return ChamberMap()
    if not isinstance(table, dict):
        raise ProtocolError(src.name, "[chambers] must be a table")
    unknown = sorted(set(table) - {"control", "exclude", "labels"})
    if unknown:
        raise _error(src, "chambers", f"unknown field(s) {_keys(unknown)}")
    lists: dict[str, tuple[str, ...]] = {}
    for key in ("control", "exclude"):
        value = table.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _error(src, "chambers", "must be a list of position names", key)
        lists[key] = tuple(v.strip() for v in value)
    if set(lists["control"]) & set(lists["exclude"]):
        raise _error(src, "chambers", "a chamber cannot be both control and excluded", "exclude")
    labels = table.get("labels", {})
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise _error(src, "chambers", "must be a table of position = label", "labels")
    return ChamberMap(lists["control"], lists["exclude"], {str(k): v for k, v in labels.items()})


class InterlockError(ValueError):
    """Raised by :func:`parse_interlock`; ``field`` is the key concerned, if one is.

    ``str()`` is the message alone (it names the field in words), so the config, which
    reports ``interlocks.<kind>: message``, and the protocol loader, which adds the line
    and ``field 'x'``, can both use it.
    """

    def __init__(self, field: str | None, message: str) -> None:
        """Keep the field beside the message."""
        super().__init__(message)
        self.field = field


def parse_interlock(
    where: str, spec: Mapping[str, Any], *, kind: str | None = None, origin: str = "protocol"
) -> InterlockSpec:
    """Parse one interlock table (``kind`` given separately for config defaults).

    Raises:
        InterlockError: a ValueError naming the field, for the caller to wrap with its file
            and table.
    """
    kind = kind if kind is not None else spec.get("kind")
    if kind not in INTERLOCK_KINDS:
        raise InterlockError(
            "kind", f"kind must be one of {', '.join(INTERLOCK_KINDS)}, got {kind!r}"
        )
    allowed = {"kind", "action", "device", "limit", "tolerance", "reserve", "for"}
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise InterlockError(unknown[0], f"unknown field(s) {_keys(unknown)}")
    action = spec.get("action")
    if action not in INTERLOCK_ACTIONS:
        raise InterlockError(
            "action", f"action must be one of {', '.join(INTERLOCK_ACTIONS)}, got {action!r}"
        )
    scope = spec.get("device")
    if scope is not None and (not isinstance(scope, str) or not scope.strip()):
        raise InterlockError("device", "device must be a device name")
    if action == "stop_pump" and kind in ("pressure", "flow_deviation", "bubble"):
        if scope is None:
            raise InterlockError(
                "device", "stop_pump needs 'device' (the pump to stop) for this kind"
            )
    limit: float | None = None
    if kind == "pressure":
        if "limit" not in spec:
            raise InterlockError("limit", 'limit is missing (e.g. "50 kPa")')
        try:
            limit = parse_quantity(spec["limit"], PRESSURE)
        except UnitError as exc:
            raise InterlockError("limit", f"limit: {exc}") from None
        if limit <= 0:
            raise InterlockError("limit", "limit must be > 0")
    elif kind in ("flow_deviation", "syringe_reserve"):
        key = "tolerance" if kind == "flow_deviation" else "reserve"
        if key not in spec:
            raise InterlockError(key, f'{key} is missing (e.g. "30 %")')
        limit = _percent(spec[key], key)
    own = {"pressure": "limit", "flow_deviation": "tolerance", "syringe_reserve": "reserve"}
    for key in ("limit", "tolerance", "reserve"):
        if key in spec and key != own.get(kind):
            takes = f"its limit is '{own[kind]}'" if kind in own else "it takes no limit"
            raise InterlockError(key, f"{kind} takes no '{key}' ({takes})")
    hold_s = 0.0
    if "for" in spec:
        try:
            hold_s = parse_duration(spec["for"])
        except UnitError as exc:
            raise InterlockError("for", f"for: {exc}") from None
        if hold_s < 0 or hold_s > MAX_DURATION_S:
            raise InterlockError("for", f"for must be between 0 and a year, got {spec['for']!r}")
    return InterlockSpec(kind, action, scope.strip() if scope else None, limit, hold_s, origin)


def _percent(value: object, key: str) -> float:
    expect = f'{key} must be a percentage such as "30 %", got {value!r}'
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            number = float(value.strip()[:-1])
        except ValueError:
            raise InterlockError(key, expect) from None
    elif (fraction := _finite(value)) is not None:
        number = fraction * 100.0
    else:
        raise InterlockError(key, expect)
    if not 0 < number < 1000:
        raise InterlockError(key, f"{key} must be between 0 and 1000 %, got {value!r}")
    return number / 100.0


def _interlock_error(
    src: _Source, header: int | None, number: int, message: str, field: str | None = None
) -> ProtocolError:
    """Return the error for interlock ``number`` whose table starts at 0-based ``header``."""
    if field:
        line = src.field_line(header, field)
    else:
        line = None if header is None else header + 1
    return ProtocolError(src.name, f"interlock {number}: {message}", line=line, field=field)


def _interlocks(
    src: _Source, tables: object, params: Mapping[str, Parameter]
) -> tuple[InterlockSpec, ...]:
    if tables is None:
        return ()
    if not isinstance(tables, list):
        raise ProtocolError(src.name, "interlocks are an array of tables: [[interlock]]")
    headers = [
        n for n, line in enumerate(src.lines) if re.match(r"^\s*\[\[\s*interlock\s*\]\]", line)
    ]
    result = []
    for number, raw in enumerate(tables, start=1):
        header = headers[number - 1] if number - 1 < len(headers) else None
        error = partial(_interlock_error, src, header, number)
        if not isinstance(raw, dict):
            raise error("must be a table")
        spec = {
            key: _substitute(value, params, partial(error, field=key)) for key, value in raw.items()
        }
        try:
            result.append(parse_interlock(f"interlock {number}", spec))
        except InterlockError as exc:
            raise error(str(exc), exc.field) from None
    return tuple(result)


_TOP_LEVEL = {"protocol", "parameters", "syringes", "chambers", "interlock", "step"}


def parse_protocol(text: str, source: str, overrides: Mapping[str, str] | None = None) -> Protocol:
    """Parse and validate protocol ``text`` read from ``source``.

    Args:
        text: the TOML text.
        source: the file path or built-in name (for messages).
        overrides: parameter values (as text, like ``--set name=value``).

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
    except RecursionError:
        raise ProtocolError(source, "not valid TOML: nested too deeply") from None
    if _nesting(data) > MAX_NESTING:
        raise ProtocolError(
            source,
            f"tables and arrays nest more than {MAX_NESTING} levels deep "
            f"(steps nest at most {MAX_DEPTH} deep)",
        )
    lines = text.splitlines()
    headers = _step_header_lines(lines)
    if len(headers) != _count_step_tables(data.get("step")):
        headers = []  # inline step tables: lines would be misattributed, so give none
    src = _Source(source, lines, headers)
    unknown = sorted(set(data) - _TOP_LEVEL)
    if unknown:
        raise ProtocolError(
            source,
            f"unknown table(s) {_keys(unknown)} (expected: {', '.join(sorted(_TOP_LEVEL))})",
        )
    meta = data.get("protocol")
    if not isinstance(meta, dict):
        raise ProtocolError(source, "missing [protocol] table with at least a name")
    unknown = sorted(set(meta) - {"name", "description", "pause_policy", "max_pause", "version"})
    if unknown:
        raise _error(src, "protocol", f"unknown field(s) {_keys(unknown)}")
    name = meta.get("name")
    if not isinstance(name, str) or not name.strip():
        raise _error(src, "protocol", "needs a non-empty string 'name'", "name")
    for key in ("description", "version"):
        if not isinstance(meta.get(key, ""), str):
            raise _error(src, "protocol", "must be a string", key)
    try:
        pause_policy = PausePolicy(meta.get("pause_policy", "stop_pumps"))
    except ValueError:
        known = ", ".join(p.value for p in PausePolicy)
        raise _error(src, "protocol", f"must be one of {known}", "pause_policy") from None
    max_pause_s = DEFAULT_MAX_PAUSE_S
    if "max_pause" in meta:
        try:
            max_pause_s = parse_duration(meta["max_pause"])
        except UnitError as exc:
            raise _error(src, "protocol", str(exc), "max_pause") from None
        if not 0 < max_pause_s <= MAX_DURATION_S:
            raise _error(src, "protocol", "must be > 0 and at most a year", "max_pause")
    params = _parameters(src, data.get("parameters"), overrides or {})
    steps = _Parser(src, params).steps(data.get("step"))
    return Protocol(
        name=name.strip(),
        description=str(meta.get("description", "")).strip(),
        source=source,
        text=text,
        steps=steps,
        parameters=params,
        syringes=_syringes(src, data.get("syringes"), params),
        chambers=_chambers(src, data.get("chambers")),
        interlocks=_interlocks(src, data.get("interlock"), params),
        pause_policy=pause_policy,
        max_pause_s=max_pause_s,
        version=str(meta.get("version", "")),
    )


def load_protocol(ref: str, overrides: Mapping[str, str] | None = None) -> Protocol:
    """Load the protocol at path ``ref``, or the built-in protocol named ``ref``."""
    text, source = resolve_protocol(ref)
    return parse_protocol(text, source, overrides)


def iter_actions() -> Iterator[str]:
    """Yield the action names (for help texts)."""
    yield from ACTIONS
