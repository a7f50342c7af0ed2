"""The notice that a newer model is on offer: a strip above the panels with the command that installs it, and a
button that dismisses it. It asks nothing and blocks nothing."""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QWidget

from skinscan.gui.state import AppState, Event


class UpdateBanner(QFrame):
    """Shown while `state.update` holds a notice; Dismiss closes it for this session."""

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("updateBanner")
        self.state = state
        self.label = QLabel(self)
        self.label.setObjectName("updateText")
        self.label.setWordWrap(True)
        # the command is there to be copied into a terminal
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.dismiss_button = QPushButton("Dismiss", self)
        self.dismiss_button.setObjectName("dismissUpdate")
        self.dismiss_button.clicked.connect(state.dismiss_update)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(12, 6, 8, 6)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.dismiss_button)
        state.subscribe(Event.UPDATE, self.refresh)
        self.refresh()

    def refresh(self) -> None:
        notice = self.state.update
        self.label.setText(notice.text if notice is not None else "")
        self.setVisible(notice is not None)
