"""Simple image-quality measures behind "too dark / too blurred / blank to judge" (numpy only).

Measured on the model's prepared pixels (after crop, resize and colour constancy), so the thresholds fitted
on validation images apply unchanged at serve time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Quality:
    brightness: float  # mean luminance, 0..255
    contrast: float  # standard deviation of luminance
    sharpness: float  # mean absolute Laplacian response of the luminance


def measure_quality(pixels: np.ndarray) -> Quality:
    """Quality measures of uint8 HxWx3 prepared pixels."""
    lum = pixels.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    lap = -4.0 * lum[1:-1, 1:-1] + lum[:-2, 1:-1] + lum[2:, 1:-1] + lum[1:-1, :-2] + lum[1:-1, 2:]
    return Quality(float(lum.mean()), float(lum.std()), float(np.abs(lap).mean()))


@dataclass(frozen=True)
class QualityLimits:
    """Below any of these an image is refused as unjudgeable; fitted as low percentiles of validation images."""

    min_brightness: float = 20.0
    min_contrast: float = 4.0
    min_sharpness: float = 0.3

    def problem(self, q: Quality) -> str | None:
        """A plain-language reason, or None when the image is fit to judge."""
        if q.brightness < self.min_brightness:
            return "The photo is too dark to judge. Retake it in good, even light."
        if q.contrast < self.min_contrast:
            return "The photo is nearly blank (almost no detail). Retake it with the lesion in the centre."
        if q.sharpness < self.min_sharpness:
            return "The photo is too blurred to judge. Hold the camera steady and focus on the lesion."
        return None


def fit_quality_limits(measures: list[Quality], quantile: float = 0.002, margin: float = 0.8) -> QualityLimits:
    """Limits a little below the lowest values real dermoscopy shows, so they almost never refuse one."""
    b = np.array([q.brightness for q in measures])
    c = np.array([q.contrast for q in measures])
    s = np.array([q.sharpness for q in measures])
    return QualityLimits(
        min_brightness=float(min(20.0, np.quantile(b, quantile) * margin)),
        min_contrast=float(min(4.0, np.quantile(c, quantile) * margin)),
        min_sharpness=float(np.quantile(s, quantile) * margin),
    )
