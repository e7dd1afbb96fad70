"""The chip description of an instrument config: chambers, dilution ladder, dead volumes.

The controller needs a few facts about the chip that no device reports: how many culture
chambers it has and what they are called (the microscope's positions), which fraction of
the drug inlet's concentration each chamber receives when the inlets run at equal rates
(a serial-dilution ladder), how much liquid sits between each syringe and the chambers (the
drug front's arrival delay), and the pressure the chip is rated for. They come from the
``[chip]`` table of the instrument config::

    [chip]
    model = "8-chamber half-log dilution ladder"
    chambers = 8                       # "chamber 1".."chamber 8" (fields: "chamber 1a"...)
    dilution_ratio = 0.31623           # chamber k (1-based) gets ratio**(k-1) of the drug inlet
    chamber_volume = "5 uL"
    pressure_rating = "300 kPa"        # bond failure; interlocks default to a fraction of it
    dead_volume = { medium = "102 uL", drug = "102 uL", aux = "53 uL" }   # syringe -> chamber
    resistance = { medium = "1.2 kPa s/uL", outlet = "0.5 kPa s/uL" }     # for the preflight

Protocols use it to compile doses (pump start times advanced by the dead volume), the
preflight to predict exposure, and the analysis to compute the concentration each chamber
actually received.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from chipctl.errors import ConfigError
from chipctl.units import PRESSURE, VOLUME, Dimension, UnitError, parse_quantity

__all__ = ["ChipConfig", "chamber_name", "chamber_of", "field_name", "parse_chip"]

#: A microscope position that is one field of a chamber: ``"chamber 3b"``.
_FIELD = re.compile(r"(chamber \d+)([a-z])")


def chamber_name(index: int) -> str:
    """Return the position name of chamber ``index`` (1-based): ``"chamber 3"``."""
    return f"chamber {index}"


def field_name(index: int, field_index: int, n_fields: int) -> str:
    """Return the position name of one imaging field of chamber ``index`` (both 1-based).

    A chamber longer than the microscope's field of view is imaged in ``n_fields`` fields
    along its length, ``"chamber 3a"``, ``"chamber 3b"``... from the inlet end; with one
    field the position is the chamber itself (``"chamber 3"``).
    """
    if n_fields == 1:
        return chamber_name(index)
    if not 1 <= field_index <= n_fields <= 26:
        raise ValueError(f"field {field_index} of {n_fields}: fields are 1..{n_fields} (<= 26)")
    return f"{chamber_name(index)}{chr(ord('a') + field_index - 1)}"


def chamber_of(position: str) -> str:
    """Return the chamber a microscope position belongs to (``"chamber 3b"`` -> ``"chamber 3"``).

    Any other position (``"chamber 3"``, a user-named ``"overview"``) is its own chamber.
    """
    match = _FIELD.fullmatch(position)
    return match.group(1) if match else position


@dataclass(frozen=True)
class ChipConfig:
    """What the controller knows about the chip.

    Args:
        model: a free-text description.
        n_chambers: number of culture chambers.
        dilution_ratio: concentration ratio between neighbouring chambers at equal inlet
            rates (1.0: every chamber receives the inlet mix).
        chamber_volume_ul: liquid volume of one chamber.
        pressure_rating_kpa: the pressure the chip withstands.
        dead_volume_ul: liquid volume from each inlet's syringe to the chambers.
        resistance_kpa_s_ul: hydraulic resistance of each inlet's path and of the common
            ``outlet``: the preflight predicts ``p_inlet = R_inlet Q_inlet + R_outlet Q_total``.
    """

    model: str = ""
    n_chambers: int = 8
    dilution_ratio: float = 1.0
    chamber_volume_ul: float = 5.0
    pressure_rating_kpa: float = 300.0
    dead_volume_ul: dict[str, float] = field(default_factory=dict)
    resistance_kpa_s_ul: dict[str, float] = field(default_factory=dict)

    @property
    def chamber_names(self) -> tuple[str, ...]:
        """Return ``("chamber 1", ..., "chamber N")``."""
        return tuple(chamber_name(i) for i in range(1, self.n_chambers + 1))

    def fractions(self) -> tuple[float, ...]:
        """Return the fraction of the drug inlet concentration each chamber receives."""
        return tuple(self.dilution_ratio**k for k in range(self.n_chambers))


_KEYS = {
    "model",
    "chambers",
    "dilution_ratio",
    "chamber_volume",
    "pressure_rating",
    "dead_volume",
    "resistance",
}
#: Hydraulic resistance, for the ``resistance`` table.
RESISTANCE = Dimension("hydraulic resistance", "kilopascal * second / microliter", "1.2 kPa s/uL")


def _quantity(source: str, where: str, value: object, dimension: Any) -> float:
    try:
        number = parse_quantity(value, dimension)
    except UnitError as exc:
        raise ConfigError(source, where, str(exc)) from None
    if not number >= 0:
        raise ConfigError(source, where, f"must not be negative, got {value!r}")
    return number


def parse_chip(source: str, table: object) -> ChipConfig:
    """Parse the ``[chip]`` table.

    Raises:
        ConfigError: an unknown key or an invalid value, naming file and key.
    """
    if not isinstance(table, dict):
        raise ConfigError(source, "chip", "must be a table")
    unknown = sorted(set(table) - _KEYS)
    if unknown:
        raise ConfigError(source, "chip", f"unknown key(s) {', '.join(unknown)}")
    model = table.get("model", "")
    if not isinstance(model, str):
        raise ConfigError(source, "chip.model", "must be a string")
    chambers = table.get("chambers", 8)
    if isinstance(chambers, bool) or not isinstance(chambers, int) or not 1 <= chambers <= 384:
        raise ConfigError(source, "chip.chambers", f"must be an integer 1..384, got {chambers!r}")
    ratio = table.get("dilution_ratio", 1.0)
    if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not 0 < ratio <= 1:
        raise ConfigError(source, "chip.dilution_ratio", f"must be in (0, 1], got {ratio!r}")
    chamber_volume_ul = _quantity(
        source, "chip.chamber_volume", table.get("chamber_volume", "5 uL"), VOLUME
    )
    rating_kpa = _quantity(
        source, "chip.pressure_rating", table.get("pressure_rating", "300 kPa"), PRESSURE
    )
    if rating_kpa <= 0:
        raise ConfigError(source, "chip.pressure_rating", "must be > 0")
    dead = table.get("dead_volume", {})
    if not isinstance(dead, dict):
        raise ConfigError(source, "chip.dead_volume", "must be a table of inlet = volume")
    dead_ul: dict[str, float] = {}
    for inlet, value in dead.items():
        dead_ul[str(inlet)] = _quantity(source, f"chip.dead_volume.{inlet}", value, VOLUME)
    resistance = table.get("resistance", {})
    if not isinstance(resistance, dict):
        raise ConfigError(source, "chip.resistance", "must be a table of inlet = resistance")
    resistance_kpa_s_ul: dict[str, float] = {}
    for inlet, value in resistance.items():
        resistance_kpa_s_ul[str(inlet)] = _quantity(
            source, f"chip.resistance.{inlet}", value, RESISTANCE
        )
    return ChipConfig(
        model=model,
        n_chambers=chambers,
        dilution_ratio=float(ratio),
        chamber_volume_ul=chamber_volume_ul,
        pressure_rating_kpa=rating_kpa,
        dead_volume_ul=dead_ul,
        resistance_kpa_s_ul=resistance_kpa_s_ul,
    )
