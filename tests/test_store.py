"""The local model store and `skinscan models`: pull from a folder, a web host's files and a real skinscan server,
each file's sha256 checked and the model run once before it is installed; `use` switches back (and predict then
answers with that version); every failure is one line, and leaves the store as it was."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from file_server import closed_port, file_server
from live_server import live_server, plain_settings
from skinscan.cli import main
from skinscan.runtime.engine import Engine, bundled_model_path, resolve_model_path
from skinscan.runtime.store import BUNDLED, ModelStore, is_newer
from synthetic import lesion_bytes, versioned_copy

ROOT = Path(__file__).resolve().parents[1]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_checksums(folder: Path) -> None:
    lines = [f"{sha(folder / name)}  {name}" for name in ("model.json", "model.onnx")]
    (folder / "SHA256SUMS").write_text("\n".join(lines) + "\n")


def flip_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's own store ($SKINSCAN_HOME)."""
    root = tmp_path / "skinscan-home"
    monkeypatch.setenv("SKINSCAN_HOME", str(root))
    monkeypatch.delenv("SKINSCAN_MODEL", raising=False)
    monkeypatch.delenv("SKINSCAN_API_KEY", raising=False)
    return root


@pytest.fixture(scope="module")
def newer(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return versioned_copy(tiny_model_dir, tmp_path_factory.mktemp("newer") / "model", "9.9.9")


@pytest.fixture(scope="module")
def newer_server(newer: Path) -> Iterator[str]:
    """A real uvicorn serving the newer model (so offering it at /model/files)."""
    from skinscan.api.app import create_app

    with live_server(create_app(engine=Engine(newer, threads=1), settings=plain_settings())) as url:
        yield url


def store_state(home: Path) -> list[str]:
    """Every file of the store, with its hash: what a refused pull must leave untouched."""
    if not home.exists():
        return []
    return sorted(f"{p.relative_to(home)} {sha(p)}" for p in home.rglob("*") if p.is_file())


def predicted_version(photo: Path, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert main(["predict", str(photo), "--json", "--no-checks"]) == 0
    return str(json.loads(capsys.readouterr().out)["model"]["version"])


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("skinscan: error: "), err
    return err


def test_pull_from_a_folder_installs_it_and_makes_it_the_default(
    home: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", "pull", str(tiny_model_dir)]) == 0
    assert "1.0.0: installed" in capsys.readouterr().out
    store = ModelStore()
    assert store.active_version() == "1.0.0" and store.versions() == ["1.0.0"]
    installed = home / "models" / "1.0.0"
    assert resolve_model_path(None) == installed / "model.onnx"
    assert Engine(threads=1).spec.version == "1.0.0"
    assert sha(installed / "model.onnx") == sha(tiny_model_dir / "model.onnx")
    # the same again: nothing copied, still one version; the path of model.json works as its folder does
    assert main(["models", "pull", str(tiny_model_dir / "model.json")]) == 0
    assert "already installed" in capsys.readouterr().out and store.versions() == ["1.0.0"]
    assert main(["models"]) == 0
    listing = capsys.readouterr().out
    assert "* 1.0.0" in listing and BUNDLED in listing


def test_pull_from_a_server_then_use_switches_back(
    home: Path, tiny_model_dir: Path, newer_server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photo = tmp_path / "mole.jpg"
    photo.write_bytes(lesion_bytes(True, seed=3))
    assert main(["models", "pull", str(tiny_model_dir)]) == 0
    assert main(["models", "pull", newer_server]) == 0
    out = capsys.readouterr().out
    assert "9.9.9: installed" in out and "model.onnx (published sha256)" in out and "active: 9.9.9" in out
    assert ModelStore().versions() == ["9.9.9", "1.0.0"]  # the previous one is kept
    assert predicted_version(photo, capsys) == "9.9.9"
    assert main(["models", "use", "1.0.0"]) == 0
    assert predicted_version(photo, capsys) == "1.0.0"
    assert main(["models", "use", BUNDLED]) == 0
    assert resolve_model_path(None) == bundled_model_path()
    # --no-use installs without switching
    assert main(["models", "use", "1.0.0"]) == 0
    shutil.rmtree(home / "models" / "9.9.9")
    assert main(["models", "pull", newer_server, "--no-use"]) == 0
    assert ModelStore().active_version() == "1.0.0" and "9.9.9" in ModelStore().versions()


def test_a_tampered_file_is_refused_and_nothing_is_installed(
    home: Path, tiny_model_dir: Path, newer: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", "pull", str(tiny_model_dir)]) == 0
    before = store_state(home)
    hosted = versioned_copy(newer, tmp_path / "hosted", "9.9.9")
    write_checksums(hosted)
    flip_one_byte(hosted / "model.onnx")  # after its hash was published: changed on the way
    with file_server(hosted) as url:
        assert main(["models", "pull", url]) == 1
    assert "model.onnx from" in one_error_line(capsys)
    # the same files in a local folder with their SHA256SUMS
    assert main(["models", "pull", str(hosted)]) == 1
    assert "is not the file its publisher hashed" in one_error_line(capsys)
    assert store_state(home) == before and ModelStore().active_version() == "1.0.0"
    assert not list((home / "models").glob(".incoming-*"))


def test_a_file_changed_under_a_server_is_not_offered(
    home: Path, newer: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from skinscan.api.app import create_app

    served = versioned_copy(newer, tmp_path / "served", "9.9.9")
    with live_server(create_app(engine=Engine(served, threads=1), settings=plain_settings())) as url:
        flip_one_byte(served / "model.onnx")
        assert main(["models", "pull", url]) == 1
    assert "409" in one_error_line(capsys) and store_state(home) == []


def test_a_download_without_published_hashes_needs_them_given(
    home: Path, newer: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hosted = versioned_copy(newer, tmp_path / "hosted", "9.9.9")
    hashes = [sha(hosted / "model.json"), sha(hosted / "model.onnx")]
    with file_server(hosted) as url:
        assert main(["models", "pull", url]) == 1
        assert "publishes no sha256 for model.json and model.onnx" in one_error_line(capsys)
        assert main(["models", "pull", url + "model.onnx", "--sha256", hashes[1]]) == 1  # model.json unverified
        assert "publishes no sha256 for model.json" in one_error_line(capsys)
        assert main(["models", "pull", url, "--sha256", hashes[1], "--sha256", "ab" * 32]) == 1
        assert "matches none of the files" in one_error_line(capsys)
        assert store_state(home) == []
        assert main(["models", "pull", url, "--sha256", hashes[0], "--sha256", hashes[1].upper()]) == 0
    assert "(given sha256)" in capsys.readouterr().out and ModelStore().active_version() == "9.9.9"


def broken_models(tiny_model_dir: Path, root: Path) -> dict[str, Path]:
    junk = versioned_copy(tiny_model_dir, root / "junk", "2.0.0")
    (junk / "model.onnx").write_bytes(b"not an onnx graph at all")
    return {
        "junk": junk,
        "classes": versioned_copy(tiny_model_dir, root / "classes", "2.0.0", class_names=["benign", "benign"]),
        "outputs": versioned_copy(
            tiny_model_dir, root / "outputs", "2.0.0", outputs=["logit", "cam", "ood", "features", "segmentation"]
        ),
        "version": versioned_copy(tiny_model_dir, root / "version", "../../etc"),
    }


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("junk", "cannot load model"),
        ("classes", "class names must be two different names"),
        ("outputs", "has no output segmentation"),
        ("version", "cannot be installed"),
        ("unknown version", "no installed model version '7.7.7'; installed: 1.0.0, bundled"),
        ("network down", "cannot reach http://127.0.0.1:"),
        ("too large", "over the limit of 0.0 MB"),
        ("no such path", "no such file or folder"),
        ("not a model file", "is not a model"),
        ("scheme", "give a folder, a model.json or model.onnx, or an http(s) URL"),
        ("bad hash", "--sha256 takes 64 hexadecimal digits"),
    ],
)
def test_each_failure_is_one_line_and_changes_nothing(
    case: str, message: str, home: Path, tiny_model_dir: Path, newer_server: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    assert main(["models", "pull", str(tiny_model_dir)]) == 0
    before = store_state(home)
    capsys.readouterr()
    broken = broken_models(tiny_model_dir, tmp_path) if case in ("junk", "classes", "outputs", "version") else {}
    args = {
        "unknown version": ["use", "7.7.7"],
        "network down": ["pull", f"http://127.0.0.1:{closed_port()}/"],
        "too large": ["pull", newer_server, "--max-mb", "0.00001"],
        "no such path": ["pull", str(tmp_path / "nowhere")],
        "not a model file": ["pull", str(tmp_path / "notes.txt")],
        "scheme": ["pull", "ftp://example.org/model/"],
        "bad hash": ["pull", newer_server, "--sha256", "xyz"],
    }.get(case) or ["pull", str(broken[case])]
    (tmp_path / "notes.txt").write_text("not a model")
    code = main(["models", *args])
    assert code == (2 if case == "bad hash" else 1)
    assert message in one_error_line(capsys)
    assert store_state(home) == before


def fresh_home_env(home: Path) -> dict[str, str]:
    """The environment of a user whose home is `home`: no SKINSCAN_* or XDG data folder set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SKINSCAN_", "ORT_", "XDG_"))}
    return {**env, "HOME": str(home)}


def test_the_default_store_is_in_the_home_and_only_pull_and_use_write_it(tiny_model_dir: Path, tmp_path: Path) -> None:
    if not (ROOT / "models" / "model.onnx").is_file():
        pytest.skip("no bundled model in models/")
    home = tmp_path / "home"
    home.mkdir()
    env = fresh_home_env(home)
    cli = [sys.executable, "-m", "skinscan.cli"]
    photo = tmp_path / "mole.jpg"
    photo.write_bytes(lesion_bytes(seed=2))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cli, *args], capture_output=True, text=True, timeout=180, env=env)

    judged = run("predict", str(photo), "--json")
    assert judged.returncode == 0, judged.stderr
    assert (
        json.loads(judged.stdout)["model"]["version"]
        == json.loads((ROOT / "models" / "model.json").read_text())["version"]
    )
    assert list(home.rglob("*")) == []  # the bundled model: the store is only read, and there is none
    pulled = run("models", "pull", str(tiny_model_dir))
    assert pulled.returncode == 0, pulled.stderr
    store = home / ".local" / "share" / "skinscan" / "models"
    assert (store / "1.0.0" / "model.onnx").is_file() and (store / "active").read_text().strip() == "1.0.0"
    written = sorted(p.relative_to(home).as_posix() for p in home.rglob("*"))
    judged = run("predict", str(photo), "--json")
    assert judged.returncode == 0 and json.loads(judged.stdout)["model"]["version"] == "1.0.0"
    assert sorted(p.relative_to(home).as_posix() for p in home.rglob("*")) == written
    bad = run("models", "use", "nope")
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr


def test_an_active_model_that_is_gone_is_said_not_replaced(home: Path, tiny_model_dir: Path) -> None:
    assert main(["models", "pull", str(tiny_model_dir)]) == 0
    shutil.rmtree(home / "models" / "1.0.0")
    from skinscan.core.errors import ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match=r"the active model 1\.0\.0 is missing"):
        resolve_model_path(None)


@pytest.mark.parametrize(
    ("offered", "current", "newer"),
    [("9.9.9", "1.0.0", True), ("1.10.0", "1.9.0", True), ("1.2", "1.2.0", False), ("2.0.0", "2.0.0", False),
     ("1.0.0", "2.0.0", False), ("v2.1", "2.0", True), ("2.0.1-rc1", "2.0.1", True)],
)  # fmt: skip
def test_versions_compare_as_people_read_them(offered: str, current: str, newer: bool) -> None:
    assert is_newer(offered, current) is newer
