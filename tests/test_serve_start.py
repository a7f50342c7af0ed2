"""Starting the server: `make serve` honours SKINSCAN_HOST and SKINSCAN_PORT, a port in use is one clear line, and
`make evaluate` does its job or says why it cannot."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def make_dry_run(*args: str, env: dict[str, str] | None = None) -> str:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MFLAGS"))} | (env or {})
    done = subprocess.run(["make", "-n", *args], cwd=ROOT, capture_output=True, text=True, env=environment, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_make_serve_leaves_host_and_port_to_the_settings_unless_given() -> None:
    plain = make_dry_run("serve", env={"SKINSCAN_PORT": "9999", "SKINSCAN_HOST": "0.0.0.0"})
    assert plain.endswith("skinscan serve") and "--port" not in plain and "--host" not in plain
    given = make_dry_run("serve", "PORT=9000", "HOST=127.0.0.2")
    assert "--port 9000" in given and "--host 127.0.0.2" in given


def test_serve_reads_its_port_from_the_environment(tiny_model_dir: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKINSCAN_")} | {"SKINSCAN_PORT": str(port)}
    server = subprocess.Popen([sys.executable, "-m", "skinscan.cli", "serve", "--model", str(tiny_model_dir)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        for _ in range(300):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise AssertionError("the server did not answer on SKINSCAN_PORT")
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_a_port_in_use_is_one_line_before_any_banner(tiny_model_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "skinscan.cli", "serve", "--port", str(port), "--model",
                               str(tiny_model_dir)], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert f"cannot listen on 127.0.0.1 port {port}" in done.stderr
    assert "serving" not in done.stderr and "Traceback" not in done.stderr and "ERROR" not in done.stderr


def test_make_evaluate_without_the_data_says_where_to_get_it(tmp_path: Path) -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MFLAGS"))}
    done = subprocess.run(["make", "evaluate", f"DATA={tmp_path}"], cwd=ROOT, capture_output=True, text=True,
                          env=environment, timeout=60)  # fmt: skip
    assert done.returncode != 0 and 'README "Data"' in done.stderr
