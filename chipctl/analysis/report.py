"""``chipctl report``: lab-meeting figures and a one-page HTML summary of a run.

Figures (PNG, matplotlib with the Agg backend, so no display is needed):

* ``fluidics.png``: pump rates and the outlet flow sensor over the run, every logged
  pressure (the simulated chip's true pressures are labelled as such), alarms from
  ``/events`` as red lines, the drug's arrival at the chambers as a dashed line;
* ``exposure.png``: the delivered concentration per chamber over the run (log scale) and
  the wash-in around the drug's arrival;
* ``growth.png``: the typical tumoroid's growth per chamber since the drug arrived, and the
  time-resolved GR;
* ``dose_response.png``: GR and relative growth against concentration, with the fits,
  their bootstrap 95 % bands, GR50 / IC50 and GR_max;
* ``montage.png``: the first and last brightfield frame of every chamber with the
  segmented tumoroid outlines.

``index.html`` states the answer in words first (``"t-vc-mmae: GR50 3.1 nM [2.4-4.0],
GR_max -0.4: cytotoxic at <= 20 nM"``), then the numbers, the caveats and the figures.
Every name written into the output folder is a constant of this module: nothing read from
the run file becomes part of a path, and every text from it is HTML-escaped.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from numpy.typing import NDArray

from chipctl.analysis.gr import (
    DoseResponse,
    DrugAnalysis,
    Interval,
    RunAnalysis,
    format_conc,
    format_interval,
    format_number,
    verdict,
)
from chipctl.chip import chamber_of
from chipctl.runfile.images import image_stacks
from chipctl.runfile.reader import Event, RunFile

__all__ = [
    "FIGURES",
    "INDEX",
    "describe_drug",
    "summary_lines",
    "write_report",
]

FloatArray = NDArray[np.float64]

INDEX: Final = "index.html"
FIG_FLUIDICS: Final = "fluidics.png"
FIG_EXPOSURE: Final = "exposure.png"
FIG_GROWTH: Final = "growth.png"
FIG_DOSE: Final = "dose_response.png"
FIG_MONTAGE: Final = "montage.png"
#: Every figure the report can write, in page order.
FIGURES: Final = (FIG_DOSE, FIG_GROWTH, FIG_EXPOSURE, FIG_FLUIDICS, FIG_MONTAGE)
_DPI: Final = 110
_H: Final = 3600.0
#: The pseudo-device of a simulated run's ground truth (pressures, flows, concentrations).
_SIM_TRUTH_DEVICE: Final = "chip"
#: Line styles cycled over flow traces, so equal rates stay distinguishable.
_LINE_STYLES: Final = ("-", "--", ":", "-.")
#: Brightfield channel names (the montage shows the first one found).
_BRIGHTFIELD: Final = ("brightfield", "bf", "phase")


# -- words ---------------------------------------------------------------------------------


def describe_drug(drug: DrugAnalysis) -> list[str]:
    """Return the caveats of one drug's readout, one sentence each."""
    r = drug.response
    lines = list(drug.qc)
    lo, hi = float(np.min(r.conc_nm)), float(np.max(r.conc_nm))
    before = format_conc(r.gr50_nm, lo, hi)
    after = format_conc(drug.gr50_control_corrected_nm, lo, hi)
    if drug.control_conc_nm > 0.0 and r.fit.sigmoid and before != after:
        lines.append(
            "treating the control as untreated biases GR upward; correcting for its fitted "
            f"GR moves GR50 from {before} to {after}"
        )
    if r.reference:
        why = "on the fit's untreated plateau" if r.fit.sigmoid else "no dose dependence"
        lines.append(
            f"untreated growth: {', '.join(r.control)} pooled with {', '.join(r.reference)} "
            f"({why}): {math.log2(r.reference_fold):.2f} doublings, against "
            f"{math.log2(r.control_fold):.2f} for the control alone"
        )
    lines.append(
        f"intervals: {r.n_boot} bootstrap replicates over "
        + ("tumoroids within each chamber" if r.ci_method == "tumoroids" else r.ci_method)
    )
    return lines


# -- figures -------------------------------------------------------------------------------


def _hours(t_s: FloatArray) -> FloatArray:
    result: FloatArray = np.asarray(t_s, dtype=np.float64) / _H
    return result


def _colours(n: int) -> list[Any]:
    cmap = plt.get_cmap("viridis")
    return [cmap(0.9 * k / max(n - 1, 1)) for k in range(n)]


def _mark_events(axes: Sequence[Any], alarms: Sequence[Event], arrival_s: float) -> None:
    for ax in axes:
        for event in alarms:
            ax.axvline(event.t_s / _H, color="red", lw=1.0, alpha=0.8)
        if math.isfinite(arrival_s):
            ax.axvline(arrival_s / _H, color="k", ls="--", lw=0.8, alpha=0.6)
    if alarms:
        top = axes[0]
        for event in alarms[:12]:
            top.annotate(
                event.source,
                (event.t_s / _H, 1.0),
                xycoords=("data", "axes fraction"),
                color="red",
                fontsize=7,
                rotation=90,
                va="top",
                ha="right",
            )


def fluidics_figure(run: RunFile, arrival_s: float) -> Figure:
    """Pump rates, flow sensor and pressures over the run, with alarms and drug arrival."""
    fig, (ax_q, ax_p) = plt.subplots(2, 1, figsize=(10, 6), sharex=True, layout="constrained")
    simulated = bool(run.attrs.get("simulated", False))
    pressures = flows = 0
    for device in run.telemetry_devices():
        tel, units = run.telemetry(device), run.units(device)
        t = _hours(tel["t_s"])
        truth = simulated and device == _SIM_TRUTH_DEVICE
        for column, unit in units.items():
            if column == "t_s":
                continue
            if unit == "kPa":
                label = f"{device} {column.removesuffix('_kpa')}" + (
                    " (simulated truth)" if truth else ""
                )
                ax_p.plot(t, tel[column], lw=1.0, label=label)
                pressures += 1
            elif unit == "uL/min" and not truth:
                kind = "set rate" if column == "rate_ul_min" else column.removesuffix("_ul_min")
                kind = "" if kind == device else f" {kind}"
                style = _LINE_STYLES[flows % len(_LINE_STYLES)]
                ax_q.step(t, tel[column], where="post", lw=1.2, ls=style, label=f"{device}{kind}")
                flows += 1
    ax_q.set_yscale("symlog", linthresh=1.0)
    ax_q.set_ylabel("flow (uL/min)")
    ax_q.legend(fontsize=7, ncol=3, loc="upper right")
    ax_q.set_title("Fluidics: pump rates and outlet flow (red: alarms; dashed: drug arrival)")
    if pressures:
        ax_p.legend(fontsize=7, ncol=2, loc="upper right")
    else:
        ax_p.text(0.5, 0.5, "no pressure was logged", ha="center", transform=ax_p.transAxes)
    ax_p.set_ylabel("pressure (kPa)")
    ax_p.set_xlabel("run time (h)")
    alarms = [e for e in run.events() if e.kind == "alarm"]
    _mark_events([ax_q, ax_p], alarms, arrival_s)
    return fig


def exposure_figure(analysis: RunAnalysis) -> Figure:
    """Delivered concentration per chamber: the whole run, and the wash-in."""
    n = max(len(analysis.exposures), 1)
    fig, axes = plt.subplots(n, 2, figsize=(11, 3.6 * n), squeeze=False, layout="constrained")
    for row, exposure in enumerate(analysis.exposures):
        colours = _colours(len(exposure.positions))
        keep = exposure.sample_indices()
        t = _hours(exposure.t_s[keep])
        floor = max(float(np.max(exposure.nominal_nm)) * 1e-6, 1e-9)
        for ax in axes[row]:
            for k, position in enumerate(exposure.positions):
                conc = np.maximum(exposure.conc_nm[keep, k], floor)
                ax.plot(t, conc, color=colours[k], lw=1.2, label=position)
                if exposure.nominal_nm[k] > 0:
                    ax.axhline(exposure.nominal_nm[k], color=colours[k], ls=":", lw=0.6)
            ax.set_yscale("log")
            ax.set_ylim(
                bottom=max(
                    float(np.min(exposure.nominal_nm[exposure.nominal_nm > 0])) / 30.0, floor
                )
                if np.any(exposure.nominal_nm > 0)
                else floor
            )
            ax.set_ylabel(f"{exposure.species} (nM)")
            ax.set_xlabel("run time (h)")
            if math.isfinite(exposure.arrival_s):
                ax.axvline(exposure.arrival_s / _H, color="k", ls="--", lw=0.8)
        axes[row][0].set_title(f"{exposure.species}: delivered concentration (dotted: design)")
        axes[row][0].legend(fontsize=7, ncol=2)
        if math.isfinite(exposure.arrival_s):
            a = exposure.arrival_s / _H
            axes[row][1].set_xlim(a - 0.5, a + 2.5)
            axes[row][1].set_title(
                f"wash-in: drug at the chambers at {exposure.arrival_s / 60:.0f} min (dashed)"
            )
        else:
            axes[row][1].set_title("the drug never reached the chambers")
    if not analysis.exposures:
        axes[0][0].text(0.5, 0.5, "no drug in any syringe", ha="center")
    return fig


def growth_figure(analysis: RunAnalysis) -> Figure:
    """Typical tumoroid growth per chamber since the drug arrived, and time-resolved GR."""
    n = max(len(analysis.drugs), 1)
    fig, axes = plt.subplots(n, 2, figsize=(11, 3.8 * n), squeeze=False, layout="constrained")
    for row, drug in enumerate(analysis.drugs):
        r = drug.response
        positions = list(drug.series)
        colours = dict(zip(positions, _colours(len(positions))))
        conc = dict(zip(r.positions, r.conc_nm))
        ax, ax_gr = axes[row]
        for p in positions:
            t, log_fold = drug.series[p]
            is_control = p in r.control
            label = (
                f"{p} (control)"
                if is_control
                else f"{p}: {format_number(conc.get(p, math.nan))} nM"
            )
            ax.plot(
                _hours(t),
                log_fold,
                color="k" if is_control else colours[p],
                lw=2.2 if is_control else 1.2,
                label=label,
            )
        ax.axvline(drug.t0_s / _H, color="k", ls="--", lw=0.8)
        ax.axvline(drug.t1_s / _H, color="grey", ls=":", lw=0.8)
        ax.axhline(0.0, color="grey", lw=0.5)
        ax.set_xlabel("run time (h)")
        ax.set_ylabel("log2 fold since drug arrival")
        ax.set_title(f"{drug.species}: growth of the typical tumoroid per chamber")
        ax.legend(fontsize=7, ncol=2)
        for p, (t, gr) in drug.time_resolved.items():
            ax_gr.plot(_hours(t), gr, color=colours.get(p), lw=1.2)
        ax_gr.axhline(0.0, color="grey", lw=0.5)
        ax_gr.axhline(1.0, color="grey", lw=0.5, ls=":")
        ax_gr.set_ylim(-1.05, 1.5)
        ax_gr.set_xlabel("run time (h)")
        ax_gr.set_ylabel("GR(t)")
        ax_gr.set_title(f"time-resolved GR ({drug.time_window_s / _H:.0f} h window)")
    if not analysis.drugs:
        axes[0][0].text(0.5, 0.5, "no drug could be analysed", ha="center")
    return fig


def _dose_panel(
    ax: Any, r: DoseResponse, relative: bool, brightfield: DoseResponse | None = None
) -> None:
    conc = r.conc_nm
    y = r.relative if relative else r.gr
    fit = r.relative_fit if relative else r.fit
    grid = r.band_conc_nm if r.band_conc_nm.size else np.geomspace(conc.min(), conc.max(), 50)
    if not relative and r.band_low.size and np.all(np.isfinite(r.band_low)):
        ax.fill_between(grid, r.band_low, r.band_high, color="C0", alpha=0.2, label="95 % band")
    ax.plot(grid, fit(grid), color="C0", lw=1.5, label="fit" if fit.sigmoid else "flat (F-test)")
    ax.plot(conc, y, "o", color="C1", label="chambers")
    if brightfield is not None and not relative:
        ax.plot(
            brightfield.conc_nm,
            brightfield.gr,
            "s",
            mfc="none",
            color="grey",
            label="brightfield volume only",
        )
    for c, v, p in zip(conc, y, r.positions):
        ax.annotate(
            p.replace("chamber ", "#"),
            (c, v),
            fontsize=6,
            xytext=(3, 3),
            textcoords="offset points",
        )
    ax.set_xscale("log")
    ax.set_xlabel(f"{r.species} delivered (nM)")
    ax.axhline(0.0 if not relative else 0.5, color="grey", lw=0.5)
    if relative:
        ax.set_ylabel("relative growth (vs control)")
        if math.isfinite(r.ic50_nm) and r.ic50_nm > 0:
            ax.axvline(
                r.ic50_nm, color="C2", ls="--", lw=1.0, label=f"IC50 {format_number(r.ic50_nm)} nM"
            )
        ax.set_title("relative growth and IC50")
    else:
        ax.axhline(0.5, color="grey", lw=0.5, ls=":")
        ax.axhline(1.0, color="grey", lw=0.5, ls=":")
        ax.set_ylabel("GR")
        ax.set_ylim(-1.05, 1.5)
        if math.isfinite(r.gr50_nm) and r.gr50_nm > 0:
            ci = r.ci.get("gr50_nm", Interval())
            ax.axvline(
                r.gr50_nm, color="C2", ls="--", lw=1.0, label=f"GR50 {format_number(r.gr50_nm)} nM"
            )
            if math.isfinite(ci.low) and math.isfinite(ci.high) and ci.low > 0:
                ax.plot([ci.low, ci.high], [0.5, 0.5], color="C2", lw=3, alpha=0.6)
        ax.axhline(r.gr_max, color="C3", lw=0.8, ls="-.", label=f"GRmax {r.gr_max:.2f}")
        pooled = [p.replace("chamber ", "") for p in r.reference]
        extra = f" + {', '.join(pooled)}" if pooled else ""
        ax.set_title(f"{r.species}: GR (untreated: {', '.join(r.control)}{extra})")
    ax.legend(fontsize=7, loc="lower left")


def dose_response_figure(analysis: RunAnalysis) -> Figure:
    """GR and relative growth against delivered concentration, with fits and bands."""
    n = max(len(analysis.drugs), 1)
    fig, axes = plt.subplots(n, 2, figsize=(11, 4.2 * n), squeeze=False, layout="constrained")
    for row, drug in enumerate(analysis.drugs):
        _dose_panel(axes[row][0], drug.response, relative=False, brightfield=drug.brightfield)
        _dose_panel(axes[row][1], drug.response, relative=True)
    if analysis.drugs:
        fig.suptitle("\n".join(verdict(d.response).sentence for d in analysis.drugs), fontsize=10)
    if not analysis.drugs:
        axes[0][0].text(0.5, 0.5, "no drug could be analysed", ha="center")
    return fig


def _outline(labels: NDArray[Any], factor: int) -> NDArray[np.bool_]:
    """Boundaries of a label image, thickened to survive ``factor``x downsampling."""
    from scipy import ndimage

    edge = labels != ndimage.grey_erosion(labels, size=(3, 3))
    edge &= labels > 0
    edge = ndimage.binary_dilation(edge, iterations=max(factor // 2, 1))
    h, w = (edge.shape[0] // factor) * factor, (edge.shape[1] // factor) * factor
    small: NDArray[np.bool_] = (
        edge[:h, :w].reshape(h // factor, factor, w // factor, factor).any(axis=(1, 3))
    )
    return small


def montage_figure(run: RunFile, factor: int = 4) -> Figure | None:
    """First and last brightfield frame of every chamber, with segmentation outlines.

    A chamber imaged in several fields shows its middle one (the figure stays one column
    per chamber; the analysis counts every field).
    """
    from chipctl.analysis.segment import segment_brightfield

    by_chamber: dict[str, list[Any]] = {}
    for stack in image_stacks(run):
        if stack.channel in _BRIGHTFIELD and stack.n_frames > 0:
            by_chamber.setdefault(chamber_of(stack.position), []).append(stack)
    stacks = [
        sorted(fields, key=lambda s: s.position)[(len(fields) - 1) // 2]
        for fields in by_chamber.values()
    ]
    if not stacks:
        return None
    n = len(stacks)
    fig, axes = plt.subplots(
        2, n, figsize=(1.6 * n + 0.6, 3.8), squeeze=False, layout="constrained"
    )
    for col, stack in enumerate(stacks):
        for row, index in enumerate((0, stack.n_frames - 1)):
            ax = axes[row][col]
            frame = np.asarray(run.frames(stack.frames_path)[index], dtype=np.float64)
            h, w = (frame.shape[0] // factor) * factor, (frame.shape[1] // factor) * factor
            small = (
                frame[:h, :w].reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3))
            )
            lo, hi = np.percentile(small, [1, 99.5])
            ax.imshow(small, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
            try:
                seg = segment_brightfield(frame, stack.pixel_size_um or 1.0)
                edges = _outline(seg.labels, factor)
                overlay = np.zeros((*edges.shape, 4))
                overlay[edges] = (0.1, 1.0, 0.2, 1.0)
                ax.imshow(overlay, interpolation="nearest")
                count = seg.n
            except ValueError:
                count = 0
            meta_t = run.table(stack.meta_path)["t_s"]
            t_h = float(meta_t[index]) / _H if index < len(meta_t) else math.nan
            ax.set_title(f"{stack.position}\n{t_h:.0f} h, n={count}", fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
    several = any(chamber_of(s.position) != s.position for s in stacks)
    where = "the middle field of each chamber, " if several else ""
    fig.suptitle(
        f"Brightfield, {where}first and last time point, segmented tumoroids in green",
        fontsize=9,
    )
    return fig


# -- the page ------------------------------------------------------------------------------


_STYLE: Final = """
body { font-family: sans-serif; max-width: 1150px; margin: 1.5em auto; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
.answer { font-size: 1.2em; background: #eef5ee; padding: 0.6em 0.9em; border-radius: 4px; }
.sim { color: #a33; font-weight: bold; }
table { border-collapse: collapse; font-size: 0.9em; }
td, th { border: 1px solid #ccc; padding: 2px 8px; text-align: right; }
th { background: #f2f2f2; } td.l, th.l { text-align: left; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.5em 0; }
.caveat { color: #6a4a00; }
"""


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _ci_cell(value: float, ci: Interval, fmt: Callable[[float], str]) -> str:
    return _esc(fmt(value) + format_interval(ci, fmt))


def _drug_tables(drug: DrugAnalysis) -> str:
    r = drug.response
    lo, hi = float(np.min(r.conc_nm)), float(np.max(r.conc_nm))

    def conc_fmt(v: float) -> str:
        return format_conc(v, lo, hi)

    def num_fmt(v: float) -> str:
        return f"{v:.3g}"

    rows = [
        ("GR50", _ci_cell(r.gr50_nm, r.ci.get("gr50_nm", Interval()), conc_fmt)),
        ("GRmax", _ci_cell(r.gr_max, r.ci.get("gr_max", Interval()), num_fmt)),
        ("GR_AOC", _ci_cell(r.gr_aoc, r.ci.get("gr_aoc", Interval()), num_fmt)),
        ("GR_inf (fit)", _ci_cell(r.fit.y_inf, r.ci.get("gr_inf", Interval()), num_fmt)),
        ("GEC50 (fit)", _ci_cell(r.fit.ec50_nm, r.ci.get("gec50_nm", Interval()), conc_fmt)),
        ("Hill h (fit)", _ci_cell(r.fit.hill, r.ci.get("hill", Interval()), num_fmt)),
        ("F-test p (sigmoid vs flat)", _esc(f"{r.fit.p_value:.2g}")),
        ("IC50 (relative growth)", _ci_cell(r.ic50_nm, r.ci.get("ic50_nm", Interval()), conc_fmt)),
        ("Emax (relative growth)", _ci_cell(r.e_max, r.ci.get("e_max", Interval()), num_fmt)),
    ]
    metrics = "".join(f"<tr><th class='l'>{_esc(k)}</th><td>{v}</td></tr>" for k, v in rows)
    conc = dict(zip(r.positions, r.conc_nm))
    gr = dict(zip(r.positions, r.gr))
    rel = dict(zip(r.positions, r.relative))
    bf = drug.brightfield
    bf_gr = dict(zip(bf.positions, bf.gr)) if bf is not None else {}
    body = []
    for p in drug.series:
        is_control = p in r.control
        body.append(
            "<tr>"
            f"<td class='l'>{_esc(p)}{' (control)' if is_control else ''}</td>"
            f"<td>{_esc(format_number(conc.get(p, drug.control_conc_nm)))}</td>"
            f"<td>{drug.n_tumoroids.get(p, 0)}</td>"
            f"<td>{_esc(f'{drug.lost_fraction.get(p, math.nan):.0%}')}</td>"
            f"<td>{_esc('1 (reference)' if is_control else f'{gr.get(p, math.nan):.2f}')}</td>"
            f"<td>{_esc('1' if is_control else f'{rel.get(p, math.nan):.2f}')}</td>"
            f"<td>{_esc('1' if is_control else f'{bf_gr.get(p, math.nan):.2f}')}</td>"
            "</tr>"
        )
    chambers = "".join(body)
    return (
        f"<table>{metrics}</table>"
        "<h3>Per chamber</h3><table><tr><th class='l'>chamber</th><th>delivered (nM, mean)</th>"
        "<th>tumoroids</th><th>lost</th><th>GR</th><th>relative growth</th>"
        "<th>GR, brightfield only</th></tr>"
        f"{chambers}</table>"
    )


def _page(run: RunFile, analysis: RunAnalysis, figures: Sequence[str]) -> str:
    attrs = run.attrs
    simulated = bool(attrs.get("simulated", False))
    title = f"{run.protocol_name} - {attrs.get('instrument', '')}"
    head = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{_esc(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{_esc(title)}</h1>",
        f"<p>Run file <code>{_esc(run.path.name)}</code>, started {_esc(attrs.get('started_utc'))}"
        f", status {_esc(run.status)}"
        + (
            f", <span class='sim'>SIMULATED (seed {_esc(attrs.get('seed'))})</span>"
            if simulated
            else ""
        )
        + "</p>",
    ]
    answers = [
        f"<p class='answer'>{_esc(verdict(d.response).sentence)}</p>" for d in analysis.drugs
    ]
    answers += [f"<p class='answer caveat'>{_esc(p)}</p>" for p in analysis.problems]
    if not answers:
        answers.append("<p class='answer'>No drug in this run could be analysed.</p>")
    parts = [*head, "<h2>Answer</h2>", *answers]
    for drug in analysis.drugs:
        amount = (
            "viable volume: brightfield x live/dead stain" if drug.viable else "brightfield volume"
        )
        window = (
            f"GR over {drug.t0_s / _H:.2f} h (drug at the chambers) to {drug.t1_s / _H:.1f} h "
            f"(readout, {amount}); drug on for {drug.on_s / _H:.1f} h; concentrations are "
            "those received while it was on"
        )
        control = ", ".join(drug.response.control)
        parts += [
            f"<h2>{_esc(drug.species)}</h2>",
            f"<p>{_esc(window)}; control: {_esc(control)}"
            + (" (assumed: the protocol names no control)" if analysis.control_assumed else "")
            + (f"; excluded: {_esc(', '.join(drug.excluded))}" if drug.excluded else "")
            + "</p>",
            _drug_tables(drug),
            "<h3>Caveats</h3><ul>",
            *[f"<li class='caveat'>{_esc(line)}</li>" for line in describe_drug(drug)],
            "</ul>",
        ]
    notes: list[str] = []
    for exposure in analysis.exposures:
        notes += list(exposure.notes)
        if exposure.off_design_s > 0:
            notes.append(
                f"{exposure.species}: drug flowed for {exposure.off_design_s / 60:.1f} min with "
                "drug and diluent rates off the chip's design point: chamber concentrations "
                "then are estimates"
            )
    alarms = [e for e in run.events() if e.kind == "alarm"]
    for event in alarms:
        notes.append(f"alarm at {event.t_s / _H:.2f} h from {event.source}: {event.message}")
    if notes:
        parts += ["<h2>Run notes</h2><ul>", *[f"<li>{_esc(n)}</li>" for n in notes], "</ul>"]
    parts.append("<h2>Figures</h2>")
    parts += [f"<p><img src='{name}' alt='{name}'></p>" for name in figures]
    parts.append(
        "<p style='font-size:0.8em;color:#777'>GR metrics after Hafner et al. 2016; "
        "x = the typical (geometric-mean) tracked tumoroid; generated by chipctl report.</p>"
    )
    parts.append("</body></html>")
    return "\n".join(parts)


def _save(fig: Figure | None, folder: Path, name: str, written: list[str]) -> None:
    if fig is None:
        return
    fig.savefig(folder / name, dpi=_DPI)
    plt.close(fig)
    written.append(name)


def write_report(run: RunFile, analysis: RunAnalysis, out_dir: Path | str) -> list[Path]:
    """Write the figures and ``index.html`` into ``out_dir`` (created if missing).

    Args:
        run: the open run file (telemetry, events, frames).
        analysis: its dose-response analysis.
        out_dir: the output folder.

    Returns:
        The files written (index first).
    """
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    arrival = min((e.arrival_s for e in analysis.exposures), default=math.nan)
    written: list[str] = []
    _save(dose_response_figure(analysis), folder, FIG_DOSE, written)
    _save(growth_figure(analysis), folder, FIG_GROWTH, written)
    _save(exposure_figure(analysis), folder, FIG_EXPOSURE, written)
    _save(fluidics_figure(run, arrival), folder, FIG_FLUIDICS, written)
    _save(montage_figure(run), folder, FIG_MONTAGE, written)
    (folder / INDEX).write_text(_page(run, analysis, written), encoding="utf-8")
    return [folder / INDEX, *(folder / name for name in written)]


def summary_lines(analysis: RunAnalysis) -> list[str]:
    """Return the headline per drug and the problems, for the CLI."""
    lines = [verdict(d.response).sentence for d in analysis.drugs]
    lines += [f"not analysed: {p}" for p in analysis.problems]
    if not analysis.exposures:
        lines.append("no syringe of the run holds a drug: nothing to analyse")
    return lines
