"""The heatmap's scale, tied to the decision. Only a photo at or above the threshold is coloured, and on it only a
region that, judged on its own, would reach the threshold: yellow there, red where it alone would reach the highest
severity step. So a benign result shows the photo as it is (however its map varies: a network's map of a benign
mole still has cells above the threshold, on a ruler or the skin, outweighed by the rest), and the colours mean the
same on every photo (no per-image stretching).

With global average pooling and a linear head, the model's logit is the mean of its class activation map: a cell's
value is the logit the photo would have if all of it looked like that cell. (A network whose map sums the
contributions instead is rescaled by its number of cells; `cell_logits` takes either.)
"""

from __future__ import annotations

import numpy as np

from skinscan.core.calibration import Calibration
from skinscan.core.severity import DEFAULT_SCALE, SeverityStep

HEATMAP_LEGEND = (
    "Heatmap: coloured where a region, judged alone, would reach the model's threshold: yellow at the threshold, "
    "red at the highest severity. Uncoloured regions did not push the result towards malignant. It shows where "
    "the model looked, not where a cancer is."
)
BELOW_THRESHOLD_LEGEND = (
    "Heatmap: nothing is coloured, because the photo as a whole is below the model's threshold. Colours appear only "
    "on photos at or above it."
)
# yellow at the threshold, through orange, to deep red at the top step
_RAMP = np.array([[255, 214, 0], [255, 143, 0], [229, 57, 53], [183, 28, 28]], dtype=np.float32)
RAMP_HEX = tuple("#{:02x}{:02x}{:02x}".format(*(int(v) for v in rgb)) for rgb in _RAMP)  # for the apps' legends


def cell_logits(cam: np.ndarray, logit: float, cells_per_logit: float) -> np.ndarray:
    """Each cell's logit: the photo's, moved by how far the cell stands from the map's mean.

    Args:
        cam: the class activation map of one image.
        logit: the image's (uncalibrated) logit.
        cells_per_logit: 1 when the logit is the map's mean, the number of cells when it is their sum.
    """
    cam = np.asarray(cam, dtype=np.float32)
    return np.float32(logit) + np.float32(cells_per_logit) * (cam - cam.mean())


def logit_at(probability: float, calibration: Calibration) -> float:
    """The uncalibrated logit whose calibrated probability is `probability` (the inverse of Calibration.apply)."""
    p = min(max(probability, 1e-6), 1 - 1e-6)
    return float(calibration.temperature * np.log(p / (1 - p)) + calibration.bias)


def top_step_probability(threshold: float, scale: tuple[SeverityStep, ...] = DEFAULT_SCALE) -> float:
    """The probability where the highest severity step begins, for this threshold (the rescale's inverse)."""
    start = scale[-2].upper  # on the rescaled axis, where the threshold sits at 0.5
    return threshold + (start - 0.5) / 0.5 * (1 - threshold)


def decision_heat(
    cells: np.ndarray,
    threshold: float,
    calibration: Calibration,
    scale: tuple[SeverityStep, ...] = DEFAULT_SCALE,
    *,
    above_threshold: bool = True,
) -> np.ndarray:
    """Cell logits → heat: −1 (uncoloured) below the threshold, or everywhere when the photo itself is below it
    (`above_threshold` False); else 0..1 from the threshold to the highest step's start."""
    if not above_threshold:
        return np.full(np.shape(cells), -1.0, dtype=np.float32)
    low = logit_at(threshold, calibration)
    high = logit_at(top_step_probability(threshold, scale), calibration)
    span = max(high - low, 1e-6)
    heat = (np.asarray(cells, dtype=np.float32) - low) / np.float32(span)
    return np.where(cells >= low, np.clip(heat, 0.0, 1.0), -1.0).astype(np.float32)


def colourise(heat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Heat (−1 for uncoloured, else 0..1) → RGB uint8 colours and an opacity in 0..1 for laying them over a photo."""
    coloured = heat >= 0
    pos = np.clip(heat, 0.0, 1.0) * (len(_RAMP) - 1)
    low = np.floor(pos).astype(np.int32)
    high = np.minimum(low + 1, len(_RAMP) - 1)
    frac = (pos - low)[..., None]
    rgb = (_RAMP[low] * (1 - frac) + _RAMP[high] * frac).astype(np.uint8)
    alpha = np.where(coloured, 0.35 + 0.3 * np.clip(heat, 0.0, 1.0), 0.0).astype(np.float32)
    return rgb, alpha


def legend_ramp(width: int, height: int) -> np.ndarray:
    """The colour scale as an RGB uint8 strip, threshold at the left, highest severity at the right."""
    heat = np.tile(np.linspace(0.0, 1.0, max(width, 1), dtype=np.float32), (max(height, 1), 1))
    return colourise(heat)[0]
