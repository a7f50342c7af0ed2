"""The connection bar: the local model or a remote skinscan server at host and port (and its API key), and a
Connect button."""

from __future__ import annotations

from qtpy.QtCore import Signal
from qtpy.QtWidgets import QComboBox, QHBoxLayout, QLineEdit, QPushButton, QSpinBox, QWidget

from skinscan.gui.state import AppState, Event, Mode

API_KEY_TIP = (
    "The server's API key, if it has one (sent as X-API-Key with every request). Not saved: type it in each "
    "time, or start the app with SKINSCAN_API_KEY set."
)


class ConnectionBar(QWidget):
    """Shows the state's connection; `connect_requested` asks the window to use what is entered (`chosen()`)."""

    connect_requested = Signal()

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("connectionBar")
        self.state = state
        self.mode_box = QComboBox(self)
        self.mode_box.addItem("Local model", "local")
        self.mode_box.addItem("Remote server", "remote")
        self.mode_box.setToolTip("Judge images with the model on this computer, or send them to a skinscan server")
        self.host_edit = QLineEdit(self)
        self.host_edit.setPlaceholderText("host")
        self.host_edit.setToolTip("the server's host name or address")
        self.host_edit.setFixedWidth(120)
        self.port_box = QSpinBox(self)
        self.port_box.setRange(1, 65535)
        self.port_box.setFixedWidth(80)  # its arrow buttons are styled away (dark.qss, light.qss)
        self.port_box.setToolTip("the server's port")
        self.key_edit = QLineEdit(self)
        self.key_edit.setPlaceholderText("API key")
        self.key_edit.setEchoMode(QLineEdit.EchoMode.Password)  # a secret: not shown, not copied out
        self.key_edit.setToolTip(API_KEY_TIP)
        self.key_edit.setFixedWidth(120)
        self.connect_button = QPushButton("Connect", self)
        self.connect_button.setObjectName("connectButton")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(6)
        for widget in (self.mode_box, self.host_edit, self.port_box, self.key_edit, self.connect_button):
            layout.addWidget(widget)
        self.mode_box.currentIndexChanged.connect(self._enable_server_fields)
        self.host_edit.returnPressed.connect(self.connect_requested)
        self.key_edit.returnPressed.connect(self.connect_requested)
        self.connect_button.clicked.connect(self.connect_requested)
        state.subscribe(Event.CONNECTION, self.refresh)
        self.refresh()

    def chosen(self) -> tuple[Mode, str, int, str]:
        """The mode, host, port and API key as entered."""
        mode: Mode = "remote" if self.mode_box.currentData() == "remote" else "local"
        host = self.host_edit.text().strip() or self.state.host
        return mode, host, self.port_box.value(), self.key_edit.text().strip()

    def refresh(self) -> None:
        self.mode_box.setCurrentIndex(self.mode_box.findData(self.state.mode))
        self.host_edit.setText(self.state.host)
        self.port_box.setValue(self.state.port)
        self.key_edit.setText(self.state.api_key)
        self._enable_server_fields()

    def _enable_server_fields(self) -> None:
        remote = self.mode_box.currentData() == "remote"
        for field in (self.host_edit, self.port_box, self.key_edit):
            field.setEnabled(remote)
