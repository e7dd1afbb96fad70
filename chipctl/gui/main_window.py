"""The operator's main window: banners, protocol and instruments, plots, images, events.

Layout::

    [ SIMULATED banner (whenever the rig is simulated)                              ]
    [ ALARM banner (until acknowledged)                                             ]
    | Protocol | Instruments |        | Plots | Images | Events |                  |
    |  choose, parameters,   |        |  live plots / frames / the event log         |
    |  preflight, run        |        |                                              |
    [ status bar: who holds the rig, run state, step, time left                     ]

The window only displays and forwards: the :class:`~chipctl.gui.controller.RigController`
owns the instrument, the engine bridge brings the data. Manual controls are unlocked when
the rig is idle (manual control) or the run is paused, locked otherwise.

A finished run file opens read-only (File > Open run file) in the same plots, images and
event log; "Back to live" returns to the instrument.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
from PyQt5.QtCore import Qt, QTimer
from PyQt5.QtGui import QCloseEvent
from PyQt5.QtWidgets import (
    QAction,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QSizePolicy,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from chipctl.engine.manual import Snap
from chipctl.engine.run import RunState, RunStatus
from chipctl.errors import ChipctlError
from chipctl.gui.controller import RigController
from chipctl.gui.events import AlarmBanner, EventLog
from chipctl.gui.images import ImagesView
from chipctl.gui.instruments import InstrumentPanel
from chipctl.gui.plots import PlotPanel
from chipctl.gui.protocol_panel import ProtocolPanel
from chipctl.units import format_duration

__all__ = ["MainWindow"]

_CONC = re.compile(r"^c_.+_chamber(\d+)_nm$")
#: How often the dose-response concentrations are recomputed from the plots.
CONCENTRATION_MS = 5000


class MainWindow(QMainWindow):
    """The operator GUI.

    Args:
        controller: the rig controller (None: a viewer for run files, no instrument).
    """

    def __init__(self, controller: RigController | None) -> None:
        """Build every panel; manual control is opened by :meth:`start`."""
        super().__init__()
        self.controller = controller
        self.viewing: Path | None = None
        self._plot_source = "manual"
        self._closing = False
        rig = controller.rig if controller is not None else None
        name = rig.config.name if rig is not None else "run file viewer"
        self.setWindowTitle(
            f"chipctl - {name}" + (" - SIMULATED" if rig is not None and rig.simulated else "")
        )
        self.resize(1500, 950)

        central = QWidget()
        outer = QVBoxLayout(central)
        outer.setContentsMargins(4, 4, 4, 4)
        self.sim_banner = QLabel(
            f"SIMULATED: {name}. Every device is an emulator on a simulated chip; "
            "nothing real moves."
        )
        self.sim_banner.setObjectName("sim-banner")
        self.sim_banner.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.sim_banner.setStyleSheet(
            "background: #ffb300; color: black; font-weight: bold; padding: 4px;"
        )
        self.sim_banner.setVisible(rig is not None and rig.simulated)
        outer.addWidget(self.sim_banner)
        self.file_banner = QLabel("")
        self.file_banner.setObjectName("file-banner")
        self.file_banner.setStyleSheet("background: #1f4e9c; color: white; padding: 3px;")
        self.file_banner.setVisible(False)
        outer.addWidget(self.file_banner)
        self.alarms = AlarmBanner()
        self.alarms.acknowledged.connect(self._acknowledged)
        outer.addWidget(self.alarms)

        split = QSplitter(Qt.Orientation.Horizontal)
        self.left = QTabWidget()
        self.left.setObjectName("left-tabs")
        self.protocol_panel: ProtocolPanel | None = None
        self.instruments: InstrumentPanel | None = None
        if controller is not None:
            self.protocol_panel = ProtocolPanel(controller)
            self.left.addTab(self.protocol_panel, "Protocol")
            self.instruments = InstrumentPanel(controller.rig)
            self.instruments.executor = controller.execute
            self.instruments.command_done.connect(self._command_done)
            self.left.addTab(self.instruments, "Instruments")
        else:
            note = QLabel("No instrument: opened to browse run files (File > Open run file).")
            note.setWordWrap(True)
            self.left.addTab(note, "Instrument")
        split.addWidget(self.left)
        self.right = QTabWidget()
        self.right.setObjectName("right-tabs")
        devices = list(rig.devices) if rig is not None else []
        self.plots = PlotPanel(devices)
        self.plots.failed.connect(self._error)
        self.plots.history_loaded.connect(self._update_concentrations)
        self.images = ImagesView()
        self.events = EventLog()
        self.right.addTab(self.plots, "Plots")
        self.right.addTab(self.images, "Images")
        self.right.addTab(self.events, "Events")
        split.addWidget(self.right)
        split.setSizes([520, 980])
        outer.addWidget(split, 1)
        self.setCentralWidget(central)

        self.mode_label = QLabel("")
        self.mode_label.setObjectName("mode-label")
        self.status_label = QLabel("")
        self.status_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.status_label.setObjectName("status-label")
        status_bar = self.statusBar()
        if status_bar is not None:
            status_bar.addWidget(self.mode_label)
            status_bar.addWidget(self.status_label, 1)

        self._build_menu()
        if controller is not None:
            bridge = controller.bridge
            bridge.telemetry.connect(self._telemetry)
            bridge.events.connect(self._events)
            bridge.frames.connect(self._frames)
            bridge.analysis.connect(self._analysis)
            controller.mode_changed.connect(self._mode_changed)
            controller.status_changed.connect(self._status_changed)
            controller.run_started.connect(self._run_started)
            controller.run_ended.connect(self._run_ended)
            controller.error.connect(self._error)
        self._conc_timer = QTimer(self)
        self._conc_timer.setInterval(CONCENTRATION_MS)
        self._conc_timer.timeout.connect(self._update_concentrations)
        self._conc_timer.start()
        self._mode_changed(controller.mode if controller is not None else "offline")

    def _build_menu(self) -> None:
        menu_bar = self.menuBar()
        if menu_bar is None:
            return
        file_menu = menu_bar.addMenu("&File")
        if file_menu is None:
            return
        self.open_action = QAction("&Open run file...", self)
        self.open_action.setShortcut("Ctrl+O")
        self.open_action.triggered.connect(self._open_dialog)
        file_menu.addAction(self.open_action)
        self.live_action = QAction("Back to &live", self)
        self.live_action.triggered.connect(self.back_to_live)
        self.live_action.setEnabled(False)
        file_menu.addAction(self.live_action)
        file_menu.addSeparator()
        quit_action = QAction("&Quit", self)
        quit_action.setShortcut("Ctrl+Q")
        quit_action.triggered.connect(self._quit)
        file_menu.addAction(quit_action)

    # -- life cycle --------------------------------------------------------------------

    def _quit(self) -> None:
        self.close()

    def start(self) -> None:
        """Connect the instrument for manual control (in the background)."""
        if self.controller is not None and self.controller.auto_manual:
            self.controller.open_manual()

    def closeEvent(self, event: QCloseEvent | None) -> None:  # noqa: N802 (Qt's name)
        """Abort a run (after asking), close the instrument, stop the worker threads."""
        controller = self.controller
        if self._closing:
            if event is not None:
                event.accept()
            return
        if controller is not None and controller.handle is not None:
            answer = QMessageBox.question(
                self,
                "A run is in progress",
                "Closing the window aborts the run (pumps stop). Close anyway?",
            )
            if answer != QMessageBox.StandardButton.Yes:
                if event is not None:
                    event.ignore()
                return
        self.shutdown()
        self._closing = True
        if event is not None:
            event.accept()

    def shutdown_and_close(self) -> None:
        """Abort any run without asking and close the window (scripted quits)."""
        self.shutdown()
        self._closing = True
        self.close()

    def shutdown(self) -> None:
        """Stop everything this window started (idempotent)."""
        self._conc_timer.stop()
        if self.controller is not None:
            self.controller.shutdown()
        self.plots.shutdown()
        self.images.shutdown()

    # -- from the engine ---------------------------------------------------------------

    def _telemetry(self, samples: list[tuple[str, float, Any]]) -> None:
        if self.instruments is not None:
            self.instruments.update_values(samples)
        if self.viewing is not None or self.controller is None:
            return
        origin = "run" if self.controller.handle is not None else "manual"
        if origin == self._plot_source:
            self.plots.add_samples(samples)

    def _events(self, events: list[tuple[float, str, str, str]]) -> None:
        self.events.add(events)
        self.alarms.add(events)

    def _frames(self, frames: list[Any]) -> None:
        if self.viewing is None:
            self.images.add_frames(frames)

    def _analysis(self, results: list[Any]) -> None:
        if self.viewing is None:
            self.images.add_analysis(results)

    def _command_done(self, command: Any, result: Any) -> None:
        if isinstance(command, Snap) and isinstance(result, list):
            t_s = math.nan
            status = self.controller.status() if self.controller is not None else None
            if status is not None:
                t_s = status.t_s
            self.back_to_live()
            self.images.add_snaps(result, command.position, t_s)
            self.right.setCurrentWidget(self.images)

    def _acknowledged(self, alarms: list[Any]) -> None:
        self.events.add([(alarms[-1].t_s, "operator", "acknowledged", f"{len(alarms)} alarm(s)")])

    def _error(self, message: str) -> None:
        self.events.add([(self._now_s(), "gui", "error", message)])
        status_bar = self.statusBar()
        if status_bar is not None:
            status_bar.showMessage(message, 15000)

    def _now_s(self) -> float:
        status = self.controller.status() if self.controller is not None else None
        return status.t_s if status is not None else 0.0

    # -- state ---------------------------------------------------------------------------

    def _mode_changed(self, mode: str) -> None:
        texts = {
            "offline": "instrument not connected",
            "connecting": "connecting the instrument...",
            "manual": "manual control (no protocol running)",
            "starting": "starting the run...",
            "running": "protocol run:",
            "finishing": "closing the run file...",
        }
        self.mode_label.setText(texts.get(mode, mode))
        self.plots.held = mode in ("starting", "finishing", "connecting")
        self._update_lock()
        self.open_action.setEnabled(mode not in ("running", "starting", "finishing"))

    def _update_lock(self, status: RunStatus | None = None) -> None:
        if self.instruments is None or self.controller is None:
            return
        mode = self.controller.mode
        if mode == "running":
            state = status.state if status is not None else None
            if state is None and self.controller.handle is not None:
                state = self.controller.handle.run.status().state
            if state is RunState.PAUSED:
                self.instruments.set_locked(False, "run paused: manual control unlocked")
            else:
                self.instruments.set_locked(True, "locked: a protocol is running (pause it to use)")
        elif mode == "manual":
            self.instruments.set_locked(False, "idle: manual control")
        else:
            self.instruments.set_locked(True, f"locked: {mode}")

    def _status_changed(self, status: RunStatus) -> None:
        self._update_lock(status)
        step = status.step_name or status.step_label
        self.status_label.setText(
            f"{status.state.value}; step {status.step_index + 1}/{status.n_steps} {step}; "
            f"{format_duration(status.t_s)} elapsed, {format_duration(status.remaining_s)} left"
        )

    def _run_started(self, handle: Any) -> None:
        self.back_to_live()
        self._plot_source = "run"
        self.plots.clear()
        self.plots.set_history(Path(handle.path))
        self.images.clear()
        self.events.add([(0.0, "gui", "run", f"run file {handle.path}")])
        self.right.setCurrentWidget(self.plots)

    def _run_ended(self, result: Any) -> None:
        self.events.add(
            [(result.duration_s, "gui", "run", f"{result.state.value}: run file {result.path}")]
        )
        self._update_concentrations()

    # -- run files -----------------------------------------------------------------------

    def _open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open a run file", "", "Run files (*.h5);;All files (*)"
        )
        if path:
            self.open_run(Path(path))

    def open_run(self, path: Path) -> bool:
        """Browse a finished (or live) run file in the plots, images and events."""
        from chipctl.runfile.reader import RunFile

        try:
            with RunFile(path) as run:
                events = [(e.t_s, e.source, e.kind, e.message) for e in run.events()]
                attrs = run.attrs
                name = run.protocol_name
        except (ChipctlError, OSError, KeyError) as exc:
            self._error(f"{path}: cannot open: {exc}")
            return False
        self.viewing = Path(path)
        self.plots.load_run(Path(path))
        try:
            summary = self.images.load_run(Path(path))
        except (ChipctlError, OSError, KeyError) as exc:
            summary = f"images not readable: {exc}"
        self.events.clear()
        self.events.add(events)
        mode = "simulated" if attrs.get("simulated") else "hardware"
        started = str(attrs.get("started_utc", "?"))[:16].replace("T", " ")
        self.file_banner.setText(
            f"Viewing {path.name}: {name}, {attrs.get('status', '?')} ({mode}), "
            f"started {started} UTC; {summary}. File > Back to live returns to the instrument."
        )
        self.file_banner.setVisible(True)
        self.live_action.setEnabled(self.controller is not None)
        return True

    def back_to_live(self) -> None:
        """Leave a run file and show the instrument's data again."""
        if self.viewing is None:
            return
        self.viewing = None
        self.file_banner.setVisible(False)
        self.live_action.setEnabled(False)
        self.plots.clear()
        self.images.clear()
        self.events.clear()
        self._plot_source = (
            "manual" if self.controller is None or not self.controller.handle else "run"
        )

    # -- dose response -------------------------------------------------------------------

    def _update_concentrations(self) -> None:
        """Give the dose-response plot each chamber's concentration.

        The mean of the chamber concentration curves when the rig is simulated (its ground
        truth), else the design: stock x dilution ratio^(k - 1).
        """
        measured: dict[str, float] = {}
        for device, quantity in self.plots.curve_keys():
            match = _CONC.match(quantity)
            if device != "chip" or not match:
                continue
            series = self.plots.series((device, quantity))
            if not series.n_total:
                continue
            env = series.envelope(series.t_first_s, series.t_last_s, 400)
            values = env.y[np.isfinite(env.y)]
            if len(values):
                measured[f"chamber {int(match.group(1))}"] = float(np.mean(values))
        if measured:
            self.images.set_concentrations(measured, "sim truth")
            return
        nominal = self._nominal_concentrations()
        if nominal:
            self.images.set_concentrations(nominal, "design")

    def _nominal_concentrations(self) -> dict[str, float]:
        if self.controller is None:
            return {}
        config = self.controller.config
        chip = config.chip
        if chip is None:
            return {}
        from chipctl.rig import contents_nm

        stock = 0.0
        for device in config.devices.values():
            if device.options.get("inlet") == "drug":
                stock = max(contents_nm(device).values(), default=0.0)
        if not stock > 0:
            return {}
        return {
            f"chamber {k}": stock * chip.dilution_ratio ** (k - 1)
            for k in range(1, chip.n_chambers + 1)
        }
