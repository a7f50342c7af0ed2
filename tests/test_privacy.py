"""skinscan records nothing about its use: no file appears in the user's home when a model is loaded and run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from synthetic import lesion_bytes

SCRIPT = """
import sys
from skinscan.runtime.engine import Engine
result = Engine(sys.argv[1], threads=1).predict(open(sys.argv[2], "rb").read())
print(result.status)
"""


def run_in_fresh_home(home: Path, *args: str, env: dict[str, str] | None = None) -> str:
    # A bare environment: ONNX Runtime keeps no store where it sees a CI service (CI, GITHUB_ACTIONS, TF_BUILD,
    # JENKINS_URL, GITLAB_CI, ... are set), which would make the first test pass for the wrong reason on a CI
    # runner and the control fail there.
    environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
                   "XDG_CACHE_HOME": str(home / ".cache"), **(env or {})}  # fmt: skip
    done = subprocess.run([sys.executable, "-c", SCRIPT, *args], env=environment, capture_output=True, text=True,
                          timeout=120, check=True)  # fmt: skip
    return done.stdout.strip()


def test_loading_and_running_a_model_writes_nothing_in_home(tmp_path: Path, tiny_model_dir: Path) -> None:
    photo = tmp_path / "mole.jpg"
    photo.write_bytes(lesion_bytes())
    home = tmp_path / "home"
    home.mkdir()
    assert run_in_fresh_home(home, str(tiny_model_dir), str(photo)) in ("ok", "rejected")
    assert sorted(p.relative_to(home).as_posix() for p in home.rglob("*")) == []


def test_the_control_onnx_runtime_does_write_its_store_when_allowed(tmp_path: Path, tiny_model_dir: Path) -> None:
    # without this, the test above would pass on an ONNX Runtime that keeps its store elsewhere (or nowhere)
    photo = tmp_path / "mole.jpg"
    photo.write_bytes(lesion_bytes())
    home = tmp_path / "home"
    home.mkdir()
    run_in_fresh_home(home, str(tiny_model_dir), str(photo), env={"ORT_DISABLE_TELEMETRY": "0"})
    assert any(p.name == "deviceid" for p in home.rglob("*")), "ONNX Runtime no longer writes its telemetry store"
