"""Screenshots of each main view, written as PNGs (look at them when the GUI changes).

They go to the test's temporary folder; with ``CHIPCTL_SCREENSHOTS=DIR`` (e.g.
``CHIPCTL_SCREENSHOTS=docs/screenshots``) they are written there too, for the docs.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PyQt5.QtGui import QImage

from tests.gui.conftest import make_window

pytestmark = pytest.mark.gui

VIEWS = ("protocol", "instruments", "plots", "images", "events", "alarm")


def _save(widget, name: str, folders: list[Path]) -> Path:
    image = widget.grab().toImage()
    assert not image.isNull()
    path = folders[0] / f"{name}.png"
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        assert image.save(str(folder / f"{name}.png"))
    return path


def _distinct_colours(path: Path) -> int:
    """Count colours on a coarse grid: a blank or half-drawn window has very few."""
    image = QImage(str(path))
    return len(
        {image.pixel(x, y) for x in range(0, image.width(), 7) for y in range(0, image.height(), 7)}
    )


def test_screenshots_of_each_main_view(qtbot, tmp_path: Path, imaging_run: Path) -> None:
    folders = [tmp_path / "screenshots"]
    extra = os.environ.get("CHIPCTL_SCREENSHOTS")
    if extra:
        folders.append(Path(extra))
    window = make_window(qtbot, tmp_path)
    try:
        panel = window.protocol_panel
        panel.choose("adc-dose-response")
        qtbot.waitUntil(lambda: panel.preflight is not None, timeout=30_000)
        qtbot.waitUntil(
            lambda: bool(
                window.instruments.boxes["medium"].status.text().startswith(("stopped", "running"))
            ),
            timeout=30_000,
        )
        window.left.setCurrentWidget(panel)
        qtbot.wait(300)
        shots = {"protocol": _save(window, "protocol", folders)}
        window.left.setCurrentWidget(window.instruments)
        qtbot.wait(100)
        shots["instruments"] = _save(window, "instruments", folders)

        with qtbot.waitSignal(window.plots.history_loaded, timeout=30_000):
            window.open_run(imaging_run)
        window.left.setCurrentWidget(panel)
        window.right.setCurrentWidget(window.plots)
        qtbot.wait(300)
        shots["plots"] = _save(window, "plots", folders)
        window.right.setCurrentWidget(window.images)
        images = window.images
        images.channel.setCurrentText("brightfield")
        images.growth_metric.setCurrentText("relative volume")
        with qtbot.waitSignal(images.outlines_drawn, timeout=30_000):
            images.position.setCurrentText("chamber 2b")
        qtbot.wait(300)
        shots["images"] = _save(window, "images", folders)
        window.right.setCurrentWidget(window.events)
        qtbot.wait(100)
        shots["events"] = _save(window, "events", folders)
        window.alarms.add([(7384.0, "medium", "alarm", "stall (motor blocked)")])
        window.alarms.add([(7386.0, "interlock:pump_alarm", "alarm", "medium: stall -> abort")])
        qtbot.wait(100)
        shots["alarm"] = _save(window, "alarm", folders)
    finally:
        window.shutdown()
    for name in VIEWS:
        path = shots[name]
        assert path.stat().st_size > 20_000, f"{name}: suspiciously small screenshot"
        assert _distinct_colours(path) > 12, f"{name}: looks blank"
    print(f"\nscreenshots in {', '.join(str(f) for f in folders)}")
