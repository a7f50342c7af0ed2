"""Soak: a skinscan server under 16 concurrent clients for minutes, mixing good photos with bad uploads.

Every good upload must be answered 200 and every bad one its 4xx (the exact status the API documents for it), with
no transport error; the server's resident memory (its whole process tree, sampled each second) must stay flat: the
average of the last minute within 10 % of the first minute after warm-up. Short runs scale the warm-up and the two
windows down and report the memory trend without judging it (under 2 minutes it is noise).
Usage: python benchmarks/soak.py [--minutes 10] [--clients 16] [--workers 1] [--model PATH] [--quick]"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

from common import (
    BENCH,
    LOOPBACK,
    base_photo,
    bench_parser,
    clean_env,
    encode,
    free_port,
    running_server,
    skinscan_command,
    tree_rss_mb,
    upload_images,
    write_payloads,
    write_results,
)
from synthetic import png_claiming

FLAT_WITHIN = 0.10
JUDGED_FROM_S = 120


def payload_mix() -> list[tuple[str, bytes, int]]:
    """Good photos and bad uploads, interleaved about one to one, each with the status it must get."""
    from bombs import deflated_dicom, progressive_jpeg_with_scans, tiff_with_tile  # tests/, on the path via common

    photo = base_photo()
    good = [(f"photo{i}.jpg", data, 200) for i, data in enumerate(upload_images(6))]
    good += [
        ("photo.png", encode(photo.resize((600, 450)), "PNG"), 200),
        ("phone.jpg", encode(photo.resize((2000, 1500), Image.Resampling.BICUBIC), "JPEG", quality=90), 200),
        ("cmyk.jpg", encode(photo.convert("CMYK"), "JPEG"), 200),
        ("scan.gif", encode(photo.convert("P"), "GIF"), 200),
        # 12-megapixel camera photos, JPEG and PNG: the decodes whose memory must not pile up
        ("camera.jpg", encode(photo.resize((4000, 3000), Image.Resampling.BICUBIC), "JPEG", quality=92), 200),
        ("camera.png", encode(photo.resize((4000, 3000), Image.Resampling.BICUBIC), "PNG", compress_level=1), 200),
    ]
    jpeg = good[0][1]
    noise = np.random.default_rng(0).integers(0, 256, 8000, dtype=np.uint8).tobytes()
    bad = [
        ("empty.jpg", b"", 400),
        ("note.jpg", b"Please look at my mole, doctor.\n" * 30, 415),
        ("truncated.jpg", jpeg[: len(jpeg) // 3], 400),
        ("noise.jpg", noise, 400),
        ("drawing.svg", b'<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"><rect/></svg>', 415),
        ("dot.png", encode(Image.new("RGB", (1, 1)), "PNG"), 400),
        ("bomb.png", png_claiming(50_000, 50_000), 413),
        ("header.jpg", b"\xff\xd8\xff\xe0" + bytes(64), 400),
        ("doc.pdf", b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n%%EOF", 415),
        ("page.html", b"<!doctype html><html><body>hello</body></html>", 415),
        # small files that decode into huge work (tests/bombs.py)
        ("scans.jpg", progressive_jpeg_with_scans(4000, 2000), 413),
        ("deflated.dcm", deflated_dicom(64), 415),
        ("tile.tif", tiff_with_tile(64, 64, 16_384), 413),
    ]
    mixed = []
    for i in range(max(len(good), len(bad))):
        mixed += [good[i % len(good)], bad[i % len(bad)]]
    return mixed


def sample_rss(pid: int, stop: threading.Event, samples: list[tuple[float, float]], start: float) -> None:
    while not stop.is_set():
        samples.append((time.perf_counter() - start, tree_rss_mb(pid)))
        stop.wait(1.0)


def window_mean(samples: list[tuple[float, float]], start: float, end: float) -> float:
    values = [rss for t, rss in samples if start <= t < end]
    return float(np.mean(values)) if values else float("nan")


def main() -> None:
    parser = bench_parser(__doc__, "a seconds-long smoke run (same as --minutes 0.25)")
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to soak (default 10)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (default 16)")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (default 1)")
    args = parser.parse_args()
    seconds = 15.0 if args.quick else args.minutes * 60
    warmup = min(60.0, seconds / 5)
    window = min(60.0, (seconds - warmup) / 3)

    port = free_port()
    samples: list[tuple[float, float]] = []
    stop = threading.Event()
    with tempfile.TemporaryDirectory(prefix="skinscan-soak-") as tmp:
        manifest = write_payloads(Path(tmp), payload_mix())
        with running_server(skinscan_command(port, args.model, args.workers), port) as server:
            command = [
                sys.executable,
                str(BENCH / "loadgen.py"),
                f"http://{LOOPBACK}:{port}/predict",
                "--payloads",
                str(manifest),
                "--concurrency",
                str(args.clients),
                "--seconds",
                str(seconds),
                "--window",
                str(max(5.0, round(seconds / 20))),
            ]
            start = time.perf_counter()
            sampler = threading.Thread(target=sample_rss, args=(server.pid, stop, samples, start), daemon=True)
            sampler.start()
            try:
                load = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 300, env=clean_env())
            finally:
                stop.set()
                sampler.join()
            if load.returncode != 0:
                sys.exit(f"loadgen failed: {load.stderr[-2000:]}")
            with httpx.Client(base_url=f"http://{LOOPBACK}:{port}", timeout=10) as client:
                healthy_after = client.get("/health").status_code == 200
    summary: dict[str, Any] = json.loads(load.stdout)
    elapsed = samples[-1][0] if samples else seconds
    first = window_mean(samples, warmup, warmup + window)
    last = window_mean(samples, elapsed - window, elapsed + 1)
    growth = last / first - 1
    judged = seconds >= JUDGED_FROM_S
    flat = abs(growth) <= FLAT_WITHIN
    statuses = summary["statuses"]
    passed = summary["errors"] == 0 and healthy_after and (flat or not judged)
    verdict = "flat" if flat else "NOT flat"
    table = [
        f"# Soak ({seconds / 60:g} min, {args.clients} clients, {args.workers} worker(s))"
        + (" (quick run: noisy)" if args.quick else ""),
        "",
        "| requests | req/s | median ms | p99 ms | statuses | wrong status | transport errors | /health after |",
        "|---|---|---|---|---|---|---|---|",
        f"| {summary['requests']} | {summary['rps']} | {summary['median_ms']} | {summary['p99_ms']} | "
        f"{', '.join(f'{k}: {v}' for k, v in statuses.items())} | {summary['wrong_status']} | "
        f"{summary['transport_errors']} | {'200' if healthy_after else 'FAILED'} |",
        "",
        f"Server RSS: {first:.1f} MB in the first {window:g} s after a {warmup:g} s warm-up, {last:.1f} MB in the last "
        f"{window:g} s ({growth:+.1%}; peak {max(r for _, r in samples):.1f} MB): "
        + (
            f"{verdict} within {FLAT_WITHIN:.0%}."
            if judged
            else f"{verdict}, not judged (run under {JUDGED_FROM_S} s)."
        ),
        f"Result: {'PASS' if passed else 'FAIL'}.",
    ]
    if summary["error_examples"]:
        table += ["", "Errors seen:", *[f"- {e}" for e in summary["error_examples"]]]
    write_results(
        "soak",
        {
            "quick": args.quick,
            "seconds": seconds,
            "clients": args.clients,
            "workers": args.workers,
            "load": summary,
            "rss_mb": [[round(t, 1), round(r, 1)] for t, r in samples],
            "rss_first_window_mb": round(first, 1),
            "rss_last_window_mb": round(last, 1),
            "rss_growth": round(growth, 4),
            "warmup_s": warmup,
            "window_s": window,
            "judged": judged,
            "healthy_after": healthy_after,
            "passed": passed,
        },
        table,
    )
    if not passed:
        sys.exit("soak failed")


if __name__ == "__main__":
    main()
