"""The one preprocessing implementation: RGB image → model input, shared by training, export and the engine.

Two steps, kept apart so training can cache the first and augment between them:
`prepare_pixels` (crop, resize, colour constancy → uint8 HxWx3) and `to_input` (→ float32 3xHxW).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

# Shades of Gray with Minkowski norm 6 (Finlayson & Trezzi 2004; used by ISIC challenge winners):
# it removes most of the colour cast of a given camera and lighting, the main cue that does not transfer
# between clinics.
SHADES_OF_GRAY_POWER = 6.0


@dataclass(frozen=True)
class PreprocessSpec:
    """The parts of a model's spec that preprocessing needs."""

    input_size: int = 224
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    colour_constancy: str | None = "shades_of_gray"
    crop: str = "center_square"  # one of CROPS


# "center_square": the centred square; "trim_square": the same after cutting uniform dark borders away (the
# black bars and frames of dermatoscopes and scanned slides, which differ by clinic); "resize": the whole image,
# squashed (the seed project's preprocessing).
CROPS = ("center_square", "trim_square", "resize")
_DARK = 40  # grey level under which a pixel counts as border black
_BORDER_ROW = 0.92  # a row or column this dark all along is border
_MIN_KEPT = 0.5  # never cut more than half of a side: a dark photo is not a border


Box = tuple[int, int, int, int]


def dark_border_box(image: Image.Image) -> Box:
    """The image's box without uniform dark borders (rows and columns nearly all black), on a thumbnail.

    A dermatoscope's circular field leaves its corners black but its middle rows bright, so a circle is kept
    whole (training's vignette augmentation covers what remains); bars and frames are cut.
    """
    width, height = image.size
    thumb = image.convert("L")
    thumb.thumbnail((256, 256), Image.Resampling.BILINEAR, reducing_gap=2.0)
    dark = np.asarray(thumb, dtype=np.uint8) < _DARK
    rows, cols = dark.mean(axis=1) < _BORDER_ROW, dark.mean(axis=0) < _BORDER_ROW
    if not rows.any() or not cols.any():
        return 0, 0, width, height
    top, bottom = int(np.argmax(rows)), len(rows) - int(np.argmax(rows[::-1]))
    left, right = int(np.argmax(cols)), len(cols) - int(np.argmax(cols[::-1]))
    if (bottom - top) < _MIN_KEPT * len(rows) or (right - left) < _MIN_KEPT * len(cols):
        return 0, 0, width, height
    sx, sy = width / dark.shape[1], height / dark.shape[0]
    return round(left * sx), round(top * sy), round(right * sx), round(bottom * sy)


def analysed_box(image: Image.Image, crop: str) -> Box:
    """The part of the image that the model sees, in the image's own pixels."""
    width, height = image.size
    if crop == "resize":
        return 0, 0, width, height
    if crop == "trim_square":
        left, top, right, bottom = dark_border_box(image)
        l2, t2, r2, b2 = square_crop_box(right - left, bottom - top)
        return left + l2, top + t2, left + r2, top + b2
    if crop == "center_square":
        return square_crop_box(width, height)
    raise ValueError(f"unknown crop {crop!r}; valid: {', '.join(CROPS)}")


def square_crop_box(width: int, height: int) -> tuple[int, int, int, int]:
    """The centred square, as dermoscopy frames the lesion in the middle."""
    side = min(width, height)
    left = (width - side) // 2
    top = (height - side) // 2
    return left, top, left + side, top + side


@lru_cache(maxsize=4)
def _powers(power: float) -> np.ndarray:
    return np.arange(256, dtype=np.float64) ** power


def shades_of_gray(pixels: np.ndarray, power: float = SHADES_OF_GRAY_POWER) -> np.ndarray:
    """Colour-constancy correction of a uint8 RGB array; returns uint8 of the same shape."""
    # uint8 input has 256 values per channel: the Minkowski mean from a histogram, the gains as a lookup
    # table (twice as fast as float arithmetic on every pixel, and the sum in float64)
    flat = pixels.reshape(-1, 3)
    moments = np.array([np.bincount(flat[:, c], minlength=256) @ _powers(power) for c in range(3)]) / len(flat)
    illuminant = (moments ** (1.0 / power)).astype(np.float32)
    norm = float(np.sqrt(np.sum(illuminant**2)))
    if norm < 1e-6:  # a black image has no illuminant to remove
        return pixels.copy()
    gains = 1.0 / (illuminant / norm * np.sqrt(3.0) + 1e-6)
    table = np.clip(np.arange(256, dtype=np.float32)[:, None] * gains[None, :], 0, 255).astype(np.uint8)
    out = np.empty_like(pixels)
    for c in range(3):
        out[..., c] = table[pixels[..., c], c]
    return out


def prepare_pixels(image: Image.Image, spec: PreprocessSpec) -> np.ndarray:
    """Crop, resize and colour-correct an RGB image into the model's uint8 HxWx3 pixels."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    size = spec.input_size
    box = analysed_box(image, spec.crop)
    # reducing_gap makes big images cheap (a box reduce first) with no visible loss at 224 px.
    image = image.resize((size, size), Image.Resampling.BILINEAR, box=box, reducing_gap=2.0)
    pixels = np.asarray(image, dtype=np.uint8)
    if spec.colour_constancy == "shades_of_gray":
        pixels = shades_of_gray(pixels)
    elif spec.colour_constancy is not None:
        raise ValueError(f"unknown colour constancy {spec.colour_constancy!r}")
    return pixels


def to_input(pixels: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """uint8 HxWx3 (or NxHxWx3) pixels → normalised float32 3xHxW (or Nx3xHxW)."""
    scale = np.float32(1.0 / 255.0)
    mean = np.asarray(spec.mean, dtype=np.float32)
    std = np.asarray(spec.std, dtype=np.float32)
    x = (pixels.astype(np.float32) * scale - mean) / std
    return np.ascontiguousarray(np.moveaxis(x, -1, -3))


def preprocess(image: Image.Image, spec: PreprocessSpec) -> np.ndarray:
    """RGB image → float32 3xHxW model input."""
    return to_input(prepare_pixels(image, spec), spec)
