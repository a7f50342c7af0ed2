"""The machine's defaults: the cores a process may use, one server process per core with the cores shared out as
model threads, and the 8-bit model only where it matches the float model and the CPU has VNNI or AMX."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from skinscan.api.server import settings_env
from skinscan.runtime.defaults import (
    INT8_FLAGS,
    cgroup_cpu_quota,
    choose_model,
    cpu_flags,
    input_check_mismatch,
    int8_instructions,
    metric_mismatches,
    refused_share,
    threads_per_worker,
    usable_cores,
)
from skinscan.runtime.engine import Engine, bundled_model_choice, bundled_model_path
from synthetic import lesion_bytes

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "models"
CAN_PIN = hasattr(os, "sched_setaffinity")


def metrics(**values: tuple[float, float, float]) -> dict[str, Any]:
    """One test split's metrics block: name=(value, low, high)."""
    split: dict[str, Any] = {"n": 100}
    for name, (value, low, high) in values.items():
        split[name], split[f"{name}_ci"] = value, [low, high]
    return {"test": split}


# --- cores ---------------------------------------------------------------------------------------------------


def _in_one_core(code: str) -> str:
    """Run `code` in a Python pinned to the first core this process may use; its stdout."""
    first = min(os.sched_getaffinity(0))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True,
                          preexec_fn=lambda: os.sched_setaffinity(0, {first}))  # fmt: skip
    return done.stdout.strip()


@pytest.mark.skipif(not CAN_PIN, reason="CPU affinity is Linux's")
def test_usable_cores_are_the_affinity_not_the_machine() -> None:
    code = "from skinscan.runtime.defaults import *; print(usable_cores(), default_workers(), threads_per_worker(1))"
    assert _in_one_core(code) == "1 1 1"
    assert usable_cores() == min(len(os.sched_getaffinity(0)), usable_cores())


@pytest.mark.parametrize(
    ("files", "quota"),
    [
        ({"cpu.max": "150000 100000\n"}, 1.5),  # cgroup v2: podman run --cpus 1.5
        ({"cpu.max": "max 100000\n"}, None),  # v2, no limit
        ({"cpu/cpu.cfs_quota_us": "200000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 2.0),  # cgroup v1
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),  # v1, no limit
        ({}, None),  # no cgroup file system (macOS, Windows)
    ],
)
def test_cgroup_cpu_quota(tmp_path: Path, files: dict[str, str], quota: float | None) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cgroup_cpu_quota(tmp_path) == quota


@pytest.mark.parametrize(("quota", "cores"), [(0.5, 1), (1.0, 1), (1.5, 2), (None, None)])
def test_a_cgroup_quota_lowers_the_usable_cores(
    monkeypatch: pytest.MonkeyPatch, quota: float | None, cores: int | None
) -> None:
    import skinscan.runtime.defaults as defaults

    affinity = len(os.sched_getaffinity(0)) if CAN_PIN else os.cpu_count() or 1
    monkeypatch.setattr(defaults, "cgroup_cpu_quota", lambda: quota)  # as `podman run --cpus` would set
    assert usable_cores() == min(affinity, cores or affinity)


@pytest.mark.parametrize(("cores", "workers", "threads"), [(1, 1, 1), (2, 2, 1), (2, 1, 2), (16, 1, 4), (16, 4, 4)])
def test_threads_share_the_cores_without_oversubscribing(
    monkeypatch: pytest.MonkeyPatch, cores: int, workers: int, threads: int
) -> None:
    import skinscan.runtime.defaults as defaults

    monkeypatch.setattr(defaults, "usable_cores", lambda: cores)  # machines this test cannot be run on
    assert threads_per_worker(workers) == threads
    assert threads * workers <= cores or threads == 1


# --- the CPU's 8-bit instructions ----------------------------------------------------------------------------


def test_cpu_flags_are_read_from_cpuinfo(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n\n"
                       "processor\t: 1\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n")  # fmt: skip
    flags = cpu_flags(cpuinfo)
    assert {"avx2", "avx512_vnni"} <= flags and "Some" not in flags
    assert int8_instructions(flags) == ["avx512_vnni"]
    assert cpu_flags(tmp_path / "missing") == frozenset()


@pytest.mark.parametrize(
    ("flags", "found"),
    [
        ({"avx2", "fma"}, []),  # AVX2 alone: this project's AMD EPYC
        ({"avx2", "avx_vnni"}, ["avx_vnni"]),
        ({"avx512f", "avx512_vnni", "amx_tile", "amx_int8", "amx_bf16"}, ["amx_int8", "avx512_vnni"]),
        ({"amx_bf16", "avx512_bf16"}, []),  # bf16 units do no 8-bit products
    ],
)
def test_int8_instructions(flags: set[str], found: list[str]) -> None:
    assert int8_instructions(flags) == found


def test_this_machines_flags_decide_as_documented() -> None:
    flags = cpu_flags()
    if not Path("/proc/cpuinfo").is_file():
        pytest.skip("no /proc/cpuinfo here")
    assert flags, "a Linux /proc/cpuinfo lists flags"
    assert bool(int8_instructions(flags)) == any(f in flags for f in INT8_FLAGS)


# --- the metrics rule ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("candidate", "mismatched"),
    [
        (metrics(auc=(0.92, 0.0, 0.0), sensitivity=(0.88, 0.0, 0.0)), []),  # within both intervals
        (metrics(auc=(0.95, 0.0, 0.0), sensitivity=(0.88, 0.0, 0.0)), ["auc"]),  # better, still outside
        (metrics(auc=(0.92, 0.0, 0.0), sensitivity=(0.80, 0.0, 0.0)), ["sensitivity"]),
        (metrics(auc=(0.92, 0.0, 0.0)), []),  # a metric it did not record is not held against it
    ],
)
def test_metric_mismatches(candidate: dict[str, Any], mismatched: list[str]) -> None:
    reference = metrics(auc=(0.92, 0.90, 0.94), sensitivity=(0.88, 0.85, 0.91))
    found = metric_mismatches(reference, candidate)
    assert [line.split()[1] for line in found] == mismatched


def test_no_split_in_common_is_no_match() -> None:
    assert metric_mismatches(metrics(auc=(0.9, 0.8, 1.0)), {"other": {"auc": 0.9}}) == [
        "no test split measured for both"
    ]


@pytest.mark.skipif(not (BUNDLED / "int8" / "model.json").is_file(), reason="no bundled 8-bit copy")
def test_the_bundled_int8_copy_does_not_match_the_float_model() -> None:
    # what the two model cards record: the 8-bit copy's own threshold trades specificity for sensitivity,
    # beyond the float model's intervals on ISIC 2017 and 2020
    float_card = json.loads((BUNDLED / "model.json").read_text())
    int8_card = json.loads((BUNDLED / "int8" / "model.json").read_text())
    found = metric_mismatches(float_card["metrics"], int8_card["metrics"])
    assert "isic2017_test specificity 0.404 outside 0.414–0.503" in found
    choice = choose_model(BUNDLED / "model.onnx", flags={"avx512_vnni", "amx_int8"})  # even with the instructions
    assert choice.path == BUNDLED / "model.onnx" and not choice.int8
    assert "isic2017_test" in choice.reason and "VNNI" not in choice.reason
    # and its input check, on the feature distances it records for the validation images, refuses a third of them
    assert refused_share(float_card) == (0.0, 0.01) and refused_share(int8_card) == (0.3, 0.4)
    assert "input check refuses 30–40 % of the validation images" in choice.reason


def distances(limit: float, *values: float) -> dict[str, Any]:
    """The parts of a model.json its input check's refusals are read from: 9 deciles and p99 of the validation
    images' feature distances, and the limit."""
    return {"ood_threshold": limit, "reference": {"ood_distance": {"deciles": list(values[:9]), "p99": values[9]}}}


@pytest.mark.parametrize(
    ("card", "share"),
    [
        (distances(1.0, *[0.4 + 0.02 * i for i in range(9)], 0.85), (0.0, 0.01)),  # all under: under 1 %
        (distances(1.0, *[0.4 + 0.02 * i for i in range(9)], 1.20), (0.01, 0.1)),  # p99 over, 9th decile under
        (distances(1.0, *[0.5 + 0.1 * i for i in range(9)], 2.00), (0.3, 0.4)),  # the 6th decile at the limit
        (distances(0.1, *[0.5 + 0.1 * i for i in range(9)], 2.00), (0.9, 1.0)),  # even the first decile over
        ({"ood_threshold": 1.0}, None),  # no distances recorded
        ({"reference": {"ood_distance": {"deciles": [0.5] * 9, "p99": 0.9}}}, None),  # no input check
    ],
)
def test_refused_share(card: dict[str, Any], share: tuple[float, float] | None) -> None:
    assert refused_share(card) == share


def test_an_input_check_that_refuses_more_is_a_mismatch() -> None:
    same = distances(1.0, *[0.4 + 0.02 * i for i in range(9)], 0.85)
    assert input_check_mismatch(same, same) is None
    assert input_check_mismatch(same, distances(1.05, *[0.4 + 0.02 * i for i in range(9)], 1.2)) is None  # overlap
    drifted = distances(1.0, *[0.5 + 0.1 * i for i in range(9)], 2.0)
    assert input_check_mismatch(same, drifted) == (
        "input check refuses 30–40 % of the validation images as not skin lesions, the float model's at most 1 %"
    )
    assert input_check_mismatch(drifted, same) is None  # refusing fewer is not held against it
    assert input_check_mismatch({}, drifted) is None  # nothing to compare with


def test_bundled_choice_is_what_resolves_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SKINSCAN_MODEL", raising=False)
    import skinscan.runtime.engine as engine

    choice = bundled_model_choice()
    assert choice.path.parent in (bundled_model_path().parent, bundled_model_path().parent / "int8")
    if hasattr(engine, "active_model_path") and engine.active_model_path() is not None:
        pytest.skip("this machine's model store names an active model")
    assert engine.resolve_model_path() == choice.path


# --- choosing between two real models ------------------------------------------------------------------------


@pytest.fixture
def two_models(tiny_model_dir: Path, tmp_path: Path) -> Path:
    """A float model with an 8-bit 'copy' beside it (the tiny model twice), with the test metrics the test sets."""
    shutil.copytree(tiny_model_dir, tmp_path / "models")
    shutil.copytree(tiny_model_dir, tmp_path / "models" / "int8")
    return tmp_path / "models"


def _set_metrics(folder: Path, block: dict[str, Any]) -> None:
    card = json.loads((folder / "model.json").read_text())
    card["metrics"] = block
    (folder / "model.json").write_text(json.dumps(card))


@pytest.mark.parametrize(
    ("int8_auc", "flags", "chosen", "why"),
    [
        (0.925, {"avx512_vnni"}, "int8", "match the float model's within their 95 % intervals and this CPU has avx5"),
        (0.925, {"amx_int8"}, "int8", "this CPU has amx_int8"),
        (0.925, {"avx2"}, "float", "no VNNI or AMX"),
        (0.850, {"avx512_vnni"}, "float", "test auc 0.850 outside 0.900–0.940"),
        (0.850, set(), "float", "outside 0.900–0.940); and this CPU has no VNNI or AMX"),
    ],
)
def test_choose_model(two_models: Path, int8_auc: float, flags: set[str], chosen: str, why: str) -> None:
    _set_metrics(two_models, metrics(auc=(0.92, 0.90, 0.94)))
    _set_metrics(two_models / "int8", metrics(auc=(int8_auc, 0.88, 0.95)))
    choice = choose_model(two_models / "model.onnx", flags=flags)
    assert choice.int8 == (chosen == "int8") and why in choice.reason, choice
    assert choice.reason.startswith("the 8-bit copy" if chosen == "int8" else "the float model")
    Engine(choice.path).predict(lesion_bytes())  # the chosen file is a model that runs


def test_an_int8_copy_whose_input_check_drifted_is_not_chosen(two_models: Path) -> None:
    _set_metrics(two_models, metrics(auc=(0.92, 0.90, 0.94)))
    _set_metrics(two_models / "int8", metrics(auc=(0.925, 0.88, 0.95)))  # the test metrics match
    card = json.loads((two_models / "int8" / "model.json").read_text())
    card.update(distances(1.0, *[0.5 + 0.1 * i for i in range(9)], 2.0))  # but its distances do not
    (two_models / "int8" / "model.json").write_text(json.dumps(card))
    float_card = json.loads((two_models / "model.json").read_text())
    float_card.update(distances(1.0, *[0.4 + 0.02 * i for i in range(9)], 0.85))
    (two_models / "model.json").write_text(json.dumps(float_card))
    choice = choose_model(two_models / "model.onnx", flags={"avx512_vnni"})
    assert not choice.int8 and "input check refuses 30–40 %" in choice.reason, choice
    assert "test metrics" not in choice.reason and "VNNI" not in choice.reason


def test_no_int8_copy_or_unreadable_metrics_mean_the_float_model(two_models: Path) -> None:
    (two_models / "int8" / "model.json").write_text("{not json")
    choice = choose_model(two_models / "model.onnx", flags={"avx512_vnni"})
    assert not choice.int8 and "cannot be read" in choice.reason
    shutil.rmtree(two_models / "int8")
    choice = choose_model(two_models / "model.onnx", flags={"avx512_vnni"})
    assert not choice.int8 and "no 8-bit copy" in choice.reason


# --- `skinscan serve` with no settings -----------------------------------------------------------------------


def _serve(*args: str, model: Path | None, one_core: bool = False) -> tuple[int, str]:
    """Start `skinscan serve --port 0` (pinned to one core if asked), upload one photo to the port its banner names,
    stop it; its exit status and output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKINSCAN_")}
    first = min(os.sched_getaffinity(0)) if CAN_PIN else 0
    command = [sys.executable, "-m", "skinscan.cli", "serve", "--host", "127.0.0.1", "--port", "0", *args]
    command += ["--model", str(model)] if model else []
    pin = (lambda: os.sched_setaffinity(0, {first})) if one_core else None
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               preexec_fn=pin)  # fmt: skip
    lines: list[str] = []
    # read on a thread, line by line, to the end: communicate() would read past the lines already buffered here
    reader = threading.Thread(target=lambda: lines.extend(process.stdout or ()), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 90
        while not (found := re.search(r"at http://127\.0\.0\.1:(\d+)/", "".join(lines))):
            # the banner comes before the server: it names the port chosen
            assert process.poll() is None and time.monotonic() < deadline, "".join(lines)
            time.sleep(0.05)
        port = int(found.group(1))
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            while True:
                assert process.poll() is None and time.monotonic() < deadline, "".join(lines)
                try:
                    if client.get("/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
            for _ in range(4):  # new connections, spread over the processes
                with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as fresh:
                    while True:  # /health answered by one process says nothing of another still loading its model
                        response = fresh.post("/predict", files={"file": ("a.jpg", lesion_bytes(), "image/jpeg")})
                        if response.status_code != 503 or time.monotonic() > deadline:
                            break
                        time.sleep(0.2)
                    assert response.status_code == 200, response.text
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        reader.join(timeout=10)
        if process.stdout is not None:
            process.stdout.close()
    return process.returncode, "".join(lines)


def test_serve_runs_one_process_per_usable_core(tiny_model_dir: Path) -> None:
    cores = usable_cores()
    returncode, output = _serve(model=tiny_model_dir)
    assert returncode in (0, -signal.SIGTERM), output
    processes = "process" if cores == 1 else "processes"
    threads = "thread" if threads_per_worker(cores) == 1 else "threads"
    assert f"{cores} server {processes} ({cores} usable cores), {threads_per_worker(cores)} model {threads}" in output
    assert output.count("Finished server process") == cores, output
    assert "model: the one named with --model" in output and "Traceback" not in output


@pytest.mark.skipif(not CAN_PIN, reason="CPU affinity is Linux's")
def test_serve_on_one_core_is_one_process_with_one_thread(tiny_model_dir: Path) -> None:
    returncode, output = _serve(model=tiny_model_dir, one_core=True)
    assert returncode in (0, -signal.SIGTERM), output
    assert "1 server process (1 usable cores), 1 model thread each" in output
    assert output.count("Finished server process") == 1, output


def test_workers_get_the_shared_out_thread_count() -> None:
    from skinscan.api.settings import Settings

    assert settings_env(Settings(threads=threads_per_worker(2), api_key=None))["SKINSCAN_THREADS"] == str(
        threads_per_worker(2)
    )


def test_a_port_in_use_is_one_line_before_the_banner_with_several_workers(tiny_model_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        command = [sys.executable, "-m", "skinscan.cli", "serve", "--port", str(port), "--workers", "2", "--model",
                   str(tiny_model_dir)]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert f"cannot listen on 127.0.0.1 port {port}" in done.stderr
    assert "serving" not in done.stderr and "Traceback" not in done.stderr and "ERROR" not in done.stderr


@pytest.mark.skipif(not (BUNDLED / "model.onnx").is_file(), reason="no bundled model in this checkout")
def test_serve_banner_says_which_bundled_model_and_why() -> None:
    choice = bundled_model_choice()
    returncode, output = _serve(model=None)
    assert returncode in (0, -signal.SIGTERM), output
    if f"serving {choice.path} " not in output:
        pytest.skip("this machine's model store names an active model")
    assert f"model: {choice.reason}\n" in output
