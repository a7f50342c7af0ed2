"""The desktop app's Qt-free parts, headless: the state object and its events, results from the engine and from
a server's JSON, CSV export, the backends' errors, and what a server going away or refusing the key does to the
status line."""

from __future__ import annotations

import base64
import csv
import socket
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from skinscan.core.errors import InvalidImageError, SkinscanError
from skinscan.gui.backends import (
    ApiKeyError,
    LocalBackend,
    RemoteBackend,
    ServerUnreachableError,
    make_preview,
    report_server_error,
    scan_image,
)
from skinscan.gui.state import AppState, Event, UpdateNotice, site_text
from skinscan.gui.updates import find_update, update_sources
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


def connected(**overrides: object) -> AppState:
    state = AppState(mode="remote", host="example.org", port=9000, **overrides)  # type: ignore[arg-type]
    state.model_loading()
    state.model_ready("tiny 1.0.0")
    return state


def test_a_lost_server_turns_the_status_line_and_back() -> None:
    state = connected()
    seen = record(state)
    assert state.server_watched and state.model_status == "ready"
    state.server_answered("tiny 1.0.0")  # answering while ready: nothing to say
    state.server_lost(now=datetime(2025, 5, 6, 12, 3, 41))
    assert state.model_status == "unreachable" and state.down_since == datetime(2025, 5, 6, 12, 3, 41)
    assert state.status_text == (
        "Server at http://example.org:9000 is not answering since 12:03; images cannot be judged until it is back"
    )
    state.server_lost(now=datetime(2025, 5, 6, 12, 9))  # still gone: the outage started when it first failed
    assert "since 12:03" in state.status_text and state.server_watched  # still watched, to see it come back
    state.server_lost("the server is still loading its model", now=datetime(2025, 5, 6, 12, 10))
    assert "is not ready since 12:03 (the server is still loading its model)" in state.status_text
    # only the status line changed, never the connection: the connection bar keeps what the user is typing
    assert seen == [Event.STATUS, Event.STATUS]

    state.server_answered(None)  # an image judged, without the model's name: the one it had
    assert (state.model_status, state.status_text) == ("ready", "Model loaded: tiny 1.0.0 on http://example.org:9000")
    assert state.down_since is None
    state.server_lost(now=datetime(2025, 5, 6, 13, 0))
    state.server_answered("tiny 1.1.0")  # restarted with another model
    assert state.status_text == "Model loaded: tiny 1.1.0 on http://example.org:9000"


NOT_CONNECTED: dict[str, Callable[[AppState], None]] = {
    "changed": lambda state: state.set_connection("remote", port=9001),
    "connecting": lambda state: state.model_loading(),
    "failed": lambda state: state.model_failed("cannot reach it"),
}


@pytest.mark.parametrize("change", NOT_CONNECTED.values(), ids=NOT_CONNECTED.keys())
def test_only_a_connected_server_can_be_lost_or_come_back(change: Callable[[AppState], None]) -> None:
    state = connected()
    change(state)
    before = (state.model_status, state.status_text)
    seen = record(state)
    state.server_lost()  # a late answer about the connection this one replaced, or a check still under way
    state.server_answered("tiny 1.0.0")
    assert (state.model_status, state.status_text) == before and not state.server_watched and seen == []

    local = AppState()
    local.model_ready("tiny 1.0.0")
    local.server_lost()
    local.key_refused(sent=False)
    assert local.model_status == "ready" and not local.server_watched


def test_a_refused_key_says_which_and_the_key_is_kept_for_the_session() -> None:
    state = connected(api_key="")
    state.key_refused(sent=False)
    assert state.model_status == "failed" and not state.server_watched
    assert "http://example.org:9000 needs an API key" in state.status_text
    seen = record(state)
    state.set_connection("remote", api_key="  s3cret \n")
    assert state.api_key == "s3cret" and seen == [Event.CONNECTION, Event.STATUS]
    state.set_connection("remote", port=9001)  # the key stays unless another is given
    assert state.api_key == "s3cret"
    state.key_refused(sent=True)
    assert state.status_text.startswith("The API key was refused by the server at http://example.org:9001")


def test_remote_backend_sends_the_api_key(engine: Engine) -> None:
    pytest.importorskip("fastapi")
    from live_server import live_server, plain_settings
    from skinscan.api.app import create_app

    key = "clé-🔑-s3cret"  # not ASCII: sent as UTF-8, as the server reads it
    data = lesion_bytes(malignant=True, seed=4)
    with live_server(create_app(engine=engine, settings=plain_settings(api_key=key))) as url:
        host, port = url.removeprefix("http://").rsplit(":", 1)

        def backend(api_key: str | None) -> RemoteBackend:
            return RemoteBackend(host, int(port), api_key=api_key, timeout=30, health_timeout=10)

        label = f"{engine.spec.id} {engine.spec.version}"
        assert backend(None).check() == label  # /health wants no key: the health check works without one
        with pytest.raises(ApiKeyError, match=f"the server at {url} needs an API key") as missing:
            backend(None).load()  # the model card wants it: connecting says so before any image is sent
        assert not missing.value.sent
        with pytest.raises(ApiKeyError, match="refused the API key") as wrong:
            backend("clé").predict(data, "a.jpg")
        assert wrong.value.sent
        with pytest.raises(ApiKeyError, match="line break"):
            backend("s3cret\nX-Other: 1").load()
        right = backend(key)
        assert right.load() == label
        result, model = right.predict(data, "a.jpg")
    assert result.ok and model == label
    assert result.to_dict() == engine.predict(data, heatmap=True).to_dict()


def test_a_scan_that_cannot_reach_the_server_flips_the_status() -> None:
    state = connected()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound but not listening: connections are refused
        backend = RemoteBackend("127.0.0.1", sock.getsockname()[1], timeout=5, health_timeout=5)
        with pytest.raises(ServerUnreachableError):
            backend.check()
        outcome = scan_image(backend, "a.png", None, lesion_bytes(fmt="PNG"))
    assert isinstance(outcome.cause, ServerUnreachableError) and outcome.cause.__traceback__ is None
    report_server_error(state, outcome.cause)
    assert state.model_status == "unreachable" and "is not answering since" in state.status_text

    refused = connected()
    report_server_error(refused, ApiKeyError("refused", sent=True))
    assert refused.model_status == "failed" and "API key was refused" in refused.status_text
    fine = connected()
    report_server_error(fine, InvalidImageError("not an image"))  # the image's problem, not the server's
    report_server_error(fine, None)
    assert fine.model_status == "ready"


def test_the_site_line_names_the_profile_and_what_to_expect() -> None:
    assert site_text(None).startswith("No site profile")
    summary = {"name": "Ward 7", "created": "2026-12-01T10:00:00+00:00", "images": 412, "expected_sensitivity": 0.9,
               "expected_sensitivity_ci": [0.84, 0.95], "expected_specificity": 0.41}  # fmt: skip
    assert site_text(summary) == (
        "Site profile: Ward 7 · fitted 2026-12-01 on 412 images · expected sensitivity 90% (84–95%), specificity 41%"
    )
    state, seen = AppState(), []
    state.subscribe(Event.SITE, lambda: seen.append(state.site_text))
    state.set_site_info(summary)
    state.set_site_info(dict(summary))  # the same again: no event
    state.set_site_info(None)
    assert seen == [site_text(summary), site_text(None)]


def test_a_dismissed_update_stays_dismissed_and_a_newer_one_shows() -> None:
    state, seen = AppState(), []
    state.subscribe(Event.UPDATE, lambda: seen.append(state.update))
    first = UpdateNotice("m", "2.1.0", "2.0.0", "http://127.0.0.1:9889")
    state.offer_update(first)
    state.dismiss_update()
    state.offer_update(first)  # asked again later: still dismissed
    later = UpdateNotice("m", "2.2.0", "2.0.0", "http://127.0.0.1:9889", needs_key=True)
    state.offer_update(later)
    assert seen == [first, None, later]
    assert later.command == "SKINSCAN_API_KEY=… skinscan models pull http://127.0.0.1:9889"  # never the key itself


def test_the_api_key_goes_only_to_the_server_it_was_typed_for() -> None:
    remote = AppState(mode="remote", host="127.0.0.1", port=9889, api_key="secret", updates="https://models.example/")
    assert update_sources(remote) == [("http://127.0.0.1:9889", "secret"), ("https://models.example/", None)]
    same = AppState(mode="remote", host="127.0.0.1", port=9889, api_key="secret", updates="http://127.0.0.1:9889/")
    assert update_sources(same) == [("http://127.0.0.1:9889", "secret")]
    local = AppState(mode="local", host="127.0.0.1", port=9889, api_key="secret", updates="http://127.0.0.1:9889")
    assert update_sources(local) == [("http://127.0.0.1:9889", "secret")]
    assert update_sources(AppState(mode="local")) == []


def test_an_update_check_never_fails_aloud(tmp_path: Path) -> None:
    def broken() -> str:
        raise SkinscanError("no model here")

    assert find_update(broken, [(str(tmp_path), None)]) is None
    assert find_update(lambda: "1.0.0", [(str(tmp_path / "missing"), None)]) is None
