"""Where the time goes, sampled with py-spy: the engine predicting a 224×224 JPEG and a 12-megapixel JPEG in a loop,
and a `skinscan serve` process under 16 concurrent clients (loadgen.py). The targets these explain: engine <= 10 ms
(224 JPEG) and <= 60 ms (12 MP), server >= 150 requests/s at 16 clients on 2 cores.

Reported per run: the functions with the most samples on top of the stack (self) and in it (inclusive), as shares
of the samples in which a thread was busy. Skipped, with a note, when py-spy is not installed.
Usage: python benchmarks/profile_hotspots.py [--model PATH] [--seconds 15] [--quick]"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from common import (
    LOOPBACK,
    bench_parser,
    clean_env,
    free_port,
    run_loadgen,
    running_server,
    sample_inputs,
    skinscan_command,
    upload_images,
    write_payloads,
    write_results,
)

TOP = 12
ENGINE_LOOP = """
import sys, time
from skinscan.runtime.engine import Engine
engine = Engine(sys.argv[1] or None)
data = open(sys.argv[2], "rb").read()
engine.predict(data)
print("ready", flush=True)
end = time.perf_counter() + float(sys.argv[3])
while time.perf_counter() < end:
    engine.predict(data)
"""
FRAME = re.compile(r"^(?P<func>.+?) \((?P<file>[^():]+)(?::\d+)?\)$")


def frame_name(frame: str) -> str:
    """ "predict (skinscan/engine.py:225)" → "predict (engine.py)": one entry per function, whatever the line."""
    match = FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    return f"{match['func']} ({Path(match['file']).name})"


def summarise(raw: Path) -> dict[str, Any]:
    """Self and inclusive shares per function from py-spy's collapsed-stack output."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [frame_name(f) for f in stack.split(";") if not f.startswith(("thread (", "process "))]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    share = (lambda n: round(100 * n / total, 1)) if total else (lambda n: 0.0)
    return {
        "samples": total,
        "self_percent": {name: share(n) for name, n in own.most_common(TOP)},
        "inclusive_percent": {name: share(n) for name, n in inclusive.most_common(TOP * 2)},
    }


def record(py_spy: str, pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    """Start sampling a running process (and its children) for `seconds`, in py-spy's collapsed-stack format."""
    command = [
        py_spy,
        "record",
        "--format",
        "raw",
        "--rate",
        "200",
        "--output",
        str(out),
        "--nonblocking",
        "--pid",
        str(pid),
        "--subprocesses",
        "--duration",
        str(max(1, round(seconds))),
    ]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def finish(recorder: subprocess.Popen[bytes], timeout: float) -> None:
    try:
        recorder.wait(timeout=timeout)
    finally:
        if recorder.poll() is None:
            recorder.terminate()
            recorder.wait(timeout=30)


def profile_engine(py_spy: str, model: str | None, image: Path, seconds: float, out: Path) -> dict[str, Any]:
    """Sample a process predicting `image` in a loop, from after its start-up (imports, model load) on."""
    script = out.with_suffix(".py")  # a file, not -c: py-spy names the process by its (one-line) command
    script.write_text(ENGINE_LOOP)
    command = [sys.executable, str(script), model or "", str(image), str(seconds + 5)]
    loop = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=clean_env())
    try:
        assert loop.stdout is not None
        if loop.stdout.readline().strip() != b"ready":
            raise RuntimeError("the engine loop did not start")
        finish(record(py_spy, loop.pid, seconds, out), seconds + 120)
    finally:
        loop.kill()
        loop.wait(timeout=30)
    return summarise(out)


def profile_server(py_spy: str, model: str | None, seconds: float, tmp: Path) -> dict[str, Any]:
    manifest = write_payloads(tmp / "payloads", [(f"photo{i}.jpg", d, 200) for i, d in enumerate(upload_images(8))])
    port = free_port()
    out = tmp / "server.txt"
    with running_server(skinscan_command(port, model, 1), port) as server:
        url = f"http://{LOOPBACK}:{port}/predict"
        run_loadgen(url, manifest, concurrency=16, seconds=1)  # warm up before sampling
        recorder = record(py_spy, server.pid, seconds, out)
        try:
            load = run_loadgen(url, manifest, concurrency=16, seconds=seconds + 1)
        finally:
            finish(recorder, 120)
    result = summarise(out)
    result["load"] = {k: load[k] for k in ("rps", "median_ms", "p99_ms", "errors")}
    return result


def table_of(name: str, result: dict[str, Any]) -> list[str]:
    lines = [f"## {name} ({result['samples']} busy samples)", ""]
    if "load" in result:
        load = result["load"]
        lines += [f"Under load: {load['rps']} req/s, median {load['median_ms']} ms, errors {load['errors']}.", ""]
    lines += ["| self % | function | | inclusive % | function |", "|---|---|---|---|---|"]
    own, incl = list(result["self_percent"].items()), list(result["inclusive_percent"].items())[:TOP]
    for i in range(max(len(own), len(incl))):
        a = own[i] if i < len(own) else ("", "")
        b = incl[i] if i < len(incl) else ("", "")
        lines.append(f"| {a[1]} | `{a[0]}` | | {b[1]} | `{b[0]}` |")
    return [*lines, ""]


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--seconds", type=float, default=15.0, help="sampled seconds per run")
    args = parser.parse_args()
    seconds = 3.0 if args.quick else args.seconds
    title = "# Profiles (py-spy)" + (" (quick run: noisy)" if args.quick else "")
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        write_results("profile", {"skipped": "py-spy is not installed"}, [title, "", "Skipped: py-spy not installed."])
        return

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="skinscan-profile-") as tmp_name:
        tmp = Path(tmp_name)
        inputs = sample_inputs()
        for name in ("jpeg_224", "jpeg_12mp"):
            image = tmp / f"{name}.jpg"
            image.write_bytes(inputs[name])
            results[f"engine.predict, {name}"] = profile_engine(py_spy, args.model, image, seconds, tmp / f"{name}.txt")
        results["skinscan serve, 1 worker, 16 clients"] = profile_server(py_spy, args.model, seconds, tmp)
    table = [
        title,
        "",
        f"{seconds:g} s of samples per run at 200 Hz, after start-up; shares of the samples in which a thread was "
        "not idle. Reading them: `Session.run` is ONNX Runtime running the model; `ImageFile.load` is Pillow "
        "decoding; `Engine.run`'s own share in the server is threads waiting for the engine's one-run-at-a-time "
        "lock; `Condition.wait`, `Queue.get` and `select` are threads waiting for work.",
        "",
    ]
    for name, result in results.items():
        table += table_of(name, result)
    write_results("profile", {"quick": args.quick, "seconds": seconds, "runs": results}, table[:-1])


if __name__ == "__main__":
    main()
