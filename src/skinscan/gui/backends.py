"""Where the window's verdicts come from: the engine in this process, or a skinscan server over HTTP.
Both give a `Prediction` and raise skinscan errors whose messages the window shows as they are."""

from __future__ import annotations

import contextlib
import io
import ipaddress
import json
import os
import threading
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from skinscan.core.errors import InvalidImageError, SkinscanError
from skinscan.gui.state import AppState, model_label
from skinscan.runtime.engine import Engine
from skinscan.runtime.imaging import load_image
from skinscan.runtime.result import Prediction

PREVIEW_SIDE = 1024


class Backend(Protocol):
    def load(self) -> str:
        """Get ready (load the model, or reach the server); returns the model's name. Slow: call off the UI thread."""
        ...

    def predict(self, data: bytes, name: str) -> tuple[Prediction, str | None]:
        """Judge one image's bytes; returns the result and the "id version" of the model that judged it.
        Raises InvalidImageError for a bad image, SkinscanError for anything else."""
        ...


def create_backend(state: AppState) -> Backend:
    """The backend the state's connection settings ask for."""
    if state.mode == "remote":
        return RemoteBackend(state.host, state.port)
    return LocalBackend(state.model)


def make_preview(data: bytes, side: int = PREVIEW_SIDE) -> bytes:
    """The image shrunk for display, as JPEG: decoded by skinscan's own reader (so HEIC and DICOM show too)."""
    image = load_image(data, draft_size=side)
    image.thumbnail((side, side))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def describe_error(exc: BaseException) -> str:
    """A message for the window: skinscan errors as they are, file errors plainly, anything else briefly."""
    if isinstance(exc, SkinscanError):
        return str(exc)
    if isinstance(exc, OSError):
        where = f" {exc.filename}" if exc.filename else ""
        return f"cannot read{where}: {exc.strerror or exc}"
    return f"unexpected error ({type(exc).__name__}: {exc})"


@dataclass
class ScanOutcome:
    """What one image's scan gives the window: a result (and its model) or an error, and a preview when the image
    decodes."""

    result: Prediction | None = None
    model: str | None = None
    error: str | None = None
    preview: bytes | None = None


def scan_image(backend: Backend, name: str, path: str | None, data: bytes | None) -> ScanOutcome:
    """Read, judge and preview one image (slow: call off the UI thread). Expected failures become `error`."""
    try:
        raw = data if data is not None else Path(path or name).read_bytes()
    except OSError as exc:
        return ScanOutcome(error=describe_error(exc))
    outcome = ScanOutcome()
    try:
        outcome.result, outcome.model = backend.predict(raw, name)
    except SkinscanError as exc:
        outcome.error = str(exc)
    # a file that does not decode has no preview; the error above already says what is wrong with it
    with contextlib.suppress(SkinscanError):
        outcome.preview = make_preview(raw)
    return outcome


class LocalBackend:
    """The engine and a model file in this process (the bundled model unless told otherwise)."""

    def __init__(
        self, model: str | os.PathLike[str] | None = None, *, threads: int | None = None, threshold: float | None = None
    ) -> None:
        self.model, self.threads, self.threshold = model, threads, threshold
        self._engine: Engine | None = None
        self._lock = threading.Lock()

    def _ready_engine(self) -> Engine:
        with self._lock:
            if self._engine is None:
                self._engine = Engine(self.model, threads=self.threads, threshold=self.threshold)
            return self._engine

    def load(self) -> str:
        return model_label(self._ready_engine().info)

    def predict(self, data: bytes, name: str) -> tuple[Prediction, str | None]:
        engine = self._ready_engine()
        return engine.predict(data, heatmap=True), model_label(engine.info)


class RemoteBackend:
    """A skinscan server: `GET /health` to connect, `POST /predict?heatmap=true` (multipart `file`) per image."""

    def __init__(self, host: str, port: int, *, timeout: float = 30.0) -> None:
        self.url = f"http://{host}:{port}"
        self.timeout = timeout
        handlers: list[urllib.request.BaseHandler] = []
        if _is_loopback(host):  # a proxy from the environment cannot reach this machine's own server
            handlers.append(urllib.request.ProxyHandler({}))
        self._opener = urllib.request.build_opener(*handlers)

    def load(self) -> str:
        health = self._request("GET", "/health")
        model = health.get("model")
        return model_label(model) if isinstance(model, dict) else "remote model"

    def predict(self, data: bytes, name: str) -> tuple[Prediction, str | None]:
        boundary = uuid.uuid4().hex
        filename = (name or "image").replace('"', "_")
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
            + data
            + f"\r\n--{boundary}--\r\n".encode()
        )
        answer = self._request("POST", "/predict?heatmap=true", body, f"multipart/form-data; boundary={boundary}")
        try:
            result = Prediction.from_dict(answer)
        except (ValueError, TypeError) as exc:
            raise SkinscanError(f"{self.url} did not answer like a skinscan server ({exc})") from None
        model = answer.get("model")
        return result, model_label(model) if isinstance(model, dict) else None

    def _request(
        self, method: str, path: str, body: bytes | None = None, content_type: str | None = None
    ) -> dict[str, Any]:
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        request = urllib.request.Request(self.url + path, data=body, method=method, headers=headers)
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            detail = _error_detail(exc.read()) or exc.reason
            if exc.code in (400, 413, 415, 422):
                raise InvalidImageError(str(detail)) from None  # the server refused the image itself
            raise SkinscanError(f"the server at {self.url} answered {exc.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise SkinscanError(f"cannot reach the skinscan server at {self.url} ({reason}); is it running?") from None
        try:
            answer = json.loads(payload)
        except ValueError:
            raise SkinscanError(f"{self.url} did not answer like a skinscan server (not JSON)") from None
        if not isinstance(answer, dict):
            raise SkinscanError(f"{self.url} did not answer like a skinscan server")
        return answer


def _error_detail(payload: bytes) -> str | None:
    """The message in a JSON error body: FastAPI's `detail` (text or a list of problems), or `message`/`error`."""
    try:
        data = json.loads(payload)
    except ValueError:
        return payload.decode("utf-8", "replace").strip()[:300] or None
    if not isinstance(data, dict):
        return None
    if data.get("status") == "loading":  # /health while the server's model loads
        return "the server is still loading its model; connect again in a moment"
    for key in ("detail", "message", "error", "reason"):
        value = data.get(key)
        if isinstance(value, str):
            return value
        if isinstance(value, dict):
            return str(value.get("message") or value.get("detail") or value)
        if isinstance(value, list) and value:
            first = value[0]
            return str(first.get("msg", first)) if isinstance(first, dict) else str(first)
    return None


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
