"""Fitted on the validation split only: probability calibration, operating threshold, and the feature
distribution behind the "is this a skin lesion at all" check (NumPy, SciPy and scikit-learn; no torch)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize

from skinscan.core.calibration import Calibration


def fit_calibration(logits: np.ndarray, labels: np.ndarray) -> Calibration:
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)

    def nll(params: np.ndarray) -> float:
        log_t, b = params
        s = (z - b) / np.exp(log_t)
        # log(1 + e^s) - y*s, computed stably
        return float(np.mean(np.logaddexp(0.0, s) - y * s))

    # bounded: on perfectly separated validation data the unbounded optimum is a temperature of zero
    bounds = [(np.log(0.05), np.log(20.0)), (-20.0, 20.0)]
    result = minimize(nll, x0=np.array([0.0, 0.0]), method="L-BFGS-B", bounds=bounds)
    log_t, b = result.x
    return Calibration(temperature=float(np.exp(log_t)), bias=float(b))


# a source with fewer malignant validation images than this sets no threshold of its own (too noisy)
MIN_POSITIVES_PER_SOURCE = 30


def choose_threshold(
    prob: np.ndarray, labels: np.ndarray, target_sensitivity: float, sources: Sequence[str] | None = None
) -> float:
    """The highest threshold whose sensitivity on these cases is at least the target; with `sources`, at
    least the target within every source that has MIN_POSITIVES_PER_SOURCE malignant cases, as well as
    overall.

    Pooled over sources, easy malignant cases of one collection can carry the sensitivity while another's,
    more like a new clinic's, falls below the target; the lowest of the per-source thresholds holds it in each.
    """
    if sources is not None:
        names, labels = np.asarray(sources), np.asarray(labels)
        prob = np.asarray(prob, dtype=np.float64)
        candidates = [choose_threshold(prob, labels, target_sensitivity)]
        for source in sorted(set(names)):
            there = names == source
            if labels[there].sum() >= MIN_POSITIVES_PER_SOURCE:
                candidates.append(choose_threshold(prob[there], labels[there], target_sensitivity))
        return min(candidates)
    prob = np.asarray(prob, dtype=np.float64)
    positives = np.sort(prob[np.asarray(labels) == 1])[::-1]
    if positives.size == 0:
        return 0.5
    # keeping the k highest-scoring positives above the threshold gives sensitivity k / n
    k = int(np.ceil(target_sensitivity * positives.size))
    k = min(max(k, 1), positives.size)
    return float(positives[k - 1])


@dataclass(frozen=True)
class FeatureGaussian:
    """A Gaussian of the penultimate features of training images, in a compact form.

    Mahalanobis distance in the top-k principal directions plus the residual energy scaled by the mean
    remaining variance: nearly the full distance at a fraction of the size (k x d instead of d x d).
    """

    mean: np.ndarray  # (d,)
    components: np.ndarray  # (d, k), columns scaled by 1/sqrt(eigenvalue)
    basis: np.ndarray  # (d, k) orthonormal principal directions
    residual_scale: float  # 1 / mean of the remaining eigenvalues

    def to_dict(self) -> dict[str, Any]:
        """float32 arrays for a checkpoint (a few hundred kB)."""
        return {
            "mean": self.mean.astype(np.float32),
            "components": self.components.astype(np.float32),
            "basis": self.basis.astype(np.float32),
            "residual_scale": self.residual_scale,
        }

    @classmethod
    def from_dict(cls, g: dict[str, Any]) -> FeatureGaussian:
        return cls(
            mean=np.asarray(g["mean"], dtype=np.float64),
            components=np.asarray(g["components"], dtype=np.float64),
            basis=np.asarray(g["basis"], dtype=np.float64),
            residual_scale=float(g["residual_scale"]),
        )

    def distance(self, features: np.ndarray) -> np.ndarray:
        centred = np.asarray(features, dtype=np.float64) - self.mean
        whitened = centred @ self.components
        residual = centred - (centred @ self.basis) @ self.basis.T
        d2 = np.sum(whitened**2, axis=1) + np.sum(residual**2, axis=1) * self.residual_scale
        return np.sqrt(d2 / self.mean.shape[0])


def fit_feature_gaussian(features: np.ndarray, k: int = 128) -> FeatureGaussian:
    from sklearn.covariance import LedoitWolf  # shrinkage: 1280 dims from a few thousand images

    x = np.asarray(features, dtype=np.float64)
    k = min(k, x.shape[1] - 1, x.shape[0] - 1)
    cov = LedoitWolf().fit(x).covariance_
    values, vectors = np.linalg.eigh(cov)
    order = np.argsort(values)[::-1]
    values, vectors = np.maximum(values[order], 1e-12), vectors[:, order]
    basis = vectors[:, :k]
    rest = values[k:]
    return FeatureGaussian(
        mean=x.mean(axis=0),
        components=basis / np.sqrt(values[:k]),
        basis=basis,
        residual_scale=float(1.0 / rest.mean()) if rest.size else 0.0,
    )
