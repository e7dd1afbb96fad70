"""A plot axis that reads run time as a duration (``0:00:45``, ``12:30 h``, ``1d 06:00``).

Run times span seconds (a prime) to days (an exposure). Ticks in hours read badly for the
first minutes and ticks in seconds badly after a day, so :class:`RunTimeAxis` takes values
in seconds and puts ticks at round durations (1, 2, 5, 10, 15, 30 s; 1, 2, 5, 10, 15, 30
min; 1, 2, 3, 6, 12 h; days) labelled as a clock.
"""

from __future__ import annotations

import math
from typing import Any

import pyqtgraph as pg

__all__ = ["RunTimeAxis", "format_tick"]

#: Tick spacings to choose from, in seconds.
STEPS_S = (
    0.1, 0.2, 0.5,
    1, 2, 5, 10, 15, 30,
    60, 120, 300, 600, 900, 1800,
    3600, 7200, 10800, 21600, 43200,
    86400, 172800, 432000, 864000,
)  # fmt: skip


def format_tick(t_s: float, spacing_s: float) -> str:
    """Return a tick label for run time ``t_s`` among ticks ``spacing_s`` apart."""
    if spacing_s < 1:
        return f"{t_s:.1f} s"
    sign = "-" if t_s < 0 else ""
    total = abs(round(t_s))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if spacing_s < 60:
        text = f"{days * 24 + hours}:{minutes:02d}:{seconds:02d}"
    elif days:
        text = f"{days}d {hours:02d}:{minutes:02d}"
    else:
        text = f"{hours}:{minutes:02d} h"
    return sign + text


class RunTimeAxis(pg.AxisItem):  # type: ignore[misc]
    """A bottom axis for values in seconds of run time, ticked at round durations."""

    def __init__(self, **kwargs: Any) -> None:
        """Create the axis (arguments as for ``pyqtgraph.AxisItem``, orientation fixed)."""
        super().__init__(orientation="bottom", **kwargs)
        self.enableAutoSIPrefix(False)

    def tickSpacing(  # noqa: N802 (pyqtgraph's name)
        self, min_value: float, max_value: float, size: float
    ) -> list[tuple[float, float]]:
        """Choose a round major spacing giving a tick every ~100 px, minor ticks between."""
        span = max(max_value - min_value, 1e-9)
        wanted = max(size / 100.0, 2.0)
        major = next((s for s in STEPS_S if span / s <= wanted), None)
        if major is None:
            major = 86400 * 10 ** math.ceil(math.log10(span / wanted / 86400))
        index = STEPS_S.index(major) if major in STEPS_S else -1
        minor = STEPS_S[index - 1] if index > 0 else major / 5
        if major / minor > 6:
            minor = major / 4
        return [(float(major), 0.0), (float(minor), 0.0)]

    def tickStrings(  # noqa: N802 (pyqtgraph's name)
        self, values: list[float], scale: float, spacing: float
    ) -> list[str]:
        """Label ticks as durations."""
        return [format_tick(v, spacing) for v in values]
