"""The desktop app's real widgets, offscreen: start and model load, drop and paste, the result, the heatmap,
errors, CSV export, reports, themes and remote mode against a real server on loopback: one that goes away and
comes back, and one that wants an API key."""

from __future__ import annotations

import csv
import io
import os
import socket
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

pytest.importorskip("qtpy")
pytest.importorskip("pytestqt")

from qtpy import QT6
from qtpy.QtCore import QMimeData, QPoint, QPointF, QSettings, Qt, QUrl
from qtpy.QtGui import QDragEnterEvent, QDropEvent, QImage
from qtpy.QtWidgets import QApplication

from file_server import closed_port
from skinscan import DISCLAIMER
from skinscan.gui.backends import Backend, LocalBackend, RemoteBackend
from skinscan.gui.preferences import read_preferences
from skinscan.gui.qt_main import MainWindow, load_stylesheet
from skinscan.gui.state import AppState
from skinscan.runtime.engine import Engine
from skinscan.runtime.result import CSV_FIELDS
from synthetic import lesion_bytes, versioned_copy, write_dataset

WAIT_MS = 30_000  # generous: the suite shares two cores with other work
DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_backend(model_dir: Path, state: AppState) -> Backend:
    if state.mode == "remote":
        return RemoteBackend(state.host, state.port, api_key=state.api_key or None, timeout=10, health_timeout=10)
    return LocalBackend(model_dir, threads=1, site=state.site)


test_backend.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


@pytest.fixture
def settings(tmp_path: Path) -> QSettings:
    """Settings in a file of the test's own, never the user's."""
    return QSettings(str(tmp_path / "skinscan.ini"), QSettings.Format.IniFormat)


@pytest.fixture
def open_window(qtbot: Any, settings: QSettings, tiny_model_dir: Path) -> Iterator[Callable[..., MainWindow]]:
    """Opens windows as `skinscan gui` does (remembered settings, then overrides), on the tiny model."""
    windows: list[MainWindow] = []

    def open_(*, health_interval_s: float = 5.0, update_interval_s: float = 3600.0, **overrides: Any) -> MainWindow:
        state = AppState(**{**read_preferences(settings), **overrides})
        backends = partial(test_backend, tiny_model_dir)
        window = MainWindow(state, settings=settings, backend_factory=backends, health_interval_s=health_interval_s,
                            update_interval_s=update_interval_s)  # fmt: skip
        qtbot.addWidget(window)
        window.show()
        windows.append(window)
        return window

    yield open_
    for window in windows:
        window.shutdown()
        assert window.runner.pool.activeThreadCount() == 0
        assert window.server_watch.runner.pool.activeThreadCount() == 0
        assert window.update_check.runner.pool.activeThreadCount() == 0


@pytest.fixture
def images(tmp_path: Path) -> dict[str, Path]:
    folder = tmp_path / "photos"
    folder.mkdir()
    paths = {
        "benign": folder / "benign.jpg", "malignant": folder / "malignant.png", "fake": tmp_path / "notes.jpg",
    }  # fmt: skip
    paths["benign"].write_bytes(lesion_bytes(malignant=False, seed=11))
    paths["malignant"].write_bytes(lesion_bytes(malignant=True, seed=12, size=320, fmt="PNG"))
    (folder / "readme.txt").write_text("not an image, and not picked from a folder")
    paths["fake"].write_text("a text file with a photo's name")
    return paths


def wait_loaded(qtbot: Any, window: MainWindow) -> None:
    def loaded() -> None:
        text = window.status_bar.status_label.text()
        assert text.startswith("Model loaded"), f"the status bar says {text!r}"  # the last one, on a timeout

    qtbot.waitUntil(loaded, timeout=WAIT_MS)


def wait_settled(qtbot: Any, window: MainWindow) -> None:
    qtbot.waitUntil(lambda: not window.busy and not any(i.pending for i in window.state.history), timeout=WAIT_MS)


def drop(window: MainWindow, paths: Sequence[Path]) -> None:
    """Drag files over the window and drop them, as a file manager does."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    actions, button, modifier = Qt.DropAction.CopyAction, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    # Qt 5 takes an integer point for drag-enter events; Qt 6 deprecates that for a QPointF
    enter = QDragEnterEvent(QPointF(200, 200) if QT6 else QPoint(200, 200), actions, mime, button, modifier)
    QApplication.sendEvent(window, enter)
    assert enter.isAccepted()
    dropped = QDropEvent(QPointF(200, 200), actions, mime, button, modifier)
    QApplication.sendEvent(window, dropped)
    assert dropped.isAccepted()


def test_opens_at_once_and_loads_the_model_in_the_background(open_window: Any, qtbot: Any) -> None:
    window = open_window()
    assert window.status_bar.status_label.text() == "Loading model…"  # shown before the event loop has run
    wait_loaded(qtbot, window)
    assert window.state.model_status == "ready"
    assert "No image yet" in window.result_panel.message.text()
    assert window.result_panel.disclaimer.text() == DISCLAIMER


def test_drop_shows_the_result_heatmap_and_scales(open_window: Any, qtbot: Any, images: dict[str, Path],
                                                  tiny_model_dir: Path) -> None:  # fmt: skip
    window = open_window()
    drop(window, [images["malignant"]])
    wait_settled(qtbot, window)
    expected = Engine(tiny_model_dir, threads=1).predict(images["malignant"])
    panel, item = window.result_panel, window.state.current
    assert item is not None and item.result is not None and item.result.ok
    assert panel.label.text() == expected.verdict and expected.verdict
    assert panel.probability_text.text().startswith(f"Probability of malignancy: {100 * expected.probability:.1f}% (")
    assert panel.bar.probability == pytest.approx(expected.probability, abs=1e-4)
    assert panel.bar.threshold == pytest.approx(expected.threshold)
    assert f"Severity {expected.severity}/6 · {expected.severity_name}" in panel.severity.text()
    assert expected.colour in panel.severity.styleSheet()
    assert panel.description.text() == expected.description
    assert expected.recommendation in panel.recommendation.text()
    assert panel.message.isHidden() and not panel.disclaimer.isHidden()
    assert window.history_panel.list.count() == 1
    assert window.history_panel.list.item(0).text() == f"malignant.png\n{item.summary()}"

    view = window.preview_panel.view
    assert view.pixmap is not None and view.pixmap.width() == 320  # the image itself
    window.heatmap_action.trigger()
    assert window.state.show_heatmap and window.preview_panel.showing_heatmap
    legend = item.result.heatmap_legend
    assert legend and legend in window.preview_panel.caption.text()
    assert window.preview_panel.ramp.isVisible()
    window.heatmap_action.trigger()
    assert not window.preview_panel.showing_heatmap

    small = view.shown_size()
    window.resize(window.width() + 400, window.height() + 300)
    qtbot.waitUntil(lambda: view.shown_size().height() > small.height(), timeout=WAIT_MS)


def test_the_likely_diagnoses_show_where_the_model_names_them(
    qtbot: Any, settings: QSettings, images: dict[str, Path], diagnosis_model_dir: Path, open_window: Any
) -> None:
    plain = open_window()
    drop(plain, [images["malignant"]])
    wait_settled(qtbot, plain)
    assert plain.result_panel.diagnoses.isHidden()  # the tiny model has no diagnosis output
    window = MainWindow(AppState(), settings=settings, backend_factory=partial(test_backend, diagnosis_model_dir))
    qtbot.addWidget(window)
    window.show()
    drop(window, [images["malignant"]])
    wait_settled(qtbot, window)
    expected = Engine(diagnosis_model_dir, threads=1).predict(images["malignant"])
    shown = window.result_panel.diagnoses
    assert not shown.isHidden() and shown.text() == expected.diagnosis_line
    assert expected.diagnoses and expected.diagnoses[0]["name"] in shown.text() and "not a diagnosis" in shown.text()
    window.shutdown()


def test_folder_and_several_files_and_screenshot(open_window: Any, qtbot: Any, images: dict[str, Path]) -> None:
    window = open_window()
    drop(window, [images["benign"].parent, images["benign"]])  # a folder (two images, a text file) and a file
    wait_settled(qtbot, window)
    assert [i.name for i in window.state.history] == ["benign.jpg", "malignant.png", "benign.jpg"]
    assert window.history_panel.list.count() == 3
    window.history_panel.list.setCurrentRow(1)  # clicking a row shows its result
    assert window.state.current is window.state.history[1]
    assert window.result_panel.title.text() == "malignant.png"


@pytest.mark.skipif(os.environ.get("SKINSCAN_SCREENSHOTS") != "1", reason="set SKINSCAN_SCREENSHOTS=1 to remake it")
def test_screenshot_for_the_docs(qtbot: Any, settings: QSettings, tiny_model_dir: Path, tmp_path: Path) -> None:
    """docs/desktop-app.png: the window showing a result, made by the app itself; the bundled model on real
    dermoscopy when both are there, else the tiny test model on synthetic lesions."""
    shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "isic-mvb" / "test"
    bundled = Path(__file__).resolve().parents[1] / "models" / "model.onnx"
    if shared.is_dir() and bundled.is_file():
        backend = LocalBackend(None, threads=2)
        photos = {
            "mole-back.jpg": (shared / "malignant" / "1.jpg").read_bytes(),
            "mole-arm.jpg": (shared / "benign" / "1.jpg").read_bytes(),
        }
    else:
        # the tiny model's own threshold sits at ~1.0 (its synthetic classes are trivially separable)
        backend = LocalBackend(tiny_model_dir, threads=1, threshold=0.5)
        photos = {"mole-back.png": lesion_bytes(True, seed=21, size=320, fmt="PNG"), "mole-arm.jpg": lesion_bytes()}
    blank = io.BytesIO()
    Image.new("RGB", (320, 320), (214, 170, 150)).save(blank, format="JPEG")
    photos["blank.jpg"] = blank.getvalue()  # refused: nothing to judge
    photos["scan.pdf.jpg"] = b"%PDF-1.4 not a photo"  # an error
    window = MainWindow(AppState(), settings=settings, backend_factory=lambda state: backend)
    qtbot.addWidget(window)
    window.resize(1280, 800)
    window.show()
    for name, data in photos.items():
        (tmp_path / name).write_bytes(data)
    drop(window, [tmp_path / name for name in photos])
    wait_settled(qtbot, window)
    window.state.select(window.state.history[0].id)
    wait_loaded(qtbot, window)
    window.heatmap_action.setChecked(True)  # show where the model looked
    DOCS.mkdir(exist_ok=True)
    assert window.grab().save(str(DOCS / "desktop-app.png"))
    window.shutdown()


def test_unreadable_file_shows_an_error_not_a_crash(open_window: Any, qtbot: Any, images: dict[str, Path]) -> None:
    window = open_window()
    drop(window, [images["fake"]])
    wait_settled(qtbot, window)
    item = window.state.current
    assert item is not None and item.error is not None and "plain-text file" in item.error
    message = window.result_panel.message
    assert not message.isHidden() and "plain-text file" in message.text()
    assert message.property("kind") == "error"
    assert window.history_panel.list.item(0).text().endswith("Error")
    assert not window.report_action.isEnabled()
    assert window.save_report(images["fake"].with_suffix(".pdf")) is None  # refused with a message
    assert "no result" in window.status_bar.notice_label.text()


def test_paste_an_image_from_the_clipboard(open_window: Any, qtbot: Any, images: dict[str, Path]) -> None:
    window = open_window()
    clipboard = QApplication.clipboard()
    clipboard.setImage(QImage(str(images["benign"])))
    try:
        window.paste_action.trigger()
        wait_settled(qtbot, window)
    finally:
        clipboard.clear()
    item = window.state.current
    assert item is not None and item.name == "Pasted image 1" and item.path is None
    assert item.result is not None and item.result.ok


def test_export_csv_and_save_reports(open_window: Any, qtbot: Any, images: dict[str, Path], tmp_path: Path) -> None:
    window = open_window()
    assert not window.export_csv(tmp_path / "empty.csv")  # nothing yet: a message, no file
    assert "Nothing to export" in window.status_bar.notice_label.text()
    drop(window, [images["malignant"], images["fake"]])
    wait_settled(qtbot, window)

    assert window.export_csv(tmp_path / "results.csv")
    with open(tmp_path / "results.csv", newline="") as file:
        reader = csv.DictReader(file)
        rows = list(reader)
    assert reader.fieldnames == CSV_FIELDS
    assert [(Path(r["path"]).name, r["status"]) for r in rows] == [("malignant.png", "ok"), ("notes.jpg", "error")]
    assert "Exported 2 results" in window.status_bar.notice_label.text()

    window.state.select(window.state.history[0].id)
    assert window.report_action.isEnabled()
    pdf = window.save_report(tmp_path / "report.pdf")
    assert pdf is not None and pdf.read_bytes().startswith(b"%PDF")
    png = window.save_report(tmp_path / "report.png")
    assert png is not None
    page = QImage(str(png))
    assert (page.width(), page.height()) == (1240, 1754)


def test_theme_switch_is_remembered(open_window: Any, qtbot: Any, settings: QSettings) -> None:
    window = open_window()
    assert window.state.theme == "dark" and window.styleSheet() == load_stylesheet("dark")
    window.theme_toggle.trigger()
    assert window.state.theme == "light" and window.styleSheet() == load_stylesheet("light")
    assert window.theme_actions["light"].isChecked()
    window.heatmap_action.trigger()
    assert settings.value("theme") == "light"
    window.close()

    again = open_window()
    assert again.state.theme == "light" and again.styleSheet() == load_stylesheet("light")
    assert again.state.show_heatmap and again.heatmap_action.isChecked()
    again.theme_actions["dark"].trigger()
    assert again.state.theme == "dark"


def test_remote_mode_against_a_real_server(open_window: Any, qtbot: Any, images: dict[str, Path],
                                           tiny_model_dir: Path, settings: QSettings) -> None:  # fmt: skip
    pytest.importorskip("fastapi")
    from live_server import live_server
    from skinscan.api.app import create_app

    engine = Engine(tiny_model_dir, threads=1)
    with live_server(create_app(engine=engine)) as url:
        window = open_window()
        wait_loaded(qtbot, window)
        window.connection_bar.mode_box.setCurrentIndex(window.connection_bar.mode_box.findData("remote"))
        assert window.connection_bar.host_edit.isEnabled()
        window.connection_bar.host_edit.setText("127.0.0.1")
        window.connection_bar.port_box.setValue(int(url.rsplit(":", 1)[1]))
        qtbot.mouseClick(window.connection_bar.connect_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: window.status_bar.status_label.text().endswith(f" on {url}"), timeout=WAIT_MS)
        assert window.status_bar.status_label.text().startswith(f"Model loaded: {engine.spec.id}")
        drop(window, [images["malignant"], images["fake"]])
        wait_settled(qtbot, window)
        window.shutdown()  # before the server goes
    judged, refused = window.state.history
    expected = engine.predict(images["malignant"])
    assert judged.result is not None and judged.result.label == expected.label
    assert judged.result.probability == pytest.approx(expected.probability, abs=1e-4)
    assert judged.result.overlay_png  # the server's heatmap
    assert judged.model == f"{engine.spec.id} {engine.spec.version}"  # the model named in the server's answer
    assert refused.error is not None and "plain-text file" in refused.error  # the server's 415, as a message
    assert (settings.value("mode"), int(settings.value("port"))) == ("remote", window.state.port)


def test_a_server_that_is_down_is_a_message(open_window: Any, qtbot: Any, images: dict[str, Path]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, never listening: every connection is refused
        port = sock.getsockname()[1]
        window = open_window(mode="remote", host="127.0.0.1", port=port)
        assert window.status_bar.status_label.text() == f"Connecting to http://127.0.0.1:{port}…"
        qtbot.waitUntil(lambda: window.state.model_status == "failed", timeout=WAIT_MS)
        assert "cannot reach the skinscan server" in window.status_bar.status_label.text()
        drop(window, [images["benign"]])
        wait_settled(qtbot, window)
    item = window.state.current
    assert item is not None and item.error is not None and "is it running?" in item.error
    assert "cannot reach" in window.result_panel.message.text()
    assert window.preview_panel.view.pixmap is not None  # the image still shows


@contextmanager
def serve(app: Any, port: int = 0) -> Iterator[str]:
    """A real uvicorn server on 127.0.0.1:`port` (0: a free one) until the block ends; yields its URL.

    Unlike live_server, on a port of the caller's choosing: a test stops a server and starts another in its place.
    """
    from live_server import live_uvicorn

    with live_uvicorn(app, port=port) as (url, _):
        yield url


def server_app(engine: Engine, api_key: str | None = None) -> Any:
    pytest.importorskip("fastapi")
    from live_server import plain_settings
    from skinscan.api.app import create_app

    return create_app(engine=engine, settings=plain_settings(api_key=api_key))


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def status_of(window: MainWindow) -> tuple[str, str]:
    """What the status bar shows: its colour (the stylesheet's `status` property) and its text."""
    label = window.status_bar.status_label
    return str(label.property("status")), label.text()


def test_the_status_bar_follows_a_server_that_goes_and_comes_back(open_window: Any, qtbot: Any, engine: Engine,
                                                                  images: dict[str, Path]) -> None:  # fmt: skip
    with serve(server_app(engine)) as url:
        window = open_window(mode="remote", host="127.0.0.1", port=port_of(url), health_interval_s=0.2)
        wait_loaded(qtbot, window)
        assert status_of(window) == ("ready", f"Model loaded: {engine.spec.id} {engine.spec.version} on {url}")
    # stopped: a health check notices within its interval, with no image sent
    qtbot.waitUntil(lambda: status_of(window)[0] == "unreachable", timeout=WAIT_MS)
    text = status_of(window)[1]
    assert text.startswith(f"Server at {url} is not answering since ") and "cannot be judged" in text
    assert window.status_bar.status_label.toolTip() == text
    drop(window, [images["benign"]])
    wait_settled(qtbot, window)
    assert window.state.history[0].error is not None and "cannot reach" in window.state.history[0].error
    with serve(server_app(engine), port_of(url)):  # another server in its place
        qtbot.waitUntil(lambda: status_of(window)[0] == "ready", timeout=WAIT_MS)
        assert status_of(window)[1] == f"Model loaded: {engine.spec.id} {engine.spec.version} on {url}"
        drop(window, [images["malignant"]])
        wait_settled(qtbot, window)
        window.shutdown()  # before the server goes
    assert window.state.history[1].result is not None and window.state.history[1].result.ok


def test_an_image_the_server_no_longer_takes_flips_the_status_at_once(
    open_window: Any, qtbot: Any, engine: Engine, images: dict[str, Path]
) -> None:
    # checks an hour apart: what changes the status here is the images' own requests
    with serve(server_app(engine)) as url:
        window = open_window(mode="remote", host="127.0.0.1", port=port_of(url), health_interval_s=3600)
        wait_loaded(qtbot, window)
    drop(window, [images["benign"]])
    wait_settled(qtbot, window)
    assert status_of(window)[0] == "unreachable" and "is not answering since" in status_of(window)[1]
    with serve(server_app(engine), port_of(url)):
        drop(window, [images["malignant"]])
        wait_settled(qtbot, window)
        window.shutdown()
    assert window.state.history[1].result is not None
    assert status_of(window) == ("ready", f"Model loaded: {engine.spec.id} {engine.spec.version} on {url}")


def test_a_server_with_an_api_key(open_window: Any, qtbot: Any, engine: Engine, images: dict[str, Path],
                                  settings: QSettings, tmp_path: Path) -> None:  # fmt: skip
    key = "s3cret-key-for-the-test"
    bar = None
    with serve(server_app(engine, api_key=key)) as url:
        window = open_window(mode="remote", host="127.0.0.1", port=port_of(url), health_interval_s=0.2)
        bar = window.connection_bar
        assert bar.key_edit.isEnabled() and bar.key_edit.echoMode() == bar.key_edit.EchoMode.Password
        assert "Not saved" in bar.key_edit.toolTip() and "SKINSCAN_API_KEY" in bar.key_edit.toolTip()
        qtbot.waitUntil(lambda: status_of(window)[0] == "failed", timeout=WAIT_MS)
        assert f"The server at {url} needs an API key" in status_of(window)[1]

        bar.key_edit.setText("not-the-key")
        qtbot.keyClick(bar.key_edit, Qt.Key.Key_Return)  # Enter in the key field connects
        qtbot.waitUntil(lambda: status_of(window)[0] == "failed", timeout=WAIT_MS)
        assert status_of(window)[1].startswith(f"The API key was refused by the server at {url}")

        bar.key_edit.setText(key)
        qtbot.mouseClick(bar.connect_button, Qt.MouseButton.LeftButton)
        wait_loaded(qtbot, window)
        drop(window, [images["malignant"]])
        wait_settled(qtbot, window)
        judged = window.state.history[0]
        assert judged.result is not None and judged.result.ok and judged.error is None

    qtbot.waitUntil(lambda: status_of(window)[0] == "unreachable", timeout=WAIT_MS)
    # restarted with another key: /health answers (it wants none), the next image is refused
    with serve(server_app(engine, api_key="another-key"), port_of(url)):
        qtbot.waitUntil(lambda: status_of(window)[0] == "ready", timeout=WAIT_MS)
        drop(window, [images["benign"]])
        wait_settled(qtbot, window)
        window.shutdown()
    refused = window.state.history[1]
    assert refused.error is not None and "refused the API key" in refused.error
    assert status_of(window)[0] == "failed" and "The API key was refused" in status_of(window)[1]

    settings.sync()
    saved = "\n".join(path.read_text() for path in tmp_path.glob("*.ini"))
    assert "port=" in saved and key not in saved and "not-the-key" not in saved  # a secret: never written
    bar.mode_box.setCurrentIndex(bar.mode_box.findData("local"))
    assert not bar.key_edit.isEnabled()


@pytest.fixture(scope="module")
def site_profile(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A site profile of the tiny model, fitted by calibrate-site on a clinic's own labelled photos."""
    from skinscan.evaluation.site import calibrate_site

    data = write_dataset(tmp_path_factory.mktemp("clinic"), {"all": 40}, seed=5)
    out = tmp_path_factory.mktemp("site") / "site.json"
    calibrate_site(data, out, model=str(tiny_model_dir), sensitivity=0.9, adapt="never", n_boot=50, name="Ward 7")
    return out


def test_the_site_profile_in_use_shows_in_the_status_bar(
    open_window: Any, qtbot: Any, site_profile: Path, tiny_model_dir: Path
) -> None:
    from skinscan.runtime.site import load_site

    profile = load_site(site_profile)
    window = open_window(mode="local", site=str(site_profile))
    wait_loaded(qtbot, window)
    text = window.site_label.text()
    assert text.startswith("Site profile: Ward 7 · fitted ") and f"on {profile.images} images" in text
    assert f"sensitivity {100 * profile.expected['sensitivity']:.0f}%" in text and "specificity" in text
    assert window.site_label.property("active") == "true"
    # the local model judges at the profile's operating point
    assert window.backend is not None and window.backend.model_card()["threshold"] == pytest.approx(profile.threshold)
    # a server applies its own profile: the window shows that one, and none when it has none
    with serve(server_app(Engine(tiny_model_dir, threads=1, site=site_profile))) as url:
        window.state.set_connection("remote", "127.0.0.1", port_of(url), "")
        window.connect_backend()
        qtbot.waitUntil(lambda: window.status_bar.status_label.text().endswith(f" on {url}"), timeout=WAIT_MS)
        assert window.site_label.text() == text
        window.shutdown()
    plain = open_window(mode="local")
    wait_loaded(qtbot, plain)
    assert plain.site_label.text().startswith("No site profile") and plain.site_label.property("active") == "false"


def wait_checked(qtbot: Any, window: MainWindow, checks: int = 1) -> None:
    qtbot.waitUntil(lambda: window.update_check.checks_done >= checks, timeout=WAIT_MS)


def test_a_newer_model_on_the_connected_server_is_offered(
    open_window: Any, qtbot: Any, tiny_model_dir: Path, tmp_path: Path, images: dict[str, Path]
) -> None:
    current = Engine(tiny_model_dir, threads=1).spec.version
    newer = versioned_copy(tiny_model_dir, tmp_path / "newer", "9.9.9")
    with serve(server_app(Engine(newer, threads=1))) as url:
        window = open_window(mode="remote", host="127.0.0.1", port=port_of(url), model=str(tiny_model_dir))
        wait_loaded(qtbot, window)
        wait_checked(qtbot, window)
        assert window.update_banner.isVisible()
        text = window.update_banner.label.text()
        assert "9.9.9" in text and f"this computer's is {current}" in text and f"skinscan models pull {url}" in text
        # dismissed: gone, and the same offer at the next check stays gone; judging goes on meanwhile
        qtbot.mouseClick(window.update_banner.dismiss_button, Qt.MouseButton.LeftButton)
        assert not window.update_banner.isVisible()
        window.update_check.check_now()
        wait_checked(qtbot, window, 2)
        assert not window.update_banner.isVisible()
        drop(window, [images["malignant"]])
        wait_settled(qtbot, window)
        window.shutdown()
    assert window.state.history[0].result is not None
    # a server with the same model as this computer's offers nothing
    with serve(server_app(Engine(tiny_model_dir, threads=1))) as url:
        same = open_window(mode="remote", host="127.0.0.1", port=port_of(url), model=str(tiny_model_dir))
        wait_loaded(qtbot, same)
        wait_checked(qtbot, same)
        assert not same.update_banner.isVisible() and same.state.update is None
        same.shutdown()


def test_the_configured_updates_source_is_asked_and_offline_says_nothing(
    open_window: Any, qtbot: Any, tiny_model_dir: Path, tmp_path: Path, images: dict[str, Path]
) -> None:
    newer = versioned_copy(tiny_model_dir, tmp_path / "newer", "9.9.9")
    window = open_window(mode="local", model=str(tiny_model_dir), updates=str(newer), update_interval_s=0.2)
    wait_loaded(qtbot, window)
    wait_checked(qtbot, window)
    assert window.update_banner.isVisible() and f"skinscan models pull {newer}" in window.update_banner.label.text()
    # the source goes away: the next checks (every 0.2 s here) find nothing and say nothing; the notice stays
    # what it was, and the window keeps judging
    newer.rename(tmp_path / "gone")
    done = window.update_check.checks_done
    wait_checked(qtbot, window, done + 2)
    assert window.update_banner.isVisible()
    offline = open_window(mode="local", model=str(tiny_model_dir), updates=f"http://127.0.0.1:{closed_port()}/")
    wait_loaded(qtbot, offline)
    wait_checked(qtbot, offline)
    assert not offline.update_banner.isVisible() and offline.state.update is None
    drop(offline, [images["malignant"]])
    wait_settled(qtbot, offline)
    assert offline.state.history[0].result is not None
    assert offline.status_bar.status_label.text().startswith("Model loaded")


# The tests that run `run_gui` (and so QApplication.exec() to its end) come last among the Qt tests: after exec()
# has returned, the widget tests after them in the same process saw their worker threads' signals arrive only
# much later, under load (a 30 s timeout, then a hang in PyQt's table of slot proxies).


def test_skinscan_gui_opens_the_window_and_returns_when_it_closes(
    qtbot: Any, settings: QSettings, tiny_model_dir: Path
) -> None:
    from qtpy.QtCore import QTimer

    from skinscan.gui.app import run_gui

    def close_when_loaded() -> None:
        for widget in QApplication.topLevelWidgets():
            if isinstance(widget, MainWindow) and widget.status_bar.status_label.text().startswith("Model loaded"):
                widget.close()

    timer = QTimer()
    timer.timeout.connect(close_when_loaded)
    timer.start(20)
    try:
        assert run_gui(model=str(tiny_model_dir), settings=settings) == 0
    finally:
        timer.stop()
    assert settings.value("mode") is None  # nothing changed, nothing written


def test_skinscan_gui_takes_the_api_key_from_the_environment(
    qtbot: Any, settings: QSettings, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qtpy.QtCore import QTimer

    from skinscan.gui.app import run_gui

    key = "from-the-environment"
    monkeypatch.setenv("SKINSCAN_API_KEY", f" {key}\n")
    shown: list[tuple[str, str]] = []

    def close_when_connected() -> None:
        for widget in QApplication.topLevelWidgets():
            if isinstance(widget, MainWindow) and widget.state.model_status not in ("idle", "loading"):
                shown.append((widget.connection_bar.key_edit.text(), widget.state.status_text))
                widget.close()

    timer = QTimer()
    timer.timeout.connect(close_when_connected)
    timer.start(20)
    with serve(server_app(engine, api_key=key)) as url:
        try:
            assert run_gui(host="127.0.0.1", port=port_of(url), settings=settings) == 0
        finally:
            timer.stop()
    assert shown[0] == (key, f"Model loaded: {engine.spec.id} {engine.spec.version} on {url}")
    assert all(key not in str(settings.value(name)) for name in settings.allKeys())


def test_cli_gui_refuses_model_with_host_and_hints_at_the_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.util

    from skinscan.cli import EXIT_ERROR, EXIT_USAGE, main

    assert main(["gui", "--model", "m.onnx", "--host", "example.org"]) == EXIT_USAGE
    assert "not both" in capsys.readouterr().err
    assert main(["gui", "--site", "site.json", "--host", "example.org"]) == EXIT_USAGE
    assert "applies its own site profile" in capsys.readouterr().err
    assert main(["gui", "--site", "no-such-site.json"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "cannot read the site profile no-such-site.json" in err and "Traceback" not in err
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "qtpy" else real_find_spec(name))
    assert main(["gui"]) == EXIT_ERROR
    assert "pip install 'skinscan[gui]'" in capsys.readouterr().err
