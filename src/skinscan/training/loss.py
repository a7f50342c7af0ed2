"""The training objective: binary cross-entropy on the malignancy logit (optionally class-weighted), plus an
optional auxiliary 7-class diagnosis loss on the pooled features of images whose diagnosis is known.

The diagnosis head belongs to the loss, not to the network: it shapes the features during training, and
export and serving never see it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from skinscan.core.diagnosis import DIAGNOSES


class ScreeningLoss(nn.Module):
    """BCE(logit, label) * pos_weight on positives, + aux_weight * CE(diagnosis head(pooled), dx) where dx >= 0.

    Args:
        pos_weight: weight of malignant images in the BCE (n_benign / n_malignant for "pos_weight" balance).
        aux_weight: weight of the diagnosis loss; 0 disables it (and the head).
        feature_dim: width of the pooled features (needed for the head).
    """

    pos_weight: torch.Tensor

    def __init__(self, pos_weight: float = 1.0, aux_weight: float = 0.0, feature_dim: int = 0) -> None:
        super().__init__()
        self.register_buffer("pos_weight", torch.tensor(float(pos_weight)))
        self.aux_weight = aux_weight
        self.aux: nn.Linear | None = nn.Linear(feature_dim, len(DIAGNOSES)) if aux_weight > 0 else None

    def forward(
        self, logits: torch.Tensor, pooled: torch.Tensor, labels: torch.Tensor, diagnoses: torch.Tensor
    ) -> torch.Tensor:
        loss = F.binary_cross_entropy_with_logits(logits.float(), labels.float(), pos_weight=self.pos_weight)
        known = diagnoses >= 0
        if self.aux is not None and bool(known.any()):
            aux_logits = self.aux(F.dropout(pooled.float()[known], 0.2, training=self.training))
            loss = loss + self.aux_weight * F.cross_entropy(aux_logits, diagnoses[known])
        return loss

    def bce(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The malignancy term alone (what validation reports as its loss)."""
        return F.binary_cross_entropy_with_logits(logits.float(), labels.float(), pos_weight=self.pos_weight)
