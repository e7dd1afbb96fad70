"""Open a finished run file: the same plots, images (with outlines) and events."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from chipctl.runfile import open_run

pytestmark = pytest.mark.gui


@pytest.fixture
def viewer(qtbot):
    from chipctl.gui.main_window import MainWindow

    window = MainWindow(None)
    qtbot.addWidget(window)
    window.resize(1500, 950)
    window.show()
    yield window
    window.shutdown()


def test_a_finished_run_opens_in_plots_images_and_events(viewer, qtbot, imaging_run: Path):
    with open_run(imaging_run) as run:
        medium = run.telemetry("medium")
        n_events = len(run.events())
        n_chambers = len(run.table("/analysis/chambers")["t_s"])
    with qtbot.waitSignal(viewer.plots.history_loaded, timeout=30_000):
        assert viewer.open_run(imaging_run)
    assert viewer.file_banner.isVisible() and imaging_run.name in viewer.file_banner.text()

    # plots: every plotted column, with all its samples; drawn values come from the file
    keys = viewer.plots.curve_keys()
    assert ("medium", "delivered_ul") in keys and ("chip", "p_medium_kpa") in keys
    series = viewer.plots.series(("medium", "delivered_ul"))
    assert series.n_total == len(medium["t_s"])
    viewer.plots.refresh(force=True)
    x, y = viewer.plots.curve_data(("medium", "delivered_ul"))
    assert len(x) > 0
    assert np.nanmax(y) == pytest.approx(np.max(medium["delivered_ul"]))

    # events: all of them, as in the file
    assert len(viewer.events.visible_rows()) == n_events

    # images: every field of both chambers, all channels, every frame reachable with the slider
    images = viewer.images
    positions = [images.position.itemText(i) for i in range(images.position.count())]
    channels = {images.channel.itemText(i) for i in range(images.channel.count())}
    assert positions == [f"chamber {k}{f}" for k in (1, 2) for f in "abc"]
    assert channels == {"brightfield", "live", "dead"}
    images.channel.setCurrentText("brightfield")
    assert images.slider.maximum() == 3  # 3 time points + the stain round
    images.slider.setValue(1)
    assert "frame 2" in images.info.text()
    with qtbot.waitSignal(images.outlines_drawn, timeout=30_000):
        images.position.setCurrentText("chamber 2b")
    assert images.outline_pixels() > 100  # tumoroids were outlined
    low, high = images.levels()
    images.auto_contrast()
    assert images.levels() != (low, high)

    # growth curves from /analysis/chambers: one per chamber (its fields summed)
    drawn = [item for item in images.growth.getPlotItem().listDataItems() if item.name()]
    assert {item.name() for item in drawn} == {"chamber 1", "chamber 2"}
    assert sum(len(item.getData()[0]) for item in drawn) == n_chambers


def test_opening_a_file_that_is_not_a_run_says_so(viewer, tmp_path: Path):
    bad = tmp_path / "not-a-run.h5"
    bad.write_bytes(b"not hdf5 at all")
    assert not viewer.open_run(bad)
    messages = [row.message for row in viewer.events.visible_rows()]
    assert any("cannot open" in m and "not-a-run.h5" in m for m in messages)


def test_chipctl_gui_opens_a_run_file_and_quits(imaging_run: Path, tmp_path: Path):
    env = {"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-m", "chipctl.gui", "--open", str(imaging_run), "--quit-after", "2"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
