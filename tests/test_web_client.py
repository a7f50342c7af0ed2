"""The web client end to end: Debian's Chromium, driven by Playwright, against a real server on loopback."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from live_server import live_server, plain_settings
from skinscan import DISCLAIMER
from skinscan.api.app import create_app
from skinscan.core.errors import SkinscanError
from skinscan.core.heatmap import BELOW_THRESHOLD_LEGEND
from skinscan.runtime.engine import Engine
from synthetic import lesion_bytes

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(f"Chromium not found at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]  # fmt: skip
DOCS = Path(__file__).resolve().parents[1] / "docs"
UNREACHABLE = "Cannot reach the skinscan server"


def payload(name: str, data: bytes, mime: str = "application/octet-stream") -> dict[str, Any]:
    return {"name": name, "mimeType": mime, "buffer": data}


def blank_png(size: int = 128) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), 128, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Watch:
    """What a page did that it must not: load anything from elsewhere, throw, or break its CSP."""

    def __init__(self) -> None:
        self.external: list[str] = []
        self.errors: list[str] = []

    def attach(self, context: Any, page: Any) -> None:
        def route(r: Any) -> None:
            if r.request.url.startswith("http://127.0.0.1:"):
                r.continue_()
            else:
                self.external.append(r.request.url)
                r.abort()

        context.route("**/*", route)
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        # HTTP errors the tests provoke show up as "Failed to load resource"; anything else (CSP, script) is a bug
        page.on("console", lambda m: m.type == "error" and not m.text.startswith("Failed to load resource")
                and self.errors.append(m.text))  # fmt: skip

    def check(self) -> None:
        assert self.external == [], f"the page tried to load from elsewhere: {self.external}"
        assert self.errors == [], f"the page logged errors: {self.errors}"


def open_page(browser: Any, url: str, path: str = "/", **context_options: Any) -> tuple[Any, Any, Watch]:
    context = browser.new_context(**{"viewport": {"width": 1280, "height": 900}, **context_options})
    page = context.new_page()
    watch = Watch()
    watch.attach(context, page)
    page.goto(url + path)
    return context, page, watch


@pytest.fixture
def page(browser: Any, server_url: str) -> Iterator[Any]:
    context, page, watch = open_page(browser, server_url)
    expect(page.locator("#server-status")).to_have_text("Ready")
    yield page
    watch.check()
    context.close()


def card_for(page: Any, name: str) -> Any:
    return page.locator("#results .card", has=page.locator(".file-name", has_text=name))


def test_upload_shows_a_result_card_with_heatmap_toggle(page: Any, engine: Engine) -> None:
    expect(page.locator("#disclaimer")).to_be_visible()
    assert " ".join(page.locator("#disclaimer").inner_text().split()).endswith(DISCLAIMER)
    expect(page.locator("#model-version")).to_contain_text(engine.spec.id)
    page.set_input_files("#file-input", payload("mole.jpg", lesion_bytes(False, seed=3, size=160)))
    card = card_for(page, "mole.jpg")
    expect(card).to_have_attribute("data-status", "ok")
    expect(card.locator(".badge")).to_have_text("Low concern: keep an eye on it")
    expect(card.locator(".badge")).to_have_attribute("data-verdict", "low_concern")
    expect(card.locator(".severity")).to_contain_text("Severity 1 of 6")
    expect(card.locator(".probability-text")).to_contain_text("Probability of malignancy:")
    expect(card.locator(".bar")).to_have_attribute("aria-valuenow", "0")
    assert card.locator(".threshold-mark").evaluate("e => e.style.left").endswith("%")
    expect(card.locator(".description")).not_to_be_empty()
    expect(card.locator(".recommendation")).not_to_be_empty()
    expect(card.locator(".card-disclaimer")).to_have_text(DISCLAIMER)
    expect(card.locator(".meta")).to_contain_text(f"Model {engine.spec.id} {engine.spec.version}")
    expect(page.locator("#announcer")).to_contain_text("mole.jpg: Low concern: keep an eye on it")
    assert card.locator(".preview").evaluate("img => img.naturalWidth") == 160

    overlay = card.locator(".overlay")
    expect(overlay).to_be_hidden()
    card.get_by_label("Show heatmap").check()
    expect(overlay).to_be_visible()
    assert overlay.get_attribute("src").startswith("data:image/png;base64,")
    # the overlay may be smaller (the server draws it at the decoded size) but lies exactly over the photo
    width, height = overlay.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    assert width > 0 and width == height
    assert overlay.bounding_box() == card.locator(".preview").bounding_box()
    # the legend comes with it, in the server's words: this benign photo is below the threshold, so uncoloured
    expect(card.locator(".heatmap-legend")).to_be_visible()
    expect(card.locator(".legend-text")).to_have_text(BELOW_THRESHOLD_LEGEND)
    card.get_by_label("Show heatmap").uncheck()
    expect(overlay).to_be_hidden()
    expect(card.locator(".heatmap-legend")).to_be_hidden()


def test_the_likely_diagnoses_show_where_the_model_names_them(
    browser: Any, page: Any, diagnosis_model_dir: Path
) -> None:
    page.set_input_files("#file-input", payload("plain.jpg", lesion_bytes(True, seed=3, size=160)))
    expect(card_for(page, "plain.jpg")).to_have_attribute("data-status", "ok")
    expect(card_for(page, "plain.jpg").locator(".diagnoses")).to_be_hidden()  # no diagnosis output: nothing said
    engine = Engine(diagnosis_model_dir, threads=1)
    with live_server(create_app(engine=engine, settings=plain_settings())) as url:
        context, other, watch = open_page(browser, url)
        other.set_input_files("#file-input", payload("mole.jpg", lesion_bytes(True, seed=3, size=160)))
        card = card_for(other, "mole.jpg")
        expect(card).to_have_attribute("data-status", "ok")
        expected = engine.predict(lesion_bytes(True, seed=3, size=160))
        assert expected.diagnoses
        shown = card.locator(".diagnoses")
        expect(shown).to_be_visible()
        expect(shown).to_contain_text("not a diagnosis")
        expect(shown).to_contain_text(
            f"{expected.diagnoses[0]['name']} {int(100 * expected.diagnoses[0]['probability'] + 0.5)}%"  # Math.round
        )
        watch.check()
        context.close()


def test_several_images_at_once_with_clear_messages(page: Any) -> None:
    files = [
        payload("first.png", lesion_bytes(False, seed=4, fmt="PNG"), "image/png"),
        payload("notes.txt", b"this is a shopping list, not a photo\n" * 5, "text/plain"),
        payload("blank.png", blank_png(), "image/png"),
        payload("broken.jpg", lesion_bytes(False, seed=5, size=200)[:700], "image/jpeg"),
    ]
    page.set_input_files("#file-input", files)
    expect(page.locator("#results .card")).to_have_count(4)
    expect(card_for(page, "first.png")).to_have_attribute("data-status", "ok")
    notes = card_for(page, "notes.txt")
    expect(notes).to_have_attribute("data-status", "error")
    expect(notes.locator(".problem-title")).to_have_text("This kind of file is not accepted")
    expect(notes.locator(".problem-detail")).to_contain_text("plain-text file")
    blank = card_for(page, "blank.png")
    expect(blank).to_have_attribute("data-status", "rejected")
    expect(blank.locator(".problem-title")).to_have_text("Cannot judge this photo")
    expect(blank.locator(".problem-detail")).to_contain_text("blank")
    broken = card_for(page, "broken.jpg")
    expect(broken.locator(".problem-title")).to_have_text("This file is not a readable image")
    page.get_by_role("button", name="Clear all").click()
    expect(page.locator("#results .card")).to_have_count(0)
    expect(page.locator("#empty")).to_be_visible()


def test_drag_and_drop(page: Any) -> None:
    data = list(lesion_bytes(False, seed=6))
    transfer = page.evaluate_handle(
        """bytes => {
            const transfer = new DataTransfer();
            transfer.items.add(new File([new Uint8Array(bytes)], "dropped.jpg", { type: "image/jpeg" }));
            return transfer;
        }""",
        data,
    )
    page.dispatch_event("#drop-zone", "dragenter", {"dataTransfer": transfer})
    expect(page.locator("#drop-zone")).to_have_class("drop-zone dragging")
    page.dispatch_event("#drop-zone", "drop", {"dataTransfer": transfer})
    expect(page.locator("#drop-zone")).to_have_class("drop-zone")
    expect(card_for(page, "dropped.jpg")).to_have_attribute("data-status", "ok")


def test_keyboard_only(page: Any) -> None:
    for _ in range(6):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "choose-button":
            break
    assert page.evaluate("document.activeElement.id") == "choose-button"
    # Playwright turns on file-chooser interception without waiting for a reply; a round trip makes sure it is on
    page.on("filechooser", lambda chooser: None)
    page.evaluate("0")
    with page.expect_file_chooser() as chooser:
        page.keyboard.press("Enter")
    chooser.value.set_files(payload("keys.jpg", lesion_bytes(False, seed=7)))
    card = card_for(page, "keys.jpg")
    expect(card).to_have_attribute("data-status", "ok")
    card.locator(".heatmap-toggle").focus()
    page.keyboard.press("Space")
    expect(card.locator(".overlay")).to_be_visible()


def test_a_server_that_is_down(browser: Any, engine: Engine) -> None:
    with live_server(create_app(engine=engine, settings=plain_settings())) as url:
        context, page, watch = open_page(browser, url)
        expect(page.locator("#server-status")).to_have_text("Ready")
    page.set_input_files("#file-input", payload("late.jpg", lesion_bytes(False, seed=8)))
    card = card_for(page, "late.jpg")
    expect(card).to_have_attribute("data-status", "error")
    expect(card.locator(".problem-title")).to_have_text(UNREACHABLE)
    expect(card.get_by_role("button", name="Try again")).to_be_visible()
    expect(page.locator("#server-status")).to_have_text(UNREACHABLE)
    watch.errors = [e for e in watch.errors if "ERR_CONNECTION_REFUSED" not in e]
    watch.check()
    context.close()


def test_api_key_prompt(browser: Any, engine: Engine) -> None:
    with live_server(create_app(engine=engine, settings=plain_settings(api_key="letmein"))) as url:
        context, page, watch = open_page(browser, url)
        page.set_input_files("#file-input", payload("locked.jpg", lesion_bytes(False, seed=9)))
        card = card_for(page, "locked.jpg")
        expect(card.locator(".problem-title")).to_have_text("This server needs an API key")
        page.get_by_label("This server needs an API key").fill("letmein")
        page.get_by_role("button", name="Save key").click()
        expect(card).to_have_attribute("data-status", "ok")
        watch.check()
        context.close()


def test_phone_sized_screen(browser: Any, server_url: str) -> None:
    context, page, watch = open_page(
        browser, server_url, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True,
        device_scale_factor=2,
    )  # fmt: skip
    camera = page.locator("#camera-input")
    assert camera.get_attribute("capture") == "environment" and camera.get_attribute("accept") == "image/*"
    assert page.evaluate("matchMedia('(pointer: coarse)').matches")  # a touch screen: the camera button shows
    expect(page.get_by_role("button", name="Take a photo")).to_be_visible()
    page.set_input_files("#file-input", payload("phone.jpg", lesion_bytes(False, seed=10)))
    card = card_for(page, "phone.jpg")
    expect(card).to_have_attribute("data-status", "ok")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing wider than the screen
    box = card.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 390
    # the threshold's label never writes over the scale's ends, wherever the threshold lies
    ends = card.locator(".scale > span:not(.threshold-text)")
    label = card.locator(".threshold-text").bounding_box()
    for i in range(ends.count()):
        end = ends.nth(i).bounding_box()
        apart = (
            label["y"] >= end["y"] + end["height"]
            or label["x"] >= end["x"] + end["width"]
            or label["x"] + label["width"] <= end["x"]
        )
        assert apart, (label, end)
    watch.check()
    context.close()


def test_offline_api_docs(browser: Any, server_url: str) -> None:
    context, page, watch = open_page(browser, server_url, "/docs")
    expect(page.locator("#docs-status")).to_have_text("8 endpoints.")
    predict = page.locator("details.endpoint", has_text="/predict/batch")
    predict.locator("summary").click()
    expect(predict.get_by_role("cell", name="files", exact=True)).to_be_visible()
    expect(page.locator("pre code")).to_contain_text(f"{server_url}/predict")
    watch.check()
    context.close()


@pytest.mark.skipif(os.environ.get("SKINSCAN_SCREENSHOTS") != "1", reason="set SKINSCAN_SCREENSHOTS=1 to redraw docs/")
def test_screenshots_for_the_readme(browser: Any, tiny_model_dir: Path) -> None:
    """docs/web-client.png and docs/web-client-phone.png: the bundled model on real dermoscopy when both are there,
    else the tiny test model (at threshold 0.5, so the marker sits mid-bar) on synthetic lesions."""
    try:
        shown, real = Engine(threads=2), True  # the bundled model
    except SkinscanError:
        shown, real = Engine(tiny_model_dir, threads=1, threshold=0.5), False
    photos = _screenshot_photos(real)
    DOCS.mkdir(exist_ok=True)
    with live_server(create_app(engine=shown, settings=plain_settings())) as url:
        for name, width, height in (("web-client.png", 1280, 900), ("web-client-phone.png", 390, 844)):
            phone = width < 500
            context, page, watch = open_page(
                browser,
                url,
                viewport={"width": width, "height": height},
                device_scale_factor=2 if phone else 1,
                is_mobile=phone,
                has_touch=phone,
            )
            expect(page.locator("#server-status")).to_have_text("Ready")
            page.set_input_files("#file-input", photos)
            expect(page.locator('#results .card[data-status="pending"]')).to_have_count(0, timeout=30000)
            judged = page.locator('#results .card[data-status="ok"]')
            expect(judged.first).to_be_visible()
            judged.first.get_by_label("Show heatmap").check()
            if phone:  # the first screen is the upload; show the results below it
                page.locator("#results-title").scroll_into_view_if_needed()
                page.evaluate(
                    "window.scrollBy(0, document.getElementById('results-title').getBoundingClientRect().top - 12)"
                )
            page.screenshot(path=str(DOCS / name), full_page=not phone)
            watch.check()
            context.close()


def _screenshot_photos(real: bool) -> list[dict[str, Any]]:
    folder = Path(__file__).resolve().parents[2] / "shared" / "data" / "isic-mvb" / "test"
    chosen = ["malignant/1.jpg", "benign/1.jpg"]
    if real and all((folder / name).is_file() for name in chosen):
        photos = [
            payload(f"mole-{i + 1}.jpg", (folder / name).read_bytes(), "image/jpeg") for i, name in enumerate(chosen)
        ]
    else:
        photos = [payload("lesion-1.png", lesion_bytes(False, seed=3, size=160, fmt="PNG")),
                  payload("lesion-2.png", lesion_bytes(True, seed=0, size=256, fmt="PNG"))]  # fmt: skip
    return [payload("notes.txt", b"not a photo\n" * 10, "text/plain"), *photos]
