"""Fuzzing the engine's image decoding with hypothesis: mutated real images and random bytes end in a prediction or
one of skinscan's own InvalidImageError family, never another exception, a crash or a hang.

A modest, derandomised run here; benchmarks/fuzz_decoding.py runs the same strategies with many more examples."""

from __future__ import annotations

import functools
import io
import time
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from skinscan.core.errors import InvalidImageError
from skinscan.runtime.engine import Engine
from synthetic import dicom_rgb_bytes, make_lesion

REAL_PHOTOS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "isic-mvb" / "test"
HANG_SECONDS = 10.0  # far above any honest decode of these small files, far below a stuck test run
FUZZ_SETTINGS = settings(
    max_examples=150,
    deadline=None,  # a loaded CI machine makes single examples slow; HANG_SECONDS catches real hangs
    derandomize=True,  # the same examples on every run: CI stays deterministic
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# Leading bytes of every kind the sniffer knows: random tails behind them reach each decoder's parser.
MAGICS = (
    b"\xff\xd8\xff\xe0", b"\xff\xd8\xff\xdb", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"GIF87a", b"II*\x00", b"MM\x00*",
    b"II+\x00", b"BM", b"RIFF\x00\x00\x00\x00WEBPVP8 ", b"\x00\x00\x00\x18ftypheic", b"\x00\x00\x00\x18ftypavif",
    b"\x00" * 128 + b"DICM", b"%PDF-", b"PK\x03\x04", b"<svg", b"\x1f\x8b",
)  # fmt: skip
INTERESTING_INTS = (0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 0x10000, 0x7FFFFFFF, 0xFFFFFFFF)


def _encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


@functools.cache
def seed_files() -> tuple[bytes, ...]:
    """Real dermoscopy JPEGs as they come (when ../shared/data is there) and one photo in every accepted format."""
    real = sorted(REAL_PHOTOS.rglob("*.jpg"))[:2] if REAL_PHOTOS.is_dir() else []
    photo = Image.open(real[0]).convert("RGB") if real else make_lesion(np.random.default_rng(0), True, 224)
    small = photo.resize((96, 96))
    frames = [small, small.rotate(90)]
    sixteen = Image.fromarray(np.asarray(small.convert("L"), dtype=np.uint16) * 257).convert("I;16")
    return (
        *(path.read_bytes() for path in real),
        _encode(small, "JPEG", quality=90),
        _encode(small, "JPEG", quality=80, progressive=True),
        _encode(small.convert("CMYK"), "JPEG"),
        _encode(small, "PNG"),
        _encode(sixteen, "PNG"),
        _encode(small.convert("RGBA"), "PNG"),
        _encode(small.convert("P"), "PNG", transparency=0),
        _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0),
        _encode(small, "BMP"),
        _encode(small, "TIFF", compression="tiff_deflate"),
        _encode(small, "WEBP", quality=80),
        dicom_rgb_bytes(np.asarray(small)),
    )


@st.composite
def mutated_files(draw: st.DrawFn) -> bytes:
    """A seed file with one to three mutations, biased towards the headers where the parsers make their decisions
    but mostly sparing the magic number (a file that lost it is only ever "not an image")."""
    data = bytearray(draw(st.sampled_from(seed_files())))
    for _ in range(draw(st.integers(1, 3))):
        size = len(data)
        pos = draw(st.one_of(st.integers(min(size, 8), min(size, 1024)), st.integers(0, size)))
        kind = draw(st.sampled_from(("flip", "byte", "int32", "truncate", "insert", "delete", "duplicate")))
        if kind == "flip" and pos < size:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "byte" and pos < size:
            data[pos] = draw(st.one_of(st.sampled_from((0, 0x7F, 0x80, 0xFF)), st.integers(0, 255)))
        elif kind == "int32":
            value = draw(st.sampled_from(INTERESTING_INTS))
            data[pos : pos + 4] = value.to_bytes(4, draw(st.sampled_from(("big", "little"))))
        elif kind == "truncate":
            del data[draw(st.integers(size // 4, size)) :]
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=32))
        elif kind == "delete":
            del data[pos : pos + draw(st.integers(1, 256))]
        elif kind == "duplicate":
            data[pos:pos] = data[pos : pos + draw(st.integers(1, 256))]
    return bytes(data)


def random_files() -> st.SearchStrategy[bytes]:
    """Random bytes, bare or behind the magic number of a known kind of file."""
    tails = st.binary(max_size=1024)
    return st.one_of(st.binary(max_size=2048), st.builds(lambda m, t: m + t, st.sampled_from(MAGICS), tails))


def fuzz_inputs() -> st.SearchStrategy[bytes]:
    return st.one_of(mutated_files(), random_files())


def judge(engine: Engine, data: bytes, *, heatmap: bool = False) -> str:
    """Predict `data` and name the outcome: "ok", "rejected" or the InvalidImageError subclass raised.

    Any other exception propagates (the property fails); so does a decode slower than HANG_SECONDS.
    """
    start = time.perf_counter()
    try:
        result = engine.predict(data, heatmap=heatmap)
    except InvalidImageError as exc:
        assert str(exc).strip() and "Traceback" not in str(exc)
        outcome = type(exc).__name__
    else:
        assert result.status in ("ok", "rejected")
        assert min(result.image_size) >= engine.min_side
        outcome = result.status
    elapsed = time.perf_counter() - start
    assert elapsed < HANG_SECONDS, f"{elapsed:.1f} s for {len(data)} bytes: a hang"
    return outcome


def test_seed_files_decode(engine: Engine) -> None:
    # the fuzzing starts from valid files: each seed must itself give a verdict (or a rejection, never an error)
    for data in seed_files():
        assert judge(engine, data) in ("ok", "rejected")


@FUZZ_SETTINGS
@given(data=mutated_files())
def test_mutated_images(engine: Engine, data: bytes) -> None:
    judge(engine, data, heatmap=True)


@FUZZ_SETTINGS
@given(data=random_files())
def test_random_bytes(engine: Engine, data: bytes) -> None:
    judge(engine, data)
