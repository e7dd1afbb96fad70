"""Live plots: flow, pressure, pump volumes and delivered concentration per chamber.

Four stacked plots share one time axis (run time, ticked as durations). Each curve is an
:class:`~chipctl.gui.series.EnvelopeSeries`: what is drawn is a min/max envelope at the
resolution of the screen, recomputed only when data arrive (at most every
:data:`REFRESH_MS`) or the view changes, so a week of telemetry costs the same per frame as
an hour. The envelope *is* the clip to view and the peak downsampling: only the visible
range is reduced, to two points per pixel. pyqtgraph's own ``clipToView`` and
``autoDownsample`` are left off: they would redo that work on every range change, over
the raw data (the benchmark ``tests/benchmarks/test_gui_plot_bench.py`` compares both).

The time range follows the run: the whole run, or a recent window (last hour, 6 h...).
Zooming or panning by hand stops following (the window box then says "custom") until a
window is chosen again.

Data come from the engine bridge (live) or from a run file (:meth:`PlotPanel.load_run`, read
in a worker thread). Zooming into old data that has left the series' in-memory tail asks a
worker thread to read the raw samples back from the run file (:meth:`PlotPanel.set_history`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from PyQt5.QtCore import Qt, QTimer, pyqtSignal
from PyQt5.QtWidgets import QComboBox, QHBoxLayout, QLabel, QSizePolicy, QVBoxLayout, QWidget

from chipctl.gui.curves import PLOTS, CurveSpec, classify
from chipctl.gui.history import SeriesKey, load_series, read_detail
from chipctl.gui.series import EnvelopeSeries
from chipctl.gui.timeaxis import RunTimeAxis
from chipctl.gui.worker import Worker
from chipctl.runfile.reader import RunFile
from chipctl.units import format_duration

__all__ = ["REFRESH_MS", "WINDOWS", "PlotPanel"]

logger = logging.getLogger(__name__)

#: Shortest interval between redraws as data arrive (a zoom or pan redraws at once).
REFRESH_MS = 500
#: Time-range choices: label -> window in seconds (None: the whole run).
WINDOWS: dict[str, float | None] = {
    "whole run": None,
    "last 10 min": 600.0,
    "last 1 h": 3600.0,
    "last 6 h": 6 * 3600.0,
    "last 24 h": 24 * 3600.0,
    "last 3 days": 72 * 3600.0,
}
CUSTOM = "custom"
#: Shortest time range shown while following (a fresh run has seconds of data).
MIN_SPAN_S = 60.0
#: Room left ahead of the newest sample while following, as a fraction of the span.
HEADROOM = 0.1
#: Screen pixels per min/max bin of a curve (2: a bin's min and max, one point per pixel).
PX_PER_BIN = 2


@dataclass
class _Curve:
    spec: CurveSpec
    series: EnvelopeSeries
    item: pg.PlotCurveItem
    dirty: bool = True


class PlotPanel(QWidget):
    """The four live plots with their time-window choice.

    Args:
        devices: the rig's device names in config order (stable colours).
        parent: the parent widget.
    """

    #: Emitted with a one-line message when a run file could not be read.
    failed = pyqtSignal(str)
    #: Emitted when a run file's history is loaded and drawn.
    history_loaded = pyqtSignal()

    def __init__(self, devices: Iterable[str] = (), parent: QWidget | None = None) -> None:
        """Build the plots (empty)."""
        super().__init__(parent)
        self.devices = list(devices)
        self._curves: dict[SeriesKey, _Curve] = {}
        self._window_s: float | None = None
        self._following = True
        self._setting_range = False
        self._history_path: Path | None = None
        self._pending_detail: dict[SeriesKey, tuple[float, float]] = {}
        self._worker: Worker | None = None
        self._redraw_pending = False
        #: While True, data are taken but not drawn (the controller is starting or ending a
        #: run: building the simulated chip holds the interpreter for tens of ms at a time,
        #: and a redraw then would add its own time to that wait).
        self.held = False

        pg.setConfigOptions(antialias=False, background="w", foreground="k")
        layout = QVBoxLayout(self)
        bar = QHBoxLayout()
        bar.addWidget(QLabel("Time range:"))
        self.window_box = QComboBox()
        self.window_box.addItems([*WINDOWS, CUSTOM])
        self.window_box.setObjectName("plot-window")
        self.window_box.currentTextChanged.connect(self._window_chosen)
        bar.addWidget(self.window_box)
        self.info = QLabel("")
        self.info.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.info.setAlignment(Qt.AlignmentFlag.AlignRight)
        bar.addWidget(self.info, 1)
        layout.addLayout(bar)

        self.graphics = pg.GraphicsLayoutWidget()
        layout.addWidget(self.graphics, 1)
        self.plots: dict[str, pg.PlotItem] = {}
        first: pg.PlotItem | None = None
        for row, (plot_id, (title, axis, units)) in enumerate(PLOTS.items()):
            plot = self.graphics.addPlot(
                row=row, col=0, title=title, axisItems={"bottom": RunTimeAxis()}
            )
            plot.setLabel("left", axis, units=units)
            plot.getAxis("left").enableAutoSIPrefix(False)
            plot.getAxis("bottom").enableAutoSIPrefix(False)
            plot.showGrid(x=True, y=True, alpha=0.2)
            legend = plot.addLegend(
                offset=(-5, 5), labelTextSize="8pt", brush=(255, 255, 255, 210), colCount=2
            )
            legend.setZValue(100)
            plot.getViewBox().setAutoVisible(y=True)
            plot.enableAutoRange(axis="y")
            empty = pg.TextItem("no data", color="#999999", anchor=(0.5, 0.5))
            plot.addItem(empty, ignoreBounds=True)
            plot.no_data = empty  # type: ignore[attr-defined]
            if first is None:
                first = plot
            else:
                plot.setXLink(first)
            if row == len(PLOTS) - 1:
                plot.setLabel("bottom", "run time")
            else:
                plot.showAxis("bottom", False)  # the plots share the last one's time axis
            self.plots[plot_id] = plot
        assert first is not None
        self._master = first
        self._master.getViewBox().sigRangeChangedManually.connect(self._manual_range)
        self._master.sigXRangeChanged.connect(self._range_changed)

        self._timer = QTimer(self)
        self._timer.setInterval(REFRESH_MS)
        self._timer.timeout.connect(self._tick)
        self._timer.start()

    # -- data in -------------------------------------------------------------------------

    def clear(self) -> None:
        """Empty every curve (a new run, or another run file).

        The curves themselves stay (hidden until they have data again): removing and
        re-creating a dozen plot items and legend entries costs the GUI thread ~0.1 s.
        """
        for curve in self._curves.values():
            curve.series = EnvelopeSeries()
            curve.item.setData([], [])
            curve.dirty = False
        self._pending_detail.clear()
        self._history_path = None
        self._following = True
        self._show_empty()

    def _curve(self, key: SeriesKey, series: EnvelopeSeries | None = None) -> _Curve | None:
        curve = self._curves.get(key)
        if curve is not None:
            if series is not None:
                curve.series = series
                curve.dirty = True
            return curve
        spec = classify(key[0], key[1], self.devices)
        if spec is None:
            return None
        # width 1: Qt strokes wider lines ~6x slower (131 vs 21 ms for 19 curves of 1800
        # points, measured here), which alone would break the 100 ms frame budget
        style = Qt.PenStyle.DashLine if spec.dashed else Qt.PenStyle.SolidLine
        pen = pg.mkPen(spec.color, width=1, style=style)
        # a bare curve item: PlotDataItem's extra layers (symbols, its own downsampling and
        # clipping) cost ~1 ms per setData, times 19 curves at every redraw
        item = pg.PlotCurveItem(pen=pen, name=spec.label, connect="finite")
        self.plots[spec.plot].addItem(item)
        curve = _Curve(spec, series if series is not None else EnvelopeSeries(), item)
        self._curves[key] = curve
        return curve

    def add_samples(self, samples: list[tuple[str, float, Mapping[str, float]]]) -> None:
        """Append a batch of telemetry samples ``(device, t_s, values)`` (GUI thread)."""
        columns: dict[SeriesKey, tuple[list[float], list[float]]] = {}
        for device, t_s, values in samples:
            for quantity, value in values.items():
                ts, ys = columns.setdefault((device, quantity), ([], []))
                ts.append(t_s)
                ys.append(value)
        for key, (ts, ys) in columns.items():
            curve = self._curve(key)
            if curve is None:
                continue
            curve.series.extend(np.asarray(ts), np.asarray(ys))
            curve.dirty = True

    def set_series(self, series: Mapping[SeriesKey, EnvelopeSeries]) -> None:
        """Show ready-made series (e.g. loaded from a run file), replacing those of the keys."""
        for key, s in series.items():
            self._curve(key, s)

    def set_history(self, path: Path | None) -> None:
        """Read raw samples for zooms into old data from this run file (None: do not)."""
        self._history_path = path

    def load_run(self, path: Path) -> None:
        """Show a run file's telemetry: cleared now, drawn when the worker has read it."""
        self.clear()
        path = Path(path)
        self._history_path = path

        def job() -> dict[SeriesKey, EnvelopeSeries]:
            with RunFile(path) as run:
                return load_series(run)

        self._reader().submit(("load", path), job)

    def _reader(self) -> Worker:
        if self._worker is None:
            self._worker = Worker("chipctl-gui-plots")
            self._worker.done.connect(self._job_done)
        return self._worker

    def _job_done(self, key: Any, result: Any) -> None:
        if key[0] == "load":
            self._loaded(key[1], result)
        elif not isinstance(result, Exception):
            self._detail(key[1], *result)

    def _loaded(self, path: Path, result: Any) -> None:
        if path != self._history_path:
            return  # another file was opened meanwhile
        if isinstance(result, Exception):
            self.failed.emit(f"{path}: {result}")
            return
        self.set_series(result)
        self._following = True
        self.refresh(force=True)
        self.history_loaded.emit()

    def _detail(
        self,
        key: SeriesKey,
        t: np.ndarray[Any, Any],
        y: np.ndarray[Any, Any],
        covers: tuple[float, float],
    ) -> None:
        curve = self._curves.get(key)
        self._pending_detail.pop(key, None)
        if curve is not None:
            curve.series.set_detail(t, y, covers)
            curve.dirty = True
            self.refresh(force=True)

    def _fetch_detail(self, key: SeriesKey, t0_s: float, t1_s: float) -> None:
        path = self._history_path
        if path is None:
            return

        def job() -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], tuple[float, float]]:
            with RunFile(path) as run:
                return read_detail(run, key[0], key[1], t0_s, t1_s)

        self._reader().submit(("detail", key), job)

    def shutdown(self) -> None:
        """Stop the reader thread (when the window closes)."""
        self._timer.stop()
        if self._worker is not None:
            self._worker.stop()

    # -- view ----------------------------------------------------------------------------

    def _window_chosen(self, text: str) -> None:
        if text == CUSTOM:
            return
        self._window_s = WINDOWS.get(text)
        self._following = True
        self.refresh(force=True)

    def _manual_range(self, *args: Any) -> None:
        if self._setting_range:
            return
        self._following = False
        self.window_box.blockSignals(True)
        self.window_box.setCurrentText(CUSTOM)
        self.window_box.blockSignals(False)
        for curve in self._curves.values():
            curve.dirty = True

    def _range_changed(self, *args: Any) -> None:
        if not self._setting_range:
            for curve in self._curves.values():
                curve.dirty = True
            if not self._redraw_pending:
                self._redraw_pending = True
                QTimer.singleShot(0, self._redraw_now)

    def _redraw_now(self) -> None:
        self._redraw_pending = False
        self.refresh()

    def set_window(self, label: str) -> None:
        """Choose a time range by its label (a key of :data:`WINDOWS`)."""
        self.window_box.setCurrentText(label)

    def time_span_s(self) -> tuple[float, float] | None:
        """Return the run time covered by the data (first, last sample), if any."""
        firsts = [c.series.t_first_s for c in self._curves.values() if c.series.n_total]
        lasts = [c.series.t_last_s for c in self._curves.values() if c.series.n_total]
        if not firsts:
            return None
        return min(firsts), max(lasts)

    def _follow(self) -> None:
        """Keep the newest data in view, moving the range in steps of :data:`HEADROOM`.

        Moving the range at every redraw would regenerate every axis each time; with some
        room ahead of the newest sample the axes stay still for a tenth of the span.
        """
        span = self.time_span_s()
        if span is None:
            return
        first_s, last_s = span
        start_s = first_s if self._window_s is None else max(first_s, last_s - self._window_s)
        length_s = max(last_s - start_s, MIN_SPAN_S)
        (x0, x1), _ = self._master.getViewBox().viewRange()
        if (
            start_s - HEADROOM * length_s <= x0 <= start_s + 1e-9 * length_s + 1e-9
            and last_s <= x1 <= last_s + 2.5 * HEADROOM * length_s
        ):
            return
        self._setting_range = True
        try:
            self._master.setXRange(start_s, start_s + length_s * (1 + HEADROOM), padding=0.0)
        finally:
            self._setting_range = False

    def _show_empty(self) -> None:
        for plot_id, plot in self.plots.items():
            has = any(c.spec.plot == plot_id and c.series.n_total for c in self._curves.values())
            plot.no_data.setVisible(not has)  # type: ignore[attr-defined]
            if not has:
                (x0, x1), (y0, y1) = plot.getViewBox().viewRange()
                plot.no_data.setPos((x0 + x1) / 2, (y0 + y1) / 2)  # type: ignore[attr-defined]

    def _tick(self) -> None:
        if not self.held and self.isVisible() and any(c.dirty for c in self._curves.values()):
            self._staged_refresh(list(PLOTS))

    def refresh(self, force: bool = False, plot_id: str | None = None) -> int:
        """Redraw the curves that changed; returns the number of points handed to Qt.

        Args:
            force: redraw every curve, also when hidden or unchanged.
            plot_id: redraw only the curves of this plot (a key of :data:`PLOTS`).
        """
        if not self.isVisible() and not force:
            return 0
        if not any(c.dirty for c in self._curves.values()) and not force:
            return 0
        if self._following and plot_id in (None, next(iter(PLOTS))):
            self._follow()
        (t0_s, t1_s), _ = self._master.getViewBox().viewRange()
        bins = max(int(self._master.getViewBox().width()) // PX_PER_BIN, 50)
        points = 0
        for key, curve in self._curves.items():
            if not (curve.dirty or force) or (plot_id is not None and curve.spec.plot != plot_id):
                continue
            env = curve.series.envelope(t0_s, t1_s, bins)
            curve.item.setData(env.t_s, env.y)
            curve.dirty = False
            points += len(env.t_s)
            if env.need_detail is not None and self._history_path is not None:
                if self._pending_detail.get(key) != env.need_detail:
                    self._pending_detail[key] = env.need_detail
                    self._fetch_detail(key, *env.need_detail)
        if plot_id in (None, list(PLOTS)[-1]):
            self._show_empty()
            self.info.setText(self._describe())
        return points

    def _staged_refresh(self, remaining: list[str]) -> None:
        """Redraw one plot per turn of the event loop (the timer's redraw, in four slices).

        A redraw of all four plots with a week of data per curve, followed by its paint, is
        the longest thing the GUI thread does; in slices, input and timers get a turn
        between them.
        """
        if not remaining or self.held:
            return
        self.refresh(plot_id=remaining[0])
        if remaining[1:]:
            QTimer.singleShot(0, lambda: self._staged_refresh(remaining[1:]))

    def _describe(self) -> str:
        span = self.time_span_s()
        if span is None:
            return "no telemetry yet"
        n = max((c.series.n_total for c in self._curves.values()), default=0)
        return f"{n:,} samples per curve, {format_duration(span[0])} to {format_duration(span[1])}"

    def curve_keys(self) -> list[SeriesKey]:
        """Return the (device, quantity) of every curve that has data."""
        return [key for key, curve in self._curves.items() if curve.series.n_total]

    def curve_data(self, key: SeriesKey) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        """Return the points drawn for a curve (x: run time in s), for tests and export."""
        x, y = self._curves[key].item.getData()
        empty = np.empty(0)
        return (empty if x is None else x), (empty if y is None else y)

    def series(self, key: SeriesKey) -> EnvelopeSeries:
        """Return a curve's series."""
        return self._curves[key].series
