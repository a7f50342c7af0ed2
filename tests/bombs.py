"""Small files that decode into huge work: the attacks of the hardening issue, built byte by byte. Shared by the
bad-upload tests and benchmarks/bench_decode_memory.py (which measures what each costs a real server)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_2000 = "1.2.840.10008.1.2.4.90"
DEFLATED = "1.2.840.10008.1.2.1.99"
EXPLICIT_LE = "1.2.840.10008.1.2.1"


def _element(group: int, element: int, vr: bytes, value: bytes) -> bytes:
    """One explicit-VR little-endian data element (values padded to even length)."""
    if len(value) % 2:
        value += b"\x00" if vr in (b"UI", b"OB") else b" "
    if vr in (b"OB", b"OW", b"SQ", b"UN", b"UT"):
        return struct.pack("<HH2sHI", group, element, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", group, element, vr, len(value)) + value


def _file_meta(syntax: str) -> bytes:
    sop = b"1.2.840.10008.5.1.4.1.1.7"  # secondary capture
    body = (
        _element(0x0002, 0x0001, b"OB", b"\x00\x01")
        + _element(0x0002, 0x0002, b"UI", sop)
        + _element(0x0002, 0x0003, b"UI", b"1.2.3.4.5.6.7.8")
        + _element(0x0002, 0x0010, b"UI", syntax.encode())
    )
    return b"\x00" * 128 + b"DICM" + _element(0x0002, 0x0000, b"UL", struct.pack("<I", len(body))) + body


def _image_header(rows: int, columns: int, photometric: bytes, samples: int = 3) -> bytes:
    elements = (
        _element(0x0008, 0x0016, b"UI", b"1.2.840.10008.5.1.4.1.1.7")
        + _element(0x0028, 0x0002, b"US", struct.pack("<H", samples))
        + _element(0x0028, 0x0004, b"CS", photometric)
    )
    if samples > 1:
        elements += _element(0x0028, 0x0006, b"US", struct.pack("<H", 0))
    return (
        elements
        + _element(0x0028, 0x0010, b"US", struct.pack("<H", rows))
        + _element(0x0028, 0x0011, b"US", struct.pack("<H", columns))
        + _element(0x0028, 0x0100, b"US", struct.pack("<H", 8))
        + _element(0x0028, 0x0101, b"US", struct.pack("<H", 8))
        + _element(0x0028, 0x0102, b"US", struct.pack("<H", 7))
        + _element(0x0028, 0x0103, b"US", struct.pack("<H", 0))
    )


def _encapsulated(frame: bytes) -> bytes:
    """Pixel Data holding one frame as one fragment, after an empty basic offset table."""
    if len(frame) % 2:
        frame += b"\x00"
    items = struct.pack("<HHI", 0xFFFE, 0xE000, 0) + struct.pack("<HHI", 0xFFFE, 0xE000, len(frame)) + frame
    end = struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    return struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, 0xFFFFFFFF) + items + end


def deflated_dicom(inflated_mb: int) -> bytes:
    """A DICOM file in the Deflated Explicit VR transfer syntax whose dataset inflates to about `inflated_mb` MB
    (a 1,024×1,024×… RGB image of zeros); the file itself is a few hundred kB."""
    side = 1024
    rows = max(1, inflated_mb * 2**20 // (side * 3))
    pixels = rows * side * 3
    head = _image_header(min(rows, 65535), side, b"RGB") + struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, pixels)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    chunk = bytes(2**20)
    parts = [deflate.compress(head)]
    for _ in range(pixels // len(chunk)):
        parts.append(deflate.compress(chunk))
    parts.append(deflate.compress(bytes(pixels % len(chunk))))
    parts.append(deflate.flush())
    return _file_meta(DEFLATED) + b"".join(parts)


def j2k_codestream(width: int, height: int) -> bytes:
    """The start of a JPEG 2000 codestream (SOC, SIZ) claiming width×height RGB: what a decoder sizes its buffers by."""
    siz = struct.pack(">HHHIIIIIIIIH", 0xFF51, 47, 0, width, height, 0, 0, width, height, 0, 0, 3)
    siz += b"\x07\x01\x01" * 3
    return b"\xff\x4f" + siz + b"\xff\x90" + bytes(64) + b"\xff\xd9"


def dicom_with_frame(rows: int, columns: int, syntax: str, frame: bytes, photometric: bytes = b"RGB") -> bytes:
    """A DICOM file whose header says rows×columns and whose encapsulated pixel data is `frame`."""
    return _file_meta(syntax) + _image_header(rows, columns, photometric) + _encapsulated(frame)


def jpeg_bytes(image: Image.Image, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", **params)
    return buffer.getvalue()


def jpeg_claiming(jpeg: bytes, width: int, height: int) -> bytes:
    """A real baseline JPEG whose frame header (SOF0) is rewritten to claim width×height."""
    at = jpeg.index(b"\xff\xc0") + 5  # marker, length (2), precision (1), then height and width
    return jpeg[:at] + struct.pack(">HH", height, width) + jpeg[at + 4 :]


def progressive_jpeg_with_scans(side: int, scans: int) -> bytes:
    """A progressive JPEG of side×side whose last refinement scan is repeated until it has `scans` scans: each is
    a full pass over the image's coefficients, for a few bytes of file."""
    flat = Image.new("RGB", (side, side), (180, 120, 100))
    jpeg = jpeg_bytes(flat, quality=90, progressive=True)
    last = jpeg.rindex(b"\xff\xda")
    body, end = jpeg[last:-2], jpeg[-2:]
    have = jpeg.count(b"\xff\xda")
    return jpeg[:-2] + body * max(0, scans - have) + end


def tiff_with_tile(width: int, height: int, tile: int) -> bytes:
    """A width×height deflate-compressed RGB TIFF stored as one tile of tile×tile pixels (legal TIFF allows tiles
    beyond the image; libtiff allocates the whole tile before decoding a byte of it)."""
    data = zlib.compress(bytes(64))  # the decoder sizes its buffer from the tags, not from this
    entries = [
        (256, 4, 1, width), (257, 4, 1, height), (258, 3, 3, None), (259, 3, 1, 8), (262, 3, 1, 2),
        (277, 3, 1, 3), (284, 3, 1, 1), (322, 4, 1, tile), (323, 4, 1, tile), (324, 4, 1, None), (325, 4, 1, len(data)),
    ]  # fmt: skip
    ifd_at = 8
    extra_at = ifd_at + 2 + 12 * len(entries) + 4
    bits_at, data_at = extra_at, extra_at + 6
    out = bytearray(b"II*\x00" + struct.pack("<I", ifd_at) + struct.pack("<H", len(entries)))
    for tag, kind, count, value in entries:
        if tag == 258:
            value = bits_at
        elif tag == 324:
            value = data_at
        packed = struct.pack("<HHI", tag, kind, count)
        out += packed + (struct.pack("<HH", value, 0) if kind == 3 and count == 1 else struct.pack("<I", value))
    out += struct.pack("<I", 0) + struct.pack("<HHH", 8, 8, 8) + data
    return bytes(out)


def flat_png(side: int) -> bytes:
    """A flat side×side RGB PNG: a few kB on the wire, side² pixels to decode."""
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), (190, 140, 120)).save(buffer, format="PNG", compress_level=9)
    return buffer.getvalue()


def exif_with_bad_xresolution(image: Image.Image) -> bytes:
    """A JPEG with EXIF orientation 6 and an XResolution stored as text (it must be a rational): Pillow decodes it,
    but rewriting its EXIF (as ImageOps.exif_transpose does) fails."""
    entries = [struct.pack(">HHI", 0x0112, 3, 1) + struct.pack(">HH", 6, 0),
               struct.pack(">HHI", 0x011A, 2, 4) + b"abc\x00"]  # fmt: skip
    ifd = struct.pack(">H", len(entries)) + b"".join(entries) + struct.pack(">I", 0)
    return jpeg_bytes(image, quality=92, exif=b"Exif\x00\x00MM\x00*" + struct.pack(">I", 8) + ifd)


def noisy(side: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8))
