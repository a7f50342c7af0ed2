"""What each upload of the hardening corpus costs a real `skinscan serve` worker: seconds and peak resident memory,
alone and 8 at a time, and what stays resident afterwards — for this tree and, with --before REV, for an older
commit (checked out in a temporary git worktree and served by the same Python).

The peak is the kernel's own high-water mark of the server process (VmHWM, reset through /proc/PID/clear_refs
before each case), so a spike between two samples is not missed. Linux only.
Usage: python benchmarks/bench_decode_memory.py [--before fd24c0b] [--model PATH] [--quick]"""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from common import LOOPBACK, ROOT, base_photo, bench_parser, free_port, running_server, skinscan_command, write_results

TIMEOUT_S = 600


def corpus(quick: bool) -> dict[str, tuple[str, list[bytes], int]]:
    """name → (route, the files of one request, how many such requests at once)."""
    from bombs import (
        JPEG_BASELINE,
        deflated_dicom,
        dicom_with_frame,
        flat_png,
        jpeg_bytes,
        jpeg_claiming,
        noisy,
        progressive_jpeg_with_scans,
        tiff_with_tile,
    )  # tests/, on the path once common is imported

    photo = base_photo()
    twelve_mp = jpeg_bytes(photo.resize((4000, 3000), Image.Resampling.BICUBIC), quality=92)
    flat = flat_png(7000)
    cases = {
        "12 MP JPEG": ("/predict", [twelve_mp], 1),
        "12 MP JPEG, 8 at once": ("/predict", [twelve_mp], 8),
        "deflated DICOM (inflates to 256 MB)": ("/predict", [deflated_dicom(256)], 1),
        "progressive JPEG 4000², 2,000 scans": ("/predict", [progressive_jpeg_with_scans(4000, 2000)], 1),
        "DICOM 64² holding a 13,000² JPEG": (
            "/predict", [dicom_with_frame(64, 64, JPEG_BASELINE, jpeg_claiming(jpeg_bytes(noisy(64)), 13_000, 13_000))],
            1,
        ),
        "TIFF 64² in one 16,384² tile": ("/predict", [tiff_with_tile(64, 64, 16_384)], 1),
        "flat PNG 7000²": ("/predict", [flat], 1),
        "flat PNG 7000², 8 at once": ("/predict", [flat], 8),
        "batch of 16 flat PNGs 7000²": ("/predict/batch", [flat] * 16, 1),
    }  # fmt: skip
    if quick:
        cases = {k: v for k, v in cases.items() if "8 at once" not in k and "batch" not in k}
    return cases


def memory_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for process {pid}")


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to the current RSS


def send(base_url: str, route: str, files: list[bytes]) -> int:
    field = "file" if route == "/predict" else "files"
    parts = [(field, (f"upload{i}", data, "application/octet-stream")) for i, data in enumerate(files)]
    try:
        return httpx.post(base_url + route, files=parts, timeout=TIMEOUT_S).status_code
    except httpx.HTTPError as exc:
        return -1 if not isinstance(exc, httpx.TimeoutException) else -2


def measure(label: str, model: str | None, cases: dict[str, tuple[str, list[bytes], int]], src: str | None) -> dict:
    port = free_port()
    env = {"PYTHONPATH": src} if src else {}
    rows: dict[str, Any] = {}
    with running_server(skinscan_command(port, model), port, env=env) as process:
        base_url = f"http://{LOOPBACK}:{port}"
        idle_mb = memory_kb(process.pid, "VmRSS") / 1024
        for name, (route, files, at_once) in cases.items():
            reset_peak(process.pid)
            before_mb = memory_kb(process.pid, "VmRSS") / 1024
            start = time.perf_counter()
            with ThreadPoolExecutor(at_once) as pool:
                statuses = list(pool.map(send, [base_url] * at_once, [route] * at_once, [files] * at_once))
            seconds = time.perf_counter() - start
            time.sleep(0.5)  # let the freeing finish before reading what stays resident
            rows[name] = {
                "statuses": sorted(set(statuses)), "seconds": round(seconds, 2),
                "peak_mb": round(memory_kb(process.pid, "VmHWM") / 1024, 1),
                "added_peak_mb": round(memory_kb(process.pid, "VmHWM") / 1024 - before_mb, 1),
                "resident_after_mb": round(memory_kb(process.pid, "VmRSS") / 1024, 1),
            }  # fmt: skip
            print(label, name, rows[name], flush=True)
        alive = httpx.get(base_url + "/health", timeout=10).status_code
    return {"idle_mb": round(idle_mb, 1), "cases": rows, "health_after": alive}


@contextmanager
def worktree(rev: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tree"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), rev], check=True,
                       capture_output=True)  # fmt: skip
        try:
            yield path
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)], check=False)


def table(results: dict[str, dict]) -> list[str]:
    labels = list(results)
    head = "| upload | " + " | ".join(f"{lab}: status, s, peak MB (added), resident after" for lab in labels) + " |"
    lines = ["## Decoding cost per upload: one `skinscan serve` worker", "", head,
             "|---|" + "---|" * len(labels)]  # fmt: skip

    def fmt(r: dict) -> str:
        statuses = "/".join(map(str, r["statuses"]))
        peak = f"{r['peak_mb']:.0f} (+{r['added_peak_mb']:.0f})"
        return f"{statuses}, {r['seconds']:g} s, {peak}, {r['resident_after_mb']:.0f}"

    for name in results[labels[-1]]["cases"]:
        lines.append(f"| {name} | " + " | ".join(fmt(results[lab]["cases"][name]) for lab in labels) + " |")
    lines += ["", "Idle worker: " + ", ".join(f"{lab} {results[lab]['idle_mb']:.0f} MB" for lab in labels) + ".",
              "Status -2: the client gave up after 600 s. Peak: the worker's VmHWM during the case."]  # fmt: skip
    return lines


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--before", help="also measure this git revision (e.g. fd24c0b)")
    args = parser.parse_args()
    cases = corpus(args.quick)
    results: dict[str, dict] = {}
    if args.before:
        with worktree(args.before) as tree:
            results[f"before ({args.before})"] = measure("before", args.model, cases, str(tree / "src"))
    results["now"] = measure("now", args.model, cases, None)
    write_results("decode_memory", {"results": results}, table(results))


if __name__ == "__main__":
    main()
