"""What the desktop window shows, without Qt: connection, model status, this session's images and their
results, display options; views subscribe to its events and redraw from it."""

from __future__ import annotations

import base64
import csv
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from skinscan.runtime.engine import Prediction
from skinscan.runtime.predict import CSV_FIELDS

Mode = Literal["local", "remote"]
THEMES = ("dark", "light")


class Event(StrEnum):
    """What changed; a subscriber re-reads the parts of the state it shows."""

    CONNECTION = "connection"  # mode, host, port, model status and its status line
    HISTORY = "history"  # an image was added or got its result
    CURRENT = "current"  # another image was selected
    DISPLAY = "display"  # heatmap on or off
    THEME = "theme"
    NOTICE = "notice"  # a one-off message for the status bar (an export, a refused action)


@dataclass
class ScanResult:
    """One image's verdict as the window shows it, from the local engine or a remote server alike."""

    status: str  # "ok" or "rejected" (then `reason` says why and there is no verdict)
    threshold: float
    probability: float | None = None
    label: str | None = None
    severity: int | None = None
    severity_name: str | None = None
    description: str | None = None
    recommendation: str | None = None
    colour: str | None = None
    reason: str | None = None
    overlay_png: bytes | None = field(default=None, repr=False)
    model: str | None = None  # "id version" of the model that judged it

    @classmethod
    def from_prediction(cls, prediction: Prediction, model: str | None = None) -> ScanResult:
        return cls(
            status=prediction.status, threshold=prediction.threshold, probability=prediction.probability,
            label=prediction.label, severity=prediction.severity, severity_name=prediction.severity_name,
            description=prediction.description, recommendation=prediction.recommendation, colour=prediction.colour,
            reason=prediction.reason, overlay_png=prediction.overlay_png, model=model,
        )  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScanResult:
        """A server's JSON answer (the fields of `Prediction.to_dict`, `heatmap_png` base64, `model` {id, version})."""
        model = data.get("model")
        model_name = model_label(model) if isinstance(model, Mapping) else None
        heatmap = data.get("heatmap_png")
        probability = data.get("probability")
        return cls(
            status=str(data.get("status", "ok")), threshold=float(data.get("threshold") or 0.0),
            probability=None if probability is None else float(probability), label=data.get("label"),
            severity=data.get("severity"), severity_name=data.get("severity_name"),
            description=data.get("description"), recommendation=data.get("recommendation"),
            colour=data.get("colour"), reason=data.get("reason"),
            overlay_png=base64.b64decode(heatmap) if heatmap else None, model=model_name,
        )  # fmt: skip

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def display_label(self) -> str:
        """The class name as a heading: "Malignant", "Benign"."""
        return (self.label or "").capitalize()


def model_label(model: Mapping[str, Any]) -> str:
    """A model card (or its {id, version}) as "id version" for the status line and reports."""
    name, version = model.get("id") or model.get("name") or "model", model.get("version")
    return f"{name} {version}" if version else str(name)


@dataclass
class HistoryItem:
    """One image of this session: where it came from, its preview and, once judged, its result or error."""

    id: int
    name: str
    path: str | None = None
    data: bytes | None = field(default=None, repr=False)  # an image with no file (pasted from the clipboard)
    preview: bytes | None = field(default=None, repr=False)  # the image, decoded and shrunk for display (JPEG)
    result: ScanResult | None = None
    error: str | None = None

    @property
    def pending(self) -> bool:
        return self.result is None and self.error is None

    @property
    def source(self) -> str:
        return self.path or self.name

    def summary(self) -> str:
        """One line for the side list."""
        if self.error is not None:
            return "Error"
        if self.result is None:
            return "Analysing…"
        if not self.result.ok:
            return "Rejected: cannot judge"
        return f"{self.result.display_label} · {percent(self.result.probability)}"

    def csv_row(self) -> dict[str, object]:
        row: dict[str, object] = {"path": self.source}
        if self.error is not None:
            return {**row, "status": "error", "reason": self.error}
        if self.result is None:
            return {**row, "status": "pending"}
        r = self.result
        return {
            **row, "status": r.status, "label": r.label,
            "probability": None if r.probability is None else round(r.probability, 4), "severity": r.severity,
            "severity_name": r.severity_name, "threshold": round(r.threshold, 4), "reason": r.reason,
        }  # fmt: skip


def percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


Callback = Callable[[], None]


class AppState:
    """The window's model. Change it through its methods; each emits the `Event` subscribers listen for.

    Args:
        mode: "local" (the engine in this process) or "remote" (a skinscan server at host:port).
        model: the local model (path or folder); None → $SKINSCAN_MODEL, else the bundled model.
    """

    def __init__(
        self, *, mode: Mode = "local", host: str = "127.0.0.1", port: int = 9889, model: str | None = None,
        theme: str = "dark", show_heatmap: bool = False, last_folder: str = "",
    ) -> None:  # fmt: skip
        self.mode: Mode = mode
        self.host, self.port, self.model = host, port, model
        self.model_status: Literal["idle", "loading", "ready", "failed"] = "idle"
        self.status_text = ""
        self.theme = theme if theme in THEMES else THEMES[0]
        self.show_heatmap = show_heatmap
        self.last_folder = last_folder
        self.history: list[HistoryItem] = []
        self.current_id: int | None = None
        self.notice = ""
        self._next_id = 1
        self._observers: dict[Event, list[Callback]] = defaultdict(list)

    # --- observers -----------------------------------------------------------------------------------

    def subscribe(self, event: Event, callback: Callback) -> Callable[[], None]:
        """Call `callback` after every change of this kind; returns a function that unsubscribes it."""
        self._observers[event].append(callback)
        return lambda: self._observers[event].remove(callback)

    def emit(self, event: Event) -> None:
        for callback in list(self._observers[event]):
            callback()

    # --- connection and model ------------------------------------------------------------------------

    @property
    def server_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def set_connection(self, mode: Mode, host: str | None = None, port: int | None = None) -> None:
        self.mode = mode
        self.host = (host or self.host).strip()
        self.port = self.port if port is None else int(port)
        self.model_status, self.status_text = "idle", ""
        self.emit(Event.CONNECTION)

    def model_loading(self) -> None:
        self.model_status = "loading"
        self.status_text = "Loading model…" if self.mode == "local" else f"Connecting to {self.server_url}…"
        self.emit(Event.CONNECTION)

    def model_ready(self, name: str) -> None:
        self.model_status = "ready"
        where = "" if self.mode == "local" else f" on {self.server_url}"
        self.status_text = f"Model loaded: {name}{where}"
        self.emit(Event.CONNECTION)

    def model_failed(self, message: str) -> None:
        self.model_status = "failed"
        self.status_text = f"Model not loaded: {message}"
        self.emit(Event.CONNECTION)

    # --- images --------------------------------------------------------------------------------------

    def add_images(self, sources: Iterable[tuple[str, str | None, bytes | None]]) -> list[HistoryItem]:
        """Add (name, path, data) images as pending items and show the first of them."""
        added = []
        for name, path, data in sources:
            added.append(HistoryItem(self._next_id, name, path, data))
            self._next_id += 1
        if not added:
            return added
        self.history.extend(added)
        folders = [str(Path(item.path).parent) for item in added if item.path]
        if folders:
            self.last_folder = folders[0]
        self.current_id = added[0].id
        self.emit(Event.HISTORY)
        self.emit(Event.CURRENT)
        return added

    def item(self, item_id: int) -> HistoryItem | None:
        return next((item for item in self.history if item.id == item_id), None)

    @property
    def current(self) -> HistoryItem | None:
        return None if self.current_id is None else self.item(self.current_id)

    def finish(self, item_id: int, result: ScanResult, preview: bytes | None) -> None:
        self._settle(item_id, result=result, preview=preview)

    def fail(self, item_id: int, message: str, preview: bytes | None = None) -> None:
        self._settle(item_id, error=message, preview=preview)

    def _settle(
        self, item_id: int, *, result: ScanResult | None = None, error: str | None = None, preview: bytes | None = None
    ) -> None:
        item = self.item(item_id)
        if item is None:
            return
        item.result, item.error, item.preview = result, error, preview
        item.data = None  # judged: the preview is what is shown from now on
        self.emit(Event.HISTORY)
        if item_id == self.current_id:
            self.emit(Event.CURRENT)

    def select(self, item_id: int | None) -> None:
        if item_id != self.current_id and (item_id is None or self.item(item_id)):
            self.current_id = item_id
            self.emit(Event.CURRENT)

    # --- display and messages ------------------------------------------------------------------------

    def set_heatmap(self, shown: bool) -> None:
        if shown != self.show_heatmap:
            self.show_heatmap = shown
            self.emit(Event.DISPLAY)

    def set_theme(self, theme: str) -> None:
        if theme not in THEMES:
            raise ValueError(f"unknown theme {theme!r}; choose one of {', '.join(THEMES)}")
        if theme != self.theme:
            self.theme = theme
            self.emit(Event.THEME)

    def notify(self, message: str) -> None:
        self.notice = message
        self.emit(Event.NOTICE)

    def export_csv(self, path: str | os.PathLike[str]) -> int:
        """Write this session's results as CSV (the columns of `skinscan predict --csv`); returns the row count."""
        with open(path, "w", newline="", encoding="utf-8") as file:
            writer = csv.DictWriter(file, fieldnames=CSV_FIELDS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(item.csv_row() for item in self.history)
        return len(self.history)
