"""Which training images each epoch draws: plain shuffling, or weighted draws that balance the labels overall
or within each data source (NumPy)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from skinscan.core.errors import ConfigError
from skinscan.training.config import BALANCES


def sampling_weights(labels: np.ndarray, sources: Sequence[str], balance: str) -> np.ndarray | None:
    """Per-image probabilities of being drawn for a training epoch; None for plain shuffling.

    "sampler": both labels equally often. "source": each source keeps its share of the draws, split equally
    between the labels it has, so that where an image comes from no longer predicts its label.
    """
    if balance not in BALANCES:
        raise ConfigError(f"unknown balance {balance!r}; valid: {', '.join(BALANCES)}")
    if balance in ("pos_weight", "none"):
        return None
    names = np.asarray(sources) if balance == "source" else np.full(len(labels), "")
    weights = np.zeros(len(labels))
    for source in np.unique(names):
        there = names == source
        present = np.unique(labels[there])
        share = float(there.mean()) if balance == "source" else 1.0
        for label in present:  # the source's share of the draws, split equally between its labels
            group = there & (labels == label)
            weights[group] = share / len(present) / group.sum()
    return weights / weights.sum()


def epoch_order(n: int, weights: np.ndarray | None, seed: int, epoch: int) -> np.ndarray:
    """The image indices of one epoch: a permutation, or n weighted draws with replacement."""
    rng = np.random.default_rng(seed * 1000 + epoch)
    if weights is None:
        return rng.permutation(n)
    return rng.choice(n, size=n, replace=True, p=weights)
