"""The local model store: the models `skinscan models pull` installed, a folder per version, and which one is active.

    <root>/models/<version>/      model.onnx, model.json and source.json (where it came from, its files' sha256)
    <root>/models/active          one line: the active version, or "bundled"

<root> is $SKINSCAN_HOME, else $XDG_DATA_HOME/skinscan, else ~/.local/share/skinscan. Reading the store (the engine's
default model, `skinscan models list`) writes nothing; only `install` and `use` write, each change by one rename, so
that a reader never sees a half-copied model or a half-written active file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from skinscan.core.errors import ModelFormatError, ModelNotFoundError
from skinscan.core.spec import METADATA_KEY, ModelSpec

HOME_ENV = "SKINSCAN_HOME"
BUNDLED = "bundled"  # the name `use` and `list` give the model that ships with skinscan
MODEL_FILES = ("model.json", "model.onnx")
SOURCE_FILE = "source.json"
ACTIVE_FILE = "active"
# a version names a folder: no separators, no leading dot (nothing hidden, no "..")
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")


def store_root() -> Path:
    """Where the store lives: $SKINSCAN_HOME, else $XDG_DATA_HOME/skinscan, else ~/.local/share/skinscan."""
    given = os.environ.get(HOME_ENV)
    if given:
        return Path(given).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    # the XDG specification: a relative path in the variable is invalid and ignored
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".local" / "share"
    return base / "skinscan"


def check_version_name(version: str) -> str:
    """`version` if it can name a store folder, else ModelFormatError."""
    if not _VERSION.fullmatch(version) or version == BUNDLED:
        raise ModelFormatError(
            f"the model's version {version!r} cannot be installed: a version is 1 to 64 letters, digits and . _ + -, "
            f"starting with a letter or digit, and not {BUNDLED!r}"
        )
    return version


def version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """A sort key that orders versions as people read them, 1.10 after 1.9 (a part with letters sorts after every
    number, by its text: pre-release conventions are not guessed at)."""
    parts = re.split(r"[.+_-]", version.strip().lstrip("vV"))
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in parts if p)


def is_newer(offered: str, current: str) -> bool:
    """Whether version `offered` comes after `current` (1.2.0 == 1.2: trailing zeros say nothing new)."""

    def trimmed(version: str) -> tuple[tuple[int, int | str], ...]:
        key = list(version_key(version))
        while key and key[-1] == (0, 0):
            key.pop()
        return tuple(key)

    return trimmed(offered) > trimmed(current)


def file_sha256(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def read_spec(model: str | os.PathLike[str]) -> ModelSpec:
    """A model's spec without running it: its model.json, else the spec inside model.onnx. `model`: either file or
    their folder."""
    path = Path(model)
    folder = path if path.is_dir() else path.parent
    beside = folder / "model.json"
    if beside.is_file():
        return ModelSpec.from_json(beside.read_text(encoding="utf-8"))
    from skinscan.runtime.session import import_onnxruntime

    onnx = folder / "model.onnx"
    try:
        session = import_onnxruntime().InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors for any unreadable file
        raise ModelFormatError(f"cannot load model {onnx}: {exc}") from exc
    meta = session.get_modelmeta().custom_metadata_map
    if METADATA_KEY not in meta:
        raise ModelFormatError(f"{onnx} carries no skinscan spec (no model.json beside it either)")
    return ModelSpec.from_json(meta[METADATA_KEY])


@dataclass(frozen=True)
class InstalledModel:
    """One model of the store (or the bundled one, `version` "bundled", when listed)."""

    version: str
    id: str
    path: Path  # its folder
    active: bool
    spec_version: str = ""  # the version its spec gives (the folder's name for an installed one)
    source: str = ""  # where it was pulled from
    installed: str = ""  # when (ISO time, UTC)


class ModelStore:
    """The store under `root` (default: `store_root()`)."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else store_root()
        self.models = self.root / "models"

    # --- reading (writes nothing) --------------------------------------------------------------------

    def active_version(self) -> str:
        """The active version, or BUNDLED when none is set."""
        file = self.models / ACTIVE_FILE
        try:
            text = file.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return BUNDLED
        except OSError as exc:
            raise ModelNotFoundError(f"cannot read the active model's name in {file}: {exc.strerror or exc}") from None
        if text != BUNDLED and not _VERSION.fullmatch(text):
            raise ModelNotFoundError(
                f"{file} names no model version ({text[:40]!r}): choose one with `skinscan models use VERSION`"
            )
        return text

    def active_path(self) -> Path | None:
        """The active installed model's model.onnx, or None for the bundled model.

        Raises:
            ModelNotFoundError: the active version's folder is gone (a model the user chose must not be swapped for
                another without a word).
        """
        version = self.active_version()
        if version == BUNDLED:
            return None
        onnx = self.models / version / "model.onnx"
        if not onnx.is_file():
            raise ModelNotFoundError(
                f"the active model {version} is missing from {onnx.parent}: pull it again, or choose another with "
                f"`skinscan models use VERSION` (`skinscan models use {BUNDLED}` for the bundled one)"
            )
        return onnx

    def installed(self) -> list[InstalledModel]:
        """The installed models, newest version first."""
        if not self.models.is_dir():
            return []
        active = self.active_version()
        found = []
        for folder in self.models.iterdir():
            if folder.name.startswith(".") or not (folder / "model.onnx").is_file():
                continue  # an install in progress, or something that is not a model
            source = _read_json(folder / SOURCE_FILE)
            try:
                spec = read_spec(folder)
                model_id, spec_version = spec.id, spec.version
            except ModelFormatError:
                model_id, spec_version = "(unreadable spec)", ""
            found.append(InstalledModel(
                folder.name, model_id, folder, folder.name == active, spec_version,
                str(source.get("source", "")), str(source.get("installed", "")),
            ))  # fmt: skip
        return sorted(found, key=lambda m: version_key(m.version), reverse=True)

    def versions(self) -> list[str]:
        return [m.version for m in self.installed()]

    # --- writing -------------------------------------------------------------------------------------

    def use(self, version: str) -> None:
        """Make `version` (an installed one, or BUNDLED) the active model.

        Raises:
            ModelNotFoundError: no such version is installed (the message lists those that are).
        """
        version = version.strip()
        installed = _VERSION.fullmatch(version) is not None and (self.models / version / "model.onnx").is_file()
        if version != BUNDLED and not installed:
            known = ", ".join([*self.versions(), BUNDLED])
            raise ModelNotFoundError(f"no installed model version {version!r}; installed: {known}")
        self.models.mkdir(parents=True, exist_ok=True)
        _write_atomically(self.models / ACTIVE_FILE, version + "\n")

    def install(
        self, folder: str | os.PathLike[str], *, source: str, activate: bool = True
    ) -> tuple[InstalledModel, bool]:
        """Copy a checked model (model.json + model.onnx in `folder`) into the store as its spec's version, and
        make it active unless `activate` is False. The version installed before stays. Returns the installed model
        and whether that version was already there with the same files (then nothing is copied).

        Raises:
            ModelFormatError: its version cannot name a folder, or is already installed with other files.
        """
        folder = Path(folder)
        spec = read_spec(folder)
        version = check_version_name(spec.version)
        hashes = {name: file_sha256(folder / name) for name in MODEL_FILES}
        target = self.models / version
        already = target.exists()
        if already:
            if {name: _sha_or_none(target / name) for name in MODEL_FILES} != hashes:
                raise ModelFormatError(
                    f"version {version} is already installed in {target} with other files: a changed model needs a "
                    "new version; nothing was installed"
                )
        else:
            self.models.mkdir(parents=True, exist_ok=True)
            incoming = Path(tempfile.mkdtemp(prefix=".incoming-", dir=self.models))
            try:
                for name in MODEL_FILES:
                    shutil.copyfile(folder / name, incoming / name)
                record = {"id": spec.id, "version": version, "source": source, "sha256": hashes,
                          "installed": datetime.now(UTC).isoformat(timespec="seconds")}  # fmt: skip
                (incoming / SOURCE_FILE).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
                os.rename(incoming, target)  # the folder appears whole, or not at all
            finally:
                shutil.rmtree(incoming, ignore_errors=True)  # gone after the rename; what a failed copy left
        if activate:
            self.use(version)
        record = _read_json(target / SOURCE_FILE)
        model = InstalledModel(version, spec.id, target, activate or self.active_version() == version, spec.version,
                               str(record.get("source", source)), str(record.get("installed", "")))  # fmt: skip
        return model, already


def active_model_path() -> Path | None:
    """The store's active model.onnx, or None when the bundled model is active (what the engine uses by default)."""
    return ModelStore().active_path()


def _sha_or_none(path: Path) -> str | None:
    return file_sha256(path) if path.is_file() else None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_atomically(path: Path, text: str) -> None:
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
