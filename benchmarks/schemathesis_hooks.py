"""Schemathesis hooks for fuzz_api.py: file fields (`format: binary`) get real photos and broken or hostile files
as well as the random bytes schemathesis makes up, so the fuzzing reaches the verdict responses too."""

from __future__ import annotations

import struct
import zlib

import schemathesis
from hypothesis import strategies as st

from common import base_photo, encode, upload_images


def _png_claiming(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")
    )


def _files() -> list[bytes]:
    photo = base_photo()
    photos = [*upload_images(3), encode(photo, "PNG"), encode(photo.convert("CMYK"), "JPEG")]
    hostile = [
        photos[0][: len(photos[0]) // 2],
        _png_claiming(50_000, 50_000),
        encode(photo.resize((4, 4)), "PNG"),
        b"<svg xmlns='http://www.w3.org/2000/svg'/>",
        b"%PDF-1.4\n",
        b"",
    ]
    return photos + hostile


schemathesis.openapi.format("binary", st.one_of(st.sampled_from(_files()), st.binary(max_size=4096)))
