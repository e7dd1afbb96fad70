"""Images: the latest frame per chamber and channel, growth curves and dose response.

Left, the frame of the chosen chamber (position) and channel, with its histogram and
contrast handles (drag the levels, or "Auto contrast"), and the tumoroid outlines found by
:func:`chipctl.analysis.segment.segment_brightfield` drawn over it (a stain frame gets the
outlines of the brightfield frame of the same time point). Under it, a thumbnail of every
chamber in the chosen channel; click one to show it. Right, growth curves per chamber and
the dose-response points (growth rate against the concentration each chamber received),
both updated as analysis results arrive.

Live, the view shows the newest frame of each position and channel (from the engine bridge,
or a manual snap). For a run file it browses every stored frame (a slider over time
points). Segmentation runs on a worker thread, never on the GUI's.
"""

from __future__ import annotations

import functools
import logging
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from PyQt5.QtCore import Qt, pyqtSignal
from PyQt5.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSlider,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from chipctl.gui.curves import chamber_color
from chipctl.gui.timeaxis import RunTimeAxis
from chipctl.gui.worker import Worker
from chipctl.units import format_duration

__all__ = ["Frame", "ImagesView", "outline_mask"]

logger = logging.getLogger(__name__)

#: Thumbnails are shown at 1/THUMB_STEP of the frame's resolution.
THUMB_STEP = 8
#: Growth metrics: label -> (chamber metric, y label, units).
METRICS: dict[str, tuple[str, str, str]] = {
    "relative volume": ("total_volume_um3", "volume / first", ""),
    "total volume": ("total_volume_um3", "total volume", "um^3"),
    "tumoroid count": ("n_tumoroids", "tumoroids", ""),
    "live fraction": ("live_fraction", "live fraction", ""),
    "growth rate": ("growth_rate_per_h", "growth rate", "1/h"),
}


@dataclass(frozen=True)
class Frame:
    """One frame to show.

    Args:
        position: the named position.
        channel: the channel.
        pixels: the frame.
        t_s: run time of the exposure.
        pixel_size_um: the pixel at the sample, if known.
        index: the frame's index in its stack (-1: not from a stack).
    """

    position: str
    channel: str
    pixels: np.ndarray[Any, Any]
    t_s: float
    pixel_size_um: float | None
    index: int = -1


def _chamber_number(position: str) -> int:
    match = re.search(r"(\d+)$", position)
    return int(match.group(1)) if match else 0


def _segmenter() -> Callable[[np.ndarray[Any, Any], float], np.ndarray[Any, Any]] | None:
    """Return brightfield segmentation (frame, pixel um) -> labels, if the analysis exists."""
    try:
        from chipctl.analysis.segment import segment_brightfield
    except ImportError:
        return None

    def labels(frame: np.ndarray[Any, Any], pixel_size_um: float) -> np.ndarray[Any, Any]:
        result: np.ndarray[Any, Any] = segment_brightfield(frame, pixel_size_um).labels
        return result

    return labels


def outline_mask(labels: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Return the pixels on the inner boundary of each labelled region (bool image)."""
    inner = labels > 0
    edge = np.zeros_like(inner)
    edge[:-1, :] |= labels[:-1, :] != labels[1:, :]
    edge[1:, :] |= labels[1:, :] != labels[:-1, :]
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    return np.asarray(edge & inner)


def _overlay(edge: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    rgba = np.zeros((*edge.shape, 4), dtype=np.uint8)
    rgba[edge] = (255, 215, 0, 255)
    return rgba


class _Thumb(pg.ImageItem):  # type: ignore[misc]
    """A thumbnail that selects its position when clicked."""

    def __init__(self, on_click: Callable[[], None]) -> None:
        super().__init__(axisOrder="row-major")
        self._on_click = on_click

    def mouseClickEvent(self, event: Any) -> None:  # noqa: N802 (Qt's name)
        """Select this thumbnail's position."""
        self._on_click()
        event.accept()


class ImagesView(QWidget):
    """Frames per chamber and channel, with contrast, outlines, growth and dose response."""

    #: Emitted when outlines for the shown frame are drawn (for tests).
    outlines_drawn = pyqtSignal()

    def __init__(self, parent: QWidget | None = None) -> None:
        """Build the (empty) view."""
        super().__init__(parent)
        self._live: dict[tuple[str, str], Frame] = {}
        self._run: Any = None
        self._stacks: dict[tuple[str, str], Any] = {}
        self._positions: list[str] = []
        self._channels: list[str] = []
        self._analysis: dict[str, list[tuple[float, dict[str, float]]]] = {}
        self._concentrations: dict[str, float] = {}
        self._conc_label = ""
        self._outlines: dict[tuple[str, float], np.ndarray[Any, Any]] = {}
        self._shown: Frame | None = None
        self._segment = _segmenter()
        self._worker: Worker | None = None
        self._dose_n = 0

        layout = QVBoxLayout(self)
        bar = QHBoxLayout()
        self.position = QComboBox()
        self.position.setObjectName("image-position")
        self.position.currentTextChanged.connect(lambda _t: self._show())
        self.channel = QComboBox()
        self.channel.setObjectName("image-channel")
        self.channel.currentTextChanged.connect(lambda _t: self._channel_changed())
        bar.addWidget(QLabel("Chamber:"))
        bar.addWidget(self.position)
        bar.addWidget(QLabel("Channel:"))
        bar.addWidget(self.channel)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setObjectName("image-frame")
        self.slider.setEnabled(False)
        self.slider.valueChanged.connect(lambda _v: self._show())
        bar.addWidget(self.slider, 1)
        self.auto = QPushButton("Auto contrast")
        self.auto.setObjectName("auto-contrast")
        self.auto.clicked.connect(self.auto_contrast)
        bar.addWidget(self.auto)
        self.show_outlines = QCheckBox("Outlines")
        self.show_outlines.setObjectName("show-outlines")
        self.show_outlines.setChecked(self._segment is not None)
        self.show_outlines.setEnabled(self._segment is not None)
        if self._segment is None:
            self.show_outlines.setToolTip("segmentation (chipctl.analysis) is not available")
        self.show_outlines.toggled.connect(lambda _on: self._show())
        bar.addWidget(self.show_outlines)
        layout.addLayout(bar)
        self.info = QLabel("no images yet")
        self.info.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.info.setObjectName("image-info")
        layout.addWidget(self.info)

        split = QSplitter(Qt.Orientation.Horizontal)
        left = QSplitter(Qt.Orientation.Vertical)
        self.view_widget = pg.GraphicsLayoutWidget()
        self.view = self.view_widget.addViewBox(row=0, col=0, lockAspect=True, invertY=True)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.overlay = pg.ImageItem(axisOrder="row-major")
        self.overlay.setZValue(10)
        self.view.addItem(self.image)
        self.view.addItem(self.overlay)
        self.histogram = pg.HistogramLUTItem(self.image)
        self.view_widget.addItem(self.histogram, row=0, col=1)
        left.addWidget(self.view_widget)
        self.thumbs_widget = pg.GraphicsLayoutWidget()
        self.thumbs_widget.setMinimumHeight(120)
        self._thumbs: dict[str, tuple[pg.ViewBox, _Thumb, pg.LabelItem]] = {}
        left.addWidget(self.thumbs_widget)
        left.setSizes([600, 160])
        split.addWidget(left)

        right = QWidget()
        right_layout = QVBoxLayout(right)
        metric_bar = QHBoxLayout()
        metric_bar.addWidget(QLabel("Growth:"))
        self.growth_metric = QComboBox()
        self.growth_metric.setObjectName("growth-metric")
        self.growth_metric.addItems(list(METRICS))
        self.growth_metric.currentTextChanged.connect(lambda _t: self._draw_analysis())
        metric_bar.addWidget(self.growth_metric, 1)
        right_layout.addLayout(metric_bar)
        pg.setConfigOptions(antialias=False, background="w", foreground="k")
        self.growth = pg.PlotWidget(title="Growth per chamber", axisItems={"bottom": RunTimeAxis()})
        self.growth.setLabel("bottom", "run time")
        self.growth.addLegend(offset=(5, 5), labelTextSize="8pt", colCount=2)
        self.growth.showGrid(x=True, y=True, alpha=0.2)
        right_layout.addWidget(self.growth, 1)
        self.dose = pg.PlotWidget(title="Dose response (latest growth rate)")
        self.dose.setLabel("bottom", "log10 concentration (nM)")
        self.dose.setLabel("left", "growth rate", units="1/h")
        self.dose.showGrid(x=True, y=True, alpha=0.2)
        for plot in (self.growth, self.dose):
            for axis in ("left", "bottom"):
                plot.getAxis(axis).enableAutoSIPrefix(False)
        right_layout.addWidget(self.dose, 1)
        split.addWidget(right)
        split.setSizes([700, 450])
        layout.addWidget(split, 1)

    # -- feeding ---------------------------------------------------------------------

    def clear(self) -> None:
        """Forget every frame and result (a new run or file)."""
        if self._run is not None:
            self._run.close()
        self._run = None
        self._stacks.clear()
        self._live.clear()
        self._analysis.clear()
        self._outlines.clear()
        self._positions.clear()
        self._channels.clear()
        self._shown = None
        self.position.clear()
        self.channel.clear()
        self.image.clear()
        self.overlay.clear()
        self.thumbs_widget.clear()
        self._thumbs.clear()
        self.slider.setEnabled(False)
        self.info.setText("no images yet")
        self._draw_analysis()

    def _know(self, position: str, channel: str) -> None:
        if position not in self._positions:
            self._positions.append(position)
            self._positions.sort(key=lambda p: (_chamber_number(p), p))
            self.position.blockSignals(True)
            current = self.position.currentText()
            self.position.clear()
            self.position.addItems(self._positions)
            self.position.setCurrentText(current or position)
            self.position.blockSignals(False)
        if channel not in self._channels:
            self._channels.append(channel)
            self.channel.blockSignals(True)
            current = self.channel.currentText()
            self.channel.addItem(channel)
            self.channel.setCurrentText(current or channel)
            self.channel.blockSignals(False)

    def add_frames(self, frames: list[tuple[Any, np.ndarray[Any, Any]]]) -> None:
        """Show frames from the run (``(FrameRecord, pixels)`` pairs, newest per stack)."""
        for record, pixels in frames:
            frame = Frame(
                str(record.position),
                str(record.channel),
                pixels,
                float(record.t_s),
                record.pixel_size_um,
                int(getattr(record, "index", -1)),
            )
            self._live[(frame.position, frame.channel)] = frame
            self._know(frame.position, frame.channel)
        self._refresh_thumbs()
        self._show()

    def add_snaps(self, images: list[Any], position: str | None, t_s: float = math.nan) -> None:
        """Show a manual snap (:class:`~drivers.camera.roles.ChannelImage` list)."""
        for image in images:
            where = image.position or position or "manual snap"
            frame = Frame(where, image.channel, np.asarray(image.image), t_s, None)
            self._live[(where, image.channel)] = frame
            self._know(where, image.channel)
            self.position.setCurrentText(where)
            self.channel.setCurrentText(image.channel)
        self._refresh_thumbs()
        self._show()

    def add_analysis(self, results: list[tuple[str, float, Mapping[str, float]]]) -> None:
        """Add chamber results ``(position, t_s, values)`` to the growth and dose plots."""
        for position, t_s, values in results:
            self._analysis.setdefault(position, []).append((t_s, dict(values)))
        self._draw_analysis()

    def set_concentrations(self, conc_nm: Mapping[str, float], label: str) -> None:
        """Set the concentration each position received (for the dose-response axis)."""
        self._concentrations = dict(conc_nm)
        self._conc_label = label
        self._draw_analysis()

    def load_run(self, path: Path) -> str:
        """Browse a run file's frames and analysis; returns a one-line summary."""
        from chipctl.runfile.images import image_stacks
        from chipctl.runfile.reader import RunFile

        self.clear()
        run = RunFile(path)
        self._run = run
        for stack in image_stacks(run):
            if stack.n_frames:
                self._stacks[(stack.position, stack.channel)] = stack
                self._know(stack.position, stack.channel)
        if "/analysis/chambers" in run.tables():
            table = run.table("/analysis/chambers")
            positions = table.get("position", np.array([]))
            for i in range(len(positions)):
                values = {
                    k: float(v[i])
                    for k, v in table.items()
                    if k != "position" and np.issubdtype(np.asarray(v).dtype, np.number)
                }
                self._analysis.setdefault(str(positions[i]), []).append((values["t_s"], values))
        self._refresh_thumbs()
        self._show()
        self._draw_analysis()
        n = sum(s.n_frames for s in self._stacks.values())
        return f"{len(self._stacks)} image stacks, {n} frames"

    # -- frames ----------------------------------------------------------------------

    def _frame(self, position: str, channel: str, index: int | None = None) -> Frame | None:
        stack = self._stacks.get((position, channel))
        if stack is not None and self._run is not None:
            from chipctl.runfile.images import read_frame, read_metadata

            i = stack.n_frames - 1 if index is None else max(0, min(index, stack.n_frames - 1))
            pixels = read_frame(self._run, position, channel, i)
            meta = read_metadata(self._run, position, channel)
            return Frame(position, channel, pixels, float(meta["t_s"][i]), stack.pixel_size_um, i)
        return self._live.get((position, channel))

    def _channel_changed(self) -> None:
        self._refresh_thumbs()
        self._show()

    def _show(self) -> None:
        position, channel = self.position.currentText(), self.channel.currentText()
        if not position or not channel:
            return
        stack = self._stacks.get((position, channel))
        index: int | None = None
        if stack is not None:
            self.slider.blockSignals(True)
            self.slider.setEnabled(stack.n_frames > 1)
            self.slider.setRange(0, max(stack.n_frames - 1, 0))
            if self._shown is None or (self._shown.position, self._shown.channel) != (
                position,
                channel,
            ):
                if self.slider.value() > stack.n_frames - 1:
                    self.slider.setValue(stack.n_frames - 1)
            self.slider.blockSignals(False)
            index = self.slider.value()
        frame = self._frame(position, channel, index)
        if frame is None:
            self.image.clear()
            self.overlay.clear()
            self.info.setText(f"{position} / {channel}: no frame")
            return
        first = self._shown is None
        self.image.setImage(frame.pixels, autoLevels=first)
        self._shown = frame
        if first:
            self.view.autoRange()
        where = f"frame {frame.index + 1}" if frame.index >= 0 else "latest"
        when = format_duration(frame.t_s) if math.isfinite(frame.t_s) else "manual snap"
        self.info.setText(
            f"{position} / {channel}: {where}, run time {when}, "
            f"{frame.pixels.shape[1]} x {frame.pixels.shape[0]} px"
            + (f", {frame.pixel_size_um:g} um/px" if frame.pixel_size_um else "")
        )
        self._draw_outlines(frame)

    def auto_contrast(self) -> None:
        """Set the levels to the shown frame's 0.1 and 99.9 percentiles."""
        if self._shown is None:
            return
        low, high = np.percentile(self._shown.pixels[::4, ::4], (0.1, 99.9))
        self.image.setLevels((float(low), float(max(high, low + 1))))

    def levels(self) -> tuple[float, float]:
        """Return the display levels (contrast) of the main image."""
        low, high = self.image.getLevels()
        return float(low), float(high)

    # -- outlines --------------------------------------------------------------------

    def _brightfield_for(self, frame: Frame) -> Frame | None:
        if frame.channel == "brightfield":
            return frame
        stack = self._stacks.get((frame.position, "brightfield"))
        if stack is not None and self._run is not None:
            from chipctl.runfile.images import read_metadata

            times = read_metadata(self._run, frame.position, "brightfield")["t_s"]
            if not len(times):
                return None
            i = int(np.argmin(np.abs(times - frame.t_s)))
            return self._frame(frame.position, "brightfield", i)
        return self._live.get((frame.position, "brightfield"))

    def _draw_outlines(self, frame: Frame) -> None:
        self.overlay.clear()
        if not self.show_outlines.isChecked() or self._segment is None:
            return
        bright = self._brightfield_for(frame)
        if bright is None or bright.pixels.shape != frame.pixels.shape:
            return
        key = (bright.position, bright.t_s)
        edge = self._outlines.get(key)
        if edge is not None:
            self.overlay.setImage(_overlay(edge), autoLevels=False, levels=(0, 255))
            self.outlines_drawn.emit()
            return
        segment = self._segment
        pixels, pixel_um = bright.pixels, bright.pixel_size_um or 1.0

        def job() -> np.ndarray[Any, Any]:
            return outline_mask(segment(pixels, pixel_um))

        if self._worker is None:
            self._worker = Worker("chipctl-gui-segment")
            self._worker.done.connect(self._outlined)
        self._worker.submit(("outline", key), job)

    def _outlined(self, key: Any, result: Any) -> None:
        if isinstance(result, Exception):
            self.info.setText(self.info.text() + f"; no outlines: {result}")
            return
        self._outlines[key[1]] = result
        if len(self._outlines) > 64:
            self._outlines.pop(next(iter(self._outlines)))
        if self._shown is not None:
            bright = self._brightfield_for(self._shown)
            if bright is not None and (bright.position, bright.t_s) == key[1]:
                self.overlay.setImage(_overlay(result), autoLevels=False, levels=(0, 255))
                self.outlines_drawn.emit()

    def outline_pixels(self) -> int:
        """Return how many outline pixels are drawn now (for tests)."""
        data = self.overlay.image
        return 0 if data is None else int(np.count_nonzero(data[..., 3]))

    # -- thumbnails ------------------------------------------------------------------

    def _refresh_thumbs(self) -> None:
        channel = self.channel.currentText()
        for col, position in enumerate(self._positions):
            if position not in self._thumbs:
                box = self.thumbs_widget.addViewBox(row=0, col=col, lockAspect=True, invertY=True)
                box.setMouseEnabled(False, False)
                item = _Thumb(functools.partial(self.position.setCurrentText, position))
                box.addItem(item)
                label = pg.LabelItem(position, size="8pt")
                self.thumbs_widget.addItem(label, row=1, col=col)
                self._thumbs[position] = (box, item, label)
            box, item, label = self._thumbs[position]
            frame = self._frame(position, channel)
            if frame is None:
                item.clear()
                continue
            small = frame.pixels[::THUMB_STEP, ::THUMB_STEP]
            low, high = np.percentile(small, (0.5, 99.5))
            item.setImage(small, autoLevels=False, levels=(float(low), float(max(high, low + 1))))
            box.autoRange(padding=0)
            label.setText(f"{position}")

    # -- analysis --------------------------------------------------------------------

    def _draw_analysis(self) -> None:
        metric_label = self.growth_metric.currentText()
        metric, ylabel, units = METRICS.get(metric_label, METRICS["relative volume"])
        self.growth.clear()
        legend = self.growth.getPlotItem().legend
        if legend is not None:
            legend.clear()
        self.growth.setLabel("left", ylabel, units=units)
        for position in sorted(self._analysis, key=lambda p: (_chamber_number(p), p)):
            rows = sorted(self._analysis[position], key=lambda r: r[0])
            t = np.array([r[0] for r in rows])
            y = np.array([r[1].get(metric, math.nan) for r in rows], dtype=float)
            if metric_label == "relative volume":
                base = next((v for v in y if math.isfinite(v) and v > 0), math.nan)
                y = y / base
            color = chamber_color(_chamber_number(position) or 1)
            self.growth.plot(
                t, y, pen=pg.mkPen(color, width=1), symbol="o", symbolSize=4,
                symbolBrush=color, symbolPen=None, name=position, connect="finite",
            )  # fmt: skip
        self.dose.clear()
        xs, ys, brushes = [], [], []
        for position, rows in self._analysis.items():
            conc = self._concentrations.get(position)
            rates = [r[1].get("growth_rate_per_h", math.nan) for r in rows]
            finite = [r for r in rates if math.isfinite(r)]
            if conc is None or not finite or not conc > 0:
                continue
            xs.append(conc)
            ys.append(finite[-1])
            brushes.append(pg.mkBrush(chamber_color(_chamber_number(position) or 1)))
        if xs:
            order = np.argsort(xs)
            x = np.log10(np.asarray(xs, dtype=float)[order])
            y = np.asarray(ys, dtype=float)[order]
            self.dose.plot(x, y, pen=pg.mkPen("#888888", width=1))
            points = self.dose.plot(
                x, y, pen=None, symbol="o", symbolSize=9, symbolPen=None,
                symbolBrush=[brushes[i] for i in order],
            )  # fmt: skip
            points.setObjectName("dose-points")
        self._dose_n = len(xs)
        title = "Dose response"
        if self._conc_label:
            title += f" ({self._conc_label})"
        self.dose.setTitle(title)

    def dose_points(self) -> int:
        """Return the number of dose-response points drawn (for tests)."""
        return self._dose_n

    def shutdown(self) -> None:
        """Stop the segmentation thread and close the run file."""
        if self._worker is not None:
            self._worker.stop()
        if self._run is not None:
            self._run.close()
            self._run = None
