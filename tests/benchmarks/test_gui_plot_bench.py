"""Benchmark: frame time of the live plots with 1,000,000 telemetry points per curve.

A "frame" is what the GUI thread does when the view moves: set the time range, recompute
what to draw, and paint the four plots (``repaint()``, synchronous). Three set-ups, measured
side by side in the same run on the same widget size:

* **empty**: the plot panel with no data (the floor: axes, grid, legends);
* **envelope** (what chipctl does): 19 curves of 1,000,000 samples each held as
  :class:`~chipctl.gui.series.EnvelopeSeries`; each frame draws their min/max envelope at
  screen resolution;
* **pyqtgraph built-in**: the same 19 curves handed to pyqtgraph raw, with its
  ``clipToView`` and ``autoDownsample`` (peak) on.

Each is measured for a whole-run view (all 1M samples in range) and a zoomed view (the last
1 %). Printed: median and 90th percentile ms per frame, and each median's ratio to the
empty frame. Run with ``pytest -m slow tests/benchmarks/test_gui_plot_bench.py -s``.
"""

from __future__ import annotations

import numpy as np
import pytest

from drivers.clock import RealClock

pytestmark = [pytest.mark.slow, pytest.mark.gui]

N_POINTS = 1_000_000
FRAMES = 15
clock = RealClock()

#: The quantities of the reference rig that the plots show (19 curves).
KEYS = [
    ("medium", "rate_ul_min"),
    ("medium", "delivered_ul"),
    ("drug", "rate_ul_min"),
    ("drug", "delivered_ul"),
    ("exchanger", "rate_ul_min"),
    ("exchanger", "delivered_ul"),
    ("flow", "flow_ul_min"),
    ("chip", "q_outlet_ul_min"),
    ("chip", "p_medium_kpa"),
    ("chip", "p_drug_kpa"),
    ("chip", "p_aux_kpa"),
    *[("chip", f"c_t_vc_mmae_chamber{k}_nm") for k in range(1, 9)],
]


def _data(k: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(k)
    t = np.arange(N_POINTS, dtype=np.float64) * 1.0  # 1 s telemetry: 11.6 days
    y = np.sin(t / (3600.0 * (k + 1))) + 0.05 * rng.standard_normal(N_POINTS)
    y[rng.integers(0, N_POINTS, 20)] += 3.0  # spikes the envelope must keep
    return t, y


def _frames(panel, app, ranges) -> list[float]:
    times = []
    for t0, t1 in ranges:
        start = clock.now_s()
        panel._setting_range = True  # a programmatic move, as following the run does
        panel._master.setXRange(t0, t1, padding=0.0)
        panel._setting_range = False
        for curve in panel._curves.values():
            curve.dirty = True
        panel.refresh(force=True)
        panel.graphics.grab()  # renders every item now (a repaint may be deferred)
        times.append(clock.now_s() - start)
    return times


def _builtin_frames(panel, app, ranges) -> list[float]:
    times = []
    for t0, t1 in ranges:
        start = clock.now_s()
        panel._master.setXRange(t0, t1, padding=0.0)
        panel.graphics.grab()  # renders every item now (a repaint may be deferred)
        times.append(clock.now_s() - start)
    return times


def _ranges(zoom: bool) -> list[tuple[float, float]]:
    span = N_POINTS * (0.01 if zoom else 1.0)
    end = float(N_POINTS)
    return [(end - span - i * span * 0.01, end - i * span * 0.01) for i in range(FRAMES)]


def test_plot_frame_time_with_a_million_points_per_curve(qtbot) -> None:
    import pyqtgraph as pg

    from chipctl.gui.curves import classify
    from chipctl.gui.plots import PlotPanel
    from chipctl.gui.series import EnvelopeSeries

    app = pg.mkQApp()
    devices = ["medium", "drug", "exchanger", "outlet", "flow", "microscope"]
    results: dict[str, list[float]] = {}

    empty = PlotPanel(devices)
    qtbot.addWidget(empty)
    empty.resize(1000, 800)
    empty.show()
    qtbot.waitExposed(empty)
    results["empty"] = _frames(empty, app, _ranges(False))

    panel = PlotPanel(devices)
    qtbot.addWidget(panel)
    panel.resize(1000, 800)
    panel.show()
    qtbot.waitExposed(panel)
    data = {key: _data(i) for i, key in enumerate(KEYS)}
    build_start = clock.now_s()
    series = {}
    for key, (t, y) in data.items():
        s = EnvelopeSeries()
        s.extend(t, y)
        series[key] = s
    build_s = (clock.now_s() - build_start) / len(KEYS)
    panel.set_series(series)
    panel._following = False
    results["envelope, whole run"] = _frames(panel, app, _ranges(False))
    results["envelope, last 1 %"] = _frames(panel, app, _ranges(True))
    points = panel.refresh(force=True)

    builtin = PlotPanel(devices)
    qtbot.addWidget(builtin)
    builtin.resize(1000, 800)
    builtin.show()
    qtbot.waitExposed(builtin)
    builtin._timer.stop()
    raw_items = []
    for key, (t, y) in data.items():
        spec = classify(*key, devices)
        item = pg.PlotDataItem(pen=spec.color)
        builtin.plots[spec.plot].addItem(item)
        item.setClipToView(True)
        item.setDownsampling(auto=True, method="peak")
        item.setData(t, y)
        raw_items.append((builtin.plots[spec.plot], item))
    builtin._following = False
    results["pyqtgraph built-in, whole run"] = _builtin_frames(builtin, app, _ranges(False))
    results["pyqtgraph built-in, last 1 %"] = _builtin_frames(builtin, app, _ranges(True))

    for plot, item in raw_items:  # before Qt deletes the views (pyqtgraph teardown quirk)
        plot.removeItem(item)
    floor = float(np.median(results["empty"]))
    print(f"\n19 curves x {N_POINTS:,} points, 1000 x 800 px, {FRAMES} frames each")
    print(f"building one envelope series of {N_POINTS:,} points: {build_s * 1000:.0f} ms")
    print(f"points handed to Qt per envelope frame (whole run): {points:,}")
    for name, times in results.items():
        ms = np.array(times) * 1000
        print(
            f"{name:32} median {np.median(ms):7.1f} ms  p90 {np.percentile(ms, 90):7.1f} ms"
            f"  = {np.median(ms) / (floor * 1000):5.1f} x empty"
        )
    envelope = float(np.median(results["envelope, whole run"]))
    builtin_ms = float(np.median(results["pyqtgraph built-in, whole run"]))
    assert envelope < builtin_ms, "the envelope must beat pyqtgraph's raw path"
    assert envelope < 0.1, "a frame with a million points per curve must stay under 100 ms"
