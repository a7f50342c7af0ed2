"""Synthetic "dermoscopy" for tests: skin-coloured backgrounds with a lesion-like blob.

Benign: small, round, evenly light-brown. Malignant: larger, irregular, dark and multi-coloured. Different
enough that a tiny network learns them in a few steps, so tests exercise real training and real inference.
"""

from __future__ import annotations

import io
import json
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def make_lesion(rng: np.random.Generator, malignant: bool, size: int = 96) -> Image.Image:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    skin = np.array([225, 180, 160], dtype=np.float32) + rng.normal(0, 8, 3)
    img = np.ones((size, size, 3), dtype=np.float32) * skin
    img += rng.normal(0, 4, (size, size, 1))
    cx, cy = size / 2 + rng.normal(0, size / 20, 2)
    angle = np.arctan2(yy - cy, xx - cx)
    radius = size * (0.28 if malignant else 0.16) * (1 + rng.uniform(0, 0.1))
    if malignant:  # ragged border
        radius = radius * (1 + 0.25 * np.sin(5 * angle + rng.uniform(0, 6)) + 0.1 * np.sin(11 * angle))
    inside = np.hypot(yy - cy, xx - cx) < radius
    colour = np.array([70, 40, 35]) if malignant else np.array([165, 115, 85])
    img[inside] = colour + rng.normal(0, 20 if malignant else 4, (int(inside.sum()), 3))
    if malignant:  # blue-grey veil patches
        veil = inside & (np.sin(xx / 3) * np.cos(yy / 4) > 0.5)
        img[veil] = [90, 95, 120]
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def lesion_bytes(malignant: bool = False, seed: int = 0, size: int = 96, fmt: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    make_lesion(np.random.default_rng(seed), malignant, size).save(buffer, format=fmt)
    return buffer.getvalue()


def write_dataset(root: Path, per_class: dict[str, int], seed: int = 0, size: int = 96) -> Path:
    """ROOT/SPLIT/{benign,malignant}/NNN.png with the given number of images per class and split."""
    rng = np.random.default_rng(seed)
    for split, n in per_class.items():
        for label in ("benign", "malignant"):
            folder = root / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                make_lesion(rng, label == "malignant", size).save(folder / f"{i:03d}.png")
    return root


def dicom_rgb_bytes(pixels: np.ndarray) -> bytes:
    """An 8-bit RGB secondary-capture DICOM file (with its DICM preamble) holding these pixels."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.set_pixel_data(pixels, "RGB", 8)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    """One PNG chunk: length, type, body and CRC."""
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_claiming(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR claiming width×height (8-bit RGB), with a few bytes of pixel data: a
    decompression bomb's header without the bomb (and, for small sizes, a PNG with a broken IDAT)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 16)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def versioned_copy(model_dir: Path, target: Path, version: str, **changes: object) -> Path:
    """The model's files with another version (and other changes) in its model.json: a "newer" model."""
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(model_dir / "model.onnx", target / "model.onnx")
    spec = json.loads((model_dir / "model.json").read_text())
    (target / "model.json").write_text(json.dumps({**spec, "version": version, **changes}, indent=1))
    return target
