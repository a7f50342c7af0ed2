"""A loaded model's files as a server offers them for download (api/model_files.py): model.json and model.onnx,
each with its sha256 and size, hashed once when the model loads."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from skinscan.core.spec import ModelSpec
from skinscan.runtime.store import file_sha256


@dataclass(frozen=True)
class PublishedFile:
    """One file: served from memory (`content`, the small model.json) or from disk (`path`, checked unchanged)."""

    name: str
    sha256: str
    size: int
    path: Path | None = None
    stat: tuple[int, int] = (0, 0)  # size and modification time (ns) when it was hashed
    content: bytes | None = None

    def unchanged(self) -> bool:
        """Whether the file on disk is still the one hashed (always, for one held in memory)."""
        if self.path is None:
            return True
        try:
            info = self.path.stat()
        except OSError:
            return False
        return (info.st_size, info.st_mtime_ns) == self.stat


@dataclass(frozen=True)
class PublishedModel:
    id: str
    version: str
    files: dict[str, PublishedFile]


def publish(onnx: str | os.PathLike[str], spec: ModelSpec) -> PublishedModel:
    """Hash a model's files. model.json is the one beside model.onnx, or, for a model that carries its spec only
    inside, that spec written out (what the engine read either way).

    Raises:
        OSError: a file cannot be read.
    """
    onnx = Path(onnx)
    beside = onnx.with_name("model.json")
    spec_bytes = beside.read_bytes() if beside.is_file() else (spec.to_json() + "\n").encode("utf-8")
    before = onnx.stat()
    digest = file_sha256(onnx)
    files = {
        "model.json": PublishedFile(
            "model.json", hashlib.sha256(spec_bytes).hexdigest(), len(spec_bytes), content=spec_bytes
        ),
        "model.onnx": PublishedFile("model.onnx", digest, before.st_size, onnx, (before.st_size, before.st_mtime_ns)),
    }
    return PublishedModel(spec.id, spec.version, files)
