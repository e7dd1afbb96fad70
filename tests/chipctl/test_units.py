import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chipctl.units import (
    CONCENTRATION,
    DURATION,
    FLOW_RATE,
    LENGTH,
    VOLUME,
    UnitError,
    format_duration,
    parse_quantity,
)


@pytest.mark.parametrize(
    ("text", "dim", "expected"),
    [
        ("2 uL/min", FLOW_RATE, 2.0),
        ("2 ul/min", FLOW_RATE, 2.0),
        ("1 mL/h", FLOW_RATE, 1000 / 60),
        ("60 uL/hr", FLOW_RATE, 1.0),
        ("24 h", DURATION, 86400.0),
        ("90 min", DURATION, 5400.0),
        ("150 uL", VOLUME, 150.0),
        ("10 mL", VOLUME, 10000.0),
        ("14.43 mm", LENGTH, 14.43),
        ("10 nM", CONCENTRATION, 10.0),
        ("1 uM", CONCENTRATION, 1000.0),
    ],
)
def test_parses_to_canonical_units(text, dim, expected):
    assert parse_quantity(text, dim) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("2 uL", "is not a flow rate"),
        ("2", "has no unit"),
        ("fast", "cannot read"),
        ("2 blorps/min", "cannot read"),
        (2.0, "is not a quantity string"),
        (True, "is not a quantity string"),
        ("inf uL/min", "finite"),
    ],
)
def test_rejects_with_one_clear_line(text, fragment):
    with pytest.raises(UnitError) as info:
        parse_quantity(text, FLOW_RATE)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message
    assert "2 uL/min" in message or "finite" in message


@given(st.text(max_size=40))
def test_any_string_parses_or_raises_unit_error(text):
    try:
        value = parse_quantity(text, VOLUME)
    except UnitError:
        return
    assert math.isfinite(value)


def test_format_duration():
    assert format_duration(0) == "00:00:00"
    assert format_duration(3 * 3600 + 62) == "03:01:02"
    assert format_duration(86400 + 1) == "1d 00:00:01"
