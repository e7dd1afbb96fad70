"""Which telemetry quantity goes on which live plot, with what label (no Qt here).

The same rules serve a live run (telemetry as it arrives) and a run file (its telemetry
tables), so both show the same plots:

============================  =======================  =============================
quantity                      plot                     label
============================  =======================  =============================
pump ``rate_ul_min``          flow (uL/min)            ``<pump> set rate``
sensor ``flow_ul_min``        flow (uL/min)            ``<sensor>``
chip ``q_outlet_ul_min``      flow (uL/min)            ``chip outlet (sim)``
chip ``p_<inlet>_kpa``        pressure (kPa)           ``<inlet> inlet (sim)``
pump ``delivered_ul``         pump volume (uL)         ``<pump>``
chip ``c_<drug>_chamber<k>``  concentration (nM)       ``chamber <k>``
============================  =======================  =============================

``(sim)`` marks the simulated chip's ground truth (the ``chip`` telemetry table of a simulated
rig): a real bench has no sensor for it, and the label says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["CHAMBER_COLORS", "PLOTS", "CurveSpec", "chamber_color", "classify"]

#: Plot id -> (title, y-axis label, units).
PLOTS: dict[str, tuple[str, str, str]] = {
    "flow": ("Flow", "flow", "uL/min"),
    "pressure": ("Pressure", "pressure", "kPa"),
    "volume": ("Pump volumes", "delivered", "uL"),
    "concentration": ("Delivered concentration per chamber", "concentration", "nM"),
}

#: One colour per chamber (1-based index - 1), the same on every plot and image.
CHAMBER_COLORS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#bcbd22",
    "#7f7f7f",
)

_DEVICE_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b")

_PRESSURE = re.compile(r"^p_(?P<inlet>.+)_kpa$")
_CONCENTRATION = re.compile(r"^c_(?P<species>.+)_chamber(?P<k>\d+)_nm$")


@dataclass(frozen=True)
class CurveSpec:
    """Where a quantity is drawn.

    Args:
        plot: the plot id (a key of :data:`PLOTS`).
        label: the legend text.
        color: the pen colour (``#rrggbb``).
        dashed: drawn dashed (set points, as opposed to measurements).
    """

    plot: str
    label: str
    color: str
    dashed: bool = False


def chamber_color(k: int) -> str:
    """Return the colour of chamber ``k`` (1-based)."""
    return CHAMBER_COLORS[(k - 1) % len(CHAMBER_COLORS)]


def _device_color(device: str, devices: list[str]) -> str:
    index = devices.index(device) if device in devices else sum(map(ord, device))
    return _DEVICE_COLORS[index % len(_DEVICE_COLORS)]


def classify(device: str, quantity: str, devices: list[str] | None = None) -> CurveSpec | None:
    """Return where ``device``'s ``quantity`` is plotted, or None if it is not plotted.

    Args:
        device: the telemetry table's device name (``chip`` for the simulated chip).
        quantity: the column name.
        devices: the rig's device names in config order (for stable colours).
    """
    names = devices or []
    color = _device_color(device, names)
    if device == "chip":
        if quantity == "q_outlet_ul_min":
            return CurveSpec("flow", "chip outlet (sim)", "#555555")
        match = _PRESSURE.match(quantity)
        if match:
            inlet = match["inlet"]
            inlet_color = _device_color(inlet, names) if inlet in names else "#7f7f7f"
            return CurveSpec("pressure", f"{inlet} inlet (sim)", inlet_color)
        match = _CONCENTRATION.match(quantity)
        if match:
            k = int(match["k"])
            return CurveSpec("concentration", f"chamber {k}", chamber_color(k))
        return None
    if quantity == "rate_ul_min":
        return CurveSpec("flow", f"{device} set rate", color, dashed=True)
    if quantity == "flow_ul_min":
        return CurveSpec("flow", device, color)
    if quantity == "delivered_ul":
        return CurveSpec("volume", device, color)
    return None
