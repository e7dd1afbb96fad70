import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chipctl.errors import ProtocolError
from chipctl.protocol.catalog import builtin_names
from chipctl.protocol.loader import load_protocol, parse_protocol
from chipctl.protocol.model import PumpStep, StopStep, WaitStep
from drivers.roles import PumpDirection

GOOD = """\
[protocol]
name = "demo"
description = "two pumps"

[[step]]
name = "prime"
action = "infuse"
pump = "medium"
rate = "50 uL/min"
volume = "100 uL"

[[step]]
action = "withdraw"
pump = "drug"
rate = "1 uL/min"
duration = "30 min"
wait = false

[[step]]
action = "wait"
duration = "1 h"

[[step]]
action = "stop"
pump = "drug"
"""


def test_parses_every_action_into_typed_steps():
    p = parse_protocol(GOOD, "demo.toml")
    assert p.name == "demo"
    prime, withdraw, wait, stop = p.steps
    assert isinstance(prime, PumpStep) and prime.volume_ul == 100.0 and prime.wait
    assert prime.info.name == "prime" and prime.info.line == 5 and prime.info.index == 1
    assert isinstance(withdraw, PumpStep) and withdraw.direction is PumpDirection.WITHDRAW
    assert withdraw.target_volume_ul == pytest.approx(30.0) and not withdraw.wait
    assert isinstance(wait, WaitStep) and wait.duration_s == 3600.0
    assert isinstance(stop, StopStep) and stop.pump == "drug"
    assert p.pumps() == ["medium", "drug"]
    assert len(p.sha256) == 64


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('rate = "50 uL/min"', 'rate = "50 uL"', "demo.toml:9: step 1 ('prime'): field 'rate':"),
        ('rate = "50 uL/min"', 'rate = "-5 uL/min"', "step 1 ('prime'): field 'rate': must be > 0"),
        ('volume = "100 uL"', 'volume = "100 uL"\nduration = "1 h"', "give exactly one"),
        ('volume = "100 uL"', "", "give exactly one"),
        ('pump = "medium"', "", "step 1 ('prime'): field 'pump': missing"),
        (
            'action = "wait"',
            'action = "sleep"',
            "demo.toml:20: step 3: field 'action': unknown action 'sleep'",
        ),
        ('duration = "1 h"', "duration = 3600", "step 3: field 'duration':"),
        ("wait = false", 'wait = "no"', "field 'wait': must be true or false"),
        ('name = "prime"', 'name = "prime"\ncolour = "red"', "field 'colour': unknown field"),
        ('name = "demo"', 'title = "demo"', "[protocol]: unknown field"),
        ('[[step]]\naction = "stop"', '[[step]\naction = "stop"', "not valid TOML"),
    ],
)
def test_errors_name_file_line_step_and_field(old, new, expected):
    text = GOOD.replace(old, new, 1)
    assert text != GOOD
    with pytest.raises(ProtocolError) as info:
        parse_protocol(text, "demo.toml")
    message = str(info.value)
    assert expected in message
    assert "\n" not in message
    assert message.startswith("demo.toml")


def test_unknown_builtin_lists_builtins():
    with pytest.raises(ProtocolError, match=r"built-ins: .*perfusion-check"):
        load_protocol("no-such-protocol")


@pytest.mark.parametrize("name", builtin_names())
def test_every_builtin_protocol_loads(name):
    assert load_protocol(name).steps


_values = st.one_of(
    st.text(max_size=12),
    st.integers(),
    st.floats(allow_nan=True),
    st.booleans(),
    st.sampled_from(
        ["2 uL/min", "5 uL", "1 h", "medium", "infuse", "wait", "stop", "-1 h", "0 uL/min"]
    ),
)
_keys = st.sampled_from(
    ["action", "pump", "rate", "volume", "duration", "wait", "name", "colour", "é"]
)


def _toml_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return (
            "nan"
            if value != value
            else (
                "inf"
                if value == float("inf")
                else "-inf"
                if value == float("-inf")
                else repr(value)
            )
        )
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


@settings(max_examples=300, deadline=None)
@given(st.lists(st.dictionaries(_keys, _values, max_size=6), max_size=4), st.text(max_size=30))
def test_generated_protocols_end_in_one_line_never_a_traceback(steps, junk):
    lines = ['[protocol]\nname = "fuzz"\n']
    for table in steps:
        lines.append("[[step]]")
        lines += [f'"{k}" = {_toml_value(v)}' for k, v in table.items()]
    text = "\n".join(lines) + "\n" + (junk if junk.startswith("#") else "")
    try:
        protocol = parse_protocol(text, "fuzz.toml")
    except ProtocolError as exc:
        message = str(exc)
        assert message.startswith("fuzz.toml")
        assert "\n" not in message
        return
    assert protocol.steps


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_random_text_never_crashes_the_loader(text):
    try:
        parse_protocol(text, "rand.toml")
    except ProtocolError as exc:
        assert re.match(r"rand\.toml", str(exc))
