"""After training, on the best weights: what the validation split alone fits — calibration, the operating
threshold, and the input checks (Gaussians of training features and textures, the validation distances that
set their thresholds, and image-quality limits)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np
import torch

from skinscan.core.quality import fit_quality_limits, measure_quality
from skinscan.training.config import TrainConfig
from skinscan.training.dataset import Prepared
from skinscan.training.fitting import (
    MIN_POSITIVES_PER_SOURCE,
    choose_threshold,
    fit_calibration,
    fit_feature_gaussian,
)
from skinscan.training.models import Classifier
from skinscan.training.scoring import auc, predict_logits


def threshold_rule(target_sensitivity: float) -> str:
    """The threshold rule in words, for the checkpoint and the model card."""
    return (
        f"the highest threshold with validation sensitivity >= {target_sensitivity} overall and within every "
        f"source with >= {MIN_POSITIVES_PER_SOURCE} malignant validation images"
    )


def finalize(
    model: Classifier, cfg: TrainConfig, train: Prepared, val: Prepared, device: torch.device
) -> dict[str, Any]:
    """The validation-fitted fields of a `Checkpoint`, for `Checkpoint.with_fit`."""
    spec = model.info.preprocess
    val_logits, val_feats, val_texture = predict_logits(model, val.pixels, spec, device)
    calibration = fit_calibration(val_logits, val.labels)
    val_prob = calibration.apply(val_logits)
    threshold = choose_threshold(val_prob, val.labels, cfg.target_sensitivity, val.sources)
    rng = np.random.default_rng(cfg.seed)
    n = min(cfg.feature_images, len(train.labels)) if cfg.feature_images else len(train.labels)
    pick = np.sort(rng.choice(len(train.labels), size=n, replace=False))
    _, train_feats, train_texture = predict_logits(model, train.pixels[pick], spec, device)
    features, texture = fit_feature_gaussian(train_feats), fit_feature_gaussian(train_texture)
    limits = fit_quality_limits([measure_quality(p) for p in np.concatenate([val.pixels, train.pixels[pick]])])
    return {
        "quality_limits": asdict(limits),
        "temperature": calibration.temperature,
        "logit_bias": calibration.bias,
        "threshold": threshold,
        "target_sensitivity": cfg.target_sensitivity,
        "threshold_rule": threshold_rule(cfg.target_sensitivity),
        "val_auc": auc(val.labels, val_logits),
        "val_n": len(val.labels),
        "val_keys": [r.key for r in val.records],
        "val_logits": val_logits.tolist(),
        "val_labels": val.labels.tolist(),
        "val_ood_distance": features.distance(val_feats).tolist(),
        "val_texture_distance": texture.distance(val_texture).tolist(),
        "feature_gaussian": features.to_dict(),
        "texture_gaussian": texture.to_dict(),
    }
