"""Simple image measures behind "too dark / blank / blurred / not in colour" (numpy only) and their limits.

Measured on the model's prepared pixels (after crop, resize and colour constancy), so the thresholds fitted
on validation images apply unchanged at serve time. Colour constancy divides out a colour cast, so a photo
with a strong cast keeps the colour differences within it, and a grey photo stays exactly grey.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass(frozen=True)
class Quality:
    brightness: float  # mean of each pixel's brightest channel (HSV value), 0..255: pure blue is bright, not dark
    contrast: float  # standard deviation of luminance
    sharpness: float  # mean absolute Laplacian response of the luminance
    chroma: float  # mean of each pixel's channel spread (max - min), 0..255; 0 for a greyscale photo
    saturation: float  # total chroma over total brightness, 0..1: 1 where a colour has no trace of the others


def measure_quality(pixels: np.ndarray) -> Quality:
    """Quality measures of uint8 HxWx3 prepared pixels."""
    rgb = pixels.astype(np.float32)
    lum = rgb @ _LUMA
    lap = -4.0 * lum[1:-1, 1:-1] + lum[:-2, 1:-1] + lum[2:, 1:-1] + lum[1:-1, :-2] + lum[1:-1, 2:]
    value = rgb.max(axis=-1)
    spread = value - rgb.min(axis=-1)
    # the ratio of sums, not the mean of per-pixel ratios: a near-black pixel's saturation is noise
    total = float(value.sum())
    saturation = float(spread.sum()) / total if total > 0 else 0.0
    return Quality(
        brightness=float(value.mean()),
        contrast=float(lum.std()),
        sharpness=float(np.abs(lap).mean()),
        chroma=float(spread.mean()),
        saturation=saturation,
    )


@dataclass(frozen=True)
class QualityLimits:
    """Past any of these an image is refused as unjudgeable; fitted as low (high) percentiles of validation images.

    A model spec written before a limit existed lacks it and gets its default here.
    """

    min_brightness: float = 20.0
    min_contrast: float = 4.0
    min_sharpness: float = 0.3
    # Real dermoscopy shows at least 3 grey levels (3.1, the least of the 21,478 images of four collections); a
    # greyscale photo 0, also as a JPEG. Kept far below the real ones, so that a faded photo or one under a
    # sepia filter (0.4 and more, though colour constancy leaves it nearly grey) is still judged.
    min_chroma: float = 0.3
    # Real dermoscopy stays under 0.78 (the most, of 21,478 images: a dark red-brown ISIC 2020 close-up; 99 % are
    # under 0.46): skin is never one pure colour. A colour with no trace of the others reaches 1.
    max_saturation: float = 0.95


def fit_quality_limits(measures: list[Quality], quantile: float = 0.002, margin: float = 0.8) -> QualityLimits:
    """Limits a little beyond the most extreme values real dermoscopy shows, so they almost never refuse one."""
    b = np.array([q.brightness for q in measures])
    c = np.array([q.contrast for q in measures])
    s = np.array([q.sharpness for q in measures])
    chroma = np.array([q.chroma for q in measures])
    sat = np.array([q.saturation for q in measures])
    return QualityLimits(
        min_brightness=float(min(20.0, np.quantile(b, quantile) * margin)),
        min_contrast=float(min(4.0, np.quantile(c, quantile) * margin)),
        min_sharpness=float(np.quantile(s, quantile) * margin),
        min_chroma=float(min(QualityLimits.min_chroma, np.quantile(chroma, quantile) * margin)),
        max_saturation=float(max(QualityLimits.max_saturation, np.quantile(sat, 1 - quantile) / margin)),
    )
