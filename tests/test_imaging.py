"""Tests for skinscan.runtime.imaging: every format, mode and refusal, built in memory."""

from __future__ import annotations

import gzip
import io
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, features

from skinscan.core.errors import ImageTooLargeError, ImageTooSmallError, InvalidImageError, UnsupportedFormatError
from skinscan.runtime.imaging import SUPPORTED_FORMATS, load_image, sniff_format
from synthetic import png_claiming


def _gradient(width: int = 64, height: int = 48) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None].repeat(width, 1)
    return Image.fromarray(np.stack([x, y, 255 - x], axis=-1).astype(np.uint8))


def _encode(img: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **params)
    return buffer.getvalue()


def _dicom(arr: np.ndarray | None, photometric: str = "", bits: int = 8, syntax: str = "", **elements: object) -> bytes:
    """A DICOM file with its preamble and "DICM" magic, holding `arr` (if given) as uncompressed pixels."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UID, ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.PatientName = "Nobody"
    if arr is not None:
        ds.set_pixel_data(arr, photometric, bits)
    if syntax:
        ds.file_meta.TransferSyntaxUID = UID(syntax)
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _assert_clean_error(exc: BaseException) -> None:
    assert isinstance(exc, InvalidImageError)
    message = str(exc)
    assert message.strip()
    assert "Traceback" not in message and 'File "' not in message


# --- round trips -------------------------------------------------------------------------------------------------

ROUND_TRIPS = [  # (Pillow format, save params, largest mean abs difference allowed)
    ("JPEG", {"quality": 95}, 4.0),
    ("PNG", {}, 0.0),
    ("BMP", {}, 0.0),
    ("TIFF", {}, 0.0),
    ("TIFF", {"compression": "tiff_deflate"}, 0.0),
    ("WEBP", {"lossless": True}, 0.0),
    ("WEBP", {"quality": 90}, 6.0),
    ("GIF", {}, 12.0),
]


@pytest.mark.parametrize(("fmt", "params", "tolerance"), ROUND_TRIPS)
def test_round_trip(fmt: str, params: dict[str, object], tolerance: float) -> None:
    original = _gradient()
    img = load_image(_encode(original, fmt, **params))
    assert img.mode == "RGB" and img.size == original.size
    diff = np.abs(np.asarray(img, dtype=np.int16) - np.asarray(original, dtype=np.int16))
    assert diff.mean() <= tolerance


def test_gif_first_frame() -> None:
    frames = [Image.new("RGB", (40, 40), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    data = _encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert load_image(data).getpixel((20, 20)) == (255, 0, 0)


def test_heif() -> None:
    pillow_heif = pytest.importorskip("pillow_heif")
    if not pillow_heif.libheif_info()["HEIF"]:
        pytest.skip("libheif has no HEVC encoder here")
    buffer = io.BytesIO()
    pillow_heif.from_pillow(Image.new("RGB", (64, 48), (200, 30, 30))).save(buffer, quality=90)
    assert sniff_format(buffer.getvalue()) == "heif"
    img = load_image(buffer.getvalue())
    assert img.mode == "RGB" and img.size == (64, 48)
    assert np.allclose(np.asarray(img)[24, 32], (200, 30, 30), atol=12)


@pytest.mark.skipif(not features.check("avif"), reason="Pillow built without AVIF")
def test_avif() -> None:
    data = _encode(Image.new("RGB", (64, 48), (30, 200, 30)), "AVIF", speed=10, quality=90)
    assert sniff_format(data) == "avif"
    assert np.allclose(np.asarray(load_image(data))[24, 32], (30, 200, 30), atol=12)


# --- sources -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("wrap", ["bytes", "bytearray", "memoryview", "stream", "str", "path"])
def test_sources(wrap: str, tmp_path: Path) -> None:
    data = _encode(_gradient(), "PNG")
    file = tmp_path / "photo.txt"  # a misleading name: the format comes from the bytes
    file.write_bytes(data)
    sources: dict[str, object] = {
        "bytes": data,
        "bytearray": bytearray(data),
        "memoryview": memoryview(data),
        "stream": io.BytesIO(data),
        "str": str(file),
        "path": file,
    }
    img = load_image(sources[wrap])  # type: ignore[arg-type]
    file.unlink()  # the image must not depend on the file any more
    assert img.size == (64, 48) and np.asarray(img).shape == (48, 64, 3)
    assert getattr(img, "fp", None) is None


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidImageError, match="cannot read") as info:
        load_image(tmp_path / "absent.jpg")
    _assert_clean_error(info.value)


# --- modes -------------------------------------------------------------------------------------------------------


def _exif_rotated() -> bytes:
    img = Image.new("RGB", (60, 40), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 30, 40))  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    return _encode(img, "JPEG", exif=exif.tobytes(), quality=95)


def _rgba() -> bytes:
    img = Image.new("RGBA", (40, 40), (255, 0, 0, 255))
    img.paste((0, 0, 0, 0), (0, 0, 20, 40))
    return _encode(img, "PNG")


def _palette_with_transparency() -> bytes:
    img = Image.new("P", (40, 40), 1)
    img.putpalette([0, 0, 0, 255, 0, 0])
    img.paste(0, (0, 0, 20, 40))
    return _encode(img, "PNG", transparency=0)


def _la() -> bytes:
    img = Image.new("LA", (40, 40), (100, 255))
    img.paste((0, 0), (0, 0, 20, 40))
    return _encode(img, "PNG")


def _sixteen_bit() -> bytes:
    arr = np.tile(np.linspace(1000, 3000, 40, dtype=np.uint16), (40, 1))  # a narrow slice of the 16-bit range
    return _encode(Image.fromarray(arr), "PNG")


def _float_tiff() -> bytes:
    return _encode(Image.fromarray(np.tile(np.linspace(-1, 1, 40, dtype=np.float32), (40, 1))), "TIFF")


MODE_CASES: list[tuple[str, Callable[[], bytes], tuple[int, int], dict[tuple[int, int], tuple[int, int, int]]]] = [
    # (name, builder, output size, {pixel: expected RGB})
    ("exif orientation 6", _exif_rotated, (40, 60), {(20, 5): (255, 0, 0), (20, 55): (0, 0, 255)}),
    ("RGBA over white", _rgba, (40, 40), {(5, 5): (255, 255, 255), (35, 5): (255, 0, 0)}),
    ("P with transparency", _palette_with_transparency, (40, 40), {(5, 5): (255, 255, 255), (35, 5): (255, 0, 0)}),
    ("LA", _la, (40, 40), {(5, 5): (255, 255, 255), (35, 5): (100, 100, 100)}),
    ("L", lambda: _encode(Image.new("L", (40, 40), 77), "PNG"), (40, 40), {(5, 5): (77, 77, 77)}),
    ("1", lambda: _encode(Image.new("1", (40, 40), 1), "PNG"), (40, 40), {(5, 5): (255, 255, 255)}),
    ("P", lambda: _encode(_gradient().convert("P"), "PNG"), (64, 48), {}),
    ("I;16", _sixteen_bit, (40, 40), {(0, 0): (0, 0, 0), (39, 0): (255, 255, 255)}),
    ("F", _float_tiff, (40, 40), {(0, 0): (0, 0, 0), (39, 0): (255, 255, 255)}),
    ("CMYK JPEG", lambda: _encode(Image.new("CMYK", (40, 40), (255, 0, 0, 0)), "JPEG", quality=95), (40, 40), {}),
]


@pytest.mark.parametrize(
    ("builder", "size", "pixels"), [case[1:] for case in MODE_CASES], ids=[c[0] for c in MODE_CASES]
)
def test_modes(
    builder: Callable[[], bytes], size: tuple[int, int], pixels: dict[tuple[int, int], tuple[int, int, int]]
) -> None:
    img = load_image(builder())
    assert img.mode == "RGB" and img.size == size
    for xy, expected in pixels.items():
        actual = np.asarray(img)[xy[1], xy[0]]
        assert np.allclose(actual, expected, atol=8), (xy, actual)


def test_sixteen_bit_uses_full_range() -> None:
    values = np.asarray(load_image(_sixteen_bit()))
    assert values.min() == 0 and values.max() == 255 and len(np.unique(values)) > 30


def test_cmyk_jpeg_is_cyan() -> None:
    data = _encode(Image.new("CMYK", (40, 40), (255, 0, 0, 0)), "JPEG", quality=95)
    assert np.allclose(np.asarray(load_image(data))[20, 20], (0, 255, 255), atol=8)


# --- DICOM -------------------------------------------------------------------------------------------------------


def test_dicom_rgb() -> None:
    data = _dicom(np.asarray(_gradient()), "RGB", 8)
    assert sniff_format(data) == "dicom"
    img = load_image(data)
    assert img.mode == "RGB" and np.array_equal(np.asarray(img), np.asarray(_gradient()))


def test_dicom_monochrome2_sixteen_bit() -> None:
    arr = np.tile(np.linspace(0, 4095, 64, dtype=np.uint16), (48, 1))
    values = np.asarray(load_image(_dicom(arr, "MONOCHROME2", 12)))
    assert values.shape == (48, 64, 3) and values[0, 0, 0] == 0 and values[0, -1, 0] == 255


def test_dicom_monochrome1_is_inverted() -> None:
    arr = np.tile(np.linspace(0, 4095, 64, dtype=np.uint16), (48, 1))
    values = np.asarray(load_image(_dicom(arr, "MONOCHROME1", 12)))
    assert values[0, 0, 0] == 255 and values[0, -1, 0] == 0


def test_dicom_window() -> None:
    arr = np.tile(np.linspace(0, 4000, 64, dtype=np.uint16), (48, 1))
    values = np.asarray(load_image(_dicom(arr, "MONOCHROME2", 12, WindowCenter=1000, WindowWidth=1000)))
    assert values[0, 0, 0] == 0 and values[0, -1, 0] == 255  # clipped beyond the window
    assert 0 < values[0, 16, 0] < 255  # 1016 sits inside [500, 1500]


def test_dicom_without_pixels() -> None:
    with pytest.raises(InvalidImageError, match="no pixel data") as info:
        load_image(_dicom(None))
    assert type(info.value) is InvalidImageError
    _assert_clean_error(info.value)


def test_dicom_without_decoder() -> None:
    from pydicom.encaps import encapsulate
    from pydicom.pixels import get_decoder
    from pydicom.uid import JPEGLSLossless

    if get_decoder(JPEGLSLossless).is_available:
        pytest.skip("a JPEG-LS decoder is installed here")
    frame = b"\xff\xd8\xff\xf7" + bytes(60)  # a JPEG-LS start; never decoded
    data = _dicom(np.zeros((40, 40), np.uint8), "MONOCHROME2", 8, syntax=JPEGLSLossless, PixelData=encapsulate([frame]))
    with pytest.raises(UnsupportedFormatError, match="JPEG-LS") as info:
        load_image(data)
    _assert_clean_error(info.value)


def test_dicom_corrupt_pixels() -> None:
    data = _dicom(np.zeros((40, 40), np.uint16), "MONOCHROME2", 12)
    with pytest.raises(InvalidImageError, match="corrupt DICOM"):
        load_image(data[:-100])


# --- refusals ----------------------------------------------------------------------------------------------------


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("word/document.xml", "<w:document/>")
    return buffer.getvalue()


def _truncated_jpeg() -> bytes:
    noise = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    data = _encode(Image.fromarray(noise), "JPEG", quality=90)
    return data[: len(data) // 2]


ERROR_CASES: list[tuple[str, Callable[[], bytes], type[InvalidImageError], str]] = [
    ("empty", lambda: b"", InvalidImageError, "empty file"),
    ("random bytes", lambda: np.random.default_rng(1).bytes(2000), InvalidImageError, "not an image"),
    ("truncated JPEG", _truncated_jpeg, InvalidImageError, "corrupt or truncated"),
    ("corrupt PNG", lambda: _encode(_gradient(), "PNG")[:60] + b"\x00" * 40, InvalidImageError, "corrupt"),
    (
        "fake HEIF",
        lambda: b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64,
        InvalidImageError,
        "corrupt",
    ),
    ("text", lambda: b"Hello, this is a note about my mole.\n", UnsupportedFormatError, "plain-text"),
    ("text starting BM", lambda: b"BMW is a car, not a bitmap\n", UnsupportedFormatError, "plain-text"),
    ("SVG", lambda: b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>', UnsupportedFormatError, "SVG"),
    ("HTML", lambda: b"<!DOCTYPE html><html><body>hi</body></html>", UnsupportedFormatError, "HTML"),
    ("PDF", lambda: b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", UnsupportedFormatError, "PDF"),
    ("zip/docx", _zip, UnsupportedFormatError, "ZIP"),
    ("gzip", lambda: gzip.compress(b"hello"), UnsupportedFormatError, "gzip"),
    ("MP4", lambda: b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + b"\x00" * 64, UnsupportedFormatError, "MP4"),
    ("too small", lambda: _encode(Image.new("RGB", (20, 20)), "PNG"), ImageTooSmallError, "at least 32"),
    ("thin", lambda: _encode(Image.new("RGB", (400, 10)), "PNG"), ImageTooSmallError, "400×10"),
    ("too many pixels", lambda: png_claiming(8000, 8000), ImageTooLargeError, "too large"),
    ("Pillow warns", lambda: png_claiming(10_000, 10_000), ImageTooLargeError, "too large"),
    ("Pillow refuses", lambda: png_claiming(50_000, 50_000), ImageTooLargeError, "too large"),
    ("DICOM too small", lambda: _dicom(np.zeros((8, 8), np.uint8), "MONOCHROME2", 8), ImageTooSmallError, "8×8"),
]


@pytest.mark.parametrize(("builder", "error", "message"), [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES])
def test_errors(builder: Callable[[], bytes], error: type[InvalidImageError], message: str) -> None:
    data = builder()
    started = time.perf_counter()
    with pytest.raises(error, match=message) as info:
        load_image(data)
    assert type(info.value) is error
    assert time.perf_counter() - started < 1.0  # size refusals must come from the header, not a decode
    _assert_clean_error(info.value)


def test_max_pixels_is_per_call() -> None:
    data = _encode(_gradient(100, 100), "PNG")
    with pytest.raises(ImageTooLargeError):
        load_image(data, max_pixels=5_000)
    assert load_image(data).size == (100, 100)
    assert Image.MAX_IMAGE_PIXELS == 1024 * 1024 * 1024 // 4 // 3  # Pillow's global is left alone


@pytest.mark.parametrize("wrap", [bytes, io.BytesIO])
def test_max_bytes(wrap: Callable[[bytes], object]) -> None:
    data = _encode(_gradient(), "PNG")
    with pytest.raises(ImageTooLargeError, match="bytes") as info:
        load_image(wrap(data), max_bytes=len(data) - 1)  # type: ignore[arg-type]
    _assert_clean_error(info.value)
    assert load_image(wrap(data), max_bytes=len(data)).size == (64, 48)  # type: ignore[arg-type]


# --- draft -------------------------------------------------------------------------------------------------------


def test_draft_shrinks_large_jpeg() -> None:
    data = _encode(_gradient(4000, 3000), "JPEG", quality=80)
    img = load_image(data, draft_size=224)
    assert min(img.size) >= 224 and img.width <= 1000
    assert img.size == (500, 375)  # 1/8 scale is the largest that keeps both sides >= 224
    # The limits judge the file as sent, not the reduced decode.
    assert load_image(data, draft_size=224, min_side=2000).size == (500, 375)
    with pytest.raises(ImageTooLargeError):
        load_image(data, draft_size=224, max_pixels=1_000_000)


def test_draft_ignored_for_png() -> None:
    assert load_image(_encode(_gradient(), "PNG"), draft_size=32).size == (64, 48)


# --- sniffing ----------------------------------------------------------------------------------------------------

SNIFF_CASES = [
    (_encode(_gradient(), "JPEG"), "jpeg"),
    (_encode(_gradient(), "PNG"), "png"),
    (_encode(_gradient(), "BMP"), "bmp"),
    (_encode(_gradient(), "TIFF"), "tiff"),
    (_encode(_gradient(), "WEBP"), "webp"),
    (_encode(_gradient(), "GIF"), "gif"),
    (b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00qt  ", "mov"),
    (b"Rar!\x1a\x07\x01\x00", "rar"),
    (b"7z\xbc\xaf\x27\x1c\x00\x04", "7z"),
    (b"8BPS\x00\x01", "psd"),
    (b"\x00\x00\x01\x00\x01\x00\x10\x10", "ico"),
    (b"\xff\xfeh\x00i\x00", "text"),
    (("caf\u00e9 " * 1000).encode(), "text"),  # the 4 KiB sample ends inside a UTF-8 character
    (b"\x00\x01", None),
    (b"\x00\x01\x02\x03binary", None),
    (b"", None),
]


@pytest.mark.parametrize(("data", "kind"), SNIFF_CASES, ids=[str(kind) for _, kind in SNIFF_CASES])
def test_sniff_format(data: bytes, kind: str | None) -> None:
    assert sniff_format(data) == kind


def test_supported_formats_are_sniffable() -> None:
    assert {"jpeg", "png", "bmp", "tiff", "webp", "gif", "heif", "dicom"} <= SUPPORTED_FORMATS


def test_import_is_light() -> None:
    code = "import sys, skinscan.runtime.imaging; print(sorted({'torch', 'pydicom', 'pillow_heif'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
