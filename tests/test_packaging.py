"""The wheel travels: built from the sources alone, it carries the bundled model, and `pip install
"skinscan[serve]"` from it into a fresh environment predicts and serves with no checkout, without torch, in
under 600 MB. About a minute (a build, and a download of the server's dependencies into a fresh venv)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

from synthetic import lesion_bytes

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parents[1]
SHARED_PHOTO = ROOT.parent / "shared" / "data" / "isic-mvb" / "test" / "malignant" / "1.jpg"
SERVE_LIMIT_MB = 600
# what the server's environment never needs (the import contracts keep the runtime side off them)
NOT_FOR_SERVING = ("torch", "scipy", "sklearn", "matplotlib", "onnx", "PyQt5", "qtpy", "keras", "playwright")
# pip's words when it cannot reach the package index: then this machine cannot build, and the test says so
OFFLINE = (
    "Failed to establish a new connection", "Temporary failure in name resolution", "Name or service not known",
    "Network is unreachable", "Max retries exceeded", "Could not fetch URL", "ConnectTimeout", "ProxyError",
)  # fmt: skip


def pip(python: Path | str, *args: str, cwd: Path) -> None:
    """Runs pip; skips the module when pip cannot reach the index, fails on any other error."""
    command = [str(python), "-m", "pip", *args, "--retries", "1", "--timeout", "30", "--disable-pip-version-check"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=cwd, env=clean_env())
    if result.returncode != 0:
        output = result.stdout + result.stderr
        if any(word in output for word in OFFLINE):
            pytest.skip(f"offline: pip could not reach the package index ({' '.join(args[:2])})")
        pytest.fail(f"pip {' '.join(args)} failed:\n{output[-3000:]}")


def clean_env() -> dict[str, str]:
    """This environment without the checkout's traces: no model named, no sources on the path, no venv."""
    drop = ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
    return {k: v for k, v in os.environ.items() if not k.startswith("SKINSCAN_") and k not in drop}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from a copy of what the build reads (so no stale build/ of the checkout gets in)."""
    if not (ROOT / "models" / "model.onnx").is_file():
        pytest.skip("the bundled model is not in this checkout")
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    shutil.copytree(ROOT / "src", source / "src", ignore=skip)
    shutil.copytree(ROOT / "models", source / "models", ignore=skip)
    dist = tmp_path_factory.mktemp("dist")
    pip(sys.executable, "wheel", "--no-deps", "-q", "-w", str(dist), str(source), cwd=dist)
    (built,) = dist.glob("skinscan-*.whl")
    return built


@pytest.fixture(scope="module")
def serve_env(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding `skinscan[serve]` from the wheel and its dependencies from the index."""
    venv = tmp_path_factory.mktemp("serve") / "venv"
    made = subprocess.run([sys.executable, "-m", "venv", str(venv)], capture_output=True, text=True, timeout=300)
    if made.returncode != 0 or not (venv / "bin" / "pip").exists():
        pytest.skip(f"python -m venv cannot make an environment with pip (Debian: apt-get install python3-venv): "
                    f"{made.stderr.strip()[-300:]}")  # fmt: skip
    pip(venv / "bin" / "python", "install", "-q", f"{wheel}[serve]", cwd=venv)
    return venv


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A working folder with no checkout above it: the model has to come from the installed package."""
    assert ROOT not in tmp_path.parents
    return tmp_path


def bundled_spec() -> dict[str, object]:
    spec: dict[str, object] = json.loads((ROOT / "models" / "model.json").read_text())
    return spec


def test_the_wheel_carries_the_bundled_model_and_the_pages(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        data = next(n.split("/data/")[0] for n in names if "/data/share/" in n) + "/data/share/skinscan/models/"
        for name in (
            "model.onnx",
            "model.json",
            "README.md",
            "int8/model.onnx",
            "int8/model.json",
            "device/model.onnx",
            "device/model.json",
        ):
            assert archive.read(data + name) == (ROOT / "models" / name).read_bytes(), name
        assert {"skinscan/api/static/index.html", "skinscan/gui/styles/dark.qss", "skinscan/py.typed"} <= names
        # the on-device web app: its scripts, service worker, pixel graph and ONNX Runtime Web with its licence
        vendored = [
            f"skinscan/api/static/vendor/ort/{name}"
            for name in ("VERSION.json", "LICENSE", "ort.wasm.min.mjs", "ort-wasm-simd-threaded.wasm.gz")
        ]
        static = [f"skinscan/api/static/{name}" for name in ("device.js", "imaging.js", "sw.js", "prepare.onnx")]
        assert set(vendored + static) <= names
    assert not any(n.startswith(("tests/", "benchmarks/", "experiments/")) for n in names)


def test_predict_from_the_wheel_with_no_checkout(serve_env: Path, outside: Path) -> None:
    photos = [outside / "lesion.png"]
    photos[0].write_bytes(lesion_bytes(True, seed=1, size=256, fmt="PNG"))
    if SHARED_PHOTO.is_file():  # a real lesion gets a verdict; the synthetic one may be refused, a result too
        photos.append(outside / "real.jpg")
        shutil.copy2(SHARED_PHOTO, photos[-1])
    command = [str(serve_env / "bin" / "skinscan"), "predict", "--json", *map(str, photos)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=outside, env=clean_env())
    assert result.returncode == 0, result.stderr
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    assert [a["path"] for a in answers] == [str(p) for p in photos]
    for answer in answers:
        assert answer["status"] in ("ok", "rejected") and answer["verdict"]
        assert answer["threshold"] == pytest.approx(bundled_spec()["threshold"], abs=1e-4)  # the bundled model's
    if SHARED_PHOTO.is_file():
        assert answers[-1]["status"] == "ok" and 0.0 <= answers[-1]["probability"] <= 1.0


def test_the_wheel_serves_with_no_checkout(serve_env: Path, outside: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [str(serve_env / "bin" / "skinscan"), "serve", "--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(command, cwd=outside, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        health = _wait_healthy(f"http://127.0.0.1:{port}/health", server)
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0].decode(errors="replace")
    assert health["status"] == "ok", output
    assert health["model"]["id"] == bundled_spec()["id"]


def _wait_healthy(url: str, server: subprocess.Popen[bytes], seconds: float = 60.0) -> dict[str, object]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"the server stopped with status {server.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                answer: dict[str, object] = json.load(response)
                if answer.get("status") == "ok":
                    return answer
        except OSError:
            pass
        time.sleep(0.3)
    pytest.fail(f"{url} did not answer ok within {seconds:.0f} s")


def test_the_serve_environment_has_no_torch_and_stays_small(serve_env: Path) -> None:
    probe = f"import importlib.util as u; print([m for m in {NOT_FOR_SERVING!r} if u.find_spec(m)])"
    found = subprocess.run([str(serve_env / "bin" / "python"), "-c", probe], capture_output=True, text=True)
    assert found.stdout.strip() == "[]", found.stdout + found.stderr
    size_mb = disk_usage(serve_env) / 2**20
    print(f"serve environment: {size_mb:.0f} MB on disk")  # shown with -s; the README quotes it
    assert size_mb < SERVE_LIMIT_MB


def test_evaluate_without_its_extra_names_the_extra(serve_env: Path, outside: Path) -> None:
    command = [str(serve_env / "bin" / "skinscan"), "evaluate", str(outside), "--out", str(outside / "report")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=outside, env=clean_env())
    assert result.returncode == 1
    assert "skinscan[evaluate]" in result.stderr and "Traceback" not in result.stderr


def disk_usage(folder: Path) -> int:
    """Bytes on disk under folder, as du counts them (hard links once)."""
    seen, total = set(), 0
    for directory, _, files in os.walk(folder):
        for name in files:
            stat = os.lstat(os.path.join(directory, name))
            if (stat.st_dev, stat.st_ino) not in seen:
                seen.add((stat.st_dev, stat.st_ino))
                total += stat.st_blocks * 512
    return total
