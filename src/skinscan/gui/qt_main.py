"""The main window: actions and menus, drag and drop, paste, the panels, and the background work behind them."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from functools import partial
from importlib.resources import files
from pathlib import Path
from typing import Any

from qtpy.QtCore import QBuffer, QByteArray, QIODevice, QMimeData, QSettings, Qt, Slot
from qtpy.QtGui import QCloseEvent, QDragEnterEvent, QDragMoveEvent, QDropEvent, QImage, QKeySequence
from qtpy.QtWidgets import (
    QAction,
    QActionGroup,
    QApplication,
    QFileDialog,
    QMainWindow,
    QMenu,
    QMenuBar,
    QSizePolicy,
    QSplitter,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from skinscan.core.errors import SkinscanError
from skinscan.gui.backends import ApiKeyError, Backend, ScanOutcome, create_backend, report_server_error, scan_image
from skinscan.gui.preferences import remember_preferences
from skinscan.gui.qt_connection import ConnectionBar
from skinscan.gui.qt_history import HistoryPanel
from skinscan.gui.qt_preview import PreviewPanel
from skinscan.gui.qt_result import ResultPanel
from skinscan.gui.qt_site import SiteLabel
from skinscan.gui.qt_status import StatusBar
from skinscan.gui.qt_updates import UpdateBanner
from skinscan.gui.report import write_report
from skinscan.gui.state import THEMES, AppState, Event
from skinscan.gui.updates import find_update, update_sources
from skinscan.gui.workers import HEALTH_INTERVAL_S, UPDATE_INTERVAL_S, ServerWatch, TaskRunner, UpdateCheck
from skinscan.runtime.imaging import IMAGE_SUFFIXES, walk_inputs
from skinscan.runtime.updates import local_model_version

BackendFactory = Callable[[AppState], Backend]
IMAGE_FILTER = "Images (" + " ".join(f"*{s}" for s in sorted(IMAGE_SUFFIXES)) + ");;All files (*)"


def load_stylesheet(theme: str) -> str:
    """The theme's stylesheet from skinscan/gui/styles/THEME.qss."""
    return files("skinscan.gui").joinpath("styles", f"{theme}.qss").read_text(encoding="utf-8")


class MainWindow(QMainWindow):
    """The desktop app's window over an `AppState`.

    Args:
        state: what the window shows; the window changes it through its methods.
        settings: where preferences are remembered (None: not remembered).
        backend_factory: makes the local or remote backend the state's connection asks for.
        health_interval_s: how often a remote server's health is checked while connected.
        update_interval_s: how often the connected server and the configured updates source are asked for a newer
            model (also once at each connection).
    """

    def __init__(
        self,
        state: AppState,
        *,
        settings: QSettings | None = None,
        backend_factory: BackendFactory = create_backend,
        health_interval_s: float = HEALTH_INTERVAL_S,
        update_interval_s: float = UPDATE_INTERVAL_S,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.state = state
        self.backend_factory = backend_factory
        self.backend: Backend | None = None
        self.runner = TaskRunner(self)
        self.runner.succeeded.connect(self._task_succeeded)
        self.runner.failed.connect(self._task_failed)
        self.server_watch = ServerWatch(state, health_interval_s, self)
        self.update_check = UpdateCheck(state, update_interval_s, self)
        # what a connection's load or images say about the server is ignored once another connection replaced it
        self._generation = 0
        self._pasted = 0
        self.setWindowTitle("skinscan — skin-lesion screening")
        self.setAcceptDrops(True)
        self.resize(1280, 800)
        self.status_bar = StatusBar(state, self)
        self.setStatusBar(self.status_bar)
        self.site_label = SiteLabel(state, self)
        self.status_bar.insertWidget(1, self.site_label, 1)  # between the model's status and the notices
        self.connection_bar = ConnectionBar(state, self)
        self.connection_bar.connect_requested.connect(self.apply_connection)
        self._build_actions()
        self._build_toolbars()
        self.history_panel = HistoryPanel(state, self)
        self.preview_panel = PreviewPanel(state, self)
        self.result_panel = ResultPanel(state, self)
        splitter = QSplitter(Qt.Orientation.Horizontal, self)
        for panel in (self.history_panel, self.preview_panel, self.result_panel):
            splitter.addWidget(panel)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([240, 560, 360])
        self.update_banner = UpdateBanner(state, self)
        central = QWidget(self)
        column = QVBoxLayout(central)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        column.addWidget(self.update_banner)
        column.addWidget(splitter, 1)
        self.setCentralWidget(central)
        state.subscribe(Event.THEME, self.apply_theme)
        state.subscribe(Event.DISPLAY, self._show_display)
        state.subscribe(Event.CURRENT, self._show_display)
        if settings is not None:
            remember_preferences(state, settings)
        self.apply_theme()
        self._show_display()
        self.history_panel.list.setFocus()  # not the first toolbar field: the arrow keys should walk the list
        self.connect_backend()

    # --- building --------------------------------------------------------------------------------------

    def _action(
        self, text: str, slot: Callable[..., Any], shortcut: QKeySequence | QKeySequence.StandardKey | str, tip: str
    ) -> QAction:
        action = QAction(text, self)
        action.setShortcut(QKeySequence(shortcut))
        action.setToolTip(tip)
        action.triggered.connect(slot)
        return action

    def _build_actions(self) -> None:
        self.open_action = self._action(
            "Select Image…", self.choose_images, QKeySequence.StandardKey.Open, "Choose images to analyse (Ctrl+O)"
        )
        self.paste_action = self._action(
            "Paste", self.paste, QKeySequence.StandardKey.Paste, "Analyse an image from the clipboard (Ctrl+V)"
        )
        self.export_action = self._action(
            "Export CSV…", self.choose_csv, "Ctrl+E", "Save this session's results as CSV"
        )
        self.report_action = self._action(
            "Save Report…", self.choose_report, QKeySequence.StandardKey.Save, "Save the result as a PDF or PNG report"
        )
        self.quit_action = self._action("Quit", self.close, QKeySequence.StandardKey.Quit, "Close the window")
        self.heatmap_action = QAction("Heatmap", self)
        self.heatmap_action.setCheckable(True)
        self.heatmap_action.setShortcut(QKeySequence("H"))
        self.heatmap_action.setToolTip("Show where the model looked (H)")
        self.heatmap_action.toggled.connect(self.state.set_heatmap)
        self.theme_group = QActionGroup(self)
        self.theme_actions: dict[str, QAction] = {}
        for theme in THEMES:
            action = QAction(f"{theme.title()} theme", self.theme_group)
            action.setCheckable(True)
            action.setData(theme)
            action.triggered.connect(self._on_theme_action)
            self.theme_actions[theme] = action
        self.theme_toggle = self._action("", self.toggle_theme, "Ctrl+T", "Switch between dark and light (Ctrl+T)")
        menu = QMenuBar(self)
        self.setMenuBar(menu)
        file_menu = QMenu("&File", menu)
        menu.addMenu(file_menu)
        _add_actions(
            file_menu,
            [self.open_action, self.paste_action, None, self.export_action, self.report_action, None, self.quit_action],
        )
        view_menu = QMenu("&View", menu)
        menu.addMenu(view_menu)
        view_menu.addAction(self.heatmap_action)
        view_menu.addSeparator()
        for action in self.theme_actions.values():
            view_menu.addAction(action)

    def _build_toolbars(self) -> None:
        tools = QToolBar("Actions", self)
        tools.setObjectName("actions")
        tools.setMovable(False)
        _add_actions(tools, [
            self.open_action, self.paste_action, None, self.heatmap_action, None, self.export_action,
            self.report_action, None, self.theme_toggle,
        ])  # fmt: skip
        spacer = QWidget(tools)
        spacer.setObjectName("toolbarSpacer")
        spacer.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        tools.addWidget(spacer)  # the connection bar sits at the right
        tools.addWidget(self.connection_bar)
        self.addToolBar(tools)

    # --- connection and model --------------------------------------------------------------------------

    def connect_backend(self) -> None:
        """Make the backend the state's connection asks for and load it (its model, or the server) in the background."""
        self._generation += 1
        self.backend = self.backend_factory(self.state)
        self.state.model_loading()
        self.state.set_site_info(None)  # until the new model (or server) says which profile it applies
        self.state.offer_update(None)
        self.update_check.watch(None, self._generation)
        self.server_watch.watch(self.backend, self._generation)
        self.runner.submit(("load", 0, self._generation), self.backend.load)

    def _loaded(self) -> None:
        """A model (or server) is loaded: show the site profile it applies, and start asking for a newer model."""
        card = self.backend.model_card() if self.backend is not None else None
        site = (card or {}).get("site")
        self.state.set_site_info(site if isinstance(site, dict) else None)
        sources = update_sources(self.state)
        if sources:
            current = partial(local_model_version, self.state.model)  # this computer's model, whatever judges now
            self.update_check.watch(partial(find_update, current, sources), self._generation)

    def apply_connection(self) -> None:
        """Use the mode, host, port and API key entered in the connection bar."""
        self.state.set_connection(*self.connection_bar.chosen())
        self.connect_backend()

    # --- opening images --------------------------------------------------------------------------------

    def open_paths(self, paths: Sequence[str | Path]) -> int:
        """Analyse files, and the images inside folders; returns how many were added."""
        files_ = list(walk_inputs([str(p) for p in paths]))
        if not files_:
            self.state.notify("No images found there: drop image files or a folder of images.")
            return 0
        return self._add([(path.name, str(path), None) for path in files_])

    def open_image_data(self, data: bytes, name: str | None = None) -> int:
        """Analyse an image that has no file (pasted or dropped from another program)."""
        self._pasted += 1
        return self._add([(name or f"Pasted image {self._pasted}", None, data)])

    def open_mime(self, mime: QMimeData) -> int:
        """Analyse what a drop or the clipboard holds: local files and folders, else image data."""
        paths = [url.toLocalFile() for url in mime.urls() if url.isLocalFile()] if mime.hasUrls() else []
        if paths:
            return self.open_paths(paths)
        if mime.hasImage():
            image = QImage(mime.imageData())
            if not image.isNull():
                return self.open_image_data(png_bytes(image))
        self.state.notify("Nothing to analyse there: drop or paste image files, a folder or an image.")
        return 0

    def _add(self, sources: Iterable[tuple[str, str | None, bytes | None]]) -> int:
        items = self.state.add_images(sources)
        backend = self.backend
        assert backend is not None  # set in __init__
        for item in items:
            scan = partial(scan_image, backend, item.name, item.path, item.data)
            self.runner.submit(("scan", item.id, self._generation), scan)
        return len(items)

    def choose_images(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Select images", self.state.last_folder, IMAGE_FILTER)
        if paths:
            self.open_paths(paths)

    def paste(self) -> None:
        clipboard = QApplication.clipboard()
        mime = clipboard.mimeData() if clipboard is not None else None
        if mime is None:
            self.state.notify("The clipboard is empty.")
            return
        self.open_mime(mime)

    def _accepts(self, mime: QMimeData | None) -> bool:
        return mime is not None and (mime.hasUrls() or mime.hasImage())

    def dragEnterEvent(self, event: QDragEnterEvent | None) -> None:
        if event is not None and self._accepts(event.mimeData()):
            event.acceptProposedAction()

    def dragMoveEvent(self, event: QDragMoveEvent | None) -> None:
        if event is not None and self._accepts(event.mimeData()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent | None) -> None:
        mime = event.mimeData() if event is not None else None
        if event is not None and mime is not None and self.open_mime(mime):
            event.acceptProposedAction()

    # --- background work -------------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """Whether background work is queued or running."""
        return self.runner.busy

    @Slot(object, object)
    def _task_succeeded(self, key: Any, value: Any) -> None:
        kind, ident, generation = key
        current = generation == self._generation
        if kind == "load" and current:
            self.state.model_ready(value)
            self._loaded()
        elif kind == "scan" and isinstance(value, ScanOutcome):
            if value.result is not None:
                self.state.finish(ident, value.result, value.preview, value.model)
                if current:  # an answer is as good as a health check: a lost server is back
                    self.state.server_answered(value.model)
            else:
                self.state.fail(ident, value.error or "unknown error", value.preview)
                if current:  # a server gone (or refusing the key) shows at once, not at the next health check
                    report_server_error(self.state, value.cause)

    @Slot(object, str, object)
    def _task_failed(self, key: Any, message: str, error: Any) -> None:
        kind, ident, generation = key
        if kind == "load" and generation == self._generation:
            if isinstance(error, ApiKeyError):
                self.state.key_refused(sent=error.sent)
            else:
                self.state.model_failed(message)
        elif kind == "scan":
            self.state.fail(ident, message)

    def shutdown(self) -> None:
        """Drop queued work and wait for the running task, so that no thread outlives the window."""
        self.server_watch.shutdown()
        self.update_check.shutdown()
        self.runner.shutdown()

    def closeEvent(self, event: QCloseEvent | None) -> None:
        self.shutdown()
        super().closeEvent(event)

    # --- exports ---------------------------------------------------------------------------------------

    def choose_csv(self) -> None:
        start = str(Path(self.state.last_folder or Path.home()) / "skinscan-results.csv")
        path, _ = QFileDialog.getSaveFileName(self, "Export results as CSV", start, "CSV (*.csv)")
        if path:
            self.export_csv(path)

    def export_csv(self, path: str | Path) -> bool:
        if not self.state.history:
            self.state.notify("Nothing to export yet: analyse an image first.")
            return False
        try:
            count = self.state.export_csv(path)
        except OSError as exc:
            self.state.notify(f"Could not export the results: {exc.strerror or exc}")
            return False
        self.state.notify(f"Exported {count} result{'s' * (count != 1)} to {path}")
        return True

    def choose_report(self) -> None:
        item = self.state.current
        if item is None or item.result is None:
            self.state.notify("Nothing to report yet: select an analysed image first.")
            return
        start = str(Path(self.state.last_folder or Path.home()) / f"{Path(item.name).stem}-report.pdf")
        path, _ = QFileDialog.getSaveFileName(self, "Save report", start, "PDF (*.pdf);;PNG image (*.png)")
        if path:
            self.save_report(path)

    def save_report(self, path: str | Path) -> Path | None:
        """Write the shown result's report (PDF or PNG by the file's suffix); returns where, or None."""
        item = self.state.current
        if item is None:
            self.state.notify("Nothing to report yet: select an analysed image first.")
            return None
        try:
            written = write_report(item, path)
        except SkinscanError as exc:
            self.state.notify(f"Could not save the report: {exc}")
            return None
        self.state.notify(f"Saved the report to {written}")
        return written

    # --- display ---------------------------------------------------------------------------------------

    def apply_theme(self) -> None:
        self.setStyleSheet(load_stylesheet(self.state.theme))
        self.theme_actions[self.state.theme].setChecked(True)
        other = next(t for t in THEMES if t != self.state.theme)
        self.theme_toggle.setText(f"{other.title()} theme")

    def toggle_theme(self) -> None:
        self.state.set_theme(next(t for t in THEMES if t != self.state.theme))

    def _on_theme_action(self) -> None:
        action = self.theme_group.checkedAction()
        if action is not None:
            self.state.set_theme(str(action.data()))

    def _show_display(self) -> None:
        self.heatmap_action.blockSignals(True)
        self.heatmap_action.setChecked(self.state.show_heatmap)
        self.heatmap_action.blockSignals(False)
        item = self.state.current
        self.report_action.setEnabled(item is not None and item.result is not None)


def _add_actions(target: QMenu | QToolBar, actions: Iterable[QAction | None]) -> None:
    """Add actions in order; None adds a separator."""
    for action in actions:
        if action is None:
            target.addSeparator()
        else:
            target.addAction(action)


def png_bytes(image: QImage) -> bytes:
    buffer = QBuffer()
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buffer, "PNG")
    return bytes(QByteArray(buffer.data()))
