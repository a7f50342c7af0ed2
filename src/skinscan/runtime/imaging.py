"""Decoding any user-supplied image (photo formats, HEIC, DICOM) into a loaded RGB Pillow image, safely."""

from __future__ import annotations

import functools
import io
import os
import struct
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np
from PIL import Image

from skinscan.core.errors import ImageTooLargeError, ImageTooSmallError, InvalidImageError, UnsupportedFormatError
from skinscan.runtime.budget import DecodeBudget

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
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, KeyError, TypeError,
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


DEFAULT_MAX_BYTES = 256 * 1024 * 1024  # the largest file read at all; uploads have their own, lower limit
MAX_JPEG_SCANS = 100  # a progressive JPEG has about 10; each scan is a pass over every coefficient
MAX_JPEG_SCAN_PIXELS = 500_000_000  # scans × pixels: 12 MP with up to 41 scans
# how many copies of its raw pixels a decoder holds at its peak (WebP and HEIF decode into a buffer of their own)
_DECODER_COPIES = {"webp": 2, "heif": 2, "avif": 2}


@dataclass(frozen=True)
class DecodePlan:
    """What decoding one file will take, known from its headers before any pixel is decoded."""

    kind: str
    size: tuple[int, int]  # as the header says
    cost: int  # bytes held at the peak: raw pixels, decoder buffers and the work on the reduced image


def load_image(
    source: ImageSource,
    *,
    draft_size: int | None = None,
    min_side: int = 32,
    max_pixels: int = 50_000_000,
    max_bytes: int | None = DEFAULT_MAX_BYTES,
    budget: DecodeBudget | None = None,
) -> Image.Image:
    """Decode an uploaded or on-disk image into a fully loaded RGB image that holds no reference to its source.

    Args:
        source: the file's bytes, a path, or a binary stream (read from its current position).
        draft_size: let the decode shrink by 2, 4 or 8 while keeping each side >= draft_size (in the JPEG decoder
            itself, by a box reduce right after decoding for other formats).
        min_side: the smallest width or height accepted.
        max_pixels: the most width*height accepted, checked from the header before any pixel is decoded.
        max_bytes: the largest file accepted (a path's size is checked before it is read), or None for no limit.
        budget: the memory budget this decode reserves its cost from (waiting for room); None → a private one
            of the default size, so that one decode alone is still bounded.

    Returns:
        A mode "RGB" image, EXIF orientation applied, alpha composited over white. `info["original_size"]` is
        the photo's size before any reduction.

    Raises:
        InvalidImageError: empty, not an image, corrupt or truncated; or one of its subclasses
            UnsupportedFormatError, ImageTooSmallError, ImageTooLargeError (also: more decoding work than the
            budget or the scan limits allow).
        BusyError: the shared budget had no room within its wait.
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
    budget = budget if budget is not None else DecodeBudget()
    # Decoders warn about odd but readable files (bad EXIF, large images); a server has no one to show them to,
    # and the size limit below is ours, not Pillow's global MAX_IMAGE_PIXELS.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "dicom":
            from skinscan.runtime.dicom import load_dicom  # pydicom is imported only for DICOM uploads

            return load_dicom(data, draft_size=draft_size, min_side=min_side, max_pixels=max_pixels, budget=budget)
        return decode_with_pillow(data, kind, draft_size, min_side, max_pixels, budget)


def _read_bytes(source: ImageSource, max_bytes: int | None) -> bytes:
    limit = -1 if max_bytes is None else max_bytes + 1  # one byte past the limit is enough to know it is exceeded
    if isinstance(source, bytes | bytearray | memoryview):
        view = memoryview(source).cast("B")  # count bytes, not items, for a view of a typed array
        data = bytes(view if limit < 0 else view[:limit])
    elif isinstance(source, str | os.PathLike):
        try:
            with open(source, "rb") as file:
                # a file's size is known before reading it: a 40 GB (perhaps sparse) file is refused, not read
                size = os.fstat(file.fileno()).st_size
                if max_bytes is not None and size > max_bytes:
                    raise _too_many_bytes(max_bytes)
                # read(n) sets aside n bytes first: ask for what the file holds (plus one, should it have grown)
                data = file.read(size + 1 if size and (limit < 0 or size < limit) else limit)
        except OSError as exc:
            raise InvalidImageError(f"cannot read {os.fspath(source)}: {exc.strerror or exc}") from None
    else:
        data = source.read(limit)
    if max_bytes is not None and len(data) > max_bytes:
        raise _too_many_bytes(max_bytes)
    return data


def _too_many_bytes(max_bytes: int) -> ImageTooLargeError:
    return ImageTooLargeError(f"file too large: over the limit of {max_bytes:,} bytes")


def check_size(width: int, height: int, min_side: int, max_pixels: int) -> None:
    """Refuse a width×height out of bounds (from a header, before decoding)."""
    if width * height > max_pixels:
        raise ImageTooLargeError(f"image too large: {width}×{height} pixels is over the limit of {max_pixels:,}")
    if min(width, height) < min_side:
        raise ImageTooSmallError(f"image too small: {width}×{height} pixels; each side must be at least {min_side}")


def reduce_factor(width: int, height: int, draft_size: int | None) -> int:
    """JPEG's draft rule for every format: the largest of 1, 2, 4, 8 that keeps each side >= draft_size."""
    if not draft_size:
        return 1
    room = min(width // draft_size, height // draft_size)
    return next((f for f in (8, 4, 2) if room >= f), 1)


def check_cost(cost: int, budget: DecodeBudget) -> None:
    """Refuse a decode that would need more memory than the whole budget."""
    if cost > budget.capacity:
        raise ImageTooLargeError(
            f"image too large to decode: it needs about {cost / 2**20:,.0f} MB, over the limit of "
            f"{budget.capacity / 2**20:,.0f} MB"
        )


def _bytes_per_pixel(mode: str) -> int:
    """What Pillow stores per pixel: multi-band modes take 4 bytes whatever their bands."""
    if mode in ("1", "L", "P"):
        return 1
    if mode.startswith("I;16"):
        return 2
    return 4


def plan_pillow_decode(
    opened: Image.Image, data: bytes, kind: str, draft_size: int | None, header: tuple[int, int]
) -> DecodePlan:
    """The decode plan of an opened (header-only) Pillow image of `header` size, after any draft() it was given.

    Raises:
        ImageTooLargeError: a JPEG with more scans than MAX_JPEG_SCANS allows, or a TIFF tile far beyond its image.
    """
    width, height = opened.size  # after draft(): what the JPEG decoder will produce
    raw = width * height * _bytes_per_pixel(opened.mode) * _DECODER_COPIES.get(kind, 1)
    extra = 0
    if kind == "jpeg":
        # every FF DA is a start of scan (entropy-coded data never holds one), so the count is an upper bound
        scans = data.count(b"\xff\xda")
        pixels = header[0] * header[1]
        if scans > MAX_JPEG_SCANS or scans * pixels > MAX_JPEG_SCAN_PIXELS:
            raise ImageTooLargeError(
                f"image too costly to decode: a JPEG of {header[0]}×{header[1]} pixels in {scans} scans "
                f"(at most {min(MAX_JPEG_SCANS, MAX_JPEG_SCAN_PIXELS // max(pixels, 1))} allowed at that size)"
            )
        if opened.info.get("progressive") or scans > 1:
            extra = pixels * 4 * 2  # multi-scan JPEGs keep every DCT coefficient (16 bits) of the full-size image
    elif kind == "tiff":
        extra = _tiff_buffer_bytes(opened)
    factor = 1 if kind == "jpeg" else reduce_factor(width, height, draft_size)
    if factor > 1 and opened.mode not in _REDUCIBLE:
        extra += width * height * 4  # converted at full size before the reduce
    reduced = (width // factor) * (height // factor)
    # the reduced image converted to RGB, turned upright and composited: at most three 4-byte copies of it
    work = reduced * 4 * 3
    return DecodePlan(kind, header, raw + extra + work)


def _tiff_buffer_bytes(opened: Image.Image) -> int:
    """The buffer libtiff decodes each tile or strip into, from the tags (a 64×64 image may claim a huge tile)."""
    tags = getattr(opened, "tag_v2", {})
    width, height = opened.size
    tile_w, tile_h = int(tags.get(322, 0) or 0), int(tags.get(323, 0) or 0)
    if tile_w and tile_h:
        return tile_w * tile_h * 4
    rows = int(tags.get(278, height) or height)
    return width * min(rows, height) * 4


def decode_with_pillow(
    data: bytes,
    kind: str,
    draft_size: int | None,
    min_side: int,
    max_pixels: int,
    budget: DecodeBudget,
    *,
    expect_size: tuple[int, int] | None = None,
    colour_transform: bool = True,
) -> Image.Image:
    """Decode `data` of a Pillow kind under the budget (load_image's Pillow path, also used for DICOM's JPEG frames).

    Args:
        expect_size: the size a container's own header gives (DICOM); a stream claiming another is corrupt.
        colour_transform: False for a JPEG whose three components are RGB already, not YCbCr.
    """
    if kind == "heif":
        _register_heif()
    try:
        opened = Image.open(io.BytesIO(data), formats=[kind.upper()])
    except Image.DecompressionBombError:
        raise ImageTooLargeError(f"image too large: over the limit of {max_pixels:,} pixels") from None
    except DECODE_ERRORS:
        raise InvalidImageError(f"corrupt image: the {kind.upper()} header cannot be read") from None
    with opened:
        if expect_size is not None and opened.size != expect_size:
            raise InvalidImageError(
                f"corrupt image: its {kind.upper()} stream is {opened.size[0]}×{opened.size[1]} pixels, but its "
                f"header says {expect_size[0]}×{expect_size[1]}"
            )
        check_size(*opened.size, min_side, max_pixels)
        header = opened.size
        keep_components = not colour_transform and opened.mode == "RGB"
        if draft_size or keep_components:
            # a no-op for everything but JPEG; "YCbCr" asks libjpeg to leave the components as they are
            opened.draft("YCbCr" if keep_components else "RGB", (draft_size or 1 << 16,) * 2)
        plan = plan_pillow_decode(opened, data, kind, draft_size, header)
        check_cost(plan.cost, budget)
        with budget.reserve(plan.cost):
            try:
                opened.load()
                image: Image.Image = opened
                if keep_components and image.mode == "YCbCr":
                    image = Image.frombytes("RGB", image.size, image.tobytes())
                factor = reduce_factor(*image.size, draft_size) if kind != "jpeg" else 1
                if factor > 1:
                    image = _reduce(image, factor)
                image, turned = upright(image)
                result = _to_rgb(image)
            except Image.DecompressionBombError:
                raise ImageTooLargeError(f"image too large: over the limit of {max_pixels:,} pixels") from None
            except DECODE_ERRORS:
                raise InvalidImageError("corrupt or truncated image") from None
    # callers report and draw at the photo's real size, not the reduced decode
    width, height = plan.size
    result.info["original_size"] = (height, width) if turned else (width, height)
    return result


_REDUCIBLE = ("L", "LA", "RGB", "RGBA", "I", "F")


def _reduce(image: Image.Image, factor: int) -> Image.Image:
    """A box reduce by `factor`, in modes Pillow reduces directly; others are converted first."""
    if image.mode not in _REDUCIBLE:
        if image.mode.startswith("I;16") or image.mode == "I":
            image = image.convert("I")
        elif image.mode in ("1", "P"):
            return image  # palette and bilevel images keep their exact values; they are small to hold anyway
        else:
            image = image.convert("RGBA" if "A" in image.mode or "transparency" in image.info else "RGB")
    info = dict(image.info)
    reduced = image.reduce(factor)
    reduced.info.update(info)  # keep the EXIF orientation and transparency for what follows
    return reduced


_ORIENTATIONS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def upright(image: Image.Image) -> tuple[Image.Image, bool]:
    """The image turned as its EXIF orientation says, and whether that swapped its sides.

    Only the orientation tag is read: ImageOps.exif_transpose rewrites the whole EXIF block, and fails on any
    other mistyped tag (an XResolution given as text, say) of a photo Pillow decodes well.
    """
    try:
        orientation = image.getexif().get(0x0112)
    except DECODE_ERRORS:
        return image, False
    method = _ORIENTATIONS.get(orientation) if isinstance(orientation, int) else None
    if method is None:
        return image, False
    return image.transpose(method), orientation in (5, 6, 7, 8)


@functools.cache  # register once: Pillow's plugin registry is global
def _register_heif() -> None:
    import pillow_heif

    pillow_heif.register_heif_opener()


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        # Pillow's own conversion clips high-bit-depth values at 255, turning most 16-bit images white.
        return Image.fromarray(to_uint8(np.asarray(img))).convert("RGB")
    if img.mode in ("RGBA", "RGBa", "LA", "PA") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        background.alpha_composite(rgba)
        return background.convert("RGB")
    return img if img.mode == "RGB" else img.convert("RGB")


def to_uint8(values: NDArray[np.generic], low: float | None = None, high: float | None = None) -> NDArray[np.uint8]:
    """Map [low, high] (by default the values' own range) linearly onto 0..255, clipping what lies outside."""
    arr = np.nan_to_num(values.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    low = float(arr.min()) if low is None else low
    high = float(arr.max()) if high is None else high
    if high <= low:  # a flat image has no range to stretch; keep its value where it fits 8 bits
        return np.clip(arr, 0, 255).astype(np.uint8)
    return np.clip(np.round((arr - low) * (255.0 / (high - low))), 0, 255).astype(np.uint8)


def walk_inputs(inputs: Iterable[str | Path]) -> Iterator[Path]:
    """Files as given; folders walked for image files (by IMAGE_SUFFIXES), in a stable order."""
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            yield from (p for p in sorted(path.rglob("*")) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            yield path
