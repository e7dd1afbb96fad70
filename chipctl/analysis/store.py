"""Write recomputed analysis tables into a finished run file, under ``/analysis`` only.

``chipctl analyze`` recomputes the readout long after the run; its results replace the
earlier ones in the same file, so a run file stays the one place that holds everything
about an experiment. The rules:

* only ``/analysis`` changes: nothing else is opened for writing, root attributes included;
* a file whose writer is still running (status ``running``) is refused: its writer owns it
  (a file left ``running`` by a killed writer can still be analysed without ``--store``);
* tables are written in the run-file *table* layout (:mod:`chipctl.runfile.layout`): a
  group with a ``columns`` attribute and one 1-D dataset per column with a ``units``
  attribute, text as fixed-length UTF-8, so :meth:`chipctl.runfile.RunFile.table` reads
  them like any other table;
* replacement is staged: every new table is written completely into a staging group
  ``/analysis/.staging`` and flushed; only then are the old tables moved aside and the new
  ones moved into place (HDF5 link moves, no data copies), and the old ones deleted. An
  exception while staging removes the staging group and leaves the old results untouched;
  a crash in the short swap leaves every table whole (old or new) plus leftover staging
  groups, which the next write removes. The tables the last write produced are listed in
  the ``/analysis`` attribute ``recomputed_tables``, so a later write also removes
  recomputed tables it no longer produces. Deleted datasets' space is not reclaimed by HDF5
  (``h5repack`` does that).

The tables ``chipctl analyze`` writes (besides the recomputed ``tumoroids`` and
``chambers`` of :mod:`chipctl.analysis.tables`)::

    /analysis/exposure          t_s [s], position, species, conc_nm [nM]: delivered
                                concentration per chamber (samples where it changed)
    /analysis/exposure_summary  species, position, nominal_nm [nM], arrival_s [s] (drug at
                                the chambers), half_level_s [s], off_design_s [s]
    /analysis/gr                species, position, role (treated | control), conc_nm [nM]
                                (while the drug was on), n_tumoroids, lost_fraction,
                                fold_change, gr, relative_growth, gr_brightfield, t0_s, t1_s
    /analysis/gr_fit            one row per drug: verdict (the sentence), GR50, GR_max,
                                GR_AOC, IC50, E_max with _low/_high 95 % bounds, the fit
                                (gr_inf, gec50_nm, hill, p_value, sigmoid), the control's
                                fold, concentration and fitted GR, on_s, t0_s, t1_s
    /analysis/gr_time           species, position, t_s [s], log2_fold (typical tumoroid
                                since t0), gr (time-resolved, window attribute window_s)
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import h5py
import numpy as np
from numpy.typing import NDArray

from chipctl.analysis.exposure import ChamberExposure
from chipctl.analysis.gr import TIME_WINDOW_S, DrugAnalysis, Interval, RunAnalysis, verdict
from chipctl.errors import InputError, RunFileError
from chipctl.runfile import layout

__all__ = [
    "ATTR_RECOMPUTED_TABLES",
    "ATTR_RECOMPUTED_UTC",
    "Table",
    "exposure_tables",
    "gr_tables",
    "image_tables",
    "write_analysis",
]

#: ``/analysis`` attribute: names of the tables the last recomputation wrote.
ATTR_RECOMPUTED_TABLES: Final = "recomputed_tables"
#: ``/analysis`` attribute: when (UTC, ISO 8601) the last recomputation was written.
ATTR_RECOMPUTED_UTC: Final = "recomputed_utc"
_STAGING: Final = ".staging"
_OLD: Final = ".replaced"
_NAME: Final = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
_COLUMN: Final = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,127}$")


@dataclass(frozen=True)
class Table:
    """One table to write: columns of equal length, each with its units.

    Attributes:
        columns: column name -> 1-D array (numbers, bools, or text as ``str``/objects).
        units: column name -> units (``""`` for text; every column needs an entry).
        attrs: extra attributes of the table's group (plain numbers and strings).
    """

    columns: Mapping[str, NDArray[Any]]
    units: Mapping[str, str]
    attrs: Mapping[str, Any] = field(default_factory=dict)

    def check(self, name: str) -> int:
        """Return the row count; raise ValueError naming what is wrong."""
        if not _NAME.match(name):
            raise ValueError(f"table name {name!r} is not a plain identifier")
        lengths = set()
        for column, values in self.columns.items():
            if not _COLUMN.match(column):
                raise ValueError(f"table {name}: column name {column!r} is not an identifier")
            if column not in self.units:
                raise ValueError(f"table {name}: column {column!r} has no units")
            if np.ndim(values) != 1:
                raise ValueError(f"table {name}: column {column!r} is not 1-D")
            lengths.add(len(values))
        if len(lengths) > 1:
            raise ValueError(f"table {name}: columns differ in length {sorted(lengths)}")
        return lengths.pop() if lengths else 0


def _column_data(values: NDArray[Any]) -> tuple[NDArray[Any], Any]:
    """Return the data to store and its HDF5 dtype (text becomes fixed-length UTF-8)."""
    array = np.asarray(values)
    if array.dtype.kind in "OUS":
        encoded = [str(v).encode("utf-8", errors="replace") for v in array.tolist()]
        width = max([len(e) for e in encoded] + [1])
        text = layout.utf8(width)
        return np.array(encoded, dtype=text), text
    if array.dtype.kind == "b":
        return array.astype(np.int8), np.dtype(np.int8)
    if array.dtype.kind in "iu":
        return array.astype(np.int64), np.dtype(np.int64)
    return array.astype(np.float64), np.dtype(np.float64)


def _write_table(group: Any, table: Table) -> None:
    group.attrs[layout.ATTR_COLUMNS] = list(table.columns)
    for key, value in table.attrs.items():
        group.attrs[key] = value
    for column, values in table.columns.items():
        data, dtype = _column_data(np.asarray(values))
        ds = group.create_dataset(column, data=data, dtype=dtype)
        ds.attrs[layout.ATTR_UNITS] = table.units[column]


def _open(path: Path) -> Any:
    try:
        h5 = h5py.File(path, "r+", libver=layout.LIBVER)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as exc:
        raise RunFileError(
            f"{path}: cannot open for writing the analysis ({exc}); is its run still being written?"
        ) from None
    try:
        fmt = h5.attrs.get(layout.ATTR_FORMAT)
        fmt = fmt.decode() if isinstance(fmt, bytes) else fmt
        if fmt != layout.FORMAT_NAME:
            raise InputError(f"{path}: not a chipctl run file")
        status = h5.attrs.get(layout.ATTR_STATUS)
        status = status.decode() if isinstance(status, bytes) else status
        if status == layout.RunStatus.RUNNING:
            raise InputError(
                f"{path}: the run is still being written (status 'running'); "
                "analyse it without storing, or wait until it ends"
            )
    except BaseException:
        h5.close()
        raise
    return h5


def write_analysis(path: Path | str, tables: Mapping[str, Table]) -> list[str]:
    """Replace the recomputed tables of a finished run file (see the module docstring).

    Args:
        path: the run file.
        tables: table name (a plain identifier, written as ``/analysis/<name>``) -> table.

    Returns:
        The paths written, sorted.

    Raises:
        InputError: no such file, not a run file, a run still being written, or a table
            that is not well formed.
        RunFileError: the file cannot be opened for writing.
    """
    path = Path(path)
    for name, table in tables.items():
        try:
            table.check(name)
        except ValueError as exc:
            raise InputError(str(exc)) from None
    h5 = _open(path)
    try:
        analysis = h5.require_group(layout.ANALYSIS_GROUP)
        for leftover in [k for k in analysis if k.startswith((_STAGING, _OLD))]:
            del analysis[leftover]
        previous = [str(v) for v in _attr_list(analysis.attrs.get(ATTR_RECOMPUTED_TABLES))]
        staging = analysis.create_group(_STAGING)
        try:
            for name, table in tables.items():
                _write_table(staging.create_group(name), table)
            h5.flush()
        except BaseException:
            del analysis[_STAGING]
            raise
        analysis.create_group(_OLD)
        for name in sorted(set(tables) | set(previous)):
            if name in analysis:
                h5.move(f"{layout.ANALYSIS_GROUP}/{name}", f"{layout.ANALYSIS_GROUP}/{_OLD}/{name}")
            if name in tables:
                h5.move(
                    f"{layout.ANALYSIS_GROUP}/{_STAGING}/{name}", f"{layout.ANALYSIS_GROUP}/{name}"
                )
        analysis.attrs[ATTR_RECOMPUTED_TABLES] = sorted(tables)
        analysis.attrs[ATTR_RECOMPUTED_UTC] = datetime.now(UTC).isoformat(timespec="seconds")
        h5.flush()
        del analysis[_OLD]
        del analysis[_STAGING]
        h5.flush()
    finally:
        h5.close()
    return sorted(f"{layout.ANALYSIS_GROUP}/{name}" for name in tables)


def _attr_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, bytes | str):
        return [value.decode() if isinstance(value, bytes) else value]
    return [v.decode() if isinstance(v, bytes) else v for v in np.asarray(value).tolist()]


# -- the recomputed tables ------------------------------------------------------------------


def exposure_tables(exposures: Sequence[ChamberExposure]) -> dict[str, Table]:
    """Return ``exposure`` (long format, decimated) and ``exposure_summary`` tables."""
    t, pos, species, conc = [], [], [], []
    s_species, s_pos, s_nominal, s_arrival, s_half, s_off = [], [], [], [], [], []
    for e in exposures:
        idx = e.sample_indices()
        half = e.time_to_fraction_s(0.5)
        for k, position in enumerate(e.positions):
            t.append(e.t_s[idx])
            pos += [position] * idx.size
            species += [e.species] * idx.size
            conc.append(e.conc_nm[idx, k])
            s_species.append(e.species)
            s_pos.append(position)
            s_nominal.append(float(e.nominal_nm[k]))
            s_arrival.append(e.arrival_s)
            s_half.append(float(half[k]))
            s_off.append(e.off_design_s)
    empty = np.zeros(0)
    return {
        "exposure": Table(
            {
                "t_s": np.concatenate(t) if t else empty,
                "position": np.array(pos, dtype=object),
                "species": np.array(species, dtype=object),
                "conc_nm": np.concatenate(conc) if conc else empty,
            },
            {"t_s": "s", "position": "", "species": "", "conc_nm": "nM"},
        ),
        "exposure_summary": Table(
            {
                "species": np.array(s_species, dtype=object),
                "position": np.array(s_pos, dtype=object),
                "nominal_nm": np.array(s_nominal),
                "arrival_s": np.array(s_arrival),
                "half_level_s": np.array(s_half),
                "off_design_s": np.array(s_off),
            },
            {
                "species": "",
                "position": "",
                "nominal_nm": "nM",
                "arrival_s": "s",
                "half_level_s": "s",
                "off_design_s": "s",
            },
        ),
    }


def gr_tables(analysis: RunAnalysis) -> dict[str, Table]:
    """Return the ``gr`` (per chamber), ``gr_fit`` (per drug) and ``gr_time`` tables."""
    rows: dict[str, list[Any]] = {
        k: []
        for k in (
            "species",
            "position",
            "role",
            "conc_nm",
            "n_tumoroids",
            "lost_fraction",
            "fold_change",
            "gr",
            "relative_growth",
            "gr_brightfield",
            "t0_s",
            "t1_s",
        )
    }
    fits: dict[str, list[Any]] = {}
    times: dict[str, list[Any]] = {k: [] for k in ("species", "position", "t_s", "log2_fold", "gr")}
    for drug in analysis.drugs:
        r = drug.response
        treated = {p: i for i, p in enumerate(r.positions)}
        bf = drug.brightfield
        for p in drug.series:
            i = treated.get(p)
            role = "treated" if i is not None else "control"
            values = {
                "species": drug.species,
                "position": p,
                "role": role,
                "conc_nm": r.conc_nm[i] if i is not None else drug.control_conc_nm,
                "n_tumoroids": drug.n_tumoroids.get(p, 0),
                "lost_fraction": drug.lost_fraction.get(p, math.nan),
                "fold_change": r.fold[i] if i is not None else r.control_fold,
                "gr": r.gr[i] if i is not None else 1.0,
                "relative_growth": r.relative[i] if i is not None else 1.0,
                "gr_brightfield": (
                    math.nan if bf is None else (bf.gr[i] if i is not None else 1.0)
                ),
                "t0_s": drug.t0_s,
                "t1_s": drug.t1_s,
            }
            for key, value in values.items():
                rows[key].append(value)
            t_series, log_fold = drug.series[p]
            if p in drug.time_resolved:
                gr_t = np.interp(t_series, *drug.time_resolved[p])
            else:
                gr_t = np.full(t_series.shape, math.nan)
            times["species"] += [drug.species] * t_series.size
            times["position"] += [p] * t_series.size
            times["t_s"].append(t_series)
            times["log2_fold"].append(log_fold)
            times["gr"].append(gr_t)
        values = _fit_row(drug)
        for key, value in values.items():
            fits.setdefault(key, []).append(value)
    gr_units = {
        "species": "",
        "position": "",
        "role": "",
        "conc_nm": "nM",
        "n_tumoroids": "1",
        "lost_fraction": "1",
        "fold_change": "1",
        "gr": "1",
        "relative_growth": "1",
        "gr_brightfield": "1",
        "t0_s": "s",
        "t1_s": "s",
    }
    gr_cols = {
        k: np.array(v, dtype=object if gr_units[k] == "" else np.float64) for k, v in rows.items()
    }
    gr_cols["n_tumoroids"] = np.array(rows["n_tumoroids"], dtype=np.int64)
    fit_template = _fit_row(None)
    fit_cols = {
        k: np.array(fits.get(k, []), dtype=object if isinstance(v, str) else np.float64)
        for k, v in fit_template.items()
    }
    fit_units = {
        k: ("" if isinstance(v, str) else _FIT_UNITS.get(k, "1")) for k, v in fit_template.items()
    }
    time_cols = {
        "species": np.array(times["species"], dtype=object),
        "position": np.array(times["position"], dtype=object),
        "t_s": np.concatenate(times["t_s"]) if times["t_s"] else np.zeros(0),
        "log2_fold": np.concatenate(times["log2_fold"]) if times["log2_fold"] else np.zeros(0),
        "gr": np.concatenate(times["gr"]) if times["gr"] else np.zeros(0),
    }
    return {
        "gr": Table(gr_cols, gr_units),
        "gr_fit": Table(fit_cols, fit_units),
        "gr_time": Table(
            time_cols,
            {"species": "", "position": "", "t_s": "s", "log2_fold": "1", "gr": "1"},
            attrs={"window_s": TIME_WINDOW_S},
        ),
    }


_FIT_UNITS: Final = {
    "gr50_nm": "nM",
    "gr50_low_nm": "nM",
    "gr50_high_nm": "nM",
    "gec50_nm": "nM",
    "ic50_nm": "nM",
    "ic50_low_nm": "nM",
    "ic50_high_nm": "nM",
    "control_conc_nm": "nM",
    "gr50_control_corrected_nm": "nM",
    "t0_s": "s",
    "t1_s": "s",
    "on_s": "s",
}


def _fit_row(drug: DrugAnalysis | None) -> dict[str, Any]:
    """One ``gr_fit`` row (``None``: a template of the columns with their kinds)."""
    if drug is None:
        nan = math.nan
        return {
            "species": "",
            "verdict": "",
            "ci_method": "",
            **dict.fromkeys(_FIT_NUMBERS, nan),
        }
    r = drug.response

    def ci(name: str) -> tuple[float, float]:
        interval = r.ci.get(name, Interval())
        return interval.low, interval.high

    numbers = {
        "gr50_nm": r.gr50_nm,
        "gr50_low_nm": ci("gr50_nm")[0],
        "gr50_high_nm": ci("gr50_nm")[1],
        "gr_max": r.gr_max,
        "gr_max_low": ci("gr_max")[0],
        "gr_max_high": ci("gr_max")[1],
        "gr_aoc": r.gr_aoc,
        "gr_aoc_low": ci("gr_aoc")[0],
        "gr_aoc_high": ci("gr_aoc")[1],
        "gr_inf": r.fit.y_inf,
        "gec50_nm": r.fit.ec50_nm,
        "hill": r.fit.hill,
        "p_value": r.fit.p_value,
        "sigmoid": float(r.fit.sigmoid),
        "ic50_nm": r.ic50_nm,
        "ic50_low_nm": ci("ic50_nm")[0],
        "ic50_high_nm": ci("ic50_nm")[1],
        "e_max": r.e_max,
        "e_max_low": ci("e_max")[0],
        "e_max_high": ci("e_max")[1],
        "control_fold": r.control_fold,
        "reference_fold": r.reference_fold,
        "control_conc_nm": drug.control_conc_nm,
        "control_gr": drug.control_gr,
        "gr50_control_corrected_nm": drug.gr50_control_corrected_nm,
        "viable": float(drug.viable),
        "on_s": drug.on_s,
        "n_boot": float(r.n_boot),
        "t0_s": drug.t0_s,
        "t1_s": drug.t1_s,
    }
    return {
        "species": drug.species,
        "verdict": verdict(r).sentence,
        "ci_method": r.ci_method,
        **{k: float(numbers[k]) for k in _FIT_NUMBERS},
    }


_FIT_NUMBERS: Final = (
    "gr50_nm",
    "gr50_low_nm",
    "gr50_high_nm",
    "gr_max",
    "gr_max_low",
    "gr_max_high",
    "gr_aoc",
    "gr_aoc_low",
    "gr_aoc_high",
    "gr_inf",
    "gec50_nm",
    "hill",
    "p_value",
    "sigmoid",
    "ic50_nm",
    "ic50_low_nm",
    "ic50_high_nm",
    "e_max",
    "e_max_low",
    "e_max_high",
    "control_fold",
    "reference_fold",
    "control_conc_nm",
    "control_gr",
    "gr50_control_corrected_nm",
    "viable",
    "on_s",
    "n_boot",
    "t0_s",
    "t1_s",
)


def image_tables(
    tumoroids: Mapping[str, NDArray[Any]], chambers: Mapping[str, NDArray[Any]]
) -> dict[str, Table]:
    """Return A1's recomputed ``tumoroids`` and ``chambers`` tables with their units."""
    from chipctl.analysis.tables import CHAMBER_COLUMNS, TUMOROID_COLUMNS

    return {
        "tumoroids": Table(
            {k: np.asarray(tumoroids[k]) for k in TUMOROID_COLUMNS},
            {k: unit for k, (_, unit) in TUMOROID_COLUMNS.items()},
        ),
        "chambers": Table(
            {k: np.asarray(chambers[k]) for k in CHAMBER_COLUMNS},
            {k: unit for k, (_, unit) in CHAMBER_COLUMNS.items()},
        ),
    }
