"""Decoding DICOM uploads: only the transfer syntaxes and photometric kinds whose decoding cost is known in advance.

Accepted: uncompressed pixel data (implicit or explicit VR, either byte order) and JPEG baseline frames, which are
decoded by the same bounded JPEG path as direct uploads (draft scale, scan limit, decode budget). Refused with a
clear message: deflated datasets (pydicom inflates the whole file before anything can be checked), RLE (its
decoder has no bound on what a segment expands to), JPEG 2000, JPEG-LS, lossless and 12-bit JPEG, and video. A
frame whose own header disagrees with the dataset's Rows and Columns is refused as corrupt.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from skinscan.core.errors import InvalidImageError, UnsupportedFormatError
from skinscan.runtime.budget import DecodeBudget
from skinscan.runtime.imaging import (
    DECODE_ERRORS,
    check_cost,
    check_size,
    decode_with_pillow,
    reduce_factor,
    to_uint8,
)

NATIVE_SYNTAXES = {
    "1.2.840.10008.1.2": "Implicit VR Little Endian",
    "1.2.840.10008.1.2.1": "Explicit VR Little Endian",
    "1.2.840.10008.1.2.2": "Explicit VR Big Endian",
}
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
_PHOTOMETRIC = {"MONOCHROME1", "MONOCHROME2", "RGB", "PALETTE COLOR", "YBR_FULL", "YBR_FULL_422"}
_EXPORT_HINT = "export it uncompressed or as baseline JPEG"
# Only what decoding needs is kept from the dataset: a file of a million tiny elements costs no memory.
_TAGS = [
    "Rows", "Columns", "SamplesPerPixel", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
    "PhotometricInterpretation", "PlanarConfiguration", "NumberOfFrames", "PixelData", "FloatPixelData",
    "DoubleFloatPixelData", "RescaleSlope", "RescaleIntercept", "RescaleType", "ModalityLUTSequence",
    "WindowCenter", "WindowWidth", "ExtendedOffsetTable", "ExtendedOffsetTableLengths",
    "RedPaletteColorLookupTableDescriptor", "GreenPaletteColorLookupTableDescriptor",
    "BluePaletteColorLookupTableDescriptor", "RedPaletteColorLookupTableData", "GreenPaletteColorLookupTableData",
    "BluePaletteColorLookupTableData", "SegmentedRedPaletteColorLookupTableData",
    "SegmentedGreenPaletteColorLookupTableData", "SegmentedBluePaletteColorLookupTableData",
]  # fmt: skip


def transfer_syntax(data: bytes) -> str | None:
    """The Transfer Syntax UID from the file meta group, read by hand: pydicom would first inflate a deflated file.

    Returns:
        The UID, or None when the file meta group has none.

    Raises:
        InvalidImageError: the file meta group is malformed.
    """
    pos = 132  # the 128-byte preamble and "DICM"
    try:
        while pos + 8 <= len(data):
            group, element = struct.unpack_from("<HH", data, pos)
            if group != 0x0002:
                return None
            vr = data[pos + 4 : pos + 6]
            if vr in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN"):
                (length,) = struct.unpack_from("<I", data, pos + 8)
                start = pos + 12
            else:
                (length,) = struct.unpack_from("<H", data, pos + 6)
                start = pos + 8
            if element == 0x0010:
                return data[start : start + length].rstrip(b"\x00 ").decode("ascii")
            pos = start + length
    except (struct.error, UnicodeDecodeError):
        raise InvalidImageError("corrupt DICOM file: its file meta information cannot be read") from None
    return None


def load_dicom(
    data: bytes, *, draft_size: int | None, min_side: int, max_pixels: int, budget: DecodeBudget
) -> Image.Image:
    """The first frame of a DICOM file as an RGB image (see the module docstring for what is accepted)."""
    import pydicom
    from pydicom.encaps import get_frame
    from pydicom.errors import BytesLengthException, InvalidDicomError
    from pydicom.pixels import apply_color_lut, apply_modality_lut
    from pydicom.uid import UID

    syntax = transfer_syntax(data)
    if syntax is not None and syntax not in NATIVE_SYNTAXES and syntax != JPEG_BASELINE:
        name = UID(syntax).name if UID(syntax).is_transfer_syntax else syntax
        raise UnsupportedFormatError(f"DICOM compressed as {name} is not accepted; {_EXPORT_HINT}")
    # Our own errors pass through; anything pydicom raises on a damaged file becomes one message. AttributeError is
    # how pydicom reports a missing required element (Rows, Photometric Interpretation, ...).
    try:
        ds = pydicom.dcmread(io.BytesIO(data), specific_tags=_TAGS)
        if not any(tag in ds for tag in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
            raise InvalidImageError("DICOM file has no pixel data")
        rows, columns, samples = int(ds.Rows), int(ds.Columns), int(ds.get("SamplesPerPixel", 1))
        check_size(columns, rows, min_side, max_pixels)
        photometric = str(ds.get("PhotometricInterpretation", "")).upper()
        if photometric not in _PHOTOMETRIC or samples not in (1, 3):
            raise UnsupportedFormatError(
                f"DICOM pixel data of kind {photometric or 'unknown'} with {samples} samples per pixel is not accepted"
            )
        if syntax == JPEG_BASELINE:
            frames = int(ds.get("NumberOfFrames", 1) or 1)
            frame = get_frame(ds.PixelData, 0, number_of_frames=frames)
            image = decode_with_pillow(
                frame, "jpeg", draft_size, min_side, max_pixels, budget, expect_size=(columns, rows),
                colour_transform=photometric != "RGB",
            )  # fmt: skip
            return ImageOps.invert(image) if photometric == "MONOCHROME1" else image
        itemsize = max(1, int(ds.get("BitsAllocated", 8)) // 8)
        factor = reduce_factor(columns, rows, draft_size)
        reduced = (rows // factor) * (columns // factor) * samples
        # the first frame as decoded (YBR converted to RGB in float32 at full size), then the float work of the
        # modality and window mapping on the reduced frame
        full = rows * columns * samples * (itemsize + (8 if photometric.startswith("YBR") else 0))
        cost = full + reduced * 20
        check_cost(cost, budget)
        with budget.reserve(cost):
            ds.pixel_array_options(index=0)  # only the first frame: a multi-frame series would decode whole
            pixels = ds.pixel_array
            if factor > 1:  # nearest-neighbour decimation keeps the stored values (and palette indices) exact
                pixels = np.ascontiguousarray(pixels[::factor, ::factor])
            rgb = _to_rgb_array(pixels, ds, photometric, apply_color_lut, apply_modality_lut)
            image = Image.fromarray(np.ascontiguousarray(rgb))
    except (InvalidDicomError, BytesLengthException, AttributeError, *DECODE_ERRORS):
        raise InvalidImageError("corrupt DICOM file: its header or pixel data cannot be read") from None
    image.info["original_size"] = (columns, rows)
    return image


def _to_rgb_array(pixels: np.ndarray, ds: Any, photometric: str, apply_color_lut: Any, apply_modality_lut: Any) -> Any:
    bits = int(ds.get("BitsStored", 8))
    if photometric == "PALETTE COLOR":
        pixels = apply_color_lut(pixels, ds)
        bits = 8 * pixels.dtype.itemsize
    if pixels.ndim == 3 and pixels.shape[-1] == 3:  # pydicom has already turned YBR into RGB
        return pixels if pixels.dtype == np.uint8 else to_uint8(pixels, 0, 2**bits - 1)
    if pixels.ndim != 2:
        raise InvalidImageError(f"DICOM pixel data has an unexpected shape {pixels.shape}")
    values, center, width = apply_modality_lut(pixels, ds), ds.get("WindowCenter"), ds.get("WindowWidth")
    if center is None or width is None or _first_number(width) <= 1:
        gray = to_uint8(values)
    else:
        low = _first_number(center) - _first_number(width) / 2
        gray = to_uint8(values, low, low + _first_number(width))
    if photometric == "MONOCHROME1":  # MONOCHROME1 means low values are white
        gray = 255 - gray
    return np.repeat(gray[..., None], 3, axis=-1)


def _first_number(value: Any) -> float:
    # A file may list several windows (say "soft tissue" and "bone"); the first is its author's default.
    return float(value[0] if isinstance(value, Sequence) else value)
