"""The event log (filterable) and the alarm banner that needs acknowledgement.

Every event of the run (or of manual control) lands in :class:`EventLog`: a table of run
time, source, kind and message, filtered by kind (alarms, commands, steps...) and by text.
Events whose kind is in :data:`ALARM_KINDS` also raise the :class:`AlarmBanner`: a red bar
that stays until the operator acknowledges it, however many alarms came meanwhile (it counts
them), so an alarm in the night is still there in the morning.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from PyQt5.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QSortFilterProxyModel,
    Qt,
    pyqtSignal,
)
from PyQt5.QtGui import QBrush, QColor
from PyQt5.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSizePolicy,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from chipctl.units import format_duration

__all__ = ["ALARM_KINDS", "AlarmBanner", "EventLog", "EventRow"]

#: Event kinds that raise the alarm banner.
ALARM_KINDS = frozenset({"alarm", "link_lost", "failed"})
#: Filter choices: label -> kinds shown (None: all).
FILTERS: dict[str, frozenset[str] | None] = {
    "all events": None,
    "alarms and errors": frozenset({"alarm", "error", "link_lost", "failed", "aborted"}),
    "commands": frozenset({"command"}),
    "steps": frozenset({"step_started", "step_completed", "started", "completed", "paused"}),
}
_COLUMNS = ("run time", "source", "kind", "message")


@dataclass(frozen=True)
class EventRow:
    """One event as shown."""

    t_s: float
    source: str
    kind: str
    message: str


class _EventModel(QAbstractTableModel):
    def __init__(self) -> None:
        super().__init__()
        self.rows: list[EventRow] = []

    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008, N802
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008, N802
        return len(_COLUMNS)

    def headerData(  # noqa: N802
        self, section: int, orientation: int, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return _COLUMNS[section]
        return None

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        row = self.rows[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            column = index.column()
            if column == 0:
                return format_duration(row.t_s)
            return (row.source, row.kind, row.message)[column - 1]
        if role == Qt.ItemDataRole.ForegroundRole and row.kind in ALARM_KINDS | {"error"}:
            return QBrush(QColor("#b00020"))
        if role == Qt.ItemDataRole.UserRole:
            return row
        return None

    def extend(self, rows: list[EventRow]) -> None:
        if not rows:
            return
        first = len(self.rows)
        self.beginInsertRows(QModelIndex(), first, first + len(rows) - 1)
        self.rows.extend(rows)
        self.endInsertRows()

    def clear(self) -> None:
        self.beginResetModel()
        self.rows.clear()
        self.endResetModel()


class _Filter(QSortFilterProxyModel):
    def __init__(self) -> None:
        super().__init__()
        self.kinds: frozenset[str] | None = None
        self.text = ""

    def filterAcceptsRow(self, source_row: int, source_parent: QModelIndex) -> bool:  # noqa: N802
        model = self.sourceModel()
        assert isinstance(model, _EventModel)
        row = model.rows[source_row]
        if self.kinds is not None and row.kind not in self.kinds:
            return False
        if self.text:
            haystack = f"{row.source} {row.kind} {row.message}".lower()
            return self.text in haystack
        return True


class EventLog(QWidget):
    """A table of events with a kind filter and a text search."""

    def __init__(self, parent: QWidget | None = None) -> None:
        """Build the (empty) log."""
        super().__init__(parent)
        self.model = _EventModel()
        self.proxy = _Filter()
        self.proxy.setSourceModel(self.model)
        layout = QVBoxLayout(self)
        bar = QHBoxLayout()
        bar.addWidget(QLabel("Show:"))
        self.kind_box = QComboBox()
        self.kind_box.setObjectName("event-filter")
        self.kind_box.addItems(list(FILTERS))
        self.kind_box.currentTextChanged.connect(self._filter_changed)
        bar.addWidget(self.kind_box)
        self.search = QLineEdit()
        self.search.setObjectName("event-search")
        self.search.setPlaceholderText("search source, kind, message")
        self.search.textChanged.connect(self._filter_changed)
        bar.addWidget(self.search, 1)
        self.count = QLabel("")
        self.count.setMinimumWidth(150)
        self.count.setAlignment(Qt.AlignmentFlag.AlignRight)
        bar.addWidget(self.count)
        layout.addLayout(bar)
        self.table = QTableView()
        self.table.setModel(self.proxy)
        vertical = self.table.verticalHeader()
        assert vertical is not None
        vertical.setVisible(False)
        self.table.setAlternatingRowColors(True)
        self.table.setSelectionBehavior(QTableView.SelectionBehavior.SelectRows)
        header = self.table.horizontalHeader()
        assert header is not None
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        layout.addWidget(self.table, 1)
        self._update_count()

    def add(self, events: Iterable[tuple[float, str, str, str]]) -> None:
        """Append events ``(t_s, source, kind, message)``; keeps the view at the end."""
        bar = self.table.verticalScrollBar()
        at_end = bar is None or bar.value() >= bar.maximum() - 2
        self.model.extend([EventRow(float(t), str(s), str(k), str(m)) for t, s, k, m in events])
        if at_end:
            self.table.scrollToBottom()
        self._update_count()

    def clear(self) -> None:
        """Remove every event."""
        self.model.clear()
        self._update_count()

    def _filter_changed(self, *args: Any) -> None:
        self.proxy.kinds = FILTERS.get(self.kind_box.currentText())
        self.proxy.text = self.search.text().strip().lower()
        self.proxy.invalidateFilter()
        self._update_count()

    def _update_count(self) -> None:
        self.count.setText(f"{self.proxy.rowCount()} of {self.model.rowCount()} events")

    def visible_rows(self) -> list[EventRow]:
        """Return the rows the filter lets through, in order (for tests)."""
        return [
            self.proxy.data(self.proxy.index(i, 0), Qt.ItemDataRole.UserRole)
            for i in range(self.proxy.rowCount())
        ]


class AlarmBanner(QWidget):
    """A bar showing unacknowledged alarms: red with an Acknowledge button, grey when clear.

    It is always there (one line high), so an alarm changes its colour and text, never the
    window's layout: a relayout would redraw every plot at once.
    """

    #: Emitted with the acknowledged alarms when the operator acknowledges them.
    acknowledged = pyqtSignal(list)

    def __init__(self, parent: QWidget | None = None) -> None:
        """Build the (hidden) banner."""
        super().__init__(parent)
        self.setObjectName("alarm-banner")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 2, 8, 2)
        self.label = QLabel("")
        self.label.setObjectName("alarm-text")
        self.label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        layout.addWidget(self.label, 1)
        self.button = QPushButton("Acknowledge")
        self.button.setObjectName("acknowledge")
        self.button.clicked.connect(self.acknowledge)
        layout.addWidget(self.button)
        self.active: list[EventRow] = []
        self._show_clear()

    @property
    def raised(self) -> bool:
        """Tell whether unacknowledged alarms are shown."""
        return bool(self.active)

    def _show_clear(self) -> None:
        self.setStyleSheet("#alarm-banner { background: #e8e8e8; } #alarm-text { color: #555555; }")
        self.label.setText("no active alarms")
        self.button.setEnabled(False)

    def add(self, events: Iterable[tuple[float, str, str, str]]) -> None:
        """Raise the banner for every alarm among ``events``."""
        new = [EventRow(*e) for e in events if e[2] in ALARM_KINDS]
        if not new:
            return
        self.active.extend(new)
        last = self.active[-1]
        more = f" (+{len(self.active) - 1} more)" if len(self.active) > 1 else ""
        self.label.setText(
            f"ALARM at {format_duration(last.t_s)}: {last.source}: {last.message or last.kind}"
            f"{more}"
        )
        self.setStyleSheet(
            "#alarm-banner { background: #b00020; } "
            "#alarm-text { color: white; font-weight: bold; }"
        )
        self.button.setEnabled(True)

    def acknowledge(self) -> None:
        """Clear the banner (the alarms stay in the event log)."""
        acknowledged, self.active = self.active, []
        self._show_clear()
        if acknowledged:
            self.acknowledged.emit(acknowledged)
