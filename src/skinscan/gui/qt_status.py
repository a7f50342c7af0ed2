"""The status bar: the model's or server's status (loading, loaded, unreachable, failed) on the left, passing
notices on the right."""

from __future__ import annotations

from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import QLabel, QSizePolicy, QStatusBar, QWidget

from skinscan.gui.qt_result import repolish
from skinscan.gui.state import AppState, Event

NOTICE_MS = 12_000


class StatusBar(QStatusBar):
    """Shows `state.status_text` (coloured by `model_status`) and each `state.notice` for a while."""

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.status_label = QLabel(self)
        self.status_label.setObjectName("statusLabel")
        self.notice_label = QLabel(self)
        self.notice_label.setObjectName("noticeLabel")
        self.notice_label.setAlignment(Qt.AlignmentFlag.AlignRight)
        for label in (self.status_label, self.notice_label):
            # Ignored: a long message is cut, rather than widening the window
            label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
            self.addWidget(label, 1)
        self.notice_timer = QTimer(self)
        self.notice_timer.setSingleShot(True)
        self.notice_timer.setInterval(NOTICE_MS)
        self.notice_timer.timeout.connect(self.notice_label.clear)
        state.subscribe(Event.STATUS, self.show_status)
        state.subscribe(Event.NOTICE, self.show_notice)
        self.show_status()

    def show_status(self) -> None:
        self.status_label.setText(self.state.status_text)
        self.status_label.setToolTip(self.state.status_text)
        self.status_label.setProperty("status", self.state.model_status)  # the stylesheet colours it
        repolish(self.status_label)

    def show_notice(self) -> None:
        self.notice_label.setText(self.state.notice)
        self.notice_label.setToolTip(self.state.notice)
        self.notice_timer.start()
