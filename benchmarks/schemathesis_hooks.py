"""Schemathesis hooks for fuzz_api.py: file fields (`format: binary`) get real photos and broken or hostile files
as well as the random bytes schemathesis makes up, so the fuzzing reaches the verdict responses too."""

from __future__ import annotations

import schemathesis
from hypothesis import strategies as st

from common import base_photo, encode, upload_images
from synthetic import png_claiming


def _files() -> list[bytes]:
    photo = base_photo()
    photos = [*upload_images(3), encode(photo, "PNG"), encode(photo.convert("CMYK"), "JPEG")]
    hostile = [
        photos[0][: len(photos[0]) // 2],
        png_claiming(50_000, 50_000),
        encode(photo.resize((4, 4)), "PNG"),
        b"<svg xmlns='http://www.w3.org/2000/svg'/>",
        b"%PDF-1.4\n",
        b"",
    ]
    return photos + hostile


schemathesis.openapi.format("binary", st.one_of(st.sampled_from(_files()), st.binary(max_size=4096)))
