"""The on-device web app in Debian's Chromium: bytes over the wire on the first visit, time to the first result
(cold: nothing cached; warm: a second visit, served by the service worker), time per photo once loaded, and how
far the browser's probabilities lie from the engine's on real dermoscopy (the spread behind tests/test_device.py's
tolerance: the device model's compressed weights and the browser's own JPEG decoding together).

Usage: python benchmarks/bench_device.py [--photos N] [--quick]"""

from __future__ import annotations

import base64
import csv
import time
from pathlib import Path
from typing import Any

import numpy as np

from common import SHARED, bench_parser, write_results
from live_server import live_server, plain_settings
from skinscan.api.app import create_app
from skinscan.runtime.engine import Engine, bundled_model_path
from test_device import CHROMIUM, CHROMIUM_ARGS, judge_in_browser

JUDGE_FIRST = """async ([data, name]) => {
  const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
  const input = document.getElementById("file-input");
  const files = new DataTransfer();
  files.items.add(new File([bytes], name, { type: "image/jpeg" }));
  input.files = files.files;
  input.dispatchEvent(new Event("change"));
}"""


def photos(count: int) -> list[Path]:
    folder = SHARED / "isic2017"
    with (folder / "labels.csv").open() as file:
        isic = [folder / row["path"] for row in csv.DictReader(file) if row["split"] == "test"][: count // 2]
    return isic + sorted((SHARED / "ham10000" / "images").glob("*.jpg"))[: count - len(isic)]


def visit(browser: Any, context: Any, url: str, photo: Path) -> dict[str, Any]:
    """Open the page in device mode and judge one photo through it: seconds to the result, bytes transferred."""
    transferred: list[int] = []

    def count(request: Any) -> None:
        response = request.response()
        if response is not None and response.from_service_worker:
            return  # answered from the service worker's cache: nothing crossed the network
        sizes = request.sizes()
        transferred.append(sizes["responseBodySize"] + sizes["responseHeadersSize"])

    context.on("requestfinished", count)
    page = context.new_page()
    start = time.perf_counter()
    page.goto(url + "/?device=local")
    page.evaluate(JUDGE_FIRST, [base64.b64encode(photo.read_bytes()).decode(), photo.name])
    card = page.locator("#results .card")
    from playwright.sync_api import expect

    expect(card).to_have_attribute("data-status", "ok", timeout=300_000)
    seconds = time.perf_counter() - start
    page.evaluate("() => navigator.serviceWorker.ready")
    page.wait_for_timeout(3000)  # the service worker's own downloads, counted as first-visit bytes
    context.remove_listener("requestfinished", count)
    return {"seconds_to_first_result": round(seconds, 2), "bytes": sum(transferred), "requests": len(transferred),
            "page": page}  # fmt: skip


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--photos", type=int, default=100, help="real photos for the agreement (default 100)")
    args = parser.parse_args()
    count = 6 if args.quick else args.photos
    from playwright.sync_api import sync_playwright

    engine = Engine(args.model or bundled_model_path(), threads=1)
    chosen = photos(count)
    with live_server(create_app(engine=engine, settings=plain_settings())) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context()
        cold = visit(browser, context, url, chosen[0])
        cold.pop("page").close()
        warm = visit(browser, context, url, chosen[0])
        page = warm.pop("page")
        diffs, latencies, statuses = [], [], []
        for photo in chosen:
            got, want = judge_in_browser(page, photo), engine.predict(photo.read_bytes())
            statuses.append((got["status"], want.status))
            latencies.append(got["latency_ms"])
            if got["status"] == want.status == "ok":
                diffs.append(abs(got["probability"] - float(want.probability or 0.0)))
        browser.close()
    d = np.asarray(diffs)
    agreement = {
        "photos": len(chosen),
        "same_status": sum(a == b for a, b in statuses),
        "refused_device": sum(a == "rejected" for a, _ in statuses),
        "refused_engine": sum(b == "rejected" for _, b in statuses),
        "max_probability_diff": round(float(d.max()), 5),
        "p99_probability_diff": round(float(np.quantile(d, 0.99)), 5),
        "mean_probability_diff": round(float(d.mean()), 5),
    }
    per_photo = {
        "median_ms": round(float(np.median(latencies)), 1),
        "p90_ms": round(float(np.quantile(latencies, 0.9)), 1),
    }
    model = engine.spec.id
    table = [
        f"# On-device web app ({model} served; the browser runs models/device)",
        "",
        "| visit | time to first result | bytes over the wire | requests |",
        "|---|---|---|---|",
        *(f"| {name} | {v['seconds_to_first_result']} s | {v['bytes'] / 1e6:.2f} MB | {v['requests']} |"
          for name, v in (("first (nothing cached)", cold), ("second (service worker)", warm))),
        "",
        f"Per photo once loaded: median {per_photo['median_ms']} ms, p90 {per_photo['p90_ms']} ms "
        "(one WebAssembly thread).",
        "",
        f"Browser against engine on {agreement['photos']} real photos (ISIC 2017 test, HAM10000): "
        f"{agreement['same_status']} with the same status (refused: device {agreement['refused_device']}, "
        f"engine {agreement['refused_engine']}); probability differs by at most {agreement['max_probability_diff']} "
        f"(p99 {agreement['p99_probability_diff']}, mean {agreement['mean_probability_diff']}).",
    ]  # fmt: skip
    write_results("device", {"model": model, "cold": cold, "warm": warm, "per_photo": per_photo,
                             "agreement": agreement}, table)  # fmt: skip


if __name__ == "__main__":
    main()
