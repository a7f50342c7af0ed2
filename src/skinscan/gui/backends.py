"""Where the window's verdicts come from: the engine in this process, or a skinscan server over HTTP.
Both give a `Prediction` and raise skinscan errors whose messages the window shows as they are; two of them,
ServerUnreachableError and ApiKeyError, also change the window's status line (`report_server_error`)."""

from __future__ import annotations

import contextlib
import http.client
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
API_KEY_HEADER = "X-API-Key"  # what `skinscan serve --api-key` checks (api/deps.py, not imported: gui ≠ api)


class ServerUnreachableError(SkinscanError):
    """The server did not answer: not running, a wrong address, the network, or no answer within the timeout."""


class ApiKeyError(SkinscanError):
    """The server answered 401: it wants an API key and got none (`sent` False) or one it does not accept."""

    def __init__(self, message: str, *, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


class Backend(Protocol):
    def load(self) -> str:
        """Get ready (load the model, or reach the server); returns the model's name. Slow: call off the UI thread."""
        ...

    def check(self) -> str:
        """Whether it still answers, cheaply and quickly (a server's /health); returns the model's name.
        Raises like `load`. Call off the UI thread."""
        ...

    def model_card(self) -> dict[str, Any] | None:
        """The model card the last `load` got (its version, the site profile in use, ...); None before."""
        ...

    def predict(self, data: bytes, name: str) -> tuple[Prediction, str | None]:
        """Judge one image's bytes; returns the result and the "id version" of the model that judged it.
        Raises InvalidImageError for a bad image, SkinscanError for anything else."""
        ...


def create_backend(state: AppState) -> Backend:
    """The backend the state's connection settings ask for."""
    if state.mode == "remote":
        return RemoteBackend(state.host, state.port, api_key=state.api_key or None)
    return LocalBackend(state.model, site=state.site)


def report_server_error(state: AppState, error: BaseException | None) -> None:
    """Tell the state what a failed request says about the server: gone, or refusing the key (others: nothing,
    the image's own error says enough)."""
    if isinstance(error, ServerUnreachableError):
        state.server_lost()
    elif isinstance(error, ApiKeyError):
        state.key_refused(sent=error.sent)


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
    cause: SkinscanError | None = None  # the error behind `error`: tells a server that is gone from a bad image


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
        outcome.error, outcome.cause = str(exc), exc.with_traceback(None)
    # a file that does not decode has no preview; the error above already says what is wrong with it
    with contextlib.suppress(SkinscanError):
        outcome.preview = make_preview(raw)
    return outcome


class LocalBackend:
    """The engine and a model file in this process (the engine's default model unless told otherwise), with a
    site profile (`site`, a site.json) if one is given."""

    def __init__(
        self, model: str | os.PathLike[str] | None = None, *, threads: int | None = None,
        threshold: float | None = None, site: str | os.PathLike[str] | None = None,
    ) -> None:  # fmt: skip
        self.model, self.threads, self.threshold, self.site = model, threads, threshold, site
        self._engine: Engine | None = None
        self._lock = threading.Lock()

    def _ready_engine(self) -> Engine:
        with self._lock:
            if self._engine is None:
                self._engine = Engine(self.model, threads=self.threads, threshold=self.threshold, site=self.site)
            return self._engine

    def load(self) -> str:
        return model_label(self._ready_engine().info)

    def model_card(self) -> dict[str, Any] | None:
        with self._lock:
            return self._engine.info if self._engine is not None else None

    def check(self) -> str:
        return self.load()  # in this process: there as long as the window is

    def predict(self, data: bytes, name: str) -> tuple[Prediction, str | None]:
        engine = self._ready_engine()
        return engine.predict(data, heatmap=True), model_label(engine.info)


class RemoteBackend:
    """A skinscan server: `GET /health` and `GET /model` to connect, `GET /health` to check it is still there,
    `POST /predict?heatmap=true` (multipart `file`) per image; every request carries the API key, if any.

    Args:
        api_key: sent as X-API-Key (the server answers 401 without it when it has one).
        timeout: seconds to wait for a prediction's answer; health_timeout: for a health check's, kept short.
    """

    def __init__(
        self, host: str, port: int, *, api_key: str | None = None, timeout: float = 30.0, health_timeout: float = 3.0
    ) -> None:
        self.url = f"http://{host}:{port}"
        self.api_key = api_key or None
        self.timeout, self.health_timeout = timeout, health_timeout
        handlers: list[urllib.request.BaseHandler] = []
        if _is_loopback(host):  # a proxy from the environment cannot reach this machine's own server
            handlers.append(urllib.request.ProxyHandler({}))
        self._opener = urllib.request.build_opener(*handlers)
        self._card: dict[str, Any] | None = None

    def load(self) -> str:
        name = self._health(self.timeout)
        # /health asks for no key; the model card does, so a missing or wrong key shows now, not on the first image
        self._card = self._request("GET", "/model")
        return name

    def model_card(self) -> dict[str, Any] | None:
        return self._card

    def check(self) -> str:
        return self._health(self.health_timeout)

    def _health(self, timeout: float) -> str:
        health = self._request("GET", "/health", timeout=timeout)
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
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        content_type: str | None = None,
        *,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        if self.api_key is not None:
            if not self.api_key.isprintable():  # a pasted line break would end the header (http.client refuses it)
                raise ApiKeyError("the API key has characters a request cannot carry (a line break?)", sent=True)
            # http.client sends header text as latin-1; the server reads a non-ASCII key as UTF-8 (api/deps.py)
            headers[API_KEY_HEADER] = self.api_key.encode("utf-8").decode("latin-1")
        request = urllib.request.Request(self.url + path, data=body, method=method, headers=headers)
        try:
            with self._opener.open(request, timeout=self.timeout if timeout is None else timeout) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            detail = _error_detail(exc.read()) or exc.reason
            if exc.code == 401:
                sent = self.api_key is not None
                what = "refused the API key" if sent else "needs an API key: type it in the key field"
                raise ApiKeyError(f"the server at {self.url} {what}", sent=sent) from None
            if exc.code in (400, 413, 415, 422):
                raise InvalidImageError(str(detail)) from None  # the server refused the image itself
            raise SkinscanError(f"the server at {self.url} answered {exc.code}: {detail}") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            # HTTPException: the answer broke off (IncompleteRead, a bad status line), as when the server is stopped
            reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
            raise ServerUnreachableError(
                f"cannot reach the skinscan server at {self.url} ({reason}); is it running?"
            ) from None
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
