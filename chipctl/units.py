"""Quantities with units at the edges: protocol files, configs, the command line.

Inside chipctl every quantity is a plain float whose name carries its unit
(``rate_ul_min``, ``volume_ul``, ``duration_s``...). This module is the only place that
parses strings like ``"2 uL/min"``, ``"24 h"`` or ``"14.43 mm"``, with pint, and converts
them to those canonical units. A value of the wrong dimension (``"2 uL"`` for a rate)
or without a unit is an error naming the expected dimension.

>>> parse_quantity("2 uL/min", FLOW_RATE)
2.0
>>> parse_quantity("1.5 h", DURATION)
5400.0
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import cache
from typing import Any

__all__ = [
    "CONCENTRATION",
    "DURATION",
    "FLOW_RATE",
    "LENGTH",
    "PRESSURE",
    "VOLUME",
    "Dimension",
    "UnitError",
    "format_duration",
    "parse_quantity",
]


class UnitError(ValueError):
    """Raised when a quantity string cannot be parsed or has the wrong dimension."""


@dataclass(frozen=True, slots=True)
class Dimension:
    """A kind of quantity and the canonical unit chipctl stores it in.

    Args:
        name: what the quantity is, for messages ("flow rate").
        canonical_unit: the pint unit of the float chipctl uses inside.
        example: an example string for error messages.
    """

    name: str
    canonical_unit: str
    example: str


FLOW_RATE = Dimension("flow rate", "microliter / minute", "2 uL/min")
VOLUME = Dimension("volume", "microliter", "150 uL")
DURATION = Dimension("duration", "second", "24 h")
LENGTH = Dimension("length", "millimeter", "14.43 mm")
PRESSURE = Dimension("pressure", "kilopascal", "20 kPa")
CONCENTRATION = Dimension("concentration", "nanomolar", "10 nM")


@cache
def _registry() -> Any:
    import pint

    # pint knows the lab spellings used in protocols (ul, uL, ml, nl, hr, nM) as is.
    registry: Any = pint.UnitRegistry()
    return registry


# A quantity is a plain number, then a unit made of names, optional small integer powers,
# and "/" or "*" (or a space) between them: "2 uL/min", "1.5e-3 mL", "20 kPa", "60 ul/hr".
# The string is never handed whole to pint's expression parser, which evaluates arithmetic:
# "9**9**9 uL" would compute a number of 370 million digits (the process hangs), and
# "10**400 uL" overflowed a float with an OverflowError instead of a clear line.
_NUMBER = r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?(?:inf|nan)"
_QUANTITY_RE = re.compile(rf"\s*(?P<number>{_NUMBER})(?P<unit>.*?)\s*", re.IGNORECASE | re.DOTALL)
_NAME = r"(?:[^\W\d_]|°)(?:[^\W\d]|°)*|%"
_FACTOR = rf"(?:{_NAME})(?:\s*(?:\*\*|\^)\s*[+-]?[0-9]{{1,2}})?"
_UNIT_RE = re.compile(rf"\s*{_FACTOR}(?:\s*[*/]?\s*{_FACTOR})*\s*")


def parse_quantity(text: object, dimension: Dimension) -> float:
    """Parse ``text`` (e.g. ``"2 uL/min"``) into a float in ``dimension``'s canonical unit.

    The text is a plain number (``2``, ``-0.5``, ``1.5e-3``) followed by a unit; arithmetic
    (``2*3 uL``, ``10**2 uL``) is not accepted, and neither is a unit without a number.

    Raises:
        UnitError: not a string, no number, no unit, unknown unit, wrong dimension, or not a
            finite value. The message says what was expected, with an example.
    """
    expect = f"expected a {dimension.name} such as {dimension.example!r}"
    if isinstance(text, bool) or not isinstance(text, str):
        raise UnitError(f"{_shown(text)} is not a quantity string; {expect}")
    match = _QUANTITY_RE.fullmatch(text)
    if match is None:
        raise UnitError(f"cannot read {_shown(text)} (no number first); {expect}")
    unit_text = match["unit"]
    if not unit_text.strip():
        raise UnitError(f"{_shown(text)} has no unit; {expect}")
    if _UNIT_RE.fullmatch(unit_text) is None:
        raise UnitError(f"cannot read {_shown(text)} (not a unit: {unit_text.strip()!r}); {expect}")
    import pint

    registry = _registry()
    try:
        quantity = registry.Quantity(float(match["number"]), registry.parse_units(unit_text))
        dimensionless = quantity.dimensionless
    except pint.errors.PintError as exc:
        raise UnitError(f"cannot read {_shown(text)} ({_one_line(exc)}); {expect}") from None
    except Exception as exc:  # pint's parser can raise almost anything on odd input
        raise UnitError(f"cannot read {_shown(text)} ({type(exc).__name__}); {expect}") from None
    if dimensionless:
        raise UnitError(f"{_shown(text)} has no unit; {expect}")
    try:
        value = float(quantity.to(dimension.canonical_unit).magnitude)
    except pint.errors.DimensionalityError:
        raise UnitError(f"{_shown(text)} is not a {dimension.name}; {expect}") from None
    except Exception as exc:  # overflow in a unit's conversion factor, and the like
        raise UnitError(f"cannot read {_shown(text)} ({type(exc).__name__}); {expect}") from None
    if not math.isfinite(value):
        raise UnitError(f"{_shown(text)} is not a finite {dimension.name}")
    return value


def _shown(value: object) -> str:
    """Return ``repr(value)``, cut to a length that keeps an error message to one short line."""
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def _one_line(exc: BaseException) -> str:
    """Return ``str(exc)`` on one line."""
    return " ".join(str(exc).split())


def format_duration(duration_s: float) -> str:
    """Format seconds as ``"1d 02:03:04"`` / ``"02:03:04"`` for progress displays."""
    total_s = round(max(duration_s, 0.0))
    days, rest_s = divmod(total_s, 86400)
    hours, rest_s = divmod(rest_s, 3600)
    minutes, seconds = divmod(rest_s, 60)
    clock = f"{hours:02d}:{minutes:02d}:{seconds:02d}"
    return f"{days}d {clock}" if days else clock
