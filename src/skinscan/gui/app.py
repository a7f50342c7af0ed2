"""Start the desktop app: the QApplication, remembered settings, the state and the main window."""

from __future__ import annotations

import sys

from skinscan.errors import MissingExtraError

ORGANISATION = "skinscan"
APPLICATION = "skinscan"


def run_gui(model: str | None = None, host: str | None = None, port: int | None = None) -> int:
    """Open the window and run until it closes; returns the exit status.

    Args:
        model: a local model (.onnx or its folder); implies local mode. None: $SKINSCAN_MODEL, else the bundled one.
        host, port: a skinscan server to use instead (remote mode). Neither: the mode used last time.
    """
    try:
        from qtpy.QtCore import QSettings
        from qtpy.QtWidgets import QApplication
    except ImportError as exc:  # qtpy without any Qt binding
        raise MissingExtraError("PyQt5", "gui") from exc

    from skinscan.gui.preferences import read_preferences
    from skinscan.gui.qt_main import MainWindow
    from skinscan.gui.state import AppState

    if model is not None and (host is not None or port is not None):
        raise ValueError("give either a local --model or a server's --host/--port, not both")
    existing = QApplication.instance()
    app = existing if isinstance(existing, QApplication) else QApplication(sys.argv[:1])
    app.setOrganizationName(ORGANISATION)
    app.setApplicationName(APPLICATION)
    settings = QSettings(ORGANISATION, APPLICATION)
    options = read_preferences(settings)
    if model is not None:
        options["mode"] = "local"
    if host is not None or port is not None:
        options.update(mode="remote", host=host or options["host"], port=port or options["port"])
    window = MainWindow(AppState(model=model, **options), settings=settings)
    window.show()
    return int(app.exec())
