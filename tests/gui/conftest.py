"""Fixtures of the GUI tests: a main window on the simulated rig, small protocols, a GUI
heartbeat that measures how long the Qt thread was blocked."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from chipctl.config import parse_config, reference_rig_config
from drivers.clock import RealClock

pytest.importorskip("pytestqt")

#: A short protocol: prime, perfuse both inlets for 2 h, switch the outlet valve.
SMALL_PROTOCOL = """
[protocol]
name = "gui-small"
description = "Perfuse medium and drug at 5 uL/min for 2 h (a GUI test)."

[[step]]
name = "collect"
action = "valve"
valve = "outlet"
position = "sample 1"

[[step]]
name = "perfuse medium"
action = "infuse"
pump = "medium"
rate = "5 uL/min"
duration = "2 h"
wait = false

[[step]]
name = "perfuse drug"
action = "infuse"
pump = "drug"
rate = "5 uL/min"
duration = "2 h"

[[step]]
name = "to waste"
action = "valve"
valve = "outlet"
position = "waste"
"""

#: A short imaging protocol: brightfield of two chambers, three time points, then stains.
IMAGING_PROTOCOL = """
[protocol]
name = "gui-imaging"
description = "Image two chambers three times while perfusing (a GUI test)."

[[step]]
name = "images"
action = "image"
positions = ["chamber 1", "chamber 2"]
channels = ["brightfield"]
at = ["0 h", "1 h", "2 h"]

[[step]]
name = "perfuse medium"
action = "infuse"
pump = "medium"
rate = "5 uL/min"
duration = "2 h"
wait = false

[[step]]
name = "perfuse drug"
action = "infuse"
pump = "drug"
rate = "5 uL/min"
duration = "2 h"

[[step]]
name = "stains"
action = "image"
positions = ["chamber 1", "chamber 2"]
channels = ["brightfield", "live", "dead"]
at = ["0 h"]
"""


@pytest.fixture
def small_protocol(tmp_path: Path) -> Path:
    path = tmp_path / "gui-small.toml"
    path.write_text(SMALL_PROTOCOL, encoding="utf-8")
    return path


@pytest.fixture
def imaging_protocol(tmp_path: Path) -> Path:
    path = tmp_path / "gui-imaging.toml"
    path.write_text(IMAGING_PROTOCOL, encoding="utf-8")
    return path


def faulty_config(device: str, kind: str, at: str):
    """The reference rig with one scheduled simulator fault."""
    text = (
        reference_rig_config().text
        + f'\n[[fault]]\ndevice = "{device}"\nkind = "{kind}"\nat = "{at}"\n'
    )
    return parse_config(text, "<reference rig with a fault>")


class Heartbeat:
    """A Qt timer ticking every ``period_ms`` on the GUI thread; measures how long it stalls.

    ``max_gap_s`` is the longest wall-clock gap between ticks: how long the GUI thread could
    not react. ``max_busy_s`` is the GUI thread's own CPU time within one gap: the part
    of a stall that the GUI's code caused (a gap with little CPU is the thread waiting for
    the interpreter lock or for a core: on a loaded machine that is the machine, not us).
    """

    def __init__(self, period_ms: int = 5) -> None:
        from PyQt5.QtCore import QTimer

        self.clock = RealClock()
        self.last_s: float | None = None
        self.last_cpu_s = 0.0
        self.max_gap_s = 0.0
        self.max_busy_s = 0.0
        self.ticks = 0
        self.timer = QTimer()
        self.timer.setTimerType(0)  # Qt.PreciseTimer
        self.timer.setInterval(period_ms)
        self.timer.timeout.connect(self._tick)

    def _tick(self) -> None:
        now = self.clock.now_s()
        cpu = time.thread_time()
        if self.last_s is not None:
            self.max_gap_s = max(self.max_gap_s, now - self.last_s)
            self.max_busy_s = max(self.max_busy_s, cpu - self.last_cpu_s)
        self.last_s = now
        self.last_cpu_s = cpu
        self.ticks += 1

    def start(self) -> None:
        self.last_s = None
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()

    def report(self, what: str) -> str:
        load = os.getloadavg()[0]
        return (
            f"{what}: GUI thread longest stall {self.max_gap_s * 1000:.1f} ms (wall), of which "
            f"at most {self.max_busy_s * 1000:.1f} ms its own CPU work; {self.ticks} ticks; "
            f"machine load {load:.1f} on {os.cpu_count()} cores"
        )

    def check(self, limit_s: float) -> None:
        """The GUI's own work never blocks longer than ``limit_s``; neither does the wall
        clock unless the machine is oversubscribed (then only the CPU part is ours)."""
        assert self.max_busy_s < limit_s, self.report("GUI work too long")
        if os.getloadavg()[0] <= (os.cpu_count() or 1):
            assert self.max_gap_s < limit_s, self.report("GUI stalled")

    def check_own_work(self, limit_s: float) -> None:
        """Only the GUI's own work: for a run whose engine thread, in this same process,
        never waits (the virtual clock) and so holds the interpreter lock in long stretches."""
        assert self.max_busy_s < limit_s, self.report("GUI work too long")


def make_window(qtbot, tmp_path: Path, config=None, **kwargs):
    """A main window on the simulated reference rig (or ``config``), manual control open."""
    from chipctl.gui.controller import RigController
    from chipctl.gui.main_window import MainWindow

    controller = RigController(
        config or reference_rig_config(), run_dir=tmp_path / "runs", **kwargs
    )
    window = MainWindow(controller)
    qtbot.addWidget(window)
    window.resize(1500, 950)
    window.show()
    window.start()
    assert window.protocol_panel is not None
    window.protocol_panel.confirm_abort = True
    qtbot.waitUntil(lambda: controller.mode == "manual", timeout=20_000)
    return window


@pytest.fixture
def window(qtbot, tmp_path: Path):
    win = make_window(qtbot, tmp_path)
    yield win
    win.shutdown()


@pytest.fixture(scope="session")
def imaging_run(tmp_path_factory) -> Path:
    """A finished simulated run with images and live analysis (virtual clock, seconds)."""
    import chipctl.api as api

    folder = tmp_path_factory.mktemp("imaging-run")
    protocol = folder / "gui-imaging.toml"
    protocol.write_text(IMAGING_PROTOCOL, encoding="utf-8")
    result = api.run_protocol(protocol, sim=True, out=folder / "imaging.h5", seed=3)
    assert result.ok, result.message
    return result.path
