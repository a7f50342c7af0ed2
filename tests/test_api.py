"""The REST API end to end: a real uvicorn server on loopback with the tiny model, exercised with httpx."""

from __future__ import annotations

import base64
import dataclasses
import inspect
import io
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from live_server import live_server, live_uvicorn, plain_settings
from skinscan import DISCLAIMER, __version__
from skinscan.api.app import app_from_env, create_app
from skinscan.api.routes import prefers_html
from skinscan.api.server import settings_env
from skinscan.api.settings import Settings
from skinscan.runtime.engine import Engine
from skinscan.runtime.result import Prediction
from synthetic import lesion_bytes

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
EXTERNAL_REFERENCE = re.compile(
    r"""(?:src|href)\s*=\s*["']?(?:https?:)?//|url\(\s*["']?(?:https?:)?//|@import|fetch\(\s*["'`](?:https?:)?//"""
)
PREDICTION_FIELDS = {
    "status", "verdict", "verdict_code", "probability", "label", "severity", "severity_name", "description",
    "recommendation", "colour",
    "threshold", "model", "time", "latency_ms", "disclaimer",
}  # fmt: skip


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("photo.jpg", lesion_bytes())
    return buffer.getvalue()


@pytest.fixture(scope="module")
def client(server_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server_url, timeout=30) as c:
        yield c


def upload(
    client: httpx.Client, data: bytes, name: str = "photo.jpg", url: str = "/predict", **kw: Any
) -> httpx.Response:
    # every file as application/octet-stream, as the seed's desktop client sends them
    return client.post(url, files={"file": (name, data, "application/octet-stream")}, **kw)


def assert_error(response: httpx.Response, status: int, error: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "detail"} and body["detail"], body
    if error:
        assert body["error"] == error
    return body


def assert_alive(client: httpx.Client) -> None:
    response = client.get("/health")
    assert response.status_code == 200 and response.json()["status"] == "ok"


# --- information endpoints ----------------------------------------------------------------------------


def test_health_reports_the_loaded_model(client: httpx.Client, engine: Engine) -> None:
    body = client.get("/health").json()
    assert body == {
        "status": "ok", "alive": True, "model_loaded": True, "detail": None, "version": __version__,
        "model": {"id": engine.spec.id, "version": engine.spec.version}, "warnings": [],
        # the tiny model carries no drift reference: nothing to compare with, and no warning
        "drift": {"status": "no_reference", "window": 500, "warnings": [], "measures": {}},
    }  # fmt: skip


def test_root_gives_api_information_as_json(client: httpx.Client, engine: Engine) -> None:
    body = client.get("/").json()
    assert body["name"] == "skinscan" and body["version"] == __version__
    assert body["disclaimer"] == DISCLAIMER
    assert body["model"]["id"] == engine.spec.id and body["model"]["metrics"] == engine.spec.metrics
    listed = {(e["method"], e["path"]) for e in body["endpoints"]}
    assert {("POST", "/predict"), ("POST", "/predict/batch"), ("GET", "/health"), ("GET", "/model")} <= listed


def test_root_gives_a_browser_the_web_client(client: httpx.Client) -> None:
    response = client.get("/", headers={"Accept": BROWSER_ACCEPT})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert 'id="file-input"' in response.text and "not a diagnosis" in response.text
    assert "default-src 'self'" in response.headers["content-security-policy"]
    for asset in ("app.js", "app.css", "favicon.svg"):
        assert client.get(f"/static/{asset}").status_code == 200


@pytest.mark.parametrize(
    ("accept", "html"),
    [(BROWSER_ACCEPT, True), ("*/*", False), ("", False), ("application/json", False),
     ("text/html;q=0.5, application/json", False), ("text/html", True)],
)  # fmt: skip
def test_prefers_html(accept: str, html: bool) -> None:
    assert prefers_html(accept) is html


def test_model_card(client: httpx.Client, engine: Engine) -> None:
    card = client.get("/model").json()
    assert card["id"] == engine.spec.id and card["class_names"] == list(engine.spec.class_names)
    assert card["threshold"] == engine.threshold and "path" not in card


def test_openapi_and_offline_docs(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert body["required"] == ["file"]
    assert (
        "files"
        in spec["paths"]["/predict/batch"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"][
            "properties"
        ]
    )
    docs = client.get("/docs")
    assert docs.status_code == 200 and "openapi.json" in client.get("/static/docs.js").text
    # nothing the pages load may come from elsewhere: they must work without a network
    static = Path(__file__).resolve().parents[1] / "src" / "skinscan" / "api" / "static"
    # (our own text files; the binary ones, the icons and prepare.onnx, and vendored ONNX Runtime Web, which
    # loads only what device.js points it at, are not pages)
    for path in static.iterdir():
        if path.suffix in {".html", ".js", ".css", ".svg", ".webmanifest"}:
            assert not EXTERNAL_REFERENCE.search(path.read_text()), path.name


def test_openapi_describes_every_public_prediction_field(client: httpx.Client) -> None:
    # read from the dataclass itself, not from the code that builds the schema, so a field that code drops shows
    spec = client.get("/openapi.json").json()
    answer = spec["paths"]["/predict"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    schema = spec["components"]["schemas"][answer["$ref"].rsplit("/", 1)[1]]
    public = {f.metadata["json"]["key"] or f.name: f.metadata["json"] for f in dataclasses.fields(Prediction)
              if "json" in f.metadata}  # fmt: skip
    assert {"status", "probability", "threshold", "heatmap_png", "disclaimer"} <= set(public)
    missing = set(public) - set(schema["properties"])
    assert not missing, f"Prediction fields missing from the /predict schema: {sorted(missing)}"
    for key, meta in public.items():
        assert schema["properties"][key].get("description") == meta["description"], key
    assert set(Prediction(status="ok", threshold=0.5, overlay_png=b"png").to_dict()) <= set(schema["properties"])


# --- predictions ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "TIFF"])
def test_predict_judges_a_lesion_whatever_the_declared_type(client: httpx.Client, engine: Engine, fmt: str) -> None:
    # the format comes from the bytes: a misleading name and a generic part type change nothing
    response = upload(client, lesion_bytes(False, seed=3, fmt=fmt), name="lesion.txt")
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) >= PREDICTION_FIELDS
    assert body["status"] == "ok" and body["reason"] is None and body["heatmap_png"] is None
    assert 0 <= body["probability"] <= 1 and body["label"] in engine.spec.class_names
    assert 1 <= body["severity"] <= 6 and body["colour"].startswith("#")
    assert body["model"] == {"id": engine.spec.id, "version": engine.spec.version}
    assert body["time"].endswith("Z") and body["latency_ms"] >= 0 and body["disclaimer"] == DISCLAIMER


def test_predict_without_filename_or_part_type(client: httpx.Client) -> None:
    boundary = "b0undary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"\r\n\r\n'.encode()
        + lesion_bytes(False, seed=1)
        + f"\r\n--{boundary}--\r\n".encode()
    )
    response = client.post(
        "/predict", content=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    assert response.status_code == 200 and response.json()["status"] == "ok"


def test_predict_heatmap_is_a_png_overlay(client: httpx.Client) -> None:
    body = upload(client, lesion_bytes(False, seed=2, size=120), params={"heatmap": "true"}).json()
    overlay = Image.open(io.BytesIO(base64.b64decode(body["heatmap_png"])))
    assert overlay.format == "PNG" and overlay.size == (120, 120)


def test_predict_reports_a_refused_image_as_rejected(client: httpx.Client) -> None:
    body = upload(client, png_bytes(np.full((128, 128, 3), 128, np.uint8)), name="blank.png").json()
    assert body["status"] == "rejected" and body["reason"] and body["probability"] is None and body["label"] is None
    assert body["model"]["id"] and body["disclaimer"] == DISCLAIMER


def test_predict_real_dermoscopy(client: httpx.Client, shared_data: Path) -> None:
    for path in sorted((shared_data / "ham10000" / "images").glob("*.jpg"))[:2]:
        response = upload(client, path.read_bytes(), name=path.name)
        assert response.status_code == 200 and response.json()["status"] in ("ok", "rejected")


def test_batch_answers_each_file_in_order(client: httpx.Client) -> None:
    files = [
        ("files", ("benign.jpg", lesion_bytes(False, seed=4), "application/octet-stream")),
        ("files", ("notes.jpg", b"just some text, not a photo\n", "image/jpeg")),
        ("files", ("cut.jpg", lesion_bytes(False, seed=5)[:300], "image/jpeg")),
        ("files", ("lesion.png", lesion_bytes(False, seed=6, fmt="PNG"), "application/octet-stream")),
        ("files", ("blank.png", png_bytes(np.full((96, 96, 3), 200, np.uint8)), "image/png")),
    ]
    response = client.post("/predict/batch", files=files, params={"heatmap": "true"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["count"] == 5 and body["disclaimer"] == DISCLAIMER and body["model"]["id"]
    got = [(r["index"], r["filename"], r["status"], r["http_status"]) for r in body["results"]]
    assert got == [
        (0, "benign.jpg", "ok", None), (1, "notes.jpg", "error", 415), (2, "cut.jpg", "error", 400),
        (3, "lesion.png", "ok", None), (4, "blank.png", "rejected", None),
    ]  # fmt: skip
    assert body["results"][0]["heatmap_png"] and body["results"][1]["error"] == "unsupported_format"
    assert body["results"][4]["reason"]


def test_concurrent_requests(client: httpx.Client) -> None:
    statuses: list[int] = []

    def worker(seed: int) -> None:
        for _ in range(2):
            statuses.append(upload(client, lesion_bytes(False, seed=seed)).status_code)

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 8


# --- bad uploads: the right status, JSON, and the server keeps serving ------------------------------------

SVG = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect/></svg>'
BAD_UPLOADS = {
    "empty": (b"", 400, "invalid_image"),
    "text as .jpg": (b"Dear doctor, please find my photo attached.\n" * 20, 415, "unsupported_format"),
    "random bytes": (bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8)), 400, "invalid_image"),
    "truncated JPEG": (lesion_bytes(False, seed=7, size=256)[:1500], 400, "invalid_image"),
    "JPEG header only": (b"\xff\xd8\xff\xe0" + b"\x00" * 64, 400, "invalid_image"),
    "SVG": (SVG, 415, "unsupported_format"),
    "HTML": (b"<!doctype html><html><body>hi</body></html>", 415, "unsupported_format"),
    "PDF": (b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n%%EOF", 415, "unsupported_format"),
    "zip": (zip_bytes(), 415, "unsupported_format"),
    "tiny image": (png_bytes(np.zeros((8, 8, 3), np.uint8)), 400, "image_too_small"),
}


@pytest.mark.parametrize("case", list(BAD_UPLOADS))
def test_bad_upload(client: httpx.Client, case: str) -> None:
    data, status, error = BAD_UPLOADS[case]
    assert_error(upload(client, data, name="photo.jpg"), status, error)
    assert_alive(client)


def test_upload_over_the_size_limit_is_refused_early(client: httpx.Client) -> None:
    big = b"\xff\xd8\xff" + bytes(11 * 1024 * 1024)
    started = time.perf_counter()
    assert_error(upload(client, big, name="huge.jpg"), 413, "too_large")
    assert time.perf_counter() - started < 5
    assert_alive(client)

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is enforced while reading
        yield b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="huge.jpg"\r\n\r\n\xff\xd8\xff'
        for _ in range(11):
            yield bytes(1024 * 1024)
        yield b"\r\n--xyz--\r\n"

    headers = {"Content-Type": "multipart/form-data; boundary=xyz"}
    assert_error(client.post("/predict", content=chunks(), headers=headers), 413, "too_large")
    assert_alive(client)


def test_size_limit_is_configurable_and_batch_reports_the_large_file(engine: Engine) -> None:
    small = lesion_bytes(False, seed=8)
    large = png_bytes(np.random.default_rng(1).integers(0, 256, (200, 200, 3), dtype=np.uint8))  # ~120 kB
    app = create_app(engine=engine, settings=plain_settings(max_upload_mb=0.05, max_batch_files=3))
    with live_server(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        assert_error(upload(client, large), 413, "too_large")
        assert upload(client, small).status_code == 200
        files = [("files", ("a.jpg", small)), ("files", ("b.png", large)), ("files", ("c.jpg", small))]
        results = client.post("/predict/batch", files=files).json()["results"]
        assert [(r["status"], r["http_status"]) for r in results] == [("ok", None), ("error", 413), ("ok", None)]
        assert_error(client.post("/predict/batch", files=[("files", ("x.jpg", small))] * 4), 413, "too_large")
        assert_alive(client)


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "error"),
    [
        ("POST", "/predict", {"files": {"image": ("a.jpg", b"x")}}, 422, "missing_field"),
        ("POST", "/predict/batch", {"files": {"file": ("a.jpg", b"x")}}, 422, "missing_field"),
        ("POST", "/predict", {"json": {"file": "aGVsbG8="}}, 400, "bad_request"),
        ("POST", "/predict", {"content": b"", "headers": {"Content-Type": "multipart/form-data"}}, 400, "bad_request"),
        ("POST", "/predict", {"content": b"garbage", "headers": {"Content-Type": "multipart/form-data; boundary=zz"}},
         400, "bad_request"),
        ("POST", "/predict", {"content": b'--zz\r\nContent-Disposition: form-data; name="file"\r\n\r\nabc',
                              "headers": {"Content-Type": "multipart/form-data; boundary=zz"}}, 400, "bad_request"),
        ("POST", "/predict", {"data": {"file": "not a file"}}, 400, "bad_request"),
        ("POST", "/predict?heatmap=maybe", {"files": {"file": ("a.jpg", b"x")}}, 422, "invalid_request"),
        ("GET", "/no/such/page", {}, 404, "not_found"),
        ("GET", "/predict", {}, 405, "method_not_allowed"),
        ("DELETE", "/health", {}, 405, "method_not_allowed"),
    ],
)  # fmt: skip
def test_bad_request(
    client: httpx.Client, method: str, path: str, kwargs: dict[str, Any], status: int, error: str
) -> None:
    assert_error(client.request(method, path, **kwargs), status, error)
    assert_alive(client)


# --- API key, CORS, loading ---------------------------------------------------------------------------------


def test_api_key(engine: Engine) -> None:
    app = create_app(engine=engine, settings=plain_settings(api_key="s3cret"))
    photo = lesion_bytes(False, seed=9)
    with live_server(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        assert_error(upload(client, photo), 401, "unauthorized")
        assert_error(upload(client, photo, headers={"X-API-Key": "wrong"}), 401, "unauthorized")
        assert_error(client.get("/model"), 401)
        assert_error(client.get("/"), 401)
        assert upload(client, photo, headers={"X-API-Key": "s3cret"}).status_code == 200
        assert client.get("/model", headers={"X-API-Key": "s3cret"}).status_code == 200
        # open: health, and the web client's page (it asks for the key itself)
        assert client.get("/health").status_code == 200
        assert client.get("/", headers={"Accept": BROWSER_ACCEPT}).status_code == 200


def test_cors_is_off_by_default_and_configurable(client: httpx.Client, engine: Engine) -> None:
    preflight = {"Origin": "https://clinic.example", "Access-Control-Request-Method": "POST"}
    assert "access-control-allow-origin" not in client.options("/predict", headers=preflight).headers
    app = create_app(engine=engine, settings=plain_settings(cors_origins=["https://clinic.example"]))
    with live_server(app) as url, httpx.Client(base_url=url, timeout=30) as other:
        response = other.options("/predict", headers=preflight)
        assert response.headers["access-control-allow-origin"] == "https://clinic.example"


def test_model_loads_in_the_background(monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path) -> None:
    import skinscan.api.deps as deps

    release = threading.Event()

    def slow_engine(*args: Any, **kwargs: Any) -> Engine:
        release.wait(10)
        return Engine(*args, **kwargs)

    monkeypatch.setattr(deps, "Engine", slow_engine)
    app = create_app(settings=plain_settings(model=str(tiny_model_dir), threads=1))
    with live_server(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        loading = client.get("/health")
        assert loading.status_code == 503 and loading.json()["status"] == "loading"
        assert_error(upload(client, lesion_bytes()), 503, "unavailable")
        release.set()
        deadline = time.monotonic() + 10
        while client.get("/health").status_code != 200:
            assert time.monotonic() < deadline, "the model never finished loading"
            time.sleep(0.05)
        assert upload(client, lesion_bytes()).status_code == 200


def test_a_model_that_fails_to_load_is_reported(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"not a model")
    app = create_app(settings=plain_settings(model=str(tmp_path)))
    with live_server(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        deadline = time.monotonic() + 10
        while (body := client.get("/health").json())["status"] == "loading":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert body["status"] == "failed" and "cannot load model" in body["detail"]
        assert_error(upload(client, lesion_bytes()), 503)


# --- privacy: uploads are kept in memory and never logged -----------------------------------------------------

_file_writes: list[str] | None = None
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | getattr(os, "O_TMPFILE", 0)


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _file_writes is None or event != "open":
        return
    path, mode, flags = args
    if (isinstance(mode, str) and any(c in mode for c in "wax+")) or (mode is None and flags & _WRITE_FLAGS):
        _file_writes.append(str(path))


sys.addaudithook(_audit)  # audit hooks cannot be removed; this one does nothing outside the test below


def test_uploads_never_touch_disk_or_logs(client: httpx.Client, caplog: pytest.LogCaptureFixture) -> None:
    global _file_writes
    import tempfile

    marker = "PRIVATE-PATIENT-4711"
    noise = np.random.default_rng(2).integers(0, 256, (1100, 1100, 3), dtype=np.uint8)
    photo = Image.fromarray(noise)
    buffer = io.BytesIO()
    photo.save(buffer, format="PNG", pnginfo=_text_chunk(marker))
    data = buffer.getvalue()
    assert len(data) > 3 * 1024 * 1024  # well over Starlette's 1 MB in-memory spool
    caplog.set_level(logging.DEBUG)
    _file_writes = []
    try:
        with tempfile.SpooledTemporaryFile(max_size=1) as control:  # the hook sees a spool roll over to disk
            control.write(b"12")
        assert _file_writes, "the audit hook does not see temporary files"
        _file_writes.clear()
        response = upload(client, data, name=f"{marker}.png")
        batch = client.post("/predict/batch", files=[("files", (f"{marker}.png", data))])
        writes = list(_file_writes)
    finally:
        _file_writes = None
    assert response.status_code == 200 and batch.status_code == 200
    assert writes == []
    assert not any(marker in record.getMessage() for record in caplog.records)


def _text_chunk(text: str) -> Any:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Comment", text)
    return info


# --- settings, command line, imports ---------------------------------------------------------------------------


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKINSCAN_HOST", "0.0.0.0")
    monkeypatch.setenv("SKINSCAN_PORT", "9000")
    monkeypatch.setenv("SKINSCAN_CORS_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("SKINSCAN_API_KEY", "")
    monkeypatch.setenv("SKINSCAN_MAX_UPLOAD_MB", "2.5")
    settings = Settings()
    assert (settings.host, settings.port, settings.api_key) == ("0.0.0.0", 9000, None)
    assert settings.cors_origins == ["https://a.example", "https://b.example"]
    assert settings.max_upload_bytes == int(2.5 * 1024 * 1024)
    monkeypatch.setenv("SKINSCAN_CORS_ORIGINS", '["https://c.example"]')
    assert Settings().cors_origins == ["https://c.example"]


def test_worker_processes_get_the_same_settings(monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path) -> None:
    given = plain_settings(model=str(tiny_model_dir), api_key="k", cors_origins=["https://a.example"], threshold=0.3)
    for name, value in settings_env(given).items():
        monkeypatch.setenv(name, value)
    rebuilt: Settings = app_from_env().state.settings
    assert rebuilt.model_dump(exclude={"api_key"}) == given.model_dump(exclude={"api_key"})
    assert rebuilt.api_key is not None and rebuilt.api_key.get_secret_value() == "k"


def test_cli_flags_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import skinscan.api.server as server
    from skinscan.cli import main

    seen: list[Settings] = []
    monkeypatch.setattr(server, "serve", lambda settings: seen.append(settings) or 0)
    monkeypatch.setenv("SKINSCAN_PORT", "9000")
    monkeypatch.setenv("SKINSCAN_HOST", "0.0.0.0")
    assert main(["serve", "--port", "9123", "--model", "some/model", "--workers", "2"]) == 0
    assert (seen[0].host, seen[0].port, seen[0].model, seen[0].workers) == ("0.0.0.0", 9123, "some/model", 2)


def test_dependencies_run_on_the_event_loop() -> None:
    # FastAPI runs a plain function dependency in its threadpool: a thread hop each, on every request
    from skinscan.api import deps

    for dependency in (deps.get_settings, deps.get_slot, deps.get_engine, deps.require_api_key):
        assert inspect.iscoroutinefunction(dependency), dependency.__name__


def test_served_connections_turn_nagle_off(engine: Engine) -> None:
    # the listener is bound with proto 0, as uvicorn binds it for --workers N: asyncio leaves Nagle's algorithm on
    # there, and each response on a kept-alive connection would wait for the client's delayed ACK
    app = create_app(engine=engine, settings=plain_settings())
    with live_uvicorn(app) as (url, server), httpx.Client(base_url=url, timeout=30) as client:
        assert upload(client, lesion_bytes()).status_code == 200
        (connection,) = server.server_state.connections
        sock = connection.transport.get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve_and_upload(model: Path, *extra: str, timeout: float) -> tuple[int, int | None, str]:
    """Run `skinscan serve` on a free port until /health answers, upload one lesion, stop it with SIGTERM.

    Returns:
        The port, the exit status and everything the command printed.
    """
    port = _free_port()
    env = {**os.environ, "SKINSCAN_PORT": str(port), "SKINSCAN_API_KEY": ""}
    command = [sys.executable, "-m", "skinscan.cli", "serve", "--model", str(model), "--host", "127.0.0.1", *extra]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            while True:
                assert process.poll() is None, process.communicate()[0]
                assert time.monotonic() < deadline, f"skinscan serve {' '.join(extra)} did not come up"
                try:
                    if client.get("/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
            assert upload(client, lesion_bytes()).json()["status"] == "ok"
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0]
    return port, process.returncode, output


def test_skinscan_serve_command(tiny_model_dir: Path) -> None:
    port, returncode, output = _serve_and_upload(tiny_model_dir, timeout=30)
    assert returncode in (0, -signal.SIGTERM), output  # uvicorn re-raises the signal once shut down
    assert f"http://127.0.0.1:{port}" in output


def test_skinscan_serve_with_workers_listens_once_per_process(tiny_model_dir: Path) -> None:
    _, returncode, output = _serve_and_upload(tiny_model_dir, "--workers", "2", timeout=60)
    assert returncode == 0, output
    assert output.count("Finished server process") == 2, output


def test_worker_sockets_share_a_port_no_one_else_holds() -> None:
    from skinscan.api.workers import can_share_port, listening_socket

    if not can_share_port():
        pytest.skip("SO_REUSEPORT spreads connections on Linux only")
    first = listening_socket("127.0.0.1", 0)
    port = first.getsockname()[1]
    second = listening_socket("127.0.0.1", port)
    for sock in (first, second):
        assert sock.proto == socket.IPPROTO_TCP  # so that asyncio turns Nagle off on the connections
        sock.close()
    with socket.socket() as taken:  # someone else's server
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        for share in (True, False):
            with pytest.raises(OSError):
                listening_socket("127.0.0.1", taken.getsockname()[1], share=share)


def test_skinscan_serve_without_a_model_fails_cleanly(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "skinscan.cli", "serve", "--model", str(tmp_path / "missing")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "no model at" in result.stderr and "Traceback" not in result.stderr


def test_the_api_imports_neither_torch_nor_qt() -> None:
    code = (
        "import sys, skinscan.api.app, skinscan.api.server; "
        "bad = [m for m in ('torch', 'qtpy', 'PyQt5', 'PySide6', 'skinscan.gui') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_error_bodies_are_json_objects(client: httpx.Client) -> None:
    # a last look at the wire format: exactly the two keys, for errors raised at every layer
    for response in (client.get("/missing"), upload(client, b""), client.post("/predict", json={})):
        assert json.loads(response.text).keys() == {"error", "detail"}
