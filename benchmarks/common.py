"""Shared helpers for the benchmark scripts: where results go, test images, percentiles, and servers started in
subprocesses on loopback (always shut down again)."""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
RESULTS = BENCH / "results"
SHARED = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT / "tests"))  # the test suite's image builders (synthetic.py) serve here too
LOOPBACK = "127.0.0.1"


def machine() -> dict[str, Any]:
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
    }


def percentiles(samples_ms: Sequence[float]) -> dict[str, float]:
    a = np.asarray(samples_ms, dtype=np.float64)
    if a.size == 0:
        return {"median_ms": float("nan"), "p90_ms": float("nan"), "p99_ms": float("nan"), "n": 0}
    return {"median_ms": round(float(np.median(a)), 2), "p90_ms": round(float(np.percentile(a, 90)), 2),
            "p99_ms": round(float(np.percentile(a, 99)), 2), "n": int(a.size)}  # fmt: skip


def time_calls(fn: Any, repeat: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def bench_parser(description: str | None, quick_help: str = "a seconds-long smoke run") -> argparse.ArgumentParser:
    """The options every benchmark takes (run_all passes them on): --model, and --quick for a smoke run."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model.onnx or its folder (default: the bundled model)")
    parser.add_argument("--quick", action="store_true", help=quick_help)
    return parser


def write_results(name: str, data: dict[str, Any], table: list[str]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    data = {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M"), **data}
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))


def real_images(n: int) -> list[Path]:
    """Real dermoscopy if ../shared/data is there (else the caller synthesises)."""
    folder = SHARED / "isic-mvb" / "test"
    return sorted(folder.rglob("*.jpg"))[:n] if folder.is_dir() else []


def encode(img: Any, fmt: str, **params: Any) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def base_photo() -> Any:
    """One real dermoscopy photo (224×224), or a synthetic lesion when ../shared/data is absent."""
    from PIL import Image

    paths = real_images(1)
    if paths:
        return Image.open(paths[0]).convert("RGB")
    from synthetic import make_lesion

    return make_lesion(np.random.default_rng(0), malignant=True, size=224)


def sample_inputs() -> dict[str, bytes]:
    """The three inputs every engine benchmark times: a 224×224 JPEG, a 12-megapixel JPEG and a PNG."""
    from PIL import Image

    base = base_photo()
    big = base.resize((4000, 3000), Image.Resampling.BICUBIC)  # a 12-megapixel phone photo
    return {
        "jpeg_224": encode(base.resize((224, 224)), "JPEG", quality=95),
        "jpeg_12mp": encode(big, "JPEG", quality=90),
        "png_600x450": encode(base.resize((600, 450)), "PNG"),
    }


def upload_images(n: int) -> list[bytes]:
    """Up to n distinct real 224×224 JPEGs as uploaded (synthetic lesions when the real ones are absent)."""
    paths = real_images(n)
    if paths:
        return [p.read_bytes() for p in paths]
    from synthetic import lesion_bytes

    return [lesion_bytes(malignant=i % 2 == 1, seed=i, size=224) for i in range(n)]


# --- servers in subprocesses ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without SKINSCAN_* settings (an API key there would fail every request)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKINSCAN_")}
    return {**env, **extra}


def skinscan_command(port: int, model: str | None, workers: int = 1) -> list[str]:
    command = [sys.executable, "-m", "skinscan.cli", "serve", "--host", LOOPBACK, "--port", str(port)]
    command += ["--workers", str(workers)]
    return command + (["--model", str(model)] if model else [])


def seed_command(port: int) -> list[str]:
    return [sys.executable, str(BENCH / "seed_server.py"), "--port", str(port)]


@contextmanager
def running_server(
    command: list[str],
    port: int,
    *,
    ready_path: str = "/health",
    timeout: float = 180,
    log: Path | None = None,
    env: dict[str, str] | None = None,
    fd_limit: int | tuple[int, int] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start a server subprocess, wait until GET ready_path answers 200, and always stop it afterwards.

    Args:
        env: further environment variables (SKINSCAN_* settings, PYTHONPATH) on top of `clean_env()`.
        fd_limit: the server's RLIMIT_NOFILE: one number for soft and hard, as `ulimit -n` sets it, or
            (soft, hard) (POSIX only).
    """
    import httpx

    out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115 (closed in finally)
    preexec = None
    if fd_limit is not None:
        import resource

        limits = (fd_limit, fd_limit) if isinstance(fd_limit, int) else fd_limit

        def preexec() -> None:
            resource.setrlimit(resource.RLIMIT_NOFILE, limits)

    process = subprocess.Popen(
        command, stdout=out, stderr=subprocess.STDOUT, env=clean_env(**(env or {})), preexec_fn=preexec
    )
    try:
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=f"http://{LOOPBACK}:{port}", timeout=5) as client:
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"server exited with {process.returncode}: {' '.join(command)}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"server not ready after {timeout:.0f} s: {' '.join(command)}")
                try:
                    if client.get(ready_path).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.2)
        yield process
    finally:
        stop(process)
        if log:
            out.close()  # type: ignore[union-attr]


def stop(process: subprocess.Popen[bytes]) -> None:
    """terminate, wait, and kill if it will not go."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its children (uvicorn's worker processes), in MB."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return float("nan")
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total / (1024 * 1024)


# --- load ----------------------------------------------------------------------------------------------------


def write_payloads(folder: Path, payloads: Sequence[tuple[str, bytes, int]]) -> Path:
    """Files for loadgen.py: (filename, bytes, expected status) each; returns the manifest's path."""
    folder.mkdir(parents=True, exist_ok=True)
    manifest = []
    for i, (filename, data, expect) in enumerate(payloads):
        path = folder / f"payload_{i:03d}.bin"
        path.write_bytes(data)
        manifest.append({"path": str(path), "filename": filename, "expect": expect})
    target = folder / "payloads.json"
    target.write_text(json.dumps(manifest))
    return target


def run_loadgen(
    url: str,
    manifest: Path,
    *,
    concurrency: int,
    seconds: float,
    warmup: float = 0,
    max_requests: int = 1_000_000,
    window: float = 10.0,
) -> dict[str, Any]:
    """Run loadgen.py in its own process (so the client's CPU is not the server's) and return its summary."""
    command = [
        sys.executable, str(BENCH / "loadgen.py"), url, "--payloads", str(manifest), "--concurrency", str(concurrency),
        "--seconds", str(seconds), "--warmup", str(warmup), "--max-requests", str(max_requests),
        "--window", str(window),
    ]  # fmt: skip
    limit = warmup + seconds + 120
    result = subprocess.run(command, capture_output=True, text=True, timeout=limit, env=clean_env())
    if result.returncode != 0:
        raise RuntimeError(f"loadgen failed ({result.returncode}): {result.stderr[-2000:]}")
    summary: dict[str, Any] = json.loads(result.stdout)
    return summary
