"""What the desktop window shows, without Qt: connection, model and server status, the site profile in use, a newer
model on offer, this session's images and their results, display options; views subscribe to its events and redraw
from it."""

from __future__ import annotations

import csv
import os
import shlex
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from skinscan.runtime.result import CSV_FIELDS, Prediction

Mode = Literal["local", "remote"]
# "unreachable": a remote server that was connected stopped answering (its status line says since when)
ModelStatus = Literal["idle", "loading", "ready", "unreachable", "failed"]
THEMES = ("dark", "light")


class Event(StrEnum):
    """What changed; a subscriber re-reads the parts of the state it shows."""

    CONNECTION = "connection"  # mode, host, port, API key (what the connection bar shows)
    STATUS = "status"  # the model's or server's status and its status line
    HISTORY = "history"  # an image was added or got its result
    CURRENT = "current"  # another image was selected
    DISPLAY = "display"  # heatmap on or off
    THEME = "theme"
    NOTICE = "notice"  # a one-off message for the status bar (an export, a refused action)
    SITE = "site"  # the site profile in use (the local engine's, or the connected server's)
    UPDATE = "update"  # a newer model is on offer, or the offer was dismissed


def model_label(model: Mapping[str, Any]) -> str:
    """A model card (or its {id, version}) as "id version" for the status line and reports."""
    name, version = model.get("id") or model.get("name") or "model", model.get("version")
    return f"{name} {version}" if version else str(name)


@dataclass
class HistoryItem:
    """One image of this session: where it came from, its preview and, once judged, its result (and the model that
    judged it) or error."""

    id: int
    name: str
    path: str | None = None
    data: bytes | None = field(default=None, repr=False)  # an image with no file (pasted from the clipboard)
    preview: bytes | None = field(default=None, repr=False)  # the image, decoded and shrunk for display (JPEG)
    result: Prediction | None = None
    model: str | None = None  # "id version" of the model that judged it (a session can switch models and servers)
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
        # the values `skinscan predict --csv` writes (extra keys are left out by the writer)
        return {**row, **self.result.to_dict(include_heatmap=False)}


def percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def site_text(site: Mapping[str, Any] | None) -> str:
    """The site profile in use (a `SiteProfile.summary()`, as the engine and a server's /model give it) in one line:
    name, date, images, and the sensitivity and specificity to expect there."""
    if not site:
        return "No site profile: the model's own operating point"
    created = str(site.get("created") or "")[:10] or "undated"
    images = site.get("images")
    fitted = f"fitted {created} on {images} images" if images is not None else f"fitted {created}"
    expected = [
        f"{name} {_rate(site.get(f'expected_{name}'), site.get(f'expected_{name}_ci'))}"
        for name in ("sensitivity", "specificity")
    ]
    return f"Site profile: {site.get('name') or 'unnamed'} · {fitted} · expected " + ", ".join(expected)


def _rate(value: Any, interval: Any) -> str:
    if not isinstance(value, int | float):
        return "not measured"
    text = f"{100 * value:.0f}%"
    if isinstance(interval, list | tuple) and len(interval) == 2 and all(isinstance(v, int | float) for v in interval):
        text += f" ({100 * interval[0]:.0f}–{100 * interval[1]:.0f}%)"
    return text


@dataclass(frozen=True)
class UpdateNotice:
    """A newer model than the one in use, offered by `source` (the connected server, or the configured updates)."""

    id: str
    version: str
    current: str  # the version this computer's model has
    source: str
    needs_key: bool = False  # the source is a server that wants the API key

    @property
    def command(self) -> str:
        """What installs it (the key comes from the environment: a secret never goes on a command line)."""
        prefix = "SKINSCAN_API_KEY=… " if self.needs_key else ""
        return f"{prefix}skinscan models pull {shlex.quote(self.source)}"

    @property
    def text(self) -> str:
        return (
            f"A newer model is offered: {self.id} {self.version} at {self.source} (this computer's is {self.current})."
            f" To install it: {self.command}"
        )


Callback = Callable[[], None]


class AppState:
    """The window's model. Change it through its methods; each emits the `Event` subscribers listen for.

    Args:
        mode: "local" (the engine in this process) or "remote" (a skinscan server at host:port).
        model: the local model (path or folder); None → $SKINSCAN_MODEL, else the active installed model (`skinscan
            models use`), else the bundled model.
        api_key: the remote server's API key ("" for none); held for this session only, never in preferences.
        site: a site profile (site.json) for the local model; a server applies its own.
        updates: where to look for a newer model (as `skinscan models pull` takes it); "" for nowhere but the
            connected server.
    """

    def __init__(
        self, *, mode: Mode = "local", host: str = "127.0.0.1", port: int = 9889, model: str | None = None,
        api_key: str = "", theme: str = "dark", show_heatmap: bool = False, last_folder: str = "",
        site: str | None = None, updates: str = "",
    ) -> None:  # fmt: skip
        self.mode: Mode = mode
        self.host, self.port, self.model = host, port, model
        self.api_key = api_key
        self.site, self.updates = site, updates.strip()
        self.site_info: dict[str, Any] | None = None  # the summary of the site profile in use, once a model is loaded
        self.update: UpdateNotice | None = None
        self._dismissed: set[str] = set()  # versions whose notice the user closed
        self.model_status: ModelStatus = "idle"
        self.status_text = ""
        self.model_name = ""  # "id version" of the connected model, for the status line when a server is back
        self.down_since: datetime | None = None  # when the connected server stopped answering
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

    @property
    def server_watched(self) -> bool:
        """Whether the server's health should be checked now: a remote connection that was made, answering or not
        (one that never connected, or refused the key, waits for the user to connect again)."""
        return self.mode == "remote" and self.model_status in ("ready", "unreachable")

    def set_connection(
        self, mode: Mode, host: str | None = None, port: int | None = None, api_key: str | None = None
    ) -> None:
        self.mode = mode
        self.host = (host or self.host).strip()
        self.port = self.port if port is None else int(port)
        self.api_key = self.api_key if api_key is None else api_key.strip()
        self.emit(Event.CONNECTION)
        self._set_status("idle", "")

    def model_loading(self) -> None:
        text = "Loading model…" if self.mode == "local" else f"Connecting to {self.server_url}…"
        self._set_status("loading", text)

    def model_ready(self, name: str) -> None:
        self.model_name = name
        where = "" if self.mode == "local" else f" on {self.server_url}"
        self._set_status("ready", f"Model loaded: {name}{where}")

    def model_failed(self, message: str) -> None:
        self._set_status("failed", f"Model not loaded: {message}")

    def server_lost(self, reason: str | None = None, *, now: datetime | None = None) -> None:
        """A request to the connected server got no answer (`reason`: it answered, but is not ready to judge).

        The first one turns the status line from ready to unreachable, saying since when; later ones keep that time.
        Ignored unless connected (a connection being made, or one that failed, reports its own outcome)."""
        if not self.server_watched:
            return
        if self.down_since is None:  # the first failure since it last answered: the outage starts now
            self.down_since = now or datetime.now()
        since = f"{self.down_since:%H:%M}"
        what = f"is not ready since {since} ({reason})" if reason else f"is not answering since {since}"
        self._set_status("unreachable", f"Server at {self.server_url} {what}; images cannot be judged until it is back")

    def server_answered(self, name: str | None = None) -> None:
        """The connected server answered a request (`name`: the model it names): back to ready if it was lost."""
        if self.mode == "remote" and self.model_status == "unreachable":
            self.model_ready(name or self.model_name or "remote model")

    def key_refused(self, *, sent: bool) -> None:
        """The server answered 401: it wants an API key, and got none (`sent` False) or a wrong one."""
        if self.mode != "remote":
            return
        if sent:
            text = f"The API key was refused by the server at {self.server_url}: check it and press Connect"
        else:
            text = f"The server at {self.server_url} needs an API key: type it in the key field and press Connect"
        self._set_status("failed", text)

    def set_site_info(self, site: Mapping[str, Any] | None) -> None:
        """The site profile the loaded model (or the connected server) applies, as its summary; None for none."""
        info = dict(site) if site else None
        if info != self.site_info:
            self.site_info = info
            self.emit(Event.SITE)

    @property
    def site_text(self) -> str:
        return site_text(self.site_info)

    def offer_update(self, notice: UpdateNotice | None) -> None:
        """A newer model is on offer (None: no longer). One the user dismissed this session stays dismissed."""
        if notice is not None and notice.version in self._dismissed:
            return
        if notice != self.update:
            self.update = notice
            self.emit(Event.UPDATE)

    def dismiss_update(self) -> None:
        if self.update is not None:
            self._dismissed.add(self.update.version)
            self.offer_update(None)

    def _set_status(self, status: ModelStatus, text: str) -> None:
        if status != "unreachable":
            self.down_since = None
        if (status, text) != (self.model_status, self.status_text):
            self.model_status, self.status_text = status, text
            self.emit(Event.STATUS)

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

    def finish(self, item_id: int, result: Prediction, preview: bytes | None, model: str | None = None) -> None:
        self._settle(item_id, result=result, preview=preview, model=model)

    def fail(self, item_id: int, message: str, preview: bytes | None = None) -> None:
        self._settle(item_id, error=message, preview=preview)

    def _settle(
        self,
        item_id: int,
        *,
        result: Prediction | None = None,
        error: str | None = None,
        preview: bytes | None = None,
        model: str | None = None,
    ) -> None:
        item = self.item(item_id)
        if item is None:
            return
        item.result, item.error, item.preview, item.model = result, error, preview, model
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
