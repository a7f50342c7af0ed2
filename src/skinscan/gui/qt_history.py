"""The side list of this session's images, each with its result; selecting one shows it."""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtGui import QColor, QIcon, QPainter, QPixmap
from qtpy.QtWidgets import QLabel, QListWidget, QListWidgetItem, QVBoxLayout, QWidget

from skinscan.gui.state import AppState, Event, HistoryItem

ITEM_ID = Qt.ItemDataRole.UserRole
PENDING, REJECTED, ERROR = "#8a8f98", "#e0a030", "#d64545"


def dot(colour: str, size: int = 14) -> QIcon:
    pixmap = QPixmap(size, size)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(QColor(colour))
    painter.drawEllipse(1, 1, size - 2, size - 2)
    painter.end()
    return QIcon(pixmap)


def item_colour(item: HistoryItem) -> str:
    if item.error is not None:
        return ERROR
    if item.result is None:
        return PENDING
    return (item.result.colour or PENDING) if item.result.ok else REJECTED


class HistoryPanel(QWidget):
    """A list row per image (name, then label and probability); keeps in step with HISTORY and CURRENT."""

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("historyPanel")
        self.state = state
        self.heading = QLabel(self)
        self.heading.setObjectName("panelHeading")
        self.list = QListWidget(self)
        self.list.setObjectName("historyList")
        self.list.setUniformItemSizes(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 0, 8)
        layout.addWidget(self.heading)
        layout.addWidget(self.list, 1)
        self.rows: dict[int, QListWidgetItem] = {}
        self.list.currentItemChanged.connect(self._on_current_row)
        state.subscribe(Event.HISTORY, self.refresh)
        state.subscribe(Event.CURRENT, self._show_current)
        self.refresh()

    def refresh(self) -> None:
        for item in self.state.history:
            row = self.rows.get(item.id)
            if row is None:
                row = QListWidgetItem()
                row.setData(ITEM_ID, item.id)
                self.rows[item.id] = row
                self.list.addItem(row)
            row.setText(f"{item.name}\n{item.summary()}")
            row.setToolTip(item.error or (item.result.reason if item.result and item.result.reason else item.source))
            row.setIcon(dot(item_colour(item)))
        self.heading.setText(f"This session ({len(self.state.history)})")
        self._show_current()

    def _show_current(self) -> None:
        row = self.rows.get(self.state.current_id) if self.state.current_id is not None else None
        if row is not None and self.list.currentItem() is not row:
            self.list.blockSignals(True)  # the state already knows: don't echo the selection back
            self.list.setCurrentItem(row)
            self.list.blockSignals(False)

    def _on_current_row(self, current: QListWidgetItem | None, previous: QListWidgetItem | None) -> None:
        if current is not None:
            self.state.select(int(current.data(ITEM_ID)))
