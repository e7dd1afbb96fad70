"""The protocol panel: choose a protocol, set its parameters, see the preflight, run it.

A protocol is a built-in (by name) or a file. Its parameters appear as a form (one field per
parameter, its default filled in, its kind, range and description as a tooltip); changed
fields are the overrides passed to the run. Every change re-runs the preflight in the
background (:meth:`RigController.check`), shown as a summary (duration, images and disk,
peak pressures), the syringe ledger (with when each syringe is lowest) and the step
timeline, or as the one-line reason the protocol cannot run.

Start is enabled only when the preflight passed. While a run is on, the panel shows the
current step, a progress bar, elapsed and remaining time (pauses extend it), and Pause,
Resume, Abort (which asks for confirmation) and Confirm (for a protocol's operator prompt).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PyQt5.QtCore import Qt, QTimer, pyqtSignal
from PyQt5.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from chipctl.engine.run import RunState, RunStatus
from chipctl.gui.controller import RigController
from chipctl.protocol.catalog import builtin_names
from chipctl.protocol.model import Protocol
from chipctl.units import format_duration

__all__ = ["DEFAULT_SPEED", "SPEEDS", "ProtocolPanel"]

#: Clock choices for a simulated run: label -> speed (None: the virtual clock).
SPEEDS: dict[str, float | None] = {
    "virtual clock (as fast as possible)": None,
    "100x real time": 100.0,
    "30x real time": 30.0,
    "10x real time": 10.0,
    "real time": 1.0,
}
#: The clock of a simulated run unless ``chipctl gui --speed`` says otherwise. Faster scaled
#: clocks can trip the simulated New Era pump's 10 s safe-mode watchdog: a 50 ms telemetry
#: poll is 5 simulated seconds at 100x (see docs/gui.md).
DEFAULT_SPEED = 10.0
#: Delay between the last edit and the preflight it triggers.
CHECK_DELAY_MS = 300
OPEN_FILE = "open a protocol file..."


def _label(text: str = "", name: str = "") -> QLabel:
    """A label whose text may change: it wraps (so a long text never widens the panel)."""
    label = QLabel(text)
    label.setWordWrap(True)
    if name:
        label.setObjectName(name)
    return label


def _table(headers: list[str]) -> QTableWidget:
    table = QTableWidget(0, len(headers))
    table.setHorizontalHeaderLabels(headers)
    table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
    vertical = table.verticalHeader()
    if vertical is not None:
        vertical.setVisible(False)
    header = table.horizontalHeader()
    if header is not None:
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
    return table


def _fill(table: QTableWidget, rows: list[list[str]]) -> None:
    table.setRowCount(len(rows))
    for r, row in enumerate(rows):
        for c, text in enumerate(row):
            item = QTableWidgetItem(text)
            if c > 0 and text[:1].isdigit():
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            table.setItem(r, c, item)


class ProtocolPanel(QWidget):
    """Choose, check, start and steer a protocol run.

    Args:
        controller: the rig controller.
        parent: the parent widget.
    """

    #: Emitted with the protocol reference when a run is asked for.
    start_requested = pyqtSignal(str)

    def __init__(self, controller: RigController, parent: QWidget | None = None) -> None:
        """Build the panel; the first built-in protocol is chosen."""
        super().__init__(parent)
        self.controller = controller
        self.protocol: Protocol | None = None
        self.preflight: Any = None
        self._request = 0
        self._ref = ""
        self._fields: dict[str, QLineEdit] = {}
        self._status: RunStatus | None = None
        self.confirm_abort = True  # tests turn the dialog off

        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        choose = QGroupBox("Protocol")
        choose_layout = QVBoxLayout(choose)
        row = QHBoxLayout()
        self.source = QComboBox()
        self.source.setObjectName("protocol-source")
        self.source.addItems([*builtin_names(), OPEN_FILE])
        self.source.activated.connect(self._source_chosen)
        row.addWidget(self.source, 1)
        choose_layout.addLayout(row)
        self.description = _label()
        choose_layout.addWidget(self.description)
        self.form_box = QGroupBox("Parameters")
        box_layout = QVBoxLayout(self.form_box)
        box_layout.setContentsMargins(2, 2, 2, 2)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        form_widget = QWidget()
        self.form = QFormLayout(form_widget)
        scroll.setWidget(form_widget)
        scroll.setMaximumHeight(110)
        scroll.setMinimumHeight(40)
        box_layout.addWidget(scroll)
        choose_layout.addWidget(self.form_box, 1)
        options = QFormLayout()
        self.speed = QComboBox()
        self.speed.setObjectName("run-speed")
        self.speed.addItems(list(SPEEDS))
        self.seed = QSpinBox()
        self.seed.setObjectName("run-seed")
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setValue(controller.seed)
        if controller.simulated:
            default = controller.speed if controller.speed is not None else DEFAULT_SPEED
            label = next((k for k, v in SPEEDS.items() if v == default), None)
            if label is None:
                label = f"{default:g}x real time"
                SPEEDS[label] = default
                self.speed.addItem(label)
            self.speed.setCurrentText(label)
            options.addRow("simulated clock", self.speed)
            options.addRow("simulated seed", self.seed)
        self.out = QLineEdit()
        self.out.setObjectName("run-file")
        self.out.setPlaceholderText(f"{controller.run_dir}/<time>_<protocol>.h5 (automatic)")
        options.addRow("run file", self.out)
        choose_layout.addLayout(options)
        layout.addWidget(choose)

        self.pre_box = QGroupBox("Preflight")
        pre_layout = QVBoxLayout(self.pre_box)
        self.summary = _label("choose a protocol", "preflight-summary")
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        pre_layout.addWidget(self.summary)
        self.pre_tabs = QTabWidget()
        self.ledger = _table(["syringe", "capacity", "start", "infused", "drawn", "lowest", "at"])
        self.timeline = _table(["start", "end", "step", "what"])
        self.pre_tabs.addTab(self.timeline, "Timeline")
        self.pre_tabs.addTab(self.ledger, "Syringes")
        pre_layout.addWidget(self.pre_tabs, 1)
        layout.addWidget(self.pre_box, 1)

        run_box = QGroupBox("Run")
        run_box.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)
        run_layout = QVBoxLayout(run_box)
        buttons = QHBoxLayout()
        self.start_button = QPushButton("Start")
        self.start_button.setObjectName("start-run")
        self.start_button.clicked.connect(self.start)
        self.pause_button = QPushButton("Pause")
        self.pause_button.setObjectName("pause-run")
        self.pause_button.clicked.connect(lambda: self.controller.pause("operator (GUI)"))
        self.resume_button = QPushButton("Resume")
        self.resume_button.setObjectName("resume-run")
        self.resume_button.clicked.connect(self.controller.resume)
        self.abort_button = QPushButton("Abort")
        self.abort_button.setObjectName("abort-run")
        self.abort_button.setStyleSheet("QPushButton:enabled { color: #b00020; }")
        self.abort_button.clicked.connect(self.abort)
        self.confirm_button = QPushButton("Confirm")
        self.confirm_button.setObjectName("confirm-prompt")
        self.confirm_button.clicked.connect(self.controller.confirm)
        for button in (
            self.start_button,
            self.pause_button,
            self.resume_button,
            self.abort_button,
            self.confirm_button,
        ):
            buttons.addWidget(button)
        run_layout.addLayout(buttons)
        self.state = _label("idle", "run-state")
        self.state.setStyleSheet("font-weight: bold;")
        run_layout.addWidget(self.state)
        self.step = _label("", "run-step")
        run_layout.addWidget(self.step)
        self.progress = QProgressBar()
        self.progress.setObjectName("run-progress")
        self.progress.setRange(0, 1000)
        run_layout.addWidget(self.progress)
        self.times = _label("", "run-times")
        run_layout.addWidget(self.times)
        self.prompt = _label("", "run-prompt")
        self.prompt.setStyleSheet("color: #8a6d00; font-weight: bold;")
        run_layout.addWidget(self.prompt)
        layout.addWidget(run_box)

        self._check_timer = QTimer(self)
        self._check_timer.setSingleShot(True)
        self._check_timer.setInterval(CHECK_DELAY_MS)
        self._check_timer.timeout.connect(self.check)
        controller.checked.connect(self._checked)
        controller.check_failed.connect(self._check_failed)
        controller.status_changed.connect(self.show_status)
        controller.mode_changed.connect(lambda mode: self._update_buttons())
        for widget in (self.step, self.progress, self.times, self.prompt):
            widget.setVisible(False)  # shown while a run is on (room for the preflight)
        self._update_buttons()
        if self.source.count() > 1:
            self.choose(self.source.itemText(0))

    # -- choosing ------------------------------------------------------------------------

    def _source_chosen(self, index: int) -> None:
        text = self.source.itemText(index)
        if text == OPEN_FILE:
            path, _ = QFileDialog.getOpenFileName(
                self, "Open a protocol", "", "Protocols (*.toml);;All files (*)"
            )
            if not path:
                self.source.setCurrentText(self._ref or self.source.itemText(0))
                return
            self.choose(path)
            return
        self.choose(text)

    def choose(self, ref: str) -> None:
        """Choose a protocol by built-in name or file path; its preflight follows."""
        if self.source.findText(ref) < 0:
            self.source.insertItem(self.source.count() - 1, ref)
        self.source.setCurrentText(ref)
        self._ref = ref
        self.protocol = None
        self._fields.clear()
        while self.form.rowCount():
            self.form.removeRow(0)
        self.check()

    def parameters(self) -> dict[str, str]:
        """Return the parameter overrides: the fields that differ from their default."""
        out: dict[str, str] = {}
        if self.protocol is None:
            return out
        for name, field in self._fields.items():
            text = field.text().strip()
            default = str(self.protocol.parameters[name].default)
            if text and text != default:
                out[name] = text
        return out

    def _build_form(self, protocol: Protocol) -> None:
        if set(self._fields) == set(protocol.parameters):
            return
        self._fields.clear()
        while self.form.rowCount():
            self.form.removeRow(0)
        for name, parameter in protocol.parameters.items():
            field = QLineEdit(str(parameter.value))
            field.setObjectName(f"param-{name}")
            limits = []
            if parameter.minimum is not None:
                limits.append(f"min {parameter.minimum:g}")
            if parameter.maximum is not None:
                limits.append(f"max {parameter.maximum:g}")
            tip = f"{parameter.kind}; default {parameter.default}"
            if limits:
                tip += f" ({', '.join(limits)}, canonical units)"
            if parameter.description:
                tip = f"{parameter.description}\n{tip}"
            field.setToolTip(tip)
            field.setPlaceholderText(str(parameter.default))
            field.textEdited.connect(lambda _text: self._check_timer.start())
            label = QLabel(f"{name} ({parameter.kind})")
            label.setToolTip(tip)
            self.form.addRow(label, field)
            self._fields[name] = field
        self.form_box.setVisible(bool(self._fields))

    # -- preflight -----------------------------------------------------------------------

    def check(self) -> None:
        """Preflight the chosen protocol with the parameters in the form (background)."""
        if not self._ref:
            return
        self.preflight = None
        self.summary.setText("checking...")
        self.summary.setStyleSheet("")
        self._request = self.controller.check(self._ref, self.parameters())
        self._update_buttons()

    def _checked(self, request: int, protocol: Protocol, preflight: Any) -> None:
        if request != self._request:
            return
        self.protocol = protocol
        self.preflight = preflight
        self._build_form(protocol)
        self.description.setText(protocol.description)
        self.summary.setStyleSheet("")
        self.summary.setText(self._summary_text(preflight))
        rows = []
        for item in getattr(preflight, "ledger", ()):
            rows.append(
                [
                    f"{item.pump} ({item.syringe})",
                    f"{item.capacity_ul:g} uL",
                    f"{item.start_ul:.1f} uL",
                    f"{item.infused_ul:.1f} uL",
                    f"{item.withdrawn_ul:.1f} uL",
                    f"{item.min_ul:.1f} uL",
                    format_duration(item.min_at_s),
                ]
            )
        _fill(self.ledger, rows)
        timeline = [
            [format_duration(r.start_s), format_duration(r.end_s), r.label, r.detail]
            for r in getattr(preflight, "timeline", ())
        ]
        _fill(self.timeline, timeline)
        self._update_buttons()

    def _check_failed(self, request: int, message: str) -> None:
        if request != self._request:
            return
        self.preflight = None
        self.summary.setText(message)
        self.summary.setStyleSheet("color: #b00020;")
        _fill(self.ledger, [])
        _fill(self.timeline, [])
        self._update_buttons()

    @staticmethod
    def _summary_text(pre: Any) -> str:
        lines = [f"<b>duration</b> {format_duration(pre.duration_s)}"]
        frames = getattr(pre, "frames", 0)
        if frames:
            free = getattr(pre, "disk_free_bytes", -1)
            free_text = "unknown" if free < 0 else f"{free / 1e9:.1f} GB free"
            lines.append(
                f"<b>images</b> {frames} frames, {pre.image_bytes / 1e9:.2f} GB uncompressed; "
                f"disk needed {getattr(pre, 'disk_needed_bytes', 0) / 1e9:.2f} GB, {free_text}"
            )
        peaks = getattr(pre, "peak_pressure_kpa", {})
        if peaks:
            limit = getattr(pre, "pressure_limit_kpa", None)
            text = ", ".join(f"{k} {v:.3g} kPa" for k, v in peaks.items())
            lines.append(
                f"<b>peak pressure</b> {text}" + (f" (limit {limit:g} kPa)" if limit else "")
            )
        for warning in getattr(pre, "warnings", ()):
            lines.append(f"<span style='color:#8a6d00'>warning: {warning}</span>")
        return "<br>".join(lines)

    # -- running -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the chosen protocol (the preflight must have passed)."""
        if self.preflight is None or self.controller.mode not in ("manual", "offline"):
            return
        speed = SPEEDS.get(self.speed.currentText()) if self.controller.simulated else None
        out = Path(self.out.text().strip()) if self.out.text().strip() else None
        self.controller.start_run(
            self._ref, self.parameters(), out=out, speed=speed, seed=self.seed.value()
        )
        self.start_requested.emit(self._ref)
        self._update_buttons()

    def abort(self) -> None:
        """Abort the run, after the operator confirms in a dialog."""
        if self.controller.handle is None:
            return
        if self.confirm_abort:
            box = QMessageBox(self)
            box.setObjectName("abort-confirmation")
            box.setIcon(QMessageBox.Icon.Warning)
            box.setWindowTitle("Abort the run?")
            box.setText(
                "Abort the run now? Pumps stop, valves go to waste and the run file is "
                "closed as aborted. This cannot be undone."
            )
            really = box.addButton("Abort the run", QMessageBox.ButtonRole.DestructiveRole)
            box.addButton("Keep running", QMessageBox.ButtonRole.RejectRole)
            box.exec_()
            if box.clickedButton() is not really:
                return
        self.controller.abort("operator abort (GUI)")

    def show_status(self, status: RunStatus) -> None:
        """Show a run's status: state, step, progress, times, prompt."""
        self._status = status
        self.state.setText(status.state.value + (f": {status.message}" if status.message else ""))
        colors = {
            RunState.RUNNING: "#1b7f3b",
            RunState.PAUSED: "#8a6d00",
            RunState.ABORTING: "#b00020",
            RunState.ABORTED: "#b00020",
            RunState.FAILED: "#b00020",
            RunState.COMPLETED: "#1f4e9c",
        }
        self.state.setStyleSheet(
            f"font-weight: bold; color: {colors.get(status.state, '#333333')};"
        )
        if status.step_index >= 0:
            self.step.setText(
                f"step {status.step_index + 1} of {status.n_steps}: "
                f"{status.step_name or status.step_label}"
            )
        total = max(status.expected_duration_s + status.paused_s, 1e-9)
        self.progress.setValue(int(1000 * min(status.t_s / total, 1.0)))
        paused = f", paused {format_duration(status.paused_s)}" if status.paused_s else ""
        self.times.setText(
            f"elapsed {format_duration(status.t_s)}, remaining "
            f"{format_duration(status.remaining_s)}{paused}"
        )
        self.prompt.setText(
            f"waiting for you: {status.pending_prompt}" if status.pending_prompt else ""
        )
        self._update_buttons()

    def _update_buttons(self) -> None:
        mode = self.controller.mode
        status = self._status if self.controller.handle is not None else None
        state = status.state if status is not None else None
        idle = mode in ("manual", "offline") and self.controller.handle is None
        self.start_button.setEnabled(idle and self.preflight is not None)
        self.pause_button.setEnabled(state is RunState.RUNNING)
        self.resume_button.setEnabled(state is RunState.PAUSED)
        self.abort_button.setEnabled(state in (RunState.RUNNING, RunState.PAUSED))
        self.confirm_button.setEnabled(bool(status is not None and status.pending_prompt))
        self.source.setEnabled(idle)
        self.form_box.setEnabled(idle)
        self.speed.setEnabled(idle)
        self.seed.setEnabled(idle)
        self.out.setEnabled(idle)
