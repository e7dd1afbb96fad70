"""Protocol validation: every field of every table and action, every kind of mistake.

Each case breaks one field of an otherwise valid protocol and checks what the operator
reads: a :class:`ProtocolError` whose ``str()`` is one line naming the file, the line the
field is on (the table's header line when the field is missing), the step's path and name,
and the field. The valid protocol of each case is checked too (it parses, and passes
preflight on the simulated reference rig), so every case fails for its one mistake.

The last part checks what only the rig can tell, through :func:`chipctl.api.check_protocol`
on the simulated reference rig: unknown pumps, valves, ports, positions, channels and
signals, rates out of a syringe's range, syringes running dry or overfilling, pressure over
the limit, and a dead volume the config does not give.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import pytest

from chipctl.api import check_protocol
from chipctl.config import parse_config, reference_rig_config
from chipctl.errors import ProtocolError
from chipctl.protocol.loader import MAX_DEPTH, MAX_STEPS, MAX_TIME_POINTS, parse_protocol
from chipctl.protocol.model import (
    DoseProfile,
    DoseStep,
    ParallelStep,
    RepeatStep,
    WaitStep,
)

SOURCE = "case.toml"
#: Every step case is the second step, after this one, so its path is "2".
HEAD = """\
[protocol]
name = "validation"

[[step]]
name = "first"
action = "wait"
duration = "1 min"

"""
NAME = "under test"


# -- helpers ---------------------------------------------------------------------------------


def _error(text: str, overrides: Mapping[str, str] | None = None) -> str:
    """Parse ``text``, expect a ProtocolError, and return its one-line message."""
    with pytest.raises(ProtocolError) as info:
        parse_protocol(text, SOURCE, overrides)
    message = str(info.value)
    assert len(message.splitlines()) == 1, message
    assert message.startswith(SOURCE), message
    assert "Traceback" not in message
    return message


def _line_of(text: str, pattern: str, start: int = 1) -> int:
    """Return the 1-based number of the first line at or after ``start`` matching ``pattern``."""
    for number, line in enumerate(text.splitlines(), start=1):
        if number >= start and re.match(pattern, line):
            return number
    raise AssertionError(f"no line matches {pattern!r}")


def _field_line(text: str, header_line: int, field: str) -> int:
    """Return the line of ``field = ...`` in the table starting at ``header_line``.

    The header's own line when the table does not write the field (a missing field).
    """
    lines = text.splitlines()
    for number in range(header_line + 1, len(lines) + 1):
        line = lines[number - 1]
        if line.lstrip().startswith("["):
            break
        if re.match(rf"\s*{re.escape(field)}\s*=", line):
            return number
    return header_line


def _check(text: str, config_text: str | None = None) -> str:
    """Parse ``text`` and check it on the simulated rig; return the one-line error."""
    protocol = parse_protocol(text, SOURCE)
    config = reference_rig_config() if config_text is None else parse_config(config_text, "rig")
    with pytest.raises(ProtocolError) as info:
        check_protocol(protocol, config)
    message = str(info.value)
    assert len(message.splitlines()) == 1, message
    assert message.startswith(SOURCE), message
    return message


# -- the valid steps every case starts from ---------------------------------------------------


#: variant -> (action, fields as TOML value text). Each passes preflight on the reference rig.
VALID: dict[str, tuple[str, dict[str, str]]] = {
    "infuse": ("infuse", {"pump": '"medium"', "rate": '"2 uL/min"', "volume": '"100 uL"'}),
    "withdraw": (
        "withdraw",
        {"pump": '"exchanger"', "rate": '"20 uL/min"', "duration": '"1 min"', "wait": "true"},
    ),
    "wait-duration": ("wait", {"duration": '"2 h 30 min"'}),
    "wait-clock": ("wait", {"until": '"07:30"'}),
    "wait-condition": (
        "wait",
        {
            "until": '{ signal = "flow.flow_ul_min", above = 1.0, for = "5 min" }',
            "timeout": '"1 h"',
            "on_timeout": '"abort"',
            "expect": '"10 min"',
        },
    ),
    "stop": ("stop", {"pump": '"medium"'}),
    "valve": ("valve", {"valve": '"outlet"', "position": '"sample 1"'}),
    "image-every": (
        "image",
        {
            "positions": '["chamber 1", "chamber 2"]',
            "channels": '["brightfield"]',
            "every": '"1 h"',
            "duration": '"24 h"',
        },
    ),
    "image-at": (
        "image",
        {"positions": '"all"', "channels": '["brightfield", "live"]', "at": '["0 h", "24 h"]'},
    ),
    "prompt": ("prompt", {"message": '"Chip loaded?"', "timeout": '"10 min"'}),
    "prime": ("prime", {"pump": '"medium"', "rate": '"15 uL/min"', "volume": '"100 uL"'}),
    "perfuse": (
        "perfuse",
        {
            "rates": '{ medium = "0.5 uL/min", drug = "0.5 uL/min" }',
            "duration": '"1 h"',
            "wait": "false",
        },
    ),
    "dose-constant": (
        "dose",
        {
            "drug_pump": '"drug"',
            "carrier_pump": '"medium"',
            "rate": '"0.5 uL/min"',
            "profile": '"constant"',
            "duration": '"24 h"',
        },
    ),
    "dose-pulse": (
        "dose",
        {
            "drug_pump": '"drug"',
            "carrier_pump": '"medium"',
            "rate": '"0.5 uL/min"',
            "profile": '"pulse"',
            "duration": '"24 h"',
            "on": '"6 h"',
        },
    ),
    "dose-step": (
        "dose",
        {
            "drug_pump": '"drug"',
            "carrier_pump": '"medium"',
            "rate": '"0.5 uL/min"',
            "profile": '"step"',
            "duration": '"24 h"',
            "start": '"6 h"',
        },
    ),
    "exchange": (
        "exchange",
        {
            "pump": '"exchanger"',
            "from": '"stain"',
            "to": '"chip"',
            "volume": '"200 uL"',
            "rate": '"15 uL/min"',
            "draw_rate": '"200 uL/min"',
        },
    ),
    "sample": (
        "sample",
        {
            "valve": '"outlet"',
            "port": '"sample 1"',
            "duration": '"30 min"',
            "back_to": '"waste"',
        },
    ),
}


def _step_text(variant: str, changes: Mapping[str, str | None]) -> str:
    """Return a protocol whose step 2 is ``VALID[variant]`` with ``changes`` (None drops)."""
    action, fields = VALID[variant]
    merged: dict[str, str | None] = {**fields, **changes}
    lines = ["[[step]]", f'name = "{NAME}"', f'action = "{action}"']
    lines += [f"{key} = {value}" for key, value in merged.items() if value is not None]
    return HEAD + "\n".join(lines) + "\n"


@pytest.mark.parametrize("variant", list(VALID))
def test_every_valid_step_parses_and_passes_preflight(variant: str) -> None:
    """The starting points are valid, so each case below fails for its one change only."""
    protocol = parse_protocol(_step_text(variant, {}), SOURCE)
    assert len(protocol.steps) == 2
    assert protocol.steps[1].info.name == NAME
    assert protocol.steps[1].info.path == "2"
    _, pre = check_protocol(protocol, sim=True)
    assert pre.duration_s > 0


# -- step fields: one case per field and kind of mistake -------------------------------------


@dataclass(frozen=True)
class StepCase:
    """One broken step: ``changes`` to ``VALID[variant]``; the error names ``field``."""

    variant: str
    changes: Mapping[str, str | None]
    field: str
    says: str

    @property
    def id(self) -> str:
        change = ",".join(f"{k}={'-' if v is None else v}" for k, v in self.changes.items())
        return f"{self.variant}[{change}]"


#: Quantity fields: (variant, field, dimension as the messages name it, zero allowed).
QUANTITIES: list[tuple[str, str, str, bool]] = [
    ("infuse", "rate", "flow rate", False),
    ("infuse", "volume", "volume", False),
    ("withdraw", "rate", "flow rate", False),
    ("withdraw", "duration", "duration", False),
    ("wait-duration", "duration", "duration", False),
    ("wait-condition", "timeout", "duration", False),
    ("wait-condition", "expect", "duration", True),
    ("image-every", "every", "duration", False),
    ("image-every", "duration", "duration", True),
    ("prompt", "timeout", "duration", False),
    ("prime", "rate", "flow rate", False),
    ("prime", "volume", "volume", False),
    ("perfuse", "duration", "duration", False),
    ("dose-constant", "rate", "flow rate", False),
    ("dose-constant", "duration", "duration", False),
    ("dose-pulse", "on", "duration", False),
    ("dose-step", "start", "duration", False),
    ("exchange", "volume", "volume", False),
    ("exchange", "rate", "flow rate", False),
    ("exchange", "draw_rate", "flow rate", False),
    ("sample", "duration", "duration", False),
]
#: A value of another dimension, and the unit used for negative values, per dimension.
OTHER_DIMENSION = {"flow rate": '"2 uL"', "volume": '"2 uL/min"', "duration": '"2 uL"'}
UNIT = {"flow rate": "uL/min", "volume": "uL", "duration": "h"}
#: Required plain-text fields: (variant, field).
TEXTS: list[tuple[str, str]] = [
    ("infuse", "pump"),
    ("withdraw", "pump"),
    ("stop", "pump"),
    ("valve", "valve"),
    ("prompt", "message"),
    ("prime", "pump"),
    ("dose-constant", "drug_pump"),
    ("dose-constant", "carrier_pump"),
    ("exchange", "pump"),
    ("exchange", "from"),
    ("sample", "valve"),
    ("sample", "port"),
]


def _quantity_cases() -> Iterator[StepCase]:
    for variant, field, dimension, zero_ok in QUANTITIES:
        unit = UNIT[dimension]
        yield StepCase(variant, {field: "2"}, field, "not a quantity string")
        yield StepCase(variant, {field: "true"}, field, "not a quantity string")
        yield StepCase(variant, {field: '["2 h"]'}, field, "not a quantity string")
        yield StepCase(variant, {field: '"2"'}, field, "has no unit")
        yield StepCase(variant, {field: OTHER_DIMENSION[dimension]}, field, f"a {dimension}")
        yield StepCase(variant, {field: '"2 blorps"'}, field, f"a {dimension}")
        yield StepCase(variant, {field: '""'}, field, f"a {dimension}")
        yield StepCase(variant, {field: f'"inf {unit}"'}, field, f"not a finite {dimension}")
        yield StepCase(variant, {field: f'"-2 {unit}"'}, field, ">= 0" if zero_ok else "> 0")
        if not zero_ok:
            yield StepCase(variant, {field: f'"0 {unit}"'}, field, "> 0")
        if dimension == "duration":
            yield StepCase(variant, {field: '"400 d"'}, field, "longer than a year")
        if dimension == "volume":
            yield StepCase(variant, {field: '"2 L"'}, field, "more than a litre")


def _text_cases() -> Iterator[StepCase]:
    for variant, field in TEXTS:
        yield StepCase(variant, {field: None}, field, "missing")
        yield StepCase(variant, {field: "3"}, field, "non-empty string")
        yield StepCase(variant, {field: '"  "'}, field, "non-empty string")
        yield StepCase(variant, {field: '["medium"]'}, field, "non-empty string")


def _unknown_field_cases() -> Iterator[StepCase]:
    for variant in VALID:
        yield StepCase(variant, {"colour": '"red"'}, "colour", "unknown field")


SPECIFIC: list[StepCase] = [
    # infuse / withdraw: exactly one of volume and duration; wait is a boolean
    StepCase("infuse", {"duration": '"1 h"'}, "volume", "exactly one of 'volume' or 'duration'"),
    StepCase("infuse", {"volume": None}, "volume", "exactly one of 'volume' or 'duration'"),
    StepCase("infuse", {"rate": None}, "rate", "missing"),
    StepCase("withdraw", {"wait": '"no"'}, "wait", "true or false"),
    StepCase("withdraw", {"wait": "1"}, "wait", "true or false"),
    # wait: duration, or until a clock time, or until a condition
    StepCase("wait-duration", {"until": '"07:30"'}, "duration", "exactly one"),
    StepCase("wait-duration", {"duration": None}, "duration", "exactly one"),
    StepCase("wait-duration", {"timeout": '"1 h"'}, "timeout", "only for a wait 'until'"),
    StepCase("wait-duration", {"on_timeout": '"abort"'}, "on_timeout", "only for a wait"),
    StepCase("wait-duration", {"expect": '"1 h"'}, "expect", "only for a wait"),
    StepCase("wait-clock", {"until": '"25:00"'}, "until", '"HH:MM"'),
    StepCase("wait-clock", {"until": '"7.30"'}, "until", '"HH:MM"'),
    StepCase("wait-clock", {"until": '"07:60"'}, "until", '"HH:MM"'),
    StepCase("wait-clock", {"until": "730"}, "until", "clock time"),
    StepCase("wait-clock", {"until": "07:30:00"}, "until", "clock time"),
    StepCase("wait-clock", {"timeout": '"1 h"'}, "timeout", "only for a wait"),
    StepCase("wait-clock", {"expect": '"1 h"'}, "expect", "only for a wait"),
    StepCase("wait-condition", {"until": '{ signal = "flow", above = 1.0 }'}, "until", "signal"),
    StepCase("wait-condition", {"until": "{ above = 1.0 }"}, "until", "signal"),
    StepCase("wait-condition", {"until": "{ signal = 3, above = 1.0 }"}, "until", "signal"),
    StepCase("wait-condition", {"until": '{ signal = "flow.flow_ul_min" }'}, "until", "'above' or"),
    StepCase(
        "wait-condition",
        {"until": '{ signal = "flow.flow_ul_min", above = "high" }'},
        "until",
        "above must be a finite number",
    ),
    StepCase(
        "wait-condition",
        {"until": '{ signal = "flow.flow_ul_min", above = true }'},
        "until",
        "above must be a finite number",
    ),
    StepCase(
        "wait-condition",
        {"until": '{ signal = "flow.flow_ul_min", below = nan }'},
        "until",
        "below must be a finite number",
    ),
    StepCase(
        "wait-condition",
        {"until": '{ signal = "flow.flow_ul_min", below = -inf }'},
        "until",
        "below must be a finite number",
    ),
    StepCase(
        "wait-condition",
        {"until": '{ signal = "flow.flow_ul_min", above = 1.0, colour = "red" }'},
        "until",
        "unknown key(s) colour",
    ),
    StepCase(
        "wait-condition",
        {"until": '{ signal = "flow.flow_ul_min", above = 1.0, for = "soon" }'},
        "until",
        "for:",
    ),
    StepCase("wait-condition", {"until": '["07:30"]'}, "until", "clock time"),
    StepCase(
        "wait-condition",
        {"timeout": None, "on_timeout": None, "expect": None},
        "until",
        "'timeout' or",
    ),
    StepCase("wait-condition", {"timeout": None}, "on_timeout", "needs a 'timeout'"),
    StepCase("wait-condition", {"on_timeout": '"retry"'}, "on_timeout", '"continue" or "abort"'),
    StepCase("wait-condition", {"on_timeout": "true"}, "on_timeout", '"continue" or "abort"'),
    # valve positions
    StepCase("valve", {"position": None}, "position", "missing"),
    StepCase("valve", {"position": "0"}, "position", "positions start at 1"),
    StepCase("valve", {"position": "-3"}, "position", "positions start at 1"),
    StepCase("valve", {"position": "1001"}, "position", "positions start at 1"),
    StepCase("valve", {"position": "true"}, "position", "a position number or a port name"),
    StepCase("valve", {"position": "2.5"}, "position", "a position number or a port name"),
    StepCase("valve", {"position": '["waste"]'}, "position", "a position number or a port"),
    StepCase("valve", {"position": '" "'}, "position", "must not be empty"),
    # image: positions, channels, schedule
    StepCase("image-every", {"positions": None}, "positions", "missing"),
    StepCase("image-every", {"positions": "[]"}, "positions", "non-empty list"),
    StepCase("image-every", {"positions": '"chamber 1"'}, "positions", "non-empty list"),
    StepCase("image-every", {"positions": "[1, 2]"}, "positions", "non-empty string"),
    StepCase("image-every", {"positions": '["chamber 1", "chamber 1"]'}, "positions", "not repeat"),
    StepCase("image-every", {"channels": None}, "channels", "missing"),
    StepCase("image-every", {"channels": '"brightfield"'}, "channels", "non-empty list"),
    StepCase("image-every", {"channels": '["brightfield", ""]'}, "channels", "non-empty string"),
    StepCase("image-every", {"every": None}, "every", "missing"),
    StepCase("image-every", {"duration": None}, "duration", "missing"),
    StepCase("image-every", {"every": '"1 s"'}, "every", f"at most {MAX_TIME_POINTS}"),
    StepCase("image-every", {"every": '"1e-320 s"'}, "every", f"at most {MAX_TIME_POINTS}"),
    StepCase("image-every", {"at": '["0 h"]'}, "at", "either 'at' or 'every'"),
    StepCase("image-at", {"at": "[]"}, "at", "non-empty list"),
    StepCase("image-at", {"at": '"0 h"'}, "at", "non-empty list"),
    StepCase("image-at", {"at": '["0 h", "soon"]'}, "at", "a duration"),
    StepCase("image-at", {"at": "[0, 3600]"}, "at", "a duration"),
    StepCase("image-at", {"at": '["-1 h"]'}, "at", "negative"),
    StepCase("image-at", {"at": '["400 d"]'}, "at", "beyond a year"),
    StepCase(
        "image-at",
        {"at": "[" + ", ".join(f'"{i} s"' for i in range(MAX_TIME_POINTS + 1)) + "]"},
        "at",
        f"at most {MAX_TIME_POINTS}",
    ),
    StepCase("image-at", {"duration": '"1 h"'}, "at", "either 'at' or 'every'"),
    # prime
    StepCase("prime", {"rate": None}, "rate", "missing"),
    StepCase("prime", {"duration": '"1 h"'}, "duration", "unknown field"),
    # perfuse: a table of pump = rate
    StepCase("perfuse", {"rates": None}, "rates", "pump = rate"),
    StepCase("perfuse", {"rates": "{}"}, "rates", "pump = rate"),
    StepCase("perfuse", {"rates": '"2 uL/min"'}, "rates", "pump = rate"),
    StepCase("perfuse", {"rates": '{ medium = "2 uL" }'}, "rates", "medium: '2 uL' is not a"),
    StepCase("perfuse", {"rates": "{ medium = 2 }"}, "rates", "medium: 2 is not a quantity"),
    StepCase("perfuse", {"rates": '{ medium = "0 uL/min" }'}, "rates", "medium: must be > 0"),
    StepCase("perfuse", {"rates": '{ medium = "-1 uL/min" }'}, "rates", "medium: must be > 0"),
    StepCase("perfuse", {"rates": '{ "a\\nb" = 2 }'}, "rates", "'a\\nb': 2 is not a quantity"),
    StepCase("perfuse", {"duration": None}, "duration", "missing"),
    StepCase("perfuse", {"wait": '"later"'}, "wait", "true or false"),
    # dose: pumps, profiles and their on / start times
    StepCase("dose-constant", {"carrier_pump": '"drug"'}, "carrier_pump", "two pumps"),
    StepCase("dose-constant", {"rate": None}, "rate", "missing"),
    StepCase("dose-constant", {"duration": None}, "duration", "missing"),
    StepCase("dose-constant", {"profile": '"ramp"'}, "profile", "unknown profile 'ramp'"),
    StepCase("dose-constant", {"profile": "1"}, "profile", "unknown profile 1"),
    StepCase("dose-constant", {"profile": '["pulse"]'}, "profile", "unknown profile"),
    StepCase("dose-constant", {"on": '"1 h"'}, "on", 'only for profile = "pulse"'),
    StepCase("dose-constant", {"start": '"1 h"'}, "start", 'only for profile = "step"'),
    StepCase("dose-pulse", {"on": None}, "on", "missing"),
    StepCase("dose-pulse", {"on": '"24 h"'}, "on", "shorter than the step's duration"),
    StepCase("dose-pulse", {"on": '"30 h"'}, "on", "shorter than the step's duration"),
    StepCase("dose-pulse", {"start": '"1 h"'}, "start", 'only for profile = "step"'),
    StepCase("dose-step", {"start": None}, "start", "missing"),
    StepCase("dose-step", {"start": '"24 h"'}, "start", "before the step ends"),
    StepCase("dose-step", {"on": '"1 h"'}, "on", 'only for profile = "pulse"'),
    # exchange: ports and volumes
    StepCase("exchange", {"to": "3"}, "to", "a port name"),
    StepCase("exchange", {"to": '""'}, "to", "a port name"),
    StepCase("exchange", {"to": '"stain"'}, "to", "differ from 'from'"),
    StepCase("exchange", {"volume": None}, "volume", "missing"),
    StepCase("exchange", {"rate": None}, "rate", "missing"),
    # sample
    StepCase("sample", {"duration": None}, "duration", "missing"),
    StepCase("sample", {"back_to": "1"}, "back_to", "a port name"),
    StepCase("sample", {"back_to": '""'}, "back_to", "a port name"),
]

STEP_CASES = [*_quantity_cases(), *_text_cases(), *_unknown_field_cases(), *SPECIFIC]


@pytest.mark.parametrize("case", STEP_CASES, ids=[c.id for c in STEP_CASES])
def test_a_broken_step_field_is_one_line_naming_file_line_step_and_field(case: StepCase) -> None:
    text = _step_text(case.variant, case.changes)
    message = _error(text)
    header = _line_of(text, r"\[\[step\]\]", start=HEAD.count("\n") + 1)
    line = _field_line(text, header, case.field)
    prefix = f"{SOURCE}:{line}: step 2 ({NAME!r}): field {case.field!r}: "
    assert message.startswith(prefix), message
    assert case.says in message[len(prefix) :], message


# -- the step table itself -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        ('pump = "medium"', "action", "missing"),
        ('action = "sleep"', "action", "unknown action 'sleep' (known: infuse,"),
        ("action = 3", "action", "non-empty string"),
        ('action = "INFUSE"', "action", "unknown action"),
    ],
)
def test_a_step_without_a_known_action(body: str, field: str, says: str) -> None:
    text = HEAD + f'[[step]]\nname = "{NAME}"\n{body}\n'
    message = _error(text)
    header = _line_of(text, r"\[\[step\]\]", start=HEAD.count("\n") + 1)
    line = _field_line(text, header, field)
    assert message.startswith(f"{SOURCE}:{line}: step 2 ({NAME!r}): field {field!r}: "), message
    assert says in message


def test_a_step_name_must_be_text() -> None:
    text = HEAD + '[[step]]\nname = 3\naction = "stop"\npump = "medium"\n'
    message = _error(text)
    line = _line_of(text, "name = 3")
    assert message.startswith(f"{SOURCE}:{line}: step 2: field 'name': must be a string"), message


def _top(key_value: str) -> str:
    """Return a protocol with a top-level ``key = value`` (before any table) and one step."""
    return f'{key_value}\n[protocol]\nname = "x"\n[[step]]\naction = "stop"\npump = "all"\n'


def test_a_protocol_needs_steps() -> None:
    assert "no [[step]] tables" in _error('[protocol]\nname = "validation"\n')
    assert "no [[step]] tables" in _error('step = []\n[protocol]\nname = "validation"\n')
    assert "no [[step]] tables" in _error('step = "infuse"\n[protocol]\nname = "validation"\n')


def test_a_step_that_is_not_a_table() -> None:
    message = _error('step = [3]\n[protocol]\nname = "validation"\n')
    assert message.startswith(f"{SOURCE}: step 1: must be a table"), message


def test_inline_steps_name_the_step_and_field_but_no_line() -> None:
    """Lines come from [[step]] headers; inline step tables have none to give."""
    text = 'step = [{ action = "stop", pump = 3 }]\n[protocol]\nname = "x"\n'
    message = _error(text)
    assert message.startswith(f"{SOURCE}: step 1: field 'pump': "), message


def test_a_field_written_as_a_dotted_key_gets_its_own_line() -> None:
    text = HEAD + f'[[step]]\nname = "{NAME}"\naction = "stop"\npump = "medium"\ncolour.red = 1\n'
    message = _error(text)
    line = _line_of(text, "colour.red")
    assert message.startswith(f"{SOURCE}:{line}: step 2 ({NAME!r}): field 'colour': "), message


def test_a_quoted_field_name_gets_its_own_line() -> None:
    text = HEAD + f'[[step]]\nname = "{NAME}"\naction = "stop"\n"pump" = 4\n'
    message = _error(text)
    line = _line_of(text, '"pump" = 4')
    assert message.startswith(f"{SOURCE}:{line}: step 2 ({NAME!r}): field 'pump': "), message


def test_a_field_name_with_a_line_break_stays_on_one_line() -> None:
    text = HEAD + f'[[step]]\nname = "{NAME}"\naction = "stop"\npump = "medium"\n"a\\nb" = 1\n'
    message = _error(text)
    assert "field 'a\\nb': unknown field" in message


# -- parallel branches and repeats -----------------------------------------------------------

PARALLEL = """\
[protocol]
name = "branches"

[[step]]
name = "side by side"
action = "parallel"

[[step.branch]]
name = "perfusion"

[[step.branch.step]]
name = "perfuse"
action = "infuse"
pump = "medium"
rate = "1 uL/min"
duration = "2 h"

[[step.branch]]
name = "imaging"

[[step.branch.step]]
name = "settle"
action = "wait"
duration = "10 min"

[[step.branch.step]]
name = "snap"
action = "image"
positions = "all"
channels = ["brightfield"]
at = ["0 h", "1 h"]
"""


def test_the_parallel_example_is_valid() -> None:
    protocol = parse_protocol(PARALLEL, SOURCE)
    (step,) = protocol.steps
    assert isinstance(step, ParallelStep)
    assert [len(b.steps) for b in step.branches] == [1, 2]
    assert step.branches[1].steps[1].info.path == "1/2.2"
    assert step.branches[1].steps[1].info.line == _line_of(PARALLEL, r'name = "snap"') - 1
    check_protocol(protocol, sim=True)


@pytest.mark.parametrize(
    ("old", "new", "where", "field", "says"),
    [
        # a field of a step inside branch 2: the path names branch and step
        (
            'channels = ["brightfield"]',
            'channels = ["brightfield", 7]',
            "1/2.2 ('snap')",
            "channels",
            "non-empty string",
        ),
        ('duration = "10 min"', 'duration = "10 uL"', "1/2.1 ('settle')", "duration", "a duration"),
        ('rate = "1 uL/min"', 'rate = "1 uL"', "1/1.1 ('perfuse')", "rate", "a flow rate"),
        # the parallel step itself
        (
            'action = "parallel"',
            'action = "parallel"\nwait = true',
            "1 ('side by side')",
            "wait",
            "unknown field",
        ),
        (
            '[[step.branch]]\nname = "imaging"',
            "[[step.branch]]\nname = 4",
            "1 ('side by side')",
            "branch",
            "branch 2: name must be a string",
        ),
        (
            '[[step.branch]]\nname = "imaging"',
            '[[step.branch]]\nname = "imaging"\ncolour = 1',
            "1 ('side by side')",
            "branch",
            "branch 2: unknown field(s) colour",
        ),
    ],
)
def test_errors_inside_branches_name_the_branch_path(
    old: str, new: str, where: str, field: str, says: str
) -> None:
    text = PARALLEL.replace(old, new, 1)
    assert text != PARALLEL
    message = _error(text)
    assert re.match(
        rf"{re.escape(SOURCE)}:\d+: step {re.escape(where)}: field '{field}': ", message
    )
    assert says in message


def test_a_parallel_step_needs_two_branches_with_steps() -> None:
    one_branch = PARALLEL[: PARALLEL.index('[[step.branch]]\nname = "imaging"')]
    assert "at least two [[step.branch]]" in _error(one_branch)
    no_branches = '[protocol]\nname = "x"\n[[step]]\naction = "parallel"\n'
    message = _error(no_branches)
    assert message.startswith(f"{SOURCE}:3: step 1: field 'branch': needs at least two"), message
    empty = PARALLEL.replace(
        '[[step.branch.step]]\nname = "perfuse"\naction = "infuse"\npump = "medium"\n'
        'rate = "1 uL/min"\nduration = "2 h"\n',
        "",
    )
    assert "step 1 ('side by side'): field 'step': has no steps" in _error(empty)
    not_tables = '[protocol]\nname = "x"\n[[step]]\naction = "parallel"\nbranch = [1, 2]\n'
    assert "field 'branch': branch 1 must be a table" in _error(not_tables)


REPEAT = """\
[protocol]
name = "repeats"

[[step]]
name = "daily"
action = "repeat"
count = 3

[[step.step]]
name = "feed"
action = "infuse"
pump = "medium"
rate = "2 uL/min"
duration = "1 h"

[[step.step]]
name = "rest"
action = "wait"
duration = "23 h"
"""


def test_the_repeat_example_is_valid() -> None:
    protocol = parse_protocol(REPEAT, SOURCE)
    (step,) = protocol.steps
    assert isinstance(step, RepeatStep) and step.count == 3
    assert [s.info.path for s in step.body.steps] == ["1/1", "1/2"]
    _, pre = check_protocol(protocol, sim=True)
    assert pre.duration_s == pytest.approx(3 * 24 * 3600)


@pytest.mark.parametrize(
    ("new_count", "says"),
    [
        ("0", "integer 1..10000, got 0"),
        ("-1", "integer 1..10000"),
        ("10001", "integer 1..10000, got 10001"),
        ("99999999999999999999", "integer 1..10000"),
        ('"3"', "integer 1..10000, got '3'"),
        ("2.5", "integer 1..10000, got 2.5"),
        ("true", "integer 1..10000, got True"),
        ("nan", "integer 1..10000"),
    ],
)
def test_a_repeat_count_is_a_small_whole_number(new_count: str, says: str) -> None:
    text = REPEAT.replace("count = 3", f"count = {new_count}")
    message = _error(text)
    assert message.startswith(f"{SOURCE}:7: step 1 ('daily'): field 'count': "), message
    assert says in message


def test_a_repeat_count_is_required_and_needs_a_body() -> None:
    no_count = REPEAT.replace("count = 3\n", "")
    assert _error(no_count).startswith(f"{SOURCE}:4: step 1 ('daily'): field 'count': ")
    no_body = REPEAT[: REPEAT.index("[[step.step]]")]
    assert "step 1 ('daily'): field 'step': has no steps" in _error(no_body)


def test_an_error_in_a_repeat_body_names_its_path_and_line() -> None:
    text = REPEAT.replace('duration = "23 h"', 'duration = "23 hours later"')
    message = _error(text)
    line = _line_of(text, r'duration = "23 hours later"')
    assert message.startswith(f"{SOURCE}:{line}: step 1/2 ('rest'): field 'duration': "), message


def _nested(levels: int, count: int = 1) -> str:
    """Return repeats nested ``levels`` deep around one wait."""
    lines = ['[protocol]\nname = "deep"']
    header = "step"
    for level in range(1, levels + 1):
        lines.append(f'[[{header}]]\nname = "level {level}"\naction = "repeat"\ncount = {count}')
        header += ".step"
    lines.append(f'[[{header}]]\nname = "innermost"\naction = "wait"\nduration = "1 s"')
    return "\n".join(lines) + "\n"


def test_repeats_nest_up_to_the_limit() -> None:
    protocol = parse_protocol(_nested(MAX_DEPTH - 1, count=2), SOURCE)
    _, pre = check_protocol(protocol, sim=True)
    assert pre.duration_s == pytest.approx(2 ** (MAX_DEPTH - 1))


@pytest.mark.parametrize("levels", [MAX_DEPTH, MAX_DEPTH + 5])
def test_nesting_deeper_than_the_limit_names_the_step(levels: int) -> None:
    message = _error(_nested(levels))
    path = "/".join(["1"] * MAX_DEPTH)
    assert re.match(rf"{SOURCE}:\d+: step {path} \('level {MAX_DEPTH}'\): field 'step': ", message)
    assert f"nest deeper than {MAX_DEPTH}" in message


def test_nesting_far_deeper_is_one_line_not_a_recursion_error() -> None:
    message = _error(_nested(600))
    assert "nest" in message


def test_repeats_that_multiply_past_the_step_limit_are_refused() -> None:
    """Counted once repeated: 10000 x 10000 waits would otherwise make preflight hang."""
    text = _nested(2, count=10_000)
    message = _error(text)
    line = _line_of(text, "count = ")
    assert message.startswith(f"{SOURCE}:{line}: step 1 ('level 1'): field 'count': "), message
    assert f"at most {MAX_STEPS}" in message


def test_sibling_repeats_that_add_up_past_the_step_limit_are_refused() -> None:
    one = (
        '[[step]]\naction = "repeat"\ncount = 10000\n[[step.step]]\naction = "stop"\npump = "all"\n'
    )
    text = '[protocol]\nname = "x"\n' + one * (MAX_STEPS // 10_000 + 1)
    message = _error(text)
    assert f"at most {MAX_STEPS}" in message


# -- [protocol] ------------------------------------------------------------------------------

FULL = """\
[protocol]
name = "full"
description = "every table"
version = "3"
pause_policy = "keep_perfusing"

[parameters.exposure]
type = "duration"
default = "24 h"
min = "1 h"
max = "72 h"
description = "drug exposure"

[parameters.rate]
type = "rate"
default = "0.5 uL/min"
min = "0.1 uL/min"
max = "2 uL/min"

[parameters.prime_volume]
type = "volume"
default = "100 uL"

[parameters.stock]
type = "concentration"
default = "20 nM"

[parameters.ceiling]
type = "pressure"
default = "50 kPa"

[parameters.threshold]
type = "number"
default = 1.5
min = 0
max = 10

[parameters.days]
type = "integer"
default = 2
min = 1
max = 7

[parameters.note]
type = "text"
default = "Chip loaded?"

[parameters.pause]
type = "boolean"
default = true

[syringes.medium]
label = "culture medium"
fill = "8 mL"

[syringes.drug]
label = "ADC in medium"
contents = { "t-vc-mmae" = "${stock}" }

[chambers]
control = ["chamber 8"]
exclude = ["chamber 7"]
labels = { "chamber 1" = "top dose" }

[[interlock]]
kind = "pressure"
limit = "${ceiling}"
action = "abort"

[[interlock]]
kind = "flow_deviation"
device = "flow"
tolerance = "30 %"
for = "10 min"
action = "pause"

[[step]]
name = "ready"
action = "prompt"
message = "${note}"

[[step]]
name = "prime"
action = "prime"
pump = "medium"
rate = "15 uL/min"
volume = "${prime_volume}"

[[step]]
name = "treat"
action = "dose"
drug_pump = "drug"
carrier_pump = "medium"
rate = "${rate}"
duration = "${exposure}"

[[step]]
name = "days"
action = "repeat"
count = "${days}"

[[step.step]]
name = "rest"
action = "wait"
until = { signal = "flow.flow_ul_min", above = "${threshold}" }
expect = "1 h"
"""


def test_the_full_example_is_valid_and_substitutes_parameters() -> None:
    protocol = parse_protocol(FULL, SOURCE)
    assert protocol.version == "3"
    assert protocol.syringes["drug"].contents_nm == {"t-vc-mmae": 20.0}
    assert protocol.syringes["medium"].fill_ul == 8000.0
    assert protocol.interlocks[0].limit == 50.0
    assert protocol.interlocks[1].limit == pytest.approx(0.3)
    assert protocol.interlocks[1].hold_s == 600.0
    dose = protocol.steps[2]
    assert isinstance(dose, DoseStep) and dose.duration_s == 86400.0
    assert dose.profile is DoseProfile.CONSTANT and dose.rate_ul_min == 0.5
    repeat = protocol.steps[3]
    assert isinstance(repeat, RepeatStep) and repeat.count == 2
    wait = repeat.body.steps[0]
    assert isinstance(wait, WaitStep) and wait.condition is not None
    assert wait.condition.above == 1.5
    check_protocol(protocol, sim=True)


def _full_error(old: str, new: str, overrides: Mapping[str, str] | None = None) -> str:
    text = FULL.replace(old, new, 1)
    assert text != FULL, old
    return _error(text, overrides)


def _header_line(header: str) -> int:
    return _line_of(FULL, re.escape(header))


@pytest.mark.parametrize(
    ("old", "new", "field", "says"),
    [
        ('name = "full"\n', "", "name", "non-empty string 'name'"),
        ('name = "full"', 'name = ""', "name", "non-empty string 'name'"),
        ('name = "full"', "name = 3", "name", "non-empty string 'name'"),
        ('description = "every table"', "description = 3", "description", "must be a string"),
        ('version = "3"', "version = 3", "version", "must be a string"),
        ('pause_policy = "keep_perfusing"', 'pause_policy = "hold"', "pause_policy", "stop_pumps"),
        ('pause_policy = "keep_perfusing"', "pause_policy = 1", "pause_policy", "must be one of"),
    ],
)
def test_protocol_table_fields(old: str, new: str, field: str, says: str) -> None:
    message = _full_error(old, new)
    text = FULL.replace(old, new, 1)
    line = _field_line(text, 1, field)
    assert message.startswith(f"{SOURCE}:{line}: field {field!r}: [protocol]: "), message
    assert says in message


def test_protocol_table_unknown_field_and_missing_table() -> None:
    message = _full_error('name = "full"', 'name = "full"\ntitle = "x"')
    assert message.startswith(f"{SOURCE}:1: [protocol]: unknown field(s) title"), message
    message = _full_error("[protocol]\n", "[metadata]\n")
    assert "unknown table(s) metadata" in message
    assert "missing [protocol] table" in _error('[[step]]\naction = "stop"\npump = "all"\n')
    assert "missing [protocol] table" in _error('protocol = "x"\n')


def test_an_unknown_top_level_key_with_a_line_break_stays_on_one_line() -> None:
    assert "unknown table(s) 'a\\nb' (expected:" in _error(_top('"a\\nb" = 1'))


def test_an_unknown_top_level_table_is_named() -> None:
    message = _error(FULL + '\n[interlocks]\npressure = "1 kPa"\n')
    assert message == (
        f"{SOURCE}: unknown table(s) interlocks "
        "(expected: chambers, interlock, parameters, protocol, step, syringes)"
    )


# -- [parameters.*] --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "old", "new", "field", "says"),
    [
        (
            "[parameters.exposure]",
            'type = "duration"',
            'type = "time"',
            "type",
            "type must be one of duration, rate",
        ),
        ("[parameters.exposure]", 'type = "duration"', "type = 1", "type", "type must be one of"),
        ("[parameters.exposure]", 'type = "duration"\n', "", "type", "type must be one of"),
        ("[parameters.exposure]", 'default = "24 h"\n', "", "default", "missing"),
        (
            "[parameters.exposure]",
            'default = "24 h"',
            'default = "24 uL"',
            "default",
            "not a duration",
        ),
        (
            "[parameters.exposure]",
            'default = "24 h"',
            "default = 24",
            "default",
            "not a quantity string",
        ),
        (
            "[parameters.exposure]",
            'default = "24 h"',
            'default = "30 min"',
            "default",
            "below the minimum",
        ),
        (
            "[parameters.exposure]",
            'default = "24 h"',
            'default = "4 d"',
            "default",
            "above the maximum",
        ),
        ("[parameters.exposure]", 'min = "1 h"', 'min = "1 uL"', "min", "not a duration"),
        ("[parameters.exposure]", 'max = "72 h"', "max = 72", "max", "not a quantity string"),
        (
            "[parameters.exposure]",
            'description = "drug exposure"',
            "description = 1",
            "description",
            "must be a string",
        ),
        (
            "[parameters.rate]",
            'default = "0.5 uL/min"',
            'default = "0.5 uL"',
            "default",
            "not a flow rate",
        ),
        (
            "[parameters.rate]",
            'default = "0.5 uL/min"',
            'default = "5 uL/min"',
            "default",
            "above the maximum",
        ),
        (
            "[parameters.prime_volume]",
            'default = "100 uL"',
            'default = "100 kPa"',
            "default",
            "not a volume",
        ),
        (
            "[parameters.stock]",
            'default = "20 nM"',
            'default = "20 nm"',
            "default",
            "not a concentration",
        ),
        (
            "[parameters.ceiling]",
            'default = "50 kPa"',
            'default = "50 N"',
            "default",
            "not a pressure",
        ),
        ("[parameters.threshold]", "default = 1.5", 'default = "1.5"', "default", "not a number"),
        (
            "[parameters.threshold]",
            "default = 1.5",
            "default = nan",
            "default",
            "not a finite number",
        ),
        (
            "[parameters.threshold]",
            "default = 1.5",
            "default = inf",
            "default",
            "not a finite number",
        ),
        ("[parameters.threshold]", "default = 1.5", "default = true", "default", "not a number"),
        ("[parameters.threshold]", "default = 1.5", "default = 11", "default", "above the maximum"),
        ("[parameters.threshold]", "min = 0", "min = -inf", "min", "not a finite number"),
        ("[parameters.threshold]", "min = 0", 'min = "0"', "min", "not a number"),
        ("[parameters.days]", "default = 2", "default = 2.5", "default", "not an integer"),
        ("[parameters.days]", "default = 2", "default = 0", "default", "below the minimum"),
        ("[parameters.days]", "max = 7", 'max = "7"', "max", "'7' is not an integer"),
        ("[parameters.exposure]", 'type = "duration"', "type = []", "type", "type must be one of"),
        (
            "[parameters.days]",
            "default = 2",
            "default = 1" + "0" * 400,
            "default",
            "not a finite integer",
        ),
        ("[parameters.days]", "default = 2", 'default = "2"', "default", "not an integer"),
        ("[parameters.note]", 'default = "Chip loaded?"', "default = 3", "default", "not text"),
        ("[parameters.pause]", "default = true", 'default = "yes"', "default", "not true or false"),
    ],
)
def test_parameter_fields(header: str, old: str, new: str, field: str, says: str) -> None:
    start = FULL.index(header)
    text = FULL[:start] + FULL[start:].replace(old, new, 1)
    assert text != FULL
    message = _error(text)
    line = _field_line(text, _line_of(text, re.escape(header)), field)
    table = header.strip("[]")
    assert message.startswith(f"{SOURCE}:{line}: field {field!r}: [{table}]: "), message
    assert says in message


def test_a_parameter_table_with_an_unknown_field() -> None:
    text = FULL.replace('type = "duration"', 'type = "duration"\ncolour = 1', 1)
    message = _error(text)
    line = _header_line("[parameters.exposure]")
    assert message == f"{SOURCE}:{line}: [parameters.exposure]: unknown field(s) colour"


@pytest.mark.parametrize(
    ("header", "shown"),
    [
        ("[parameters.x-y]", "[parameters.x-y]"),
        ('[parameters."a b"]', "[parameters.'a b']"),
        ('[parameters."a\\nb"]', "[parameters.'a\\nb']"),
        ('[parameters."é"]', "[parameters.'é']"),
    ],
)
def test_parameter_names_are_identifiers(header: str, shown: str) -> None:
    text = FULL.replace("[parameters.note]", header, 1)
    message = _error(text)
    line = _line_of(text, re.escape(header))  # found for bare keys; quoted ones give none
    says = f"{re.escape(shown)}: parameter names are letters, digits and _"
    assert re.fullmatch(rf"{SOURCE}(:{line})?: {says}", message), message


def test_parameters_must_be_tables() -> None:
    text = FULL.replace("[parameters.exposure]", "[parameters]\nexposure = 3\n[parameters.x]", 1)
    assert "[parameters.exposure]: must be a table with type and default" in _error(text)
    message = _error(_top("parameters = 3"))
    assert message == f"{SOURCE}: [parameters] must be a table of [parameters.<name>]"


@pytest.mark.parametrize(
    ("where", "old", "new", "field", "says"),
    [
        (
            '[[step]]\nname = "treat"',
            'duration = "${exposure}"',
            'duration = "${exposures}"',
            "duration",
            "no parameter 'exposures' (parameters: exposure, rate,",
        ),
        (
            '[[step]]\nname = "treat"',
            'duration = "${exposure}"',
            'duration = "${exposure} h"',
            "duration",
            "must be the whole value",
        ),
        (
            '[[step]]\nname = "treat"',
            'duration = "${exposure}"',
            'duration = "${rate}"',
            "duration",
            "is not a duration",
        ),
        (
            '[[step]]\nname = "treat"',
            'duration = "${exposure}"',
            'duration = "${days}"',
            "duration",
            "2 is not a quantity string",
        ),
        (
            '[[step]]\nname = "days"',
            'count = "${days}"',
            'count = "${threshold}"',
            "count",
            "integer 1..10000, got 1.5",
        ),
        (
            '[[step]]\nname = "ready"',
            'message = "${note}"',
            'message = "${pause}"',
            "message",
            "non-empty string, got True",
        ),
    ],
)
def test_parameter_references_in_steps_name_the_step_and_field(
    where: str, old: str, new: str, field: str, says: str
) -> None:
    start = FULL.index(where)
    text = FULL[:start] + FULL[start:].replace(old, new, 1)
    message = _error(text)
    step_line = _line_of(text, re.escape(where.split("\n")[1])) - 1
    line = _field_line(text, step_line, field)
    name = where.split('"')[1]
    assert re.match(
        rf"{re.escape(SOURCE)}:{line}: step \d+ \('{name}'\): field '{field}': ", message
    ), message
    assert says in message


def test_parameter_references_in_syringes_and_interlocks_name_the_table_and_field() -> None:
    text = FULL.replace('fill = "8 mL"', 'fill = "${nope}"', 1)
    message = _error(text)
    line = _line_of(text, re.escape('fill = "${nope}"'))
    assert message.startswith(f"{SOURCE}:{line}: field 'fill': [syringes.medium]: "), message
    assert "no parameter 'nope'" in message
    text = FULL.replace('limit = "${ceiling}"', 'limit = "${ceiling}x"', 1)
    message = _error(text)
    line = _line_of(text, re.escape('limit = "${ceiling}x"'))
    assert message.startswith(f"{SOURCE}:{line}: field 'limit': interlock 1: "), message
    assert "must be the whole value" in message
    message = _full_error('limit = "${ceiling}"', 'limit = "${rate}"')
    assert f"{SOURCE}:{line}: field 'limit': interlock 1: limit: " in message
    assert "not a pressure" in message


def test_a_step_name_can_come_from_a_parameter() -> None:
    text = FULL.replace('name = "ready"', 'name = "${note}"', 1)
    assert parse_protocol(text, SOURCE).steps[0].info.name == "Chip loaded?"
    text = text.replace('message = "${note}"', "message = 4", 1)
    assert "step 1 ('Chip loaded?'): field 'message'" in _error(text)


# -- --set overrides ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "expect"),
    [
        ({"exposure": "48 h"}, lambda p: p.steps[2].duration_s == 48 * 3600),
        ({"exposure": "2 d 12 h"}, lambda p: p.steps[2].duration_s == 60 * 3600),
        ({"rate": "1 uL/min"}, lambda p: p.steps[2].rate_ul_min == 1.0),
        ({"days": "5"}, lambda p: p.steps[3].count == 5),
        ({"threshold": "2.5"}, lambda p: p.steps[3].body.steps[0].condition.above == 2.5),
        ({"note": "Ready?"}, lambda p: p.steps[0].message == "Ready?"),
        ({"pause": "FALSE"}, lambda p: p.parameters["pause"].value is False),
    ],
)
def test_overrides_replace_the_defaults(overrides: dict[str, str], expect: object) -> None:
    protocol = parse_protocol(FULL, SOURCE, overrides)
    assert callable(expect) and expect(protocol)
    assert protocol.overrides() == {
        name: str(protocol.parameters[name].value) for name in overrides
    }


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        (
            {"exposures": "48 h"},
            "--set exposures: the protocol has no such parameter (parameters: exposure, rate,",
        ),
        ({"exposure": "48"}, "--set exposure='48': "),
        ({"exposure": "48 uL"}, "not a duration"),
        ({"exposure": "30 min"}, "below the minimum"),
        ({"exposure": "7 d"}, "above the maximum"),
        ({"rate": "fast"}, "--set rate='fast': "),
        ({"days": "2.5"}, "not an integer"),
        ({"days": "99"}, "above the maximum"),
        ({"threshold": "high"}, "not a number"),
        ({"threshold": "nan"}, "not a finite number"),
        ({"threshold": "1e999"}, "not a finite number"),
        ({"pause": "maybe"}, "not true or false"),
        ({"a\nb": "1"}, "--set 'a\\nb'"),
        ({"note": "two\nlines", "days": "0"}, "below the minimum"),
    ],
)
def test_bad_overrides_are_one_line_naming_the_parameter(
    overrides: dict[str, str], says: str
) -> None:
    message = _error(FULL, overrides)
    assert message.startswith(f"{SOURCE}: --set "), message
    assert says in message


# -- [syringes.*] ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "field", "says"),
    [
        ('fill = "8 mL"', 'fill = "8 mL/min"', "fill", "not a volume"),
        ('fill = "8 mL"', "fill = 8", "fill", "not a quantity string"),
        ('fill = "8 mL"', 'fill = "-1 mL"', "fill", "must not be negative"),
        ('label = "culture medium"', "label = 1", "label", "must be a string"),
        (
            'contents = { "t-vc-mmae" = "${stock}" }',
            'contents = "t-vc-mmae"',
            "contents",
            "a table such as",
        ),
        (
            'contents = { "t-vc-mmae" = "${stock}" }',
            'contents = { "t-vc-mmae" = "20 uM/min" }',
            "contents",
            "t-vc-mmae: '20 uM/min' is not a concentration",
        ),
        (
            'contents = { "t-vc-mmae" = "${stock}" }',
            'contents = { "t-vc-mmae" = 20 }',
            "contents",
            "t-vc-mmae: 20 is not a quantity",
        ),
        (
            'contents = { "t-vc-mmae" = "${stock}" }',
            'contents = { "t-vc-mmae" = "-2 nM" }',
            "contents",
            "t-vc-mmae: must not be negative",
        ),
        (
            'contents = { "t-vc-mmae" = "${stock}" }',
            'contents = { "a\\nb" = "x" }',
            "contents",
            "'a\\nb': ",
        ),
    ],
)
def test_syringe_fields(old: str, new: str, field: str, says: str) -> None:
    text = FULL.replace(old, new, 1)
    message = _error(text)
    first_line = new.split("\n")[0]
    line = _line_of(text, re.escape(first_line))
    table = "syringes.medium" if line < FULL.index("[syringes.drug]") else "syringes.drug"
    table = "syringes.drug" if "contents" in field or "t-vc" in new else table
    assert message.startswith(f"{SOURCE}:{line}: field {field!r}: [{table}]: "), message
    assert says in message


def test_syringe_tables() -> None:
    message = _full_error('label = "culture medium"', 'label = "culture medium"\nsize = "10 mL"')
    line = _header_line("[syringes.medium]")
    assert message == f"{SOURCE}:{line}: [syringes.medium]: unknown field(s) size"
    message = _full_error(
        "[syringes.medium]\n", '[syringes]\nwaste = "bottle"\n[syringes.medium]\n'
    )
    assert message.startswith(f"{SOURCE}: [syringes.waste]: must be a table"), message
    message = _error(_top("syringes = 3"))
    assert message == f"{SOURCE}: [syringes] must be a table of [syringes.<pump>]"


# -- [chambers] ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "field", "says"),
    [
        ('control = ["chamber 8"]', 'control = "chamber 8"', "control", "list of position names"),
        ('control = ["chamber 8"]', "control = [8]", "control", "list of position names"),
        (
            'exclude = ["chamber 7"]',
            'exclude = ["chamber 8"]',
            "exclude",
            "both control and excluded",
        ),
        (
            'labels = { "chamber 1" = "top dose" }',
            'labels = ["top dose"]',
            "labels",
            "position = label",
        ),
        (
            'labels = { "chamber 1" = "top dose" }',
            'labels = { "chamber 1" = 1 }',
            "labels",
            "position = label",
        ),
    ],
)
def test_chamber_fields(old: str, new: str, field: str, says: str) -> None:
    text = FULL.replace(old, new, 1)
    message = _error(text)
    line = _line_of(text, re.escape(new))
    assert message.startswith(f"{SOURCE}:{line}: field {field!r}: [chambers]: "), message
    assert says in message


def test_chamber_table() -> None:
    message = _full_error('control = ["chamber 8"]', 'control = ["chamber 8"]\nreference = 1')
    assert (
        message == f"{SOURCE}:{_header_line('[chambers]')}: [chambers]: unknown field(s) reference"
    )
    assert _error(_top("chambers = 3")) == f"{SOURCE}: [chambers] must be a table"


# -- [[interlock]] ---------------------------------------------------------------------------

PRESSURE = '[[interlock]]\nkind = "pressure"\nlimit = "${ceiling}"\naction = "abort"\n'
FLOW = (
    '[[interlock]]\nkind = "flow_deviation"\ndevice = "flow"\ntolerance = "30 %"\n'
    'for = "10 min"\naction = "pause"\n'
)


@pytest.mark.parametrize(
    ("number", "old", "new", "field", "says"),
    [
        (1, 'kind = "pressure"', 'kind = "temperature"', "kind", "kind must be one of pressure,"),
        (1, 'kind = "pressure"\n', "", "kind", "kind must be one of"),
        (1, 'action = "abort"', 'action = "panic"', "action", "action must be one of warn, pause"),
        (1, 'action = "abort"\n', "", "action", "action must be one of"),
        (1, 'action = "abort"', 'action = "stop_pump"', "device", "stop_pump needs 'device'"),
        (1, 'limit = "${ceiling}"\n', "", "limit", "limit is missing"),
        (1, 'limit = "${ceiling}"', 'limit = "50 uL"', "limit", "not a pressure"),
        (1, 'limit = "${ceiling}"', "limit = 50", "limit", "not a quantity string"),
        (1, 'limit = "${ceiling}"', 'limit = "0 kPa"', "limit", "limit must be > 0"),
        (
            1,
            'limit = "${ceiling}"',
            'limit = "50 kPa"\nreserve = "5 %"',
            "reserve",
            "pressure takes no 'reserve' (its limit is 'limit')",
        ),
        (
            2,
            'tolerance = "30 %"',
            'tolerance = "30 %"\nlimit = "5 kPa"',
            "limit",
            "flow_deviation takes no 'limit'",
        ),
        (
            1,
            'limit = "${ceiling}"',
            'limit = "50 kPa"\ncolour = 1',
            "colour",
            "unknown field(s) colour",
        ),
        (2, 'device = "flow"', "device = 3", "device", "device must be a device name"),
        (2, 'device = "flow"', 'device = ""', "device", "device must be a device name"),
        (2, 'tolerance = "30 %"\n', "", "tolerance", "tolerance is missing"),
        (2, 'tolerance = "30 %"', 'tolerance = "30"', "tolerance", "a percentage"),
        (2, 'tolerance = "30 %"', 'tolerance = "thirty %"', "tolerance", "a percentage"),
        (2, 'tolerance = "30 %"', 'tolerance = "0 %"', "tolerance", "between 0 and 1000 %"),
        (2, 'tolerance = "30 %"', "tolerance = 50.0", "tolerance", "between 0 and 1000 %"),
        (2, 'tolerance = "30 %"', "tolerance = nan", "tolerance", "a percentage"),
        (2, 'tolerance = "30 %"', "tolerance = 1" + "0" * 400, "tolerance", "a percentage"),
        (2, 'tolerance = "30 %"', "tolerance = true", "tolerance", "a percentage"),
        (2, 'for = "10 min"', 'for = "10 uL"', "for", "for: "),
        (2, 'for = "10 min"', 'for = "-10 min"', "for", "between 0 and a year"),
        (
            2,
            'kind = "flow_deviation"',
            'kind = "bubble"',
            "tolerance",
            "bubble takes no 'tolerance' (it takes no limit)",
        ),
    ],
)
def test_interlock_fields(number: int, old: str, new: str, field: str, says: str) -> None:
    block = PRESSURE if number == 1 else FLOW
    assert block in FULL
    text = FULL.replace(block, block.replace(old, new, 1), 1)
    assert text != FULL
    message = _error(text)
    header = [n for n, line in enumerate(text.splitlines(), 1) if line == "[[interlock]]"][
        number - 1
    ]
    line = _field_line(text, header, field)
    assert message.startswith(f"{SOURCE}:{line}: field {field!r}: interlock {number}: "), message
    assert says in message


def test_interlocks_are_an_array_of_tables() -> None:
    message = _error(_top("interlock = 3"))
    assert message == f"{SOURCE}: interlocks are an array of tables: [[interlock]]"
    assert _error(_top("interlock = [3]")) == f"{SOURCE}: interlock 1: must be a table"


# -- TOML syntax and file-level faults --------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "faulty"),
    [
        ('name = "treat"', 'name = "treat', 'name = "treat'),
        ("[syringes.medium]", "[syringes.medium", "[syringes.medium"),
        ("[chambers]", "[chambers]\n[chambers]", "[chambers]"),
        ("[parameters.days]", "[parameters.exposure]", "[parameters.exposure]"),
        ('rate = "${rate}"', 'rate = "${rate}"\nrate = "1 uL/min"', 'rate = "1 uL/min"'),
        ('count = "${days}"', "count = 2 2", "count = 2 2"),
        ('count = "${days}"', "count = 0x", "count = 0x"),
        ("[chambers]", "[chambers]]", "[chambers]]"),
        ('[[step]]\nname = "treat"', '[[step]\nname = "treat"', "[[step]"),
    ],
)
def test_toml_syntax_errors_name_the_line(old: str, new: str, faulty: str) -> None:
    """A duplicated table or key, an unclosed string or header: the line tomllib names."""
    text = FULL.replace(old, new, 1)
    assert text != FULL
    message = _error(text)
    expected = max(n for n, line in enumerate(text.splitlines(), 1) if line == faulty)
    assert message.startswith(f"{SOURCE}:{expected}: not valid TOML: "), message


@pytest.mark.parametrize(
    "line",
    [
        "x = " + "[" * 2000 + "]" * 2000,
        "x = " + "{a = " * 500 + "1" + "}" * 500,
        "a." * 3000 + "b = 1",
    ],
    ids=["arrays", "inline tables", "dotted keys"],
)
def test_deeply_nested_values_are_one_line(line: str) -> None:
    message = _error(HEAD + f'[[step]]\naction = "stop"\npump = "medium"\n{line}\n')
    assert "nest" in message


# -- what only the rig can tell (compile and preflight on the simulated reference rig) ----------


@pytest.mark.parametrize(
    ("variant", "changes", "field", "says"),
    [
        (
            "infuse",
            {"pump": '"syringe 9"'},
            "pump",
            "no pump 'syringe 9' on this rig (pumps: medium, drug, exchanger)",
        ),
        ("stop", {"pump": '"outlet"'}, "pump", "'outlet' is a valve, not a pump"),
        ("prime", {"pump": '"flow"'}, "pump", "'flow' is a flow, not a pump"),
        ("dose-constant", {"drug_pump": '"drugs"'}, "drug_pump", "no pump 'drugs'"),
        ("dose-constant", {"carrier_pump": '"microscope"'}, "carrier_pump", "not a pump"),
        (
            "perfuse",
            {"rates": '{ medium = "1 uL/min", media = "1 uL/min" }'},
            "rates",
            "no pump 'media'",
        ),
        (
            "valve",
            {"valve": '"drug"'},
            "valve",
            "no valve 'drug' on this rig (valves: outlet, exchanger)",
        ),
        ("valve", {"position": '"sample 99"'}, "position", "outlet has no port 'sample 99'"),
        ("valve", {"position": "11"}, "position", "outlet has positions 1..10, not 11"),
        ("exchange", {"from": '"ethanol"'}, "from", "exchanger has no port 'ethanol'"),
        ("exchange", {"to": '"sink"'}, "to", "exchanger has no port 'sink'"),
        ("exchange", {"pump": '"medium"'}, "pump", "'medium' has no distribution valve"),
        (
            "image-every",
            {"positions": '["chamber 9"]'},
            "positions",
            "no position 'chamber 9' (positions: chamber 1a,",
        ),
        (
            "image-at",
            {"channels": '["gfp"]'},
            "channels",
            "no channel 'gfp' (channels: brightfield, live, dead)",
        ),
        (
            "wait-condition",
            {"until": '{ signal = "pump.flow", above = 1.0 }'},
            "until",
            "no device 'pump' for signal 'pump.flow'",
        ),
        ("infuse", {"rate": '"50 mL/min"'}, "rate", "outside"),
        ("infuse", {"rate": '"0.001 uL/min"'}, "rate", "outside"),
        ("prime", {"rate": '"1 uL/min"', "pump": '"exchanger"'}, "rate", "outside"),
        ("withdraw", {"duration": '"400 min"'}, "duration", "exceeds the Cavro 250 uL capacity"),
    ],
)
def test_preflight_errors_name_file_line_step_and_field(
    variant: str, changes: dict[str, str], field: str, says: str
) -> None:
    text = _step_text(variant, changes)
    message = _check(text)
    header = _line_of(text, r"\[\[step\]\]", start=HEAD.count("\n") + 1)
    lines = {header, _field_line(text, header, field)}  # the step's line, or the field's
    assert re.match(
        rf"{re.escape(SOURCE)}:({'|'.join(map(str, lines))}): step 2(/[\d./]+)? \('[^']*'\): "
        rf"field '{field}': ",
        message,
    ), message
    assert says in message


def test_a_syringe_running_dry_names_the_step_that_empties_it() -> None:
    text = HEAD + (
        '[[step]]\nname = "big"\naction = "infuse"\npump = "medium"\nrate = "100 uL/min"\n'
        'volume = "6 mL"\n\n[[step]]\nname = "bigger"\naction = "infuse"\npump = "medium"\n'
        'rate = "100 uL/min"\nvolume = "6 mL"\n'
    )
    text = text.replace('[protocol]\nname = "validation"', _no_pressure_limit())
    message = _check(text)
    line = _line_of(text, r'name = "bigger"') - 1
    assert message.startswith(f"{SOURCE}:{line}: step 3 ('bigger'): field 'volume': "), message
    assert "the BD Plastipak 10 mL of 'medium' runs dry at " in message


def test_the_time_a_syringe_runs_dry_is_when_it_empties() -> None:
    text = _no_pressure_limit() + (
        '\n[[step]]\naction = "wait"\nduration = "1 min"\n\n[[step]]\naction = "infuse"\n'
        'pump = "medium"\nrate = "100 uL/min"\nvolume = "6 mL"\n\n[[step]]\naction = "infuse"\n'
        'pump = "medium"\nrate = "100 uL/min"\nvolume = "6 mL"\n'
    )
    assert "runs dry at 01:41:00" in _check(text)  # 1 min + 10 mL at 100 uL/min


def test_a_declared_fill_is_what_runs_dry() -> None:
    text = (
        _no_pressure_limit()
        + '\n[syringes.medium]\nfill = "1 mL"\n\n[[step]]\nname = "feed"\naction = "infuse"\n'
        'pump = "medium"\nrate = "2 uL/min"\nduration = "10 h"\n'
    )
    message = _check(text)
    assert "step 1 ('feed'): field 'duration': " in message
    assert "runs dry at " in message and "(starts with 1000 uL, holds 10000 uL)" in message


def test_a_syringe_overfilling_names_the_step() -> None:
    text = (
        '[protocol]\nname = "x"\n\n[syringes.exchanger]\nfill = "200 uL"\n\n[[step]]\n'
        'name = "draw"\naction = "withdraw"\npump = "exchanger"\nrate = "100 uL/min"\n'
        'volume = "100 uL"\n'
    )
    message = _check(text)
    assert "step 1 ('draw'): field 'volume': " in message and "overfills" in message


def test_a_fill_beyond_the_syringe_is_refused() -> None:
    text = (
        '[protocol]\nname = "x"\n\n[syringes.medium]\nfill = "20 mL"\n\n[[step]]\n'
        'action = "infuse"\npump = "medium"\nrate = "2 uL/min"\nvolume = "10 uL"\n'
    )
    message = _check(text)
    assert "[syringes.medium] fill 20000 uL is more than the BD Plastipak 10 mL holds" in message


def test_a_syringe_for_a_pump_the_rig_lacks_is_refused() -> None:
    text = (
        '[protocol]\nname = "x"\n\n[syringes.flow]\nlabel = "not a pump"\n\n[[step]]\n'
        'action = "stop"\npump = "all"\n'
    )
    assert "[syringes.flow]: no pump 'flow' on this rig (pumps: medium, drug," in _check(text)


def test_a_pump_started_twice_is_refused() -> None:
    text = _step_text("infuse", {"wait": "false"}) + (
        '\n[[step]]\nname = "again"\naction = "infuse"\npump = "medium"\nrate = "1 uL/min"\n'
        'volume = "1 uL"\n'
    )
    message = _check(text)
    assert re.match(rf"{SOURCE}:\d+: step 3 \('again'\): field 'pump': ", message), message
    assert "still running an earlier step" in message


def _no_pressure_limit() -> str:
    """A [protocol] table with a pressure interlock high enough for fast test flows."""
    return (
        '[protocol]\nname = "validation"\n\n[[interlock]]\nkind = "pressure"\n'
        'limit = "250 kPa"\naction = "abort"\n'
    )


def test_pressure_over_the_chip_limit_is_refused() -> None:
    text = _step_text("infuse", {"rate": '"100 uL/min"'})
    message = _check(text)
    assert "predicted pressure at the medium inlet" in message
    assert "exceeds the limit 50 kPa" in message


def test_a_protocol_pressure_interlock_lowers_the_limit() -> None:
    text = _step_text("perfuse", {"rates": '{ medium = "10 uL/min", drug = "10 uL/min" }'})
    check_protocol(parse_protocol(text, SOURCE), sim=True)  # under the chip's 50 kPa
    text = text.replace(
        '[protocol]\nname = "validation"',
        '[protocol]\nname = "validation"\n\n[[interlock]]\nkind = "pressure"\n'
        'limit = "10 kPa"\naction = "abort"',
    )
    message = _check(text)
    assert "exceeds the limit 10 kPa" in message


@pytest.mark.xfail(
    reason="preflight's pressure error names no step (chipctl/protocol/preflight.py)"
)
def test_pressure_over_the_limit_names_the_step() -> None:
    message = _check(_step_text("infuse", {"rate": '"100 uL/min"'}))
    assert "step 2 ('under test')" in message


def _rig_without_inlet(pump: str) -> str:
    """Return the reference rig's config text with ``pump``'s ``inlet`` removed."""
    text = reference_rig_config().text
    start = text.index(f"[devices.{pump}]")
    end = text.index("\n[", start + 1)
    block = text[start:end]
    stripped = "\n".join(line for line in block.splitlines() if not line.startswith("inlet"))
    assert stripped != block
    return text[:start] + stripped + text[end:]


def test_a_prime_without_volume_needs_the_dead_volume() -> None:
    text = _step_text("prime", {"volume": None})
    message = _check(text, _rig_without_inlet("medium"))
    assert re.match(rf"{SOURCE}:\d+: step 2 \('under test'\): field 'volume': ", message), message
    assert "no dead volume for 'medium'" in message
    # the same protocol on the reference rig primes the dead volume
    _, pre = check_protocol(parse_protocol(text, SOURCE), sim=True)
    assert pre.infused_ul["medium"] == pytest.approx(102.2)


def test_a_dose_on_an_unprimed_line_needs_the_dead_volume() -> None:
    message = _check(_step_text("dose-constant", {}), _rig_without_inlet("drug"))
    assert "step 2 ('under test'): field 'drug_pump': " in message
    assert "no dead volume for 'drug'" in message


def test_an_interlock_for_a_device_the_rig_lacks_is_refused() -> None:
    text = FULL.replace('device = "flow"', 'device = "flwo"')
    with pytest.raises(ProtocolError, match="flwo"):
        check_protocol(parse_protocol(text, SOURCE), sim=True)


def test_a_chamber_the_rig_lacks_is_refused() -> None:
    text = FULL.replace('control = ["chamber 8"]', 'control = ["chamber 88"]')
    with pytest.raises(ProtocolError, match="chamber 88"):
        check_protocol(parse_protocol(text, SOURCE), sim=True)


@pytest.mark.xfail(
    reason="the sample step's valve moves report 'position', but its fields are 'port' and "
    "'back_to' (compile.py gives its primitives, preflight.py names the primitive's field)"
)
@pytest.mark.parametrize(
    ("changes", "field"), [({"port": '"vial"'}, "port"), ({"back_to": '"drain"'}, "back_to")]
)
def test_a_sample_port_the_valve_lacks_names_the_field(changes: dict[str, str], field: str) -> None:
    message = _check(_step_text("sample", changes))
    assert f"step 2 ('under test'): field '{field}': " in message


@pytest.mark.xfail(
    reason="compiled pump steps report 'rate' for a perfuse step, whose field is 'rates' "
    "(chipctl/protocol/preflight.py names the primitive's field)"
)
def test_a_perfuse_rate_out_of_range_names_the_rates_field() -> None:
    message = _check(_step_text("perfuse", {"rates": '{ medium = "50 mL/min" }'}))
    assert "field 'rates'" in message


@pytest.mark.xfail(
    reason="the exchange's draw stroke reports 'rate', but its field is 'draw_rate' "
    "(chipctl/protocol/preflight.py names the primitive's field)"
)
def test_an_exchange_draw_rate_out_of_range_names_the_draw_rate_field() -> None:
    message = _check(_step_text("exchange", {"draw_rate": '"50 mL/min"'}))
    assert "field 'draw_rate'" in message


def test_check_protocol_reads_a_protocol_object_and_overrides() -> None:
    protocol = parse_protocol(FULL, SOURCE)
    _, default = check_protocol(protocol, sim=True)
    _, longer = check_protocol(protocol, sim=True, parameters={"exposure": "48 h"})
    assert longer.duration_s - default.duration_s == pytest.approx(24 * 3600)
    with pytest.raises(ProtocolError, match=r"--set exposure='9 d': .*above the maximum"):
        check_protocol(protocol, sim=True, parameters={"exposure": "9 d"})
