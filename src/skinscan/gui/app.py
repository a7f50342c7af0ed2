"""Start the desktop app: the QApplication, remembered settings, the state and the main window."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING

from skinscan.core.errors import ConfigError, MissingExtraError

if TYPE_CHECKING:
    from qtpy.QtCore import QSettings

log = logging.getLogger("skinscan.gui")

ORGANISATION = "skinscan"
APPLICATION = "skinscan"
# the server's own setting's name: on a machine that runs both, one variable serves both
API_KEY_VARIABLE = "SKINSCAN_API_KEY"
SITE_VARIABLE = "SKINSCAN_SITE"  # as predict, evaluate and serve read it
UPDATES_VARIABLE = "SKINSCAN_UPDATES"  # where to look for a newer model, as `skinscan models pull` takes it


def run_gui(
    model: str | None = None, host: str | None = None, port: int | None = None, *, site: str | None = None,
    updates: str | None = None, settings: QSettings | None = None,
) -> int:  # fmt: skip
    """Open the window and run until it closes; returns the exit status.

    Args:
        model: a local model (.onnx or its folder); implies local mode. None: $SKINSCAN_MODEL, else the bundled one.
        host, port: a skinscan server to use instead (remote mode). Neither: the mode used last time.
        site: a site profile (site.json from `skinscan calibrate-site`) for the local model; None: $SKINSCAN_SITE.
            A server applies its own, which the window shows.
        updates: a source to ask for a newer model (a folder, a URL or a skinscan server, as `skinscan models pull`
            takes it); None: $SKINSCAN_UPDATES. The connected server is always asked too.
        settings: where to remember preferences; None: the user's skinscan settings.

    The server's API key starts as $SKINSCAN_API_KEY (a secret: never read from or written to the settings).
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
        raise ConfigError("give either a local --model or a server's --host/--port, not both")
    if site is not None and (host is not None or port is not None):
        raise ConfigError("--site is for a local model; a server applies its own site profile (serve --site)")
    site = site or os.environ.get(SITE_VARIABLE, "").strip() or None
    if site is not None:
        from skinscan.runtime.site import load_site

        load_site(site)  # an unreadable profile is one line now, not a window whose model never loads
    existing = QApplication.instance()
    app = existing if isinstance(existing, QApplication) else QApplication(sys.argv[:1])
    app.setOrganizationName(ORGANISATION)
    app.setApplicationName(APPLICATION)
    settings = settings if settings is not None else QSettings(ORGANISATION, APPLICATION)
    options = read_preferences(settings)
    if model is not None:
        options["mode"] = "local"
    if host is not None or port is not None:
        options.update(mode="remote", host=host or options["host"], port=port or options["port"])
    updates = os.environ.get(UPDATES_VARIABLE, "") if updates is None else updates
    key = os.environ.get(API_KEY_VARIABLE, "").strip()
    state = AppState(model=model, api_key=key, site=site, updates=updates, **options)
    window = MainWindow(state, settings=settings)
    window.show()
    previous, sys.excepthook = sys.excepthook, _keep_running(state.notify)
    try:
        return int(app.exec())
    finally:
        sys.excepthook = previous


def _keep_running(
    notify: Callable[[str], None],
) -> Callable[[type[BaseException], BaseException, TracebackType | None], None]:
    """An excepthook for a bug in a slot: log it and say so in the window, rather than let PyQt abort the app."""

    def hook(kind: type[BaseException], error: BaseException, trace: TracebackType | None) -> None:
        log.error("unexpected error", exc_info=(kind, error, trace))
        notify(f"Unexpected error: {error} (the details are in the log)")

    return hook
