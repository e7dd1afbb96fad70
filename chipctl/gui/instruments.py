"""The instrument panel: every device with its live status, and manual controls.

One box per device of the rig, in config order: its latest telemetry (a pump's rate,
delivered volume and state; a valve's port; a flow sensor's flow, temperature and bubble
flag; the simulated chip's inlet pressures) and its manual controls (pump rate, direction,
volume, start and stop; valve port; microscope position, channel, snap and move).

Controls send :mod:`chipctl.engine.manual` commands through an *executor* the main window
provides: manual control of the idle rig, or ``Run.call_manual`` while a protocol is paused.
Every command is checked on the GUI thread first (:meth:`ManualCommand.check`: the same
limits as a protocol step), so a bad value is one red line under the controls and nothing
is sent. While a protocol runs, the controls are locked (:meth:`InstrumentPanel.set_locked`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any

from PyQt5.QtCore import QObject, Qt, pyqtSignal
from PyQt5.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from chipctl.config import CHIP
from chipctl.engine.manual import (
    ManualCommand,
    ManualError,
    MoveStage,
    SelectValve,
    Snap,
    StartPump,
    StopPump,
)
from chipctl.rig import Rig, port_names
from drivers.roles import PumpDirection, SyringePump

__all__ = ["Executor", "InstrumentPanel"]

#: Sends a manual command to whoever holds the devices; returns its future.
Executor = Callable[[ManualCommand], "Future[Any]"]


class _Done(QObject):
    """Carries a finished future from the engine thread to the GUI thread."""

    done = pyqtSignal(object, object)  # (command, future)


def _status_label(name: str, text: str = "no reading yet") -> QLabel:
    """A status line: it wraps, so a longer reading never widens the panel."""
    label = QLabel(text)
    label.setObjectName(f"status-{name}")
    label.setWordWrap(True)
    return label


def _fmt(value: float | None, unit: str, digits: int = 4) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}g} {unit}"


class _PumpBox(QGroupBox):
    def __init__(self, panel: InstrumentPanel, name: str, pump: SyringePump) -> None:
        super().__init__(f"{name}  (pump, {pump.syringe.name})")
        self.setObjectName(f"device-{name}")
        self.name = name
        low, high = pump.rate_range_ul_min()
        layout = QVBoxLayout(self)
        self.status = _status_label(name)
        layout.addWidget(self.status)
        grid = QGridLayout()
        self.rate = QDoubleSpinBox()
        self.rate.setObjectName(f"rate-{name}")
        self.rate.setDecimals(3)
        self.rate.setRange(0.0, high * 10)  # out-of-range values are refused with a message
        self.rate.setValue(min(max(10.0, low), high))
        self.rate.setSuffix(" uL/min")
        self.rate.setToolTip(f"rate: {low:.4g} .. {high:.4g} uL/min with this syringe")
        for spin in (self.rate,):
            spin.setMinimumWidth(90)
            spin.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.volume = QDoubleSpinBox()
        self.volume.setObjectName(f"volume-{name}")
        self.volume.setDecimals(2)
        self.volume.setRange(0.0, pump.syringe.volume_ul * 10)
        self.volume.setSuffix(" uL")
        self.volume.setSpecialValueText("until stopped")
        self.volume.setToolTip("volume to pump, then stop (0: until stopped)")
        self.volume.setMinimumWidth(90)
        self.volume.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.direction = QComboBox()
        self.direction.setObjectName(f"direction-{name}")
        self.direction.addItems(["infuse", "withdraw"])
        self.start = QPushButton("Start")
        self.start.setObjectName(f"start-{name}")
        self.start.clicked.connect(lambda: _ignore(panel.send(self.command())))
        self.stop = QPushButton("Stop")
        self.stop.setObjectName(f"stop-{name}")
        self.stop.clicked.connect(lambda: _ignore(panel.send(StopPump(name))))
        grid.addWidget(self.direction, 0, 0)
        grid.addWidget(self.rate, 0, 1)
        grid.addWidget(self.volume, 0, 2)
        grid.addWidget(self.start, 1, 1)
        grid.addWidget(self.stop, 1, 2)
        layout.addLayout(grid)
        self.controls: list[QWidget] = [
            self.rate,
            self.volume,
            self.direction,
            self.start,
            self.stop,
        ]

    def command(self) -> StartPump:
        direction = (
            PumpDirection.INFUSE
            if self.direction.currentText() == "infuse"
            else PumpDirection.WITHDRAW
        )
        volume = self.volume.value() or None
        return StartPump(self.name, self.rate.value(), direction, volume)

    def show_values(self, values: Mapping[str, float]) -> None:
        running = values.get("running", 0.0) > 0.5
        stalled = values.get("stalled", 0.0) > 0.5
        state = "STALLED" if stalled else "running" if running else "stopped"
        self.status.setText(
            f"{state}: {_fmt(values.get('rate_ul_min'), 'uL/min')}, "
            f"delivered {_fmt(values.get('delivered_ul'), 'uL', 6)}"
        )
        color = "#b00020" if stalled else "#1b7f3b" if running else "#333333"
        self.status.setStyleSheet(f"color: {color};")


class _ValveBox(QGroupBox):
    def __init__(self, panel: InstrumentPanel, name: str, ports: dict[str, int], n: int) -> None:
        super().__init__(f"{name}  (valve, {n} positions)")
        self.setObjectName(f"device-{name}")
        self.name = name
        self.names = {number: port for port, number in ports.items()}
        layout = QVBoxLayout(self)
        self.status = _status_label(name)
        layout.addWidget(self.status)
        row = QHBoxLayout()
        self.port = QComboBox()
        self.port.setObjectName(f"port-{name}")
        for number in range(1, n + 1):
            label = f"{number}: {self.names[number]}" if number in self.names else str(number)
            self.port.addItem(label, number)
        row.addWidget(self.port, 1)
        self.select = QPushButton("Select")
        self.select.setObjectName(f"select-{name}")
        self.select.clicked.connect(
            lambda: _ignore(panel.send(SelectValve(name, self.port.currentData())))
        )
        row.addWidget(self.select)
        layout.addLayout(row)
        self.controls: list[QWidget] = [self.port, self.select]

    def show_values(self, values: Mapping[str, float]) -> None:
        position = values.get("position")
        if position is None:
            return
        number = round(position)
        port = self.names.get(number)
        self.status.setText(f"at {number}" + (f" ({port})" if port else ""))


class _FlowBox(QGroupBox):
    def __init__(self, name: str) -> None:
        super().__init__(f"{name}  (flow sensor)")
        self.setObjectName(f"device-{name}")
        layout = QVBoxLayout(self)
        self.status = _status_label(name)
        layout.addWidget(self.status)
        self.controls: list[QWidget] = []

    def show_values(self, values: Mapping[str, float]) -> None:
        air = values.get("air_in_line", 0.0) > 0.5
        text = (
            f"{_fmt(values.get('flow_ul_min'), 'uL/min')}, "
            f"{_fmt(values.get('temperature_c'), 'degC', 3)}"
        )
        self.status.setText(text + (", AIR IN LINE" if air else ""))
        self.status.setStyleSheet("color: #b00020;" if air else "")


class _ChipBox(QGroupBox):
    def __init__(self) -> None:
        super().__init__("chip  (simulated ground truth)")
        self.setObjectName("device-chip")
        layout = QVBoxLayout(self)
        self.status = _status_label("chip")
        layout.addWidget(self.status)
        self.controls: list[QWidget] = []

    def show_values(self, values: Mapping[str, float]) -> None:
        pressures = [
            f"{k[2:-4]} {v:.3g} kPa"
            for k, v in values.items()
            if k.startswith("p_") and k.endswith("_kpa")
        ]
        outlet = values.get("q_outlet_ul_min")
        self.status.setText(
            "inlet pressures: " + ", ".join(pressures) + f"; outlet {_fmt(outlet, 'uL/min')}"
        )


class _ScopeBox(QGroupBox):
    def __init__(
        self, panel: InstrumentPanel, name: str, positions: list[str], channels: list[str]
    ) -> None:
        super().__init__(f"{name}  (microscope)")
        self.setObjectName(f"device-{name}")
        self.name = name
        layout = QVBoxLayout(self)
        self.status = _status_label(name, "idle")
        layout.addWidget(self.status)
        form = QFormLayout()
        self.position = QComboBox()
        self.position.setObjectName(f"position-{name}")
        self.position.addItems(positions)
        form.addRow("position", self.position)
        self.channel = QComboBox()
        self.channel.setObjectName(f"channel-{name}")
        self.channel.addItems(channels)
        form.addRow("channel", self.channel)
        layout.addLayout(form)
        row = QHBoxLayout()
        self.move_button = QPushButton("Move stage")
        self.move_button.setObjectName(f"move-{name}")
        self.move_button.clicked.connect(
            lambda: _ignore(panel.send(MoveStage(self.position.currentText(), microscope=name)))
        )
        self.snap = QPushButton("Snap")
        self.snap.setObjectName(f"snap-{name}")
        self.snap.clicked.connect(
            lambda: _ignore(
                panel.send(
                    Snap(
                        (self.channel.currentText(),),
                        self.position.currentText(),
                        microscope=name,
                    )
                )
            )
        )
        row.addWidget(self.move_button)
        row.addWidget(self.snap)
        layout.addLayout(row)
        self.controls: list[QWidget] = [
            self.position,
            self.channel,
            self.move_button,
            self.snap,
        ]

    def show_values(self, values: Mapping[str, float]) -> None:
        return


class InstrumentPanel(QWidget):
    """Every device of a rig with live status and manual controls.

    Args:
        rig: the rig (built; the panel reads names, syringes, ports, presets, never I/O).
        parent: the parent widget.
    """

    #: Emitted with (command, result) when a manual command succeeded.
    command_done = pyqtSignal(object, object)
    #: Emitted with a one-line message when a command was refused or failed.
    command_failed = pyqtSignal(str)

    def __init__(self, rig: Rig, parent: QWidget | None = None) -> None:
        """Build one box per device."""
        super().__init__(parent)
        self.rig = rig
        self.executor: Executor | None = None
        self._done = _Done()
        self._done.done.connect(self._finished)
        self.boxes: dict[str, Any] = {}
        self._locked = True
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        self.lock_note = _status_label("lock", "")
        self.lock_note.setObjectName("lock-note")
        outer.addWidget(self.lock_note)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        inner = QWidget()
        layout = QVBoxLayout(inner)
        for name, device in rig.devices.items():
            role = rig.roles[name]
            box: Any
            if isinstance(device, SyringePump):
                box = _PumpBox(self, name, device)
            elif role == "valve":
                n = getattr(device, "n_positions", 2)
                box = _ValveBox(self, name, port_names(rig.config.devices[name], n), n)
            elif role == "flow":
                box = _FlowBox(name)
            elif role == "microscope":
                scope = rig.microscopes()[name].microscope
                box = _ScopeBox(self, name, scope.position_names(), scope.channel_names())
            else:
                continue
            self.boxes[name] = box
            layout.addWidget(box)
        for name, valve in rig.valve_views.items():  # a pump's own distribution valve
            ports = port_names(rig.config.devices[name], valve.n_positions)
            box = _ValveBox(self, name, ports, valve.n_positions)
            box.setTitle(f"{name}  (valve of the pump, {valve.n_positions} ports)")
            box.setObjectName(f"device-{name}-valve")
            self.boxes[f"{name} valve"] = box
            layout.addWidget(box)
        if rig.bench is not None:
            self.boxes[CHIP] = _ChipBox()
            layout.addWidget(self.boxes[CHIP])
        layout.addStretch(1)
        scroll.setWidget(inner)
        outer.addWidget(scroll, 1)
        self.message = _status_label("manual", "")
        self.message.setObjectName("manual-message")
        outer.addWidget(self.message)
        self.set_locked(True, "connecting...")

    # -- state ---------------------------------------------------------------------------

    def set_locked(self, locked: bool, why: str = "") -> None:
        """Lock (or unlock) every manual control, saying why."""
        self._locked = locked
        for box in self.boxes.values():
            for widget in box.controls:
                widget.setEnabled(not locked)
        self.lock_note.setText(why)
        self.lock_note.setStyleSheet("color: #8a6d00;" if locked else "color: #1b7f3b;")

    @property
    def locked(self) -> bool:
        """Tell whether the manual controls are locked."""
        return self._locked

    def update_values(self, samples: list[tuple[str, float, Mapping[str, float]]]) -> None:
        """Show the latest telemetry of each device (a batch from the bridge)."""
        latest: dict[str, Mapping[str, float]] = {}
        for device, _t_s, values in samples:
            latest[device] = values
        for device, values in latest.items():
            box = self.boxes.get(device)
            if box is not None:
                box.show_values(values)

    # -- commands ------------------------------------------------------------------------

    def send(self, command: ManualCommand) -> Future[Any] | None:
        """Check ``command`` and hand it to the executor; returns its future (None if refused)."""
        try:
            command.check(self.rig)
        except ManualError as exc:
            self._say(str(exc), error=True)
            return None
        if self.executor is None or self.locked:
            self._say("manual control is not available now", error=True)
            return None
        try:
            future = self.executor(command)
        except Exception as exc:  # e.g. the run is not paused any more
            self._say(str(exc), error=True)
            return None
        self._say(f"sent: {_describe(command)}")
        future.add_done_callback(lambda f: self._done.done.emit(command, f))
        return future

    def _finished(self, command: ManualCommand, future: Future[Any]) -> None:
        exc = future.exception()
        if exc is not None:
            self._say(f"{_describe(command)} failed: {exc}", error=True)
            return
        self._say(f"done: {_describe(command)}")
        self.command_done.emit(command, future.result())

    def _say(self, text: str, *, error: bool = False) -> None:
        self.message.setText(text)
        self.message.setStyleSheet("color: #b00020;" if error else "color: #333333;")
        if error:
            self.command_failed.emit(text)


def _ignore(value: object) -> None:
    """Drop a value (button slots return nothing)."""


def _describe(command: Any) -> str:
    if isinstance(command, StartPump):
        verb = "infuse" if command.direction is PumpDirection.INFUSE else "withdraw"
        return f"{command.pump}: {verb} at {command.rate_ul_min:g} uL/min"
    if isinstance(command, StopPump):
        return f"{command.pump}: stop"
    if isinstance(command, SelectValve):
        return f"{command.valve}: select {command.position}"
    if isinstance(command, Snap):
        return f"snap {', '.join(command.channels)} at {command.position or 'current position'}"
    if isinstance(command, MoveStage):
        return f"move stage to {command.position}"
    return type(command).__name__
