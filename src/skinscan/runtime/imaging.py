"""Decoding any user-supplied image (photo formats, HEIC, DICOM) into a loaded RGB Pillow image, safely."""

from __future__ import annotations

import functools
import io
import os
import struct
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np
from PIL import Image, ImageOps

from skinscan.core.errors import ImageTooLargeError, ImageTooSmallError, InvalidImageError, UnsupportedFormatError

if TYPE_CHECKING:
    from numpy.typing import NDArray

ImageSource = bytes | bytearray | memoryview | str | os.PathLike[str] | BinaryIO

# Kinds decoded by Pillow, each only by the plugin of the same (upper-case) name: restricting Pillow keeps its
# rarer parsers (and EPS, which shells out to Ghostscript) away from untrusted uploads.
_PILLOW_KINDS = ("jpeg", "png", "bmp", "tiff", "webp", "gif", "heif", "avif")
SUPPORTED_FORMATS = frozenset({*_PILLOW_KINDS, "dicom"})
_SUPPORTED_TEXT = "JPEG, PNG, HEIC, WebP, TIFF, BMP, GIF or DICOM"
# file names that folder walks (predict, the desktop app, dataset readers) take for images
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".heic", ".heif", ".dcm", ".gif"}
)

# Kinds sniff_format recognises but load_image refuses, with the words a user sees.
_UNSUPPORTED_NAMES = {
    "svg": "an SVG drawing",
    "xml": "an XML document",
    "html": "an HTML page",
    "text": "a plain-text file",
    "pdf": "a PDF document",
    "zip": "a ZIP archive (or a docx/xlsx/pptx document)",
    "gzip": "a gzip archive",
    "rar": "a RAR archive",
    "7z": "a 7-Zip archive",
    "mp4": "an MP4 video",
    "mov": "a QuickTime (MOV) video",
    "ico": "a Windows icon",
    "psd": "a Photoshop document",
    "jpeg2000": "a JPEG 2000 image",
}

# Whatever a decoder throws at malformed input. Fuzzing shows Pillow and pydicom raise more than OSError on hostile
# files; MemoryError is deliberately absent so that a real out-of-memory is not reported as a bad upload.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, KeyError, TypeError,
                  ZeroDivisionError, RuntimeError)  # fmt: skip

_MAGIC = {
    "jpeg": (b"\xff\xd8\xff",),
    "png": (b"\x89PNG\r\n\x1a\n",),
    "gif": (b"GIF87a", b"GIF89a"),
    "tiff": (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"),  # classic and BigTIFF, both byte orders
    "pdf": (b"%PDF-",),
    "zip": (b"PK\x03\x04", b"PK\x05\x06"),
    "gzip": (b"\x1f\x8b",),
    "rar": (b"Rar!\x1a\x07",),
    "7z": (b"7z\xbc\xaf\x27\x1c",),
    "psd": (b"8BPS",),
    "jpeg2000": (b"\x00\x00\x00\x0cjP  \r\n\x87\n", b"\xff\x4f\xff\x51"),
}
_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1"}
_AVIF_BRANDS = {b"avif", b"avis"}
_BMP_HEADER_SIZES = {12, 16, 40, 52, 56, 64, 108, 124}

_SNIFF_BYTES = 4096  # enough for every magic number, the ftyp brands, and a fair judgement of text


def sniff_format(data: bytes) -> str | None:
    """Name the kind of file `data` holds, from its leading bytes only.

    Returns:
        A short lowercase name ("jpeg", "png", "heif", "dicom", "svg", "pdf", "zip", "text", ...), or None when the
        bytes match nothing known. Names in SUPPORTED_FORMATS are decodable; the others are recognised refusals.
    """
    head = bytes(data[:_SNIFF_BYTES])
    if head[128:132] == b"DICM":
        return "dicom"
    for kind, prefixes in _MAGIC.items():
        if head.startswith(prefixes):
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[4:8] == b"ftyp":
        return _sniff_iso_media(head)
    # Two-byte "BM" would also match text such as "BMW ...", so also require a known DIB header size.
    if head[:2] == b"BM" and len(head) >= 18 and struct.unpack_from("<I", head, 14)[0] in _BMP_HEADER_SIZES:
        return "bmp"
    if head[:4] in (b"\x00\x00\x01\x00", b"\x00\x00\x02\x00") and len(head) >= 6 and head[4:6] != b"\x00\x00":
        return "ico"
    return _sniff_text(head, cut=len(data) > _SNIFF_BYTES)


def _sniff_iso_media(head: bytes) -> str:
    brands = {head[i : i + 4] for i in range(16, min(len(head), int.from_bytes(head[:4], "big")), 4)}
    major = head[8:12]
    # "mif1" is the generic still-image brand of both HEIF and AVIF; the compatible brands tell them apart.
    hevc_brands = _HEIF_BRANDS - {b"mif1", b"msf1"}
    if major in _AVIF_BRANDS or (major in {b"mif1", b"msf1"} and brands & _AVIF_BRANDS and not brands & hevc_brands):
        return "avif"
    if major in _HEIF_BRANDS:
        return "heif"
    return "mov" if major == b"qt  " else "mp4"


def _sniff_text(head: bytes, *, cut: bool) -> str | None:
    encoding = "utf-16" if head.startswith((b"\xff\xfe", b"\xfe\xff")) else "utf-8-sig"
    text = head.decode(encoding, errors="replace")
    # A sample cut from a longer file may end inside a multi-byte character; any other bad byte means binary.
    body = text[:-1] if cut else text
    if not body.strip() or any(not (c.isprintable() or c in "\t\n\r\f\v") or c == "\ufffd" for c in body):
        return None
    lowered = text.lstrip().lower()
    if lowered.startswith("<"):
        if "<svg" in lowered:
            return "svg"
        if lowered.startswith(("<!doctype html", "<html", "<head", "<body")):
            return "html"
        if lowered.startswith("<?xml"):
            return "xml"
    return "text"


def load_image(
    source: ImageSource,
    *,
    draft_size: int | None = None,
    min_side: int = 32,
    max_pixels: int = 50_000_000,
    max_bytes: int | None = None,
) -> Image.Image:
    """Decode an uploaded or on-disk image into a fully loaded RGB image that holds no reference to its source.

    Args:
        source: the file's bytes, a path, or a binary stream (read from its current position).
        draft_size: for JPEG, let the decoder shrink by 1/2, 1/4 or 1/8 while keeping each side >= draft_size.
        min_side: the smallest width or height accepted.
        max_pixels: the most width*height accepted, checked from the header before any pixel is decoded.
        max_bytes: the largest file accepted, or None for no limit.

    Returns:
        A mode "RGB" image, EXIF orientation applied, alpha composited over white.

    Raises:
        InvalidImageError: empty, not an image, corrupt or truncated; or one of its subclasses
            UnsupportedFormatError, ImageTooSmallError, ImageTooLargeError.
    """
    data = _read_bytes(source, max_bytes)
    if not data:
        raise InvalidImageError("empty file")
    kind = sniff_format(data)
    if kind is None:
        raise InvalidImageError(f"not an image: the file matches none of the accepted formats ({_SUPPORTED_TEXT})")
    if kind not in SUPPORTED_FORMATS:
        raise UnsupportedFormatError(
            f"unsupported file type: this is {_UNSUPPORTED_NAMES.get(kind, kind)}; send a {_SUPPORTED_TEXT} image"
        )
    # Decoders warn about odd but readable files (bad EXIF, large images); a server has no one to show them to,
    # and the size limit below is ours, not Pillow's global MAX_IMAGE_PIXELS.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "dicom":
            return _load_dicom(data, min_side, max_pixels)
        return _load_with_pillow(data, kind, draft_size, min_side, max_pixels)


def _read_bytes(source: ImageSource, max_bytes: int | None) -> bytes:
    limit = -1 if max_bytes is None else max_bytes + 1  # one byte past the limit is enough to know it is exceeded
    if isinstance(source, bytes | bytearray | memoryview):
        view = memoryview(source).cast("B")  # count bytes, not items, for a view of a typed array
        data = bytes(view if limit < 0 else view[:limit])
    elif isinstance(source, str | os.PathLike):
        try:
            with open(source, "rb") as file:
                data = file.read(limit)
        except OSError as exc:
            raise InvalidImageError(f"cannot read {os.fspath(source)}: {exc.strerror or exc}") from None
    else:
        data = source.read(limit)
    if max_bytes is not None and len(data) > max_bytes:
        raise ImageTooLargeError(f"file too large: over the limit of {max_bytes:,} bytes")
    return data


def _check_size(width: int, height: int, min_side: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageTooLargeError(f"image too large: {width}×{height} pixels is over the limit of {max_pixels:,}")
    if min(width, height) < min_side:
        raise ImageTooSmallError(f"image too small: {width}×{height} pixels; each side must be at least {min_side}")


def _load_with_pillow(data: bytes, kind: str, draft_size: int | None, min_side: int, max_pixels: int) -> Image.Image:
    if kind == "heif":
        _register_heif()
    try:
        opened = Image.open(io.BytesIO(data), formats=[kind.upper()])
    except Image.DecompressionBombError:
        raise ImageTooLargeError(f"image too large: over the limit of {max_pixels:,} pixels") from None
    except _DECODE_ERRORS:
        raise InvalidImageError(f"corrupt image: the {kind.upper()} header cannot be read") from None
    with opened:
        _check_size(*opened.size, min_side, max_pixels)
        header_width = opened.size[0]
        if draft_size:
            opened.draft("RGB", (draft_size, draft_size))  # a no-op for everything but JPEG
        try:
            opened.load()
            scale = header_width / opened.size[0]  # > 1 when the decoder shrank a large JPEG
            result = _to_rgb(ImageOps.exif_transpose(opened))
            # callers report and draw at the photo's real size, not the reduced decode
            result.info["original_size"] = (round(result.width * scale), round(result.height * scale))
            return result
        except Image.DecompressionBombError:
            raise ImageTooLargeError(f"image too large: over the limit of {max_pixels:,} pixels") from None
        except _DECODE_ERRORS:
            raise InvalidImageError("corrupt or truncated image") from None


@functools.cache  # register once: Pillow's plugin registry is global
def _register_heif() -> None:
    import pillow_heif

    pillow_heif.register_heif_opener()


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        # Pillow's own conversion clips high-bit-depth values at 255, turning most 16-bit images white.
        return Image.fromarray(_to_uint8(np.asarray(img))).convert("RGB")
    if img.mode in ("RGBA", "RGBa", "LA", "PA") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        background.alpha_composite(rgba)
        return background.convert("RGB")
    return img if img.mode == "RGB" else img.convert("RGB")


def _to_uint8(values: NDArray[np.generic], low: float | None = None, high: float | None = None) -> NDArray[np.uint8]:
    """Map [low, high] (by default the values' own range) linearly onto 0..255, clipping what lies outside."""
    arr = np.nan_to_num(values.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    low = float(arr.min()) if low is None else low
    high = float(arr.max()) if high is None else high
    if high <= low:  # a flat image has no range to stretch; keep its value where it fits 8 bits
        return np.clip(arr, 0, 255).astype(np.uint8)
    return np.clip(np.round((arr - low) * (255.0 / (high - low))), 0, 255).astype(np.uint8)


def _load_dicom(data: bytes, min_side: int, max_pixels: int) -> Image.Image:
    import pydicom
    from pydicom.errors import BytesLengthException, InvalidDicomError
    from pydicom.pixels import apply_color_lut, apply_modality_lut, get_decoder

    # Our own errors pass through; anything pydicom raises on a damaged file becomes one message. AttributeError is
    # how pydicom reports a missing required element (Rows, Photometric Interpretation, ...).
    try:
        ds = pydicom.dcmread(io.BytesIO(data))
        if not any(tag in ds for tag in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
            raise InvalidImageError("DICOM file has no pixel data")
        _check_size(int(ds.Columns), int(ds.Rows), min_side, max_pixels)
        syntax = ds.file_meta.get("TransferSyntaxUID")
        if syntax is not None and syntax.is_compressed:
            try:
                available = get_decoder(syntax).is_available
            except NotImplementedError:
                available = False
            if not available:
                raise UnsupportedFormatError(f"DICOM compressed as {syntax.name} cannot be decoded here")
        ds.pixel_array_options(index=0)  # only the first frame: a multi-frame series would decode whole otherwise
        pixels = ds.pixel_array
        photometric = str(ds.get("PhotometricInterpretation", "")).upper()
        bits = int(ds.get("BitsStored", 8))
        if photometric == "PALETTE COLOR":
            pixels = apply_color_lut(pixels, ds)
            bits = 8 * pixels.dtype.itemsize
        if pixels.ndim == 3 and pixels.shape[-1] == 3:  # pydicom has already turned YBR into RGB
            rgb = pixels if pixels.dtype == np.uint8 else _to_uint8(pixels, 0, 2**bits - 1)
        elif pixels.ndim == 2:
            values, center, width = apply_modality_lut(pixels, ds), ds.get("WindowCenter"), ds.get("WindowWidth")
            if center is None or width is None or _first_number(width) <= 1:
                gray = _to_uint8(values)
            else:
                low = _first_number(center) - _first_number(width) / 2
                gray = _to_uint8(values, low, low + _first_number(width))
            if photometric == "MONOCHROME1":  # MONOCHROME1 means low values are white
                gray = 255 - gray
            rgb = np.repeat(gray[..., None], 3, axis=-1)
        else:
            raise InvalidImageError(f"DICOM pixel data has an unexpected shape {pixels.shape}")
    except (InvalidDicomError, BytesLengthException, AttributeError, *_DECODE_ERRORS):
        raise InvalidImageError("corrupt DICOM file: its header or pixel data cannot be read") from None
    return Image.fromarray(np.ascontiguousarray(rgb))


def _first_number(value: Any) -> float:
    # A file may list several windows (say "soft tissue" and "bone"); the first is its author's default.
    return float(value[0] if isinstance(value, Sequence) else value)


def walk_inputs(inputs: Iterable[str | Path]) -> Iterator[Path]:
    """Files as given; folders walked for image files (by IMAGE_SUFFIXES), in a stable order."""
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            yield from (p for p in sorted(path.rglob("*")) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            yield path
