"""The desktop app's Qt-free parts, headless: the state object and its events, results from the engine and from
a server's JSON, CSV export, and the backends' errors."""

from __future__ import annotations

import base64
import csv
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from skinscan.core.errors import InvalidImageError, SkinscanError
from skinscan.gui.backends import LocalBackend, RemoteBackend, make_preview, scan_image
from skinscan.gui.state import AppState, Event
from skinscan.runtime.engine import Engine
from skinscan.runtime.result import CSV_FIELDS, Prediction
from synthetic import lesion_bytes


def record(state: AppState) -> list[Event]:
    seen: list[Event] = []
    for event in Event:
        state.subscribe(event, lambda event=event: seen.append(event))
    return seen


def test_state_and_backends_import_no_qt() -> None:
    code = (
        "import sys, skinscan.gui.state, skinscan.gui.backends; "
        "sys.exit(any(m.split('.')[0] in ('qtpy', 'PyQt5', 'PySide6') for m in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_images_flow_through_the_state_with_events() -> None:
    state = AppState()
    seen = record(state)
    first, second = state.add_images([("a.jpg", "/photos/a.jpg", None), ("b.png", "/photos/b.png", None)])
    assert seen == [Event.HISTORY, Event.CURRENT]
    assert state.current is first and first.pending and first.summary() == "Analysing…"
    assert state.last_folder == "/photos"

    seen.clear()
    verdict = Prediction(status="ok", threshold=0.4, probability=0.91, label="malignant", severity=5, colour="#d84315")
    state.finish(first.id, verdict, b"jpeg", "tiny 1.0.0")
    assert seen == [Event.HISTORY, Event.CURRENT]  # the shown item changed, so its views redraw
    assert first.summary() == "Malignant · 91.0%" and first.preview == b"jpeg" and first.model == "tiny 1.0.0"

    seen.clear()
    state.fail(second.id, "not an image")
    assert seen == [Event.HISTORY]  # not the shown item
    assert second.summary() == "Error" and not second.pending

    state.select(second.id)
    state.select(999)  # unknown: ignored
    assert state.current is second
    assert seen == [Event.HISTORY, Event.CURRENT]


def test_display_theme_connection_and_unsubscribe() -> None:
    state = AppState(theme="no-such-theme")
    assert state.theme == "dark"
    seen = record(state)
    state.set_heatmap(True)
    state.set_heatmap(True)  # no change, no event
    state.set_theme("light")
    with pytest.raises(ValueError, match="dark, light"):
        state.set_theme("purple")
    assert seen == [Event.DISPLAY, Event.THEME]

    state.set_connection("remote", " example.org ", 9000)
    state.model_loading()
    assert state.status_text == "Connecting to http://example.org:9000…"
    state.model_ready("tiny 1.0.0")
    assert state.status_text == "Model loaded: tiny 1.0.0 on http://example.org:9000"
    state.set_connection("local")
    state.model_loading()
    assert state.status_text == "Loading model…"
    state.model_failed("no model at x")
    assert (state.model_status, state.status_text) == ("failed", "Model not loaded: no model at x")

    calls: list[int] = []
    unsubscribe = state.subscribe(Event.NOTICE, lambda: calls.append(1))
    state.notify("one")
    unsubscribe()
    state.notify("two")
    assert calls == [1] and state.notice == "two"


def test_local_and_remote_backends_give_equal_results(tiny_model_dir: Path, engine: Engine) -> None:
    pytest.importorskip("fastapi")  # the server side is the [serve] extra
    from live_server import live_server, plain_settings
    from skinscan.api.app import create_app

    data = lesion_bytes(malignant=True, seed=3)
    local, local_model = LocalBackend(tiny_model_dir, threads=1).predict(data, "a.jpg")
    with live_server(create_app(engine=engine, settings=plain_settings())) as url:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        remote, remote_model = RemoteBackend(host, int(port), timeout=30).predict(data, "a.jpg")
    assert local.status == "ok" and local.overlay_png is not None
    assert remote_model == local_model == f"{engine.spec.id} {engine.spec.version}"
    assert remote.to_dict() == local.to_dict()  # every public field, the heatmap's PNG included
    assert remote.probability == pytest.approx(local.probability, abs=1e-4)  # the JSON has four decimals

    refused = Prediction.from_dict({"status": "rejected", "threshold": 0.5, "reason": "too dark", "probability": None})
    assert not refused.ok and refused.probability is None and refused.overlay_png is None


def test_export_csv_has_the_predict_columns(tmp_path: Path) -> None:
    state = AppState()
    done, failed, _ = state.add_images([("a.jpg", "/x/a.jpg", None), ("b.jpg", "/x/b.jpg", None),
                                              ("Pasted image 1", None, b"png")])  # fmt: skip
    state.finish(done.id, Prediction(status="ok", verdict="Low concern: keep an eye on it", threshold=0.42,
                                     probability=0.123456, label="benign", severity=1,
                                     severity_name="No concern found"), None)  # fmt: skip
    state.fail(failed.id, "not an image")
    assert state.export_csv(tmp_path / "out.csv") == 3
    with open(tmp_path / "out.csv", newline="") as file:
        reader = csv.DictReader(file)
        rows = list(reader)
    assert reader.fieldnames == CSV_FIELDS
    assert rows[0] == {
        "path": "/x/a.jpg", "status": "ok", "verdict": "Low concern: keep an eye on it", "label": "benign",
        "probability": "0.1235", "severity": "1", "severity_name": "No concern found", "threshold": "0.42",
        "reason": "",
    }  # fmt: skip
    assert (rows[1]["status"], rows[1]["reason"]) == ("error", "not an image")
    assert (rows[2]["path"], rows[2]["status"]) == ("Pasted image 1", "pending")


def test_scan_image_turns_errors_into_messages(tiny_model_dir: Path, tmp_path: Path) -> None:
    backend = LocalBackend(tiny_model_dir, threads=1)
    assert backend.load().startswith(Engine(tiny_model_dir).spec.id)
    fake = tmp_path / "notes.jpg"
    fake.write_text("not a photo")
    outcome = scan_image(backend, fake.name, str(fake), None)
    assert outcome.result is None and outcome.preview is None
    assert outcome.error is not None and "plain-text file" in outcome.error

    missing = scan_image(backend, "gone.jpg", str(tmp_path / "gone.jpg"), None)
    assert missing.error is not None and "cannot read" in missing.error and "gone.jpg" in missing.error

    data = lesion_bytes(seed=1, size=200)
    good = scan_image(backend, "pasted", None, data)
    assert good.error is None and good.result is not None and good.result.overlay_png
    assert good.preview == make_preview(data)
    with pytest.raises(InvalidImageError):
        make_preview(b"GIF89a broken")


def test_remote_backend_says_when_the_server_is_down() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound but not listening: connections are refused
        port = sock.getsockname()[1]
        backend = RemoteBackend("127.0.0.1", port, timeout=5)
        with pytest.raises(SkinscanError, match=rf"cannot reach the skinscan server at http://127.0.0.1:{port}"):
            backend.load()
        outcome = scan_image(backend, "a.png", None, lesion_bytes(fmt="PNG"))
    assert outcome.result is None and outcome.error is not None and "is it running?" in outcome.error
    assert outcome.preview is not None  # the image itself is fine: the window still shows it


def test_heatmap_json_round_trip() -> None:
    png = lesion_bytes(fmt="PNG")
    result = Prediction.from_dict({"status": "ok", "threshold": 0.5, "probability": 0.7, "heatmap_png":
                                   base64.b64encode(png).decode()})  # fmt: skip
    assert result.overlay_png == png and result.to_dict()["heatmap_png"] == base64.b64encode(png).decode()
