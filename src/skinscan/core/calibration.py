"""Applying a fitted probability calibration (the fitting itself is training's: `skinscan.training.fitting`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))


@dataclass(frozen=True)
class Calibration:
    """p = sigmoid((logit - bias) / temperature).

    The bias removes the prior shift that class weighting puts into the logits; the temperature fixes
    over-confidence. Both are fitted by minimising the log loss on validation logits.
    """

    temperature: float = 1.0
    bias: float = 0.0

    def apply(self, logits: np.ndarray) -> np.ndarray:
        return sigmoid((np.asarray(logits, dtype=np.float64) - self.bias) / self.temperature)
