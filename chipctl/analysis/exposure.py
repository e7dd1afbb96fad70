"""The drug concentration each chamber actually received, from the logged pump flows.

The model (domain reference 1.9, 8.2) runs on what the run file recorded, never on what the
protocol intended, so a stalled pump, a late start or a pause shows up in the exposure:

* **Inlet lines are plug-flow delays indexed by volume** [D, 1.9]: a line starts full of
  drug-free medium; what its syringe pushes in at cumulative volume ``V`` reaches the chip
  when ``V + V_dead`` has gone in, whatever the flow history. ``V`` is the pump's logged
  net volume (``delivered_ul``, else ``infused_ul - withdrawn_ul``, else the integral of
  ``rate_ul_min``); a pump with a distribution valve (``ports`` in its config) feeds the
  line only while its valve is on the port named ``"chip"`` (from the ``select position``
  commands in ``/events``). Taylor-Aris broadening is neglected (about 1 cm over a 50 cm
  line, 1.9).
* **On-chip mixing**: with the drug and diluent inlets (every inlet but ``drug``) at equal
  rates, chamber ``k`` receives ``ratio**k`` of the drug line's concentration (the chip's
  design point, ``[chip] dilution_ratio``); the drug inlet alone gives every chamber the
  drug line's concentration, the diluent alone none. Other rate ratios are off the design
  point: the ladder's fractions then change strongly (a 10 % imbalance moves the low
  chambers by up to a factor 2 on the reference chip), so the design fractions are used
  and the time spent off design is reported (:attr:`ChamberExposure.off_design_s`).
* **Chambers are well-mixed** (CSTR) [L, 1.9]: ``dC/dt = (Q_ch / V_ch)(C_in - C)``, exact
  over each interval of constant feed, with ``Q_ch`` the chamber's share of the total
  inlet flow. No loss to PDMS (antibodies and ADCs do not partition into it, 1.10).

Flows between telemetry samples are the logged set rates (``rate_ul_min`` while
``running``) in the direction the volume counter moved; the front's position comes from the
volume counters, interpolated linearly between samples, with the arrival time solved
within the sample interval.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from chipctl.chip import ChipConfig, chamber_name, parse_chip
from chipctl.errors import ConfigError, InputError
from chipctl.runfile.reader import Event, RunFile
from chipctl.units import CONCENTRATION, UnitError, parse_quantity

__all__ = [
    "ARRIVAL_FRACTION",
    "DRUG_INLET",
    "REFERENCE_CHAMBER_FLOW_SHARE",
    "REFERENCE_DILUENT_ONLY_SHARE",
    "REFERENCE_DRUG_ONLY_SHARE",
    "ChamberExposure",
    "ChipModel",
    "InletSupply",
    "LineFlow",
    "chip_model_from_config",
    "compute_exposure",
    "exposure_from_run",
    "line_flow",
    "line_flows_from_run",
    "valve_connected",
]

FloatArray = NDArray[np.float64]

#: The inlet whose line carries the drug into the dilution ladder.
DRUG_INLET: Final = "drug"
#: The distribution-valve port that connects a pump to its chip line.
CHIP_PORT: Final = "chip"
#: Share of the total inlet flow through each chamber of the reference chip, per inlet mode
#: (its ladder's steady hydraulics): at the design point (drug and diluent at equal rates)
#: every chamber takes 7.65 % (the bypass the rest); with the diluent alone the chambers
#: near the drug end get much less (a washout of chamber 1 takes 3x longer than of chamber
#: 8), with the drug alone much more.
#: TODO(lead): make these ``[chip]`` keys (a chip's design data, like its dilution ratio);
#: until then chips of 8 chambers use these, others an equal share.
REFERENCE_CHAMBER_FLOW_SHARE: Final = (0.0765,) * 8
REFERENCE_DILUENT_ONLY_SHARE: Final = (
    0.0385, 0.0806, 0.1005, 0.1105, 0.1157, 0.1184, 0.1199, 0.1206
)  # fmt: skip
REFERENCE_DRUG_ONLY_SHARE: Final = (
    0.1145, 0.0724, 0.0525, 0.0425, 0.0373, 0.0345, 0.0331, 0.0324
)  # fmt: skip
#: Share of the total inlet flow that passes through the chambers (not the bypass).
_CHAMBERS_TOTAL_SHARE: Final = 0.612
#: Defaults of the reference chip, used when a run's config has no ``[chip]`` table.
REFERENCE_CHIP: Final = ChipConfig(
    model="reference 8-chamber half-log dilution ladder (assumed: the config has no [chip])",
    n_chambers=8,
    dilution_ratio=10.0**-0.5,
    chamber_volume_ul=5.0,
    pressure_rating_kpa=300.0,
    dead_volume_ul={"medium": 102.2, "drug": 102.2, "aux": 53.1},
)
#: Drug and diluent rates within this relative difference count as the design point.
DESIGN_TOLERANCE: Final = 0.05
#: The drug has reached the chambers once one holds this share of the stock concentration
#: (the top chamber gets there within 1 % of its wash-in time constant).
ARRIVAL_FRACTION: Final = 0.01
#: A line that took in its dead volume within this (1 pL; rounding) has its front at the chip.
_VOLUME_EPS_UL: Final = 1e-6
#: Flows below this (uL/s, 0.06 nL/min) count as stopped.
_STOPPED_UL_S: Final = 1e-6
_SELECT = re.compile(r"select position (\d+)(?: \((.*)\))?")


@dataclass(frozen=True)
class InletSupply:
    """A pump feeding one chip inlet.

    Attributes:
        inlet: the chip inlet (``"medium"``, ``"drug"``, ``"aux"``).
        pump: the pump's device name.
        dead_volume_ul: liquid volume from the syringe to the chambers.
        contents_nm: what the syringe holds: species -> stock concentration (nM).
        ports: the pump's distribution-valve ports, if it has a valve.
    """

    inlet: str
    pump: str
    dead_volume_ul: float
    contents_nm: Mapping[str, float]
    ports: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ChipModel:
    """What the exposure model needs to know about the chip and its supply.

    Attributes:
        chamber_names: chamber position names, chamber 1 first.
        fractions: drug fraction per chamber at the design point.
        chamber_volume_ul: well-mixed volume of one chamber.
        flow_share: each chamber's flow as a share of the total inlet flow, with drug
            and diluent at equal rates (the design point).
        flow_share_diluent_only: the same with the diluent inlets alone.
        flow_share_drug_only: the same with the drug inlet alone.
        supplies: the pumps feeding the chip's inlets.
        notes: assumptions made while building the model (shown in reports).
    """

    chamber_names: tuple[str, ...]
    fractions: tuple[float, ...]
    chamber_volume_ul: float
    flow_share: tuple[float, ...]
    flow_share_diluent_only: tuple[float, ...]
    flow_share_drug_only: tuple[float, ...]
    supplies: tuple[InletSupply, ...]
    notes: tuple[str, ...] = ()

    @property
    def species(self) -> tuple[str, ...]:
        """Return every species any syringe holds, in supply order."""
        names: list[str] = []
        for supply in self.supplies:
            names += [s for s in supply.contents_nm if s not in names]
        return tuple(names)


def chip_model_from_config(
    config_text: str,
    source: str,
    *,
    syringe_contents: Mapping[str, Mapping[str, float]] | None = None,
) -> ChipModel:
    """Build the chip model from a run's stored instrument config text.

    The config is read with ``tomllib`` and only the keys the model needs are checked
    (``[chip]``, and ``inlet``, ``contents``, ``ports`` of each device), so configs of older
    or newer chipctl versions still analyse.

    Args:
        config_text: the instrument config text.
        source: where it came from, for messages.
        syringe_contents: pump -> contents declared by the protocol; these replace the
            config's ``contents`` of that pump.

    Raises:
        ConfigError: the text is not TOML, or a key the model needs is invalid.
    """
    try:
        data = tomllib.loads(config_text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, None, f"not valid TOML: {exc}") from None
    notes: list[str] = []
    if "chip" in data:
        chip = parse_chip(source, data["chip"])
    else:
        chip = REFERENCE_CHIP
        notes.append("the instrument config has no [chip] table: the reference chip is assumed")
    devices = data.get("devices", {})
    if not isinstance(devices, dict):
        raise ConfigError(source, "devices", "must be a table")
    supplies: list[InletSupply] = []
    for name, table in devices.items():
        if not isinstance(table, dict) or "inlet" not in table:
            continue
        inlet = table["inlet"]
        if not isinstance(inlet, str) or not inlet:
            raise ConfigError(source, f"devices.{name}.inlet", "must be an inlet name")
        contents = _contents(source, name, table.get("contents", {}))
        if syringe_contents is not None and name in syringe_contents:
            contents = {k: float(v) for k, v in syringe_contents[name].items()}
        if inlet not in chip.dead_volume_ul:
            raise ConfigError(
                source, "chip.dead_volume", f"no dead volume for inlet {inlet!r} (pump {name})"
            )
        ports = table.get("ports")
        port_names = tuple(str(p) for p in ports) if isinstance(ports, list) else None
        supplies.append(
            InletSupply(inlet, str(name), chip.dead_volume_ul[inlet], contents, port_names)
        )
    return ChipModel(
        chamber_names=tuple(chamber_name(i) for i in range(1, chip.n_chambers + 1)),
        fractions=chip.fractions(),
        chamber_volume_ul=chip.chamber_volume_ul,
        **_flow_shares(chip.n_chambers),
        supplies=tuple(supplies),
        notes=tuple(notes),
    )


def _flow_shares(n_chambers: int) -> dict[str, tuple[float, ...]]:
    if n_chambers == len(REFERENCE_CHAMBER_FLOW_SHARE):
        return {
            "flow_share": REFERENCE_CHAMBER_FLOW_SHARE,
            "flow_share_diluent_only": REFERENCE_DILUENT_ONLY_SHARE,
            "flow_share_drug_only": REFERENCE_DRUG_ONLY_SHARE,
        }
    equal = (_CHAMBERS_TOTAL_SHARE / n_chambers,) * n_chambers
    return {"flow_share": equal, "flow_share_diluent_only": equal, "flow_share_drug_only": equal}


def _contents(source: str, device: str, table: object) -> dict[str, float]:
    if not isinstance(table, dict):
        where = f"devices.{device}.contents"
        raise ConfigError(source, where, 'must be a table like { x = "10 nM" }')
    out: dict[str, float] = {}
    for species, text in table.items():
        try:
            out[str(species)] = parse_quantity(text, CONCENTRATION)
        except UnitError as exc:
            raise ConfigError(source, f"devices.{device}.contents.{species}", str(exc)) from None
    return out


# -- flows -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LineFlow:
    """What one pump pushed into its chip line, sample by sample.

    Attributes:
        t_s: sample times (increasing).
        volume_ul: cumulative net volume that entered the line at each sample.
        rate_ul_s: signed flow into the line from each sample to the next (the last
            sample's value holds after it).
    """

    t_s: FloatArray
    volume_ul: FloatArray
    rate_ul_s: FloatArray


def valve_connected(
    t_s: FloatArray, events: Sequence[Event], pump: str, ports: tuple[str, ...] | None
) -> NDArray[np.bool_]:
    """Return per sample whether the pump's valve is on its chip port (always without a valve)."""
    connected = np.ones(t_s.shape, dtype=bool)
    if ports is None:
        return connected
    changes: list[tuple[float, bool]] = []
    for event in events:
        if event.source != pump or event.kind != "command":
            continue
        match = _SELECT.match(event.message)
        if match is None:
            continue
        port = match.group(2)
        if port is None:
            number = int(match.group(1))
            port = ports[number - 1] if 1 <= number <= len(ports) else ""
        changes.append((event.t_s, port == CHIP_PORT))
    for t_change, on_chip in sorted(changes):
        connected[t_s >= t_change] = on_chip
    return connected


def line_flow(
    telemetry: Mapping[str, FloatArray],
    *,
    connected: NDArray[np.bool_] | None = None,
    pump: str = "pump",
) -> LineFlow:
    """Turn one pump's telemetry into the flow into its line.

    Between two samples where the pump runs at both, it runs at its logged set rate (volume
    counters of some pumps step in 0.1 uL, far too coarse at 0.5 uL/min over 10 s). Where it
    starts or stops between two samples, it runs at the set rate for as long as the counter
    moved, at the end or the start of the interval: so a priming step that pushes exactly
    one dead volume ends exactly there, not one sample later. Without a rate, the counter's
    slope is the flow; without a counter, the set rate is.

    Args:
        telemetry: the pump's telemetry columns (``t_s`` and some of ``delivered_ul``,
            ``infused_ul``/``withdrawn_ul``, ``rate_ul_min``, ``running``, ``stalled``).
        connected: per sample, whether the pump feeds the line (valve on the chip port).
        pump: the pump's name, for messages.

    Raises:
        InputError: no time column, or no volume counter and no rate.
    """
    if "t_s" not in telemetry:
        raise InputError(f"telemetry of pump {pump!r} has no t_s column")
    t = np.asarray(telemetry["t_s"], dtype=np.float64)
    counter: FloatArray | None = None
    if "delivered_ul" in telemetry:
        counter = np.asarray(telemetry["delivered_ul"], dtype=np.float64)
    elif "infused_ul" in telemetry and "withdrawn_ul" in telemetry:
        counter = np.asarray(telemetry["infused_ul"], dtype=np.float64) - np.asarray(
            telemetry["withdrawn_ul"], dtype=np.float64
        )
    rate: FloatArray | None = None
    running = np.zeros(t.shape, dtype=bool)
    if "rate_ul_min" in telemetry:
        rate = np.abs(_fill_nan(np.asarray(telemetry["rate_ul_min"], dtype=np.float64))) / 60.0
        running = rate > 0.0
        if "running" in telemetry:
            running &= np.asarray(telemetry["running"]) > 0.5
        if "stalled" in telemetry:
            running &= ~(np.asarray(telemetry["stalled"]) > 0.5)
    if counter is None and rate is None:
        raise InputError(f"telemetry of pump {pump!r} has neither a volume counter nor a rate")
    keep = np.isfinite(t)
    if not keep.all():
        t = t[keep]
        counter = None if counter is None else counter[keep]
        rate = None if rate is None else rate[keep]
        running = running[keep]
        connected = None if connected is None else connected[keep]
    if connected is None:
        connected = np.ones(t.shape, dtype=bool)
    if t.size < 2:
        return LineFlow(t.copy(), np.zeros(t.size), np.zeros(t.size))
    dt = np.diff(t)
    step = None if counter is None else np.diff(_fill_nan(counter))
    times: list[float] = [float(t[0])]
    flows: list[float] = []
    for i in range(t.size - 1):
        t0, t1 = float(t[i]), float(t[i + 1])
        if not connected[i] or dt[i] <= 0.0:
            _segment(times, flows, t1, 0.0)
            continue
        moved = None if step is None else float(step[i])
        if rate is None:
            assert moved is not None
            _segment(times, flows, t1, moved / dt[i])
            continue
        sign = -1.0 if moved is not None and moved < 0.0 else 1.0
        on0, on1 = bool(running[i]), bool(running[i + 1])
        if on0 and (on1 or moved is None):
            _segment(times, flows, t1, sign * float(rate[i]))
        elif on0:  # stopped within the interval: ran while the counter moved
            d = min(abs(moved or 0.0) / float(rate[i]), dt[i])
            _segment(times, flows, t0 + d, sign * float(rate[i]))
            _segment(times, flows, t1, 0.0)
        elif on1 and moved is not None:  # started within the interval
            d = min(abs(moved) / float(rate[i + 1]), dt[i])
            _segment(times, flows, t1 - d, 0.0)
            _segment(times, flows, t1, sign * float(rate[i + 1]))
        elif moved:  # a move entirely between two samples
            _segment(times, flows, t1, moved / dt[i])
        else:
            _segment(times, flows, t1, 0.0)
    t_out = np.asarray(times, dtype=np.float64)
    q = np.asarray(flows, dtype=np.float64)
    volume = np.concatenate([[0.0], np.cumsum(q * np.diff(t_out))])
    return LineFlow(t_out, volume, np.concatenate([q, [0.0]]))


def _segment(times: list[float], flows: list[float], t_end: float, q: float) -> None:
    """Append a constant-flow segment ending at ``t_end`` (empty segments are dropped)."""
    if t_end <= times[-1]:
        return
    times.append(t_end)
    flows.append(q)


def _fill_nan(values: FloatArray) -> FloatArray:
    bad = ~np.isfinite(values)
    if not bad.any():
        return values
    idx = np.arange(values.size)
    good = ~bad
    if not good.any():
        return np.zeros_like(values)
    filled: FloatArray = np.interp(idx, idx[good], values[good])
    return filled


def line_flows_from_run(run: RunFile, model: ChipModel) -> dict[str, LineFlow]:
    """Return the flow into each inlet's line from the run's telemetry and valve events.

    Raises:
        InputError: a supplying pump has no telemetry.
    """
    events = run.events()
    flows: dict[str, LineFlow] = {}
    for supply in model.supplies:
        try:
            telemetry = run.telemetry(supply.pump)
        except KeyError:
            raise InputError(
                f"{run.path}: no telemetry for pump {supply.pump!r} (inlet {supply.inlet})"
            ) from None
        t = np.asarray(telemetry["t_s"], dtype=np.float64)
        connected = valve_connected(t, events, supply.pump, supply.ports)
        flows[supply.inlet] = line_flow(telemetry, connected=connected, pump=supply.pump)
    return flows


# -- exposure --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChamberExposure:
    """Delivered concentration of one species in every chamber over time.

    Attributes:
        species: the drug.
        positions: chamber names, in column order.
        t_s: sample times.
        conc_nm: concentration per sample and chamber (times x chambers), nM.
        nominal_nm: design fraction x stock concentration per chamber (the plateau at the
            design point), nM.
        arrival_s: when the drug reached the chambers: the first time a chamber holds
            :data:`ARRIVAL_FRACTION` of the stock concentration (NaN: never). This is the
            ``x0`` time of GR, not the pump switch (the front needs ``V_dead / Q``).
        front_s: when the drug front first reached the chip (NaN: never); a front that
            arrives while the drug pump then stops (a primed line) is not yet exposure.
        off_design_s: time during which drug flowed with drug and diluent rates off the
            design point (the fractions are then uncertain).
        notes: assumptions of the model.
    """

    species: str
    positions: tuple[str, ...]
    t_s: FloatArray
    conc_nm: FloatArray
    nominal_nm: FloatArray
    arrival_s: float
    front_s: float
    off_design_s: float
    notes: tuple[str, ...] = field(default=())

    def at(self, t_s: float) -> FloatArray:
        """Return each chamber's concentration at ``t_s`` (linear between samples), nM."""
        if self.t_s.size == 0:
            return np.zeros(len(self.positions))
        return np.array(
            [np.interp(t_s, self.t_s, self.conc_nm[:, k]) for k in range(len(self.positions))]
        )

    def mean_nm(self, t0_s: float, t1_s: float) -> FloatArray:
        """Return each chamber's time-averaged concentration over ``t0_s .. t1_s``, nM."""
        if not t1_s > t0_s or self.t_s.size == 0:
            return self.at(t0_s)
        inside = (self.t_s > t0_s) & (self.t_s < t1_s)
        t = np.concatenate([[t0_s], self.t_s[inside], [t1_s]])
        c = np.vstack([self.at(t0_s), self.conc_nm[inside], self.at(t1_s)])
        result: FloatArray = np.trapezoid(c, t, axis=0) / (t1_s - t0_s)
        return result

    def on_time_s(self, t0_s: float, t1_s: float) -> float:
        """Return how long within ``t0_s .. t1_s`` the drug was on.

        That is the time the most exposed chamber spent at or above half its highest
        concentration of the window.
        """
        if not t1_s > t0_s or self.t_s.size == 0:
            return 0.0
        inside = (self.t_s > t0_s) & (self.t_s < t1_s)
        t = np.concatenate([[t0_s], self.t_s[inside], [t1_s]])
        top = int(np.argmax(self.nominal_nm))
        c = np.interp(t, self.t_s, self.conc_nm[:, top])
        if not np.max(c) > 0.0:
            return 0.0
        on = c >= 0.5 * np.max(c)
        return float(np.sum(np.diff(t)[on[:-1] & on[1:]]))

    def effective_nm(self, t0_s: float, t1_s: float) -> FloatArray:
        """Return each chamber's concentration while the drug was on, over ``t0_s .. t1_s``.

        The exposure (area under the concentration curve) divided by :meth:`on_time_s`: the
        plateau of a constant exposure, whatever its wash-in, wash-out and drug-free time
        in the window, and lower when delivery faltered. This is the concentration a
        chamber's dose-response point stands for, as a dose is reported with its duration.
        """
        on_s = self.on_time_s(t0_s, t1_s)
        if on_s <= 0.0:
            return np.zeros(len(self.positions))
        result: FloatArray = self.mean_nm(t0_s, t1_s) * (t1_s - t0_s) / on_s
        return result

    def sample_indices(self, step: float = 0.002, every_s: float = 600.0) -> NDArray[np.int64]:
        """Return the indices of the samples worth keeping for storage and plots.

        A sample is kept where a chamber moved by ``step`` of its level since the last kept
        one (with the sample before it, so steps stay steps), and at least every ``every_s``.
        """
        conc, t = self.conc_nm, self.t_s
        if t.size <= 2:
            return np.arange(t.size, dtype=np.int64)
        scale = np.maximum(self.nominal_nm, np.max(np.abs(conc), axis=0)) * step
        scale = np.where(scale > 0.0, scale, 1.0)
        keep = [0]
        last_c, last_t = conc[0], t[0]
        for i in range(1, t.size - 1):
            if np.any(np.abs(conc[i] - last_c) > scale) or t[i] - last_t >= every_s:
                if keep[-1] != i - 1:
                    keep.append(i - 1)
                keep.append(i)
                last_c, last_t = conc[i], t[i]
        keep.append(t.size - 1)
        return np.unique(np.asarray(keep, dtype=np.int64))

    def time_to_fraction_s(self, fraction: float = 0.5) -> FloatArray:
        """Return, per chamber, when it first reached ``fraction`` of its nominal level (NaN)."""
        out = np.full(len(self.positions), math.nan)
        for k in range(len(self.positions)):
            target = fraction * self.nominal_nm[k]
            if target <= 0.0:
                continue
            hit = np.flatnonzero(self.conc_nm[:, k] >= target)
            if hit.size:
                out[k] = self.t_s[hit[0]]
        return out


def _front_crossings(flow: LineFlow, level_ul: float) -> FloatArray:
    """Times at which the line's cumulative volume crosses ``level_ul`` (either way)."""
    v = flow.volume_ul - level_ul + _VOLUME_EPS_UL
    above = v >= 0.0
    times: list[float] = []
    for i in np.flatnonzero(above[:-1] != above[1:]):
        v0, v1 = v[i], v[i + 1]
        frac = min(max(-v0 / (v1 - v0), 0.0), 1.0)
        times.append(float(flow.t_s[i] + frac * (flow.t_s[i + 1] - flow.t_s[i])))
    return np.asarray(times, dtype=np.float64)


def compute_exposure(model: ChipModel, flows: Mapping[str, LineFlow]) -> list[ChamberExposure]:
    """Compute every species' delivered concentration in every chamber.

    Args:
        model: the chip and its supply.
        flows: flow into each inlet's line (by inlet name), as from
            :func:`line_flows_from_run`.

    Returns:
        One :class:`ChamberExposure` per species any syringe holds (in supply order).
    """
    species = model.species
    if not species:
        return []
    n_ch = len(model.chamber_names)
    supplies = [s for s in model.supplies if s.inlet in flows and flows[s.inlet].t_s.size]
    if not supplies:
        return []
    grid = np.unique(np.concatenate([flows[s.inlet].t_s for s in supplies]))
    arrivals: dict[str, float] = {}
    extra: list[FloatArray] = []
    for s in supplies:
        crossings = _front_crossings(flows[s.inlet], s.dead_volume_ul)
        extra.append(crossings)
        ahead = crossings[np.isfinite(crossings)]
        if s.contents_nm and ahead.size:
            arrivals[s.inlet] = float(ahead[0])
    grid = np.unique(np.concatenate([grid, *extra]))
    n_t = grid.size
    mid = 0.5 * (grid[:-1] + grid[1:]) if n_t > 1 else grid
    # per inlet: flow (uL/s, >= 0 into the chip) and line-end concentration, per interval
    q = np.zeros((len(supplies), max(n_t - 1, 0)))
    c_end = np.zeros((len(supplies), len(species), max(n_t - 1, 0)))
    for i, s in enumerate(supplies):
        f = flows[s.inlet]
        idx = np.clip(np.searchsorted(f.t_s, mid, side="right") - 1, 0, f.t_s.size - 1)
        inside = (mid >= f.t_s[0]) & (mid <= f.t_s[-1])
        q[i] = np.where(inside, np.maximum(f.rate_ul_s[idx], 0.0), 0.0)
        volume_mid = np.interp(mid, f.t_s, f.volume_ul)
        arrived = volume_mid >= s.dead_volume_ul - _VOLUME_EPS_UL
        for j, name in enumerate(species):
            c_end[i, j] = np.where(arrived, s.contents_nm.get(name, 0.0), 0.0)
    is_drug = np.array([s.inlet == DRUG_INLET for s in supplies])
    q_drug = q[is_drug].sum(axis=0)
    q_dil = q[~is_drug].sum(axis=0)
    q_total = q_drug + q_dil
    with np.errstate(invalid="ignore", divide="ignore"):
        c_drug = np.where(
            q_drug > 0, np.einsum("is,ijs->js", q[is_drug], c_end[is_drug]) / q_drug, 0.0
        )
        c_dil = np.where(
            q_dil > 0, np.einsum("is,ijs->js", q[~is_drug], c_end[~is_drug]) / q_dil, 0.0
        )
    fractions = np.asarray(model.fractions, dtype=np.float64)
    share = np.zeros((n_ch, q_total.size))
    drug_only = (q_drug > _STOPPED_UL_S) & (q_dil <= _STOPPED_UL_S)
    both = (q_drug > _STOPPED_UL_S) & (q_dil > _STOPPED_UL_S)
    share[:, drug_only] = 1.0
    share[:, both] = fractions[:, None]
    dt = np.diff(grid)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(both, q_drug / np.where(q_dil > 0, q_dil, 1.0), 1.0)
    off = both & (np.abs(ratio - 1.0) > DESIGN_TOLERANCE) & (c_drug.max(axis=0) > 0.0)
    off_design_s = float(np.sum(dt[off]))
    flow_share = np.zeros((n_ch, q_total.size))
    flow_share[:, both] = np.asarray(model.flow_share, dtype=np.float64)[:, None]
    flow_share[:, drug_only] = np.asarray(model.flow_share_drug_only, dtype=np.float64)[:, None]
    dil_only = (q_dil > _STOPPED_UL_S) & ~both & ~drug_only
    flow_share[:, dil_only] = np.asarray(model.flow_share_diluent_only, dtype=np.float64)[:, None]
    decay = np.exp(-flow_share * (q_total * dt)[None, :] / model.chamber_volume_ul)
    results: list[ChamberExposure] = []
    for j, name in enumerate(species):
        feed = share * c_drug[j][None, :] + (1.0 - share) * c_dil[j][None, :]
        conc = _cstr(feed, decay, n_ch)
        stock = max(
            (s.contents_nm.get(name, 0.0) for s in supplies if s.inlet == DRUG_INLET),
            default=0.0,
        )
        front = min(
            (arrivals[s.inlet] for s in supplies if s.inlet in arrivals and name in s.contents_nm),
            default=math.nan,
        )
        reached = np.flatnonzero(conc.max(axis=1) >= ARRIVAL_FRACTION * stock)
        arrival = float(grid[reached[0]]) if stock > 0.0 and reached.size else math.nan
        results.append(
            ChamberExposure(
                species=name,
                positions=model.chamber_names,
                t_s=grid,
                conc_nm=conc,
                nominal_nm=fractions * stock,
                arrival_s=arrival,
                front_s=front,
                off_design_s=off_design_s,
                notes=model.notes,
            )
        )
    return results


def _cstr(feed: FloatArray, decay: FloatArray, n_ch: int) -> FloatArray:
    """Integrate well-mixed chambers over intervals of constant feed (exact per interval).

    ``feed`` and ``decay`` are (chambers x intervals). Runs of intervals with the same feed
    compose exactly (``exp`` of the summed flow), so the loop is over runs, not samples.
    """
    n_int = decay.shape[1]
    conc = np.zeros((n_int + 1, n_ch))
    if n_int == 0:
        return conc
    change = np.any(feed[:, 1:] != feed[:, :-1], axis=0)
    starts = np.concatenate([[0], np.flatnonzero(change) + 1])
    ends = np.concatenate([starts[1:], [n_int]])
    c = np.zeros(n_ch)
    with np.errstate(divide="ignore"):
        log_decay = np.log(np.maximum(decay, 1e-300))
    for a, b in zip(starts, ends):
        c_in = feed[:, a]
        kept = np.exp(np.cumsum(log_decay[:, a:b], axis=1)).T
        conc[a + 1 : b + 1] = c_in[None, :] + (c - c_in)[None, :] * kept
        c = conc[b]
    return conc


def exposure_from_run(
    run: RunFile, *, syringe_contents: Mapping[str, Mapping[str, float]] | None = None
) -> tuple[ChipModel, list[ChamberExposure]]:
    """Build the chip model from the run's config and compute every species' exposure.

    Args:
        run: an open run file.
        syringe_contents: pump -> contents declared by the protocol (override the config).

    Raises:
        ConfigError: the stored config lacks what the model needs.
        InputError: a supplying pump has no usable telemetry.
    """
    model = chip_model_from_config(
        run.config_text, f"{run.path}:/config/text", syringe_contents=syringe_contents
    )
    return model, compute_exposure(model, line_flows_from_run(run, model))


def describe(exposure: ChamberExposure) -> dict[str, Any]:
    """Return a short summary of an exposure for logs and the CLI."""
    return {
        "species": exposure.species,
        "arrival_s": exposure.arrival_s,
        "nominal_nm": [float(x) for x in exposure.nominal_nm],
        "off_design_s": exposure.off_design_s,
    }
