"""Scoring cached images with a network, without augmentation: validation each epoch, the validation-only
fitting after training, and refit; and the AUCs that choose the best epoch."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from skinscan.core.preprocess import PreprocessSpec
from skinscan.training.augment import normalise
from skinscan.training.models import Classifier


def eval_tensor(pixels: np.ndarray, spec: PreprocessSpec, device: torch.device | None = None) -> torch.Tensor:
    """The evaluation transform of cached uint8 NHWC pixels (no augmentation); matches the engine's input."""
    x = torch.from_numpy(pixels).to(device or torch.device("cpu")).permute(0, 3, 1, 2).float().div_(255.0)
    return normalise(x, spec.mean, spec.std)


@torch.no_grad()
def predict_logits(
    model: Classifier, pixels: np.ndarray, spec: PreprocessSpec, device: torch.device, batch_size: int = 64
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Logits, pooled features and texture statistics of cached pixels, without augmentation."""
    model.eval()
    logits, feats, textures = [], [], []
    for i in range(0, len(pixels), batch_size):
        maps, texture = model.maps_and_texture(eval_tensor(pixels[i : i + batch_size], spec, device))
        pooled = model.pool(maps)
        logits.append(model.logit(pooled).squeeze(1).float().cpu().numpy())
        feats.append(pooled.float().cpu().numpy())
        textures.append(texture.float().cpu().numpy())
    return np.concatenate(logits), np.concatenate(feats), np.concatenate(textures)


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC, NaN where only one class is present."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores)) if 0 < labels.sum() < len(labels) else float("nan")


def auc_within_sources(labels: np.ndarray, scores: np.ndarray, sources: Sequence[str]) -> float:
    """The mean of the AUCs within each source that has both classes (the pooled AUC when none has).

    Pooled over sources that differ in their share of malignant images, an AUC also rewards telling the
    sources apart, which is no help on a new clinic; within each source it cannot.
    """
    names = np.asarray(sources)
    per_source = [auc(labels[names == s], scores[names == s]) for s in sorted(set(sources))]
    scored = [a for a in per_source if not math.isnan(a)]
    return float(np.mean(scored)) if scored else auc(labels, scores)
