"""The first run: what each `make` target installs, the desktop app's Debian packages, and the messages that a
machine without ../shared/data or without python3-venv gets."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from skinscan.core.errors import DataError
from skinscan.training.records import load_records

ROOT = Path(__file__).resolve().parents[1]
# Debian's base system, on every machine apt runs on: the Makefile need not name them
BASE_DEBS = {"libc6", "libgcc-s1", "libstdc++6", "zlib1g"}


def make(*args: str, venv: Path | None = None) -> subprocess.CompletedProcess[str]:
    command = ["make", "--no-print-directory", "-C", str(ROOT), *args]
    if venv is not None:
        command.append(f"VENV={venv}")
    # not the outer make's flags (`make test` runs these tests): -n, -j and its jobserver are not for this one
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)


def pip_installs(dry_run: str) -> list[str]:
    """The `pip install` lines of a `make -n` listing."""
    return [line for line in dry_run.splitlines() if "-m pip install" in line and "--upgrade pip" not in line]


@pytest.fixture(scope="module")
def needs_make() -> None:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")


EVERYTHING = ".[train,serve,gui,dev]"


@pytest.mark.parametrize(
    ("target", "extras"), [("serve", ".[serve]"), ("gui", ".[gui]"), ("test", EVERYTHING), ("install", EVERYTHING)]
)
def test_each_target_installs_only_what_it_needs(needs_make: None, tmp_path: Path, target: str, extras: str) -> None:
    # a fresh clone's view: an environment that does not exist yet
    result = make("-n", target, venv=tmp_path / "venv")
    assert result.returncode == 0, result.stderr
    installs = pip_installs(result.stdout)
    assert installs[-1].endswith(f"-m pip install -q -e '{extras}'")
    if target in ("serve", "gui"):
        assert len(installs) == 1 and "torch" not in result.stdout


def test_test_installs_the_cpu_build_of_torch_first(needs_make: None, tmp_path: Path) -> None:
    installs = pip_installs(make("-n", "test", venv=tmp_path / "venv").stdout)
    assert installs[0].split("-m pip install -q ")[1].split() == ["torch==2.13.0"]
    cpu_index = "https://download.pytorch.org/whl/cpu"
    installs = pip_installs(make("-n", "install", f"TORCH_INDEX={cpu_index}", venv=tmp_path / "venv").stdout)
    assert installs[0].split()[-3:] == ["torch==2.13.0", "--index-url", cpu_index]


def test_a_python_without_venv_is_told_to_install_python3_venv(needs_make: None, tmp_path: Path) -> None:
    # a stand-in for Debian's python3 without python3-venv: `-m venv DIR` makes DIR/bin, then fails for want of
    # ensurepip; its `-c` succeeds, so that this test installs no Debian package
    python = tmp_path / "python3"
    python.write_text(
        '#!/bin/sh\n[ "$1" = -c ] && exit 0\nmkdir -p "$3/bin"\necho "Error: ensurepip is not available" >&2\nexit 1\n'
    )
    python.chmod(0o755)
    venv = tmp_path / "venv"
    result = make("install-serve", f"PYTHON={python}", venv=venv)
    assert result.returncode != 0
    assert "install python3-venv" in result.stderr
    assert not venv.exists()  # no half-made environment for the next run to trust


def _gui_debs() -> set[str]:
    listing = make("-n", "gui-deps").stdout
    (line,) = [line for line in listing.splitlines() if "debian-packages.sh" in line]
    return set(line.split("debian-packages.sh", 1)[1].split())


def _qt_files() -> list[Path]:
    qt = pytest.importorskip("PyQt5")
    qt5 = Path(qt.__file__).parent / "Qt5"
    names = [f"lib/libQt5{name}.so.5" for name in ("Core", "Gui", "Widgets", "DBus", "XcbQpa")]
    files = [qt5 / "plugins" / "platforms" / "libqxcb.so", *(qt5 / name for name in names)]
    files += sorted((qt5 / "plugins" / "xcbglintegrations").glob("*.so"))
    return [f for f in files if f.is_file()]


def _debian_package_of(library: str) -> str | None:
    """The installed package that holds this library, else None (dpkg knows some by their /lib path)."""
    multiarch = sysconfig.get_config_var("MULTIARCH") or ""
    for directory in (Path("/usr/lib") / multiarch, Path("/lib") / multiarch, Path("/usr/lib")):
        if not (directory / library).exists():
            continue
        real = (directory / library).resolve()
        for path in (real, Path(str(real).replace("/usr/lib/", "/lib/", 1))):
            owner = subprocess.run(["dpkg", "-S", str(path)], capture_output=True, text=True)
            if owner.returncode == 0:
                return owner.stdout.split(":")[0]
    return None


def test_make_gui_installs_every_library_of_the_qt_xcb_plugin(needs_make: None) -> None:
    if shutil.which("readelf") is None or shutil.which("dpkg") is None:
        pytest.skip("needs readelf and dpkg (a Debian machine) to map libraries to packages")
    needed = set()
    for path in _qt_files():
        dynamic = subprocess.run(["readelf", "-d", str(path)], capture_output=True, text=True, check=True).stdout
        needed |= set(re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", dynamic))
    needed = {lib for lib in needed if not lib.startswith(("libQt5", "libicu", "ld-linux"))}
    assert "libxcb-icccm.so.4" in needed  # the plugin was read
    unknown, packages = [], set()
    for library in sorted(needed):
        package = _debian_package_of(library)
        if package is None:
            unknown.append(library)
        else:
            packages.add(package)
    assert not unknown, f"not installed, so no package to name: {unknown} (make gui-deps installs the listed ones)"
    missing = packages - BASE_DEBS - _gui_debs()
    assert not missing, f"the Makefile's GUI_DEBS does not name {sorted(missing)}"


def test_the_qt_xcb_plugin_loads() -> None:
    """What "Could not load the Qt platform plugin xcb" means: the plugin's libraries are not all installed."""
    (plugin, *_) = _qt_files()
    assert plugin.name == "libqxcb.so"
    load = f"import ctypes; ctypes.CDLL({str(plugin)!r})"
    result = subprocess.run([sys.executable, "-c", load], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"{result.stderr.strip().splitlines()[-1]} (make gui-deps installs them)"


def test_screenshots_refuse_without_the_data(needs_make: None, tmp_path: Path) -> None:
    docs = {p.name: p.read_bytes() for p in (ROOT / "docs").glob("*.png")}
    # PYTHON=false: were the check missed, the install would fail at once rather than install everything
    result = make("screenshots", f"DATA={tmp_path / 'nowhere'}", "PYTHON=false", venv=tmp_path / "venv")
    assert result.returncode != 0
    assert "Nothing was drawn" in result.stderr and 'README "Data"' in result.stderr
    assert "-m venv" not in result.stdout + result.stderr  # refused before installing anything
    assert {p.name: p.read_bytes() for p in (ROOT / "docs").glob("*.png")} == docs


def test_screenshots_with_the_data_redraw_docs_with_the_real_tests(needs_make: None) -> None:
    listing = make("-n", "screenshots", "DATA=/any/data").stdout  # -n lists; the data check runs only for real
    assert "SKINSCAN_SCREENSHOTS=1" in listing and "-k screenshot" in listing


def test_make_train_refuses_without_the_data(needs_make: None, tmp_path: Path) -> None:
    result = make("train", f"DATA={tmp_path / 'nowhere'}", "PYTHON=false", venv=tmp_path / "venv")
    assert result.returncode != 0 and "-m venv" not in result.stdout + result.stderr
    assert "ham10000 is missing" in result.stderr and 'README "Data"' in result.stderr


def test_missing_data_says_where_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist") as caught:
        load_records(tmp_path / "ham10000")
    message = str(caught.value)
    assert "\n" not in message and 'README\'s section "Data"' in message
    readme = (ROOT / "README.md").read_text()
    assert "\n## Data\n" in readme  # the section the message names


def test_the_cli_gives_the_hint_in_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKINSCAN_")}
    command = [sys.executable, "-m", "skinscan.cli", "evaluate", str(tmp_path / "data"), "--out", str(tmp_path / "r")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "where to get the public datasets" in result.stderr
