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


def parse_quantity(text: object, dimension: Dimension) -> float:
    """Parse ``text`` (e.g. ``"2 uL/min"``) into a float in ``dimension``'s canonical unit.

    Raises:
        UnitError: not a string, no number, no unit, unknown unit, wrong dimension, or not a
            finite value. The message says what was expected, with an example.
    """
    expect = f"expected a {dimension.name} such as {dimension.example!r}"
    if isinstance(text, bool) or not isinstance(text, str):
        raise UnitError(f"{text!r} is not a quantity string; {expect}")
    import pint

    registry = _registry()
    try:
        quantity = registry.Quantity(text.strip())
    except (pint.errors.PintError, ValueError, TypeError, AttributeError, SyntaxError) as exc:
        raise UnitError(f"cannot read {text!r} ({exc}); {expect}") from None
    except Exception as exc:  # pint's parser can raise almost anything on odd input
        raise UnitError(f"cannot read {text!r} ({type(exc).__name__}); {expect}") from None
    if not isinstance(quantity, registry.Quantity) or quantity.dimensionless:
        raise UnitError(f"{text!r} has no unit; {expect}")
    try:
        value = float(quantity.to(dimension.canonical_unit).magnitude)
    except pint.errors.DimensionalityError:
        raise UnitError(f"{text!r} is not a {dimension.name}; {expect}") from None
    except (TypeError, ValueError, OverflowError) as exc:
        raise UnitError(f"cannot read {text!r} ({exc}); {expect}") from None
    if not math.isfinite(value):
        raise UnitError(f"{text!r} is not a finite {dimension.name}")
    return value


def format_duration(duration_s: float) -> str:
    """Format seconds as ``"1d 02:03:04"`` / ``"02:03:04"`` for progress displays."""
    total_s = round(max(duration_s, 0.0))
    days, rest_s = divmod(total_s, 86400)
    hours, rest_s = divmod(rest_s, 3600)
    minutes, seconds = divmod(rest_s, 60)
    clock = f"{hours:02d}:{minutes:02d}:{seconds:02d}"
    return f"{days}d {clock}" if days else clock
