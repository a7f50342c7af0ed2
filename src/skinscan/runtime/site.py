"""A site profile: one clinic's own operating point for a model, fitted by `skinscan calibrate-site` on its labelled
photos, and applied by the engine with `--site site.json` (or SKINSCAN_SITE).

It holds a probability calibration (temperature and bias) and a threshold that gives the clinic the sensitivity it
asked for; where the clinic had enough images, a linear head on the model's pooled features (the "adapted" head);
perhaps a wider limit for the input checks' feature distance, so that the clinic's camera is not refused; and what
to expect, measured on held-out folds of the clinic's own images. The file is JSON (FORMAT below); no torch and no
scikit-learn are needed to apply it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from skinscan.core.errors import ConfigError

FORMAT = "skinscan-site-1"
SITE_ENV = "SKINSCAN_SITE"
ACTIVE = ("recalibrated", "adapted")


@dataclass(frozen=True)
class SiteHead:
    """A logistic regression on standardised pooled features, with the model's own logit as one more input."""

    mean: np.ndarray  # (d,) feature means at the site
    scale: np.ndarray  # (d,) feature standard deviations at the site
    coef: np.ndarray  # (d,) weights of the standardised features
    logit_coef: float  # weight of the model's own logit: the head starts from, and blends with, the model
    intercept: float

    def logits(self, features: np.ndarray, model_logits: np.ndarray) -> np.ndarray:
        z = (np.asarray(features, dtype=np.float64) - self.mean) / self.scale
        return z @ self.coef + self.logit_coef * np.asarray(model_logits, dtype=np.float64) + self.intercept

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean.tolist(), "scale": self.scale.tolist(), "coef": self.coef.tolist(),
                "logit_coef": self.logit_coef, "intercept": self.intercept}  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SiteHead:
        mean, scale, coef = (np.asarray(data[k], dtype=np.float64) for k in ("mean", "scale", "coef"))
        if len({mean.shape, scale.shape, coef.shape}) != 1 or mean.ndim != 1 or not np.all(scale > 0):
            raise ValueError("the head's mean, scale and coef must be vectors of one length, scales positive")
        return cls(mean, scale, coef, logit_coef=float(data["logit_coef"]), intercept=float(data["intercept"]))


@dataclass(frozen=True)
class SiteProfile:
    """What a site file says (see the module docstring)."""

    name: str
    created: str  # ISO date and time of the fit
    model_id: str  # the model it was fitted for; another model refuses it
    images: int  # labelled images it was fitted on
    malignant: int
    target_sensitivity: float
    threshold: float
    temperature: float
    bias: float
    active: str  # "recalibrated" or "adapted"
    expected: dict[str, Any] = field(default_factory=dict)  # sensitivity, specificity... with intervals, held out
    ood_threshold: float | None = None  # the input checks' feature-distance limit at this site, if refitted
    head: SiteHead | None = None
    reference: dict[str, Any] = field(default_factory=dict)  # the site's own drift reference (core/drift.py)
    path: str = ""

    def __post_init__(self) -> None:
        if self.active not in ACTIVE:
            raise ValueError(f"active must be one of {', '.join(ACTIVE)}, not {self.active!r}")
        if self.active == "adapted" and self.head is None:
            raise ValueError("an adapted profile needs its head")
        if not (0.0 <= self.threshold <= 1.0 and self.temperature > 0 and np.isfinite(self.bias)):
            raise ValueError("threshold must lie in [0, 1], temperature be positive and bias finite")

    @property
    def adapted(self) -> SiteHead | None:
        """The head in use: only when the profile says the adapted head is active."""
        return self.head if self.active == "adapted" else None

    def summary(self) -> dict[str, Any]:
        """What every answer, /model and the desktop app show about the profile in use."""
        return {
            "name": self.name, "created": self.created, "images": self.images, "malignant": self.malignant,
            "active": self.active, "threshold": round(self.threshold, 4),
            "target_sensitivity": self.target_sensitivity,
            "expected_sensitivity": self.expected.get("sensitivity"), "expected_sensitivity_ci":
            self.expected.get("sensitivity_ci"), "expected_specificity": self.expected.get("specificity"),
            "expected_specificity_ci": self.expected.get("specificity_ci"),
        }  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "name": self.name, "created": self.created, "model_id": self.model_id,
            "images": self.images, "malignant": self.malignant, "target_sensitivity": self.target_sensitivity,
            "threshold": self.threshold, "calibration": {"temperature": self.temperature, "bias": self.bias},
            "active": self.active, "expected": self.expected, "ood_threshold": self.ood_threshold,
            "head": self.head.to_dict() if self.head is not None else None, "reference": self.reference,
        }  # fmt: skip

    def save(self, path: str | os.PathLike[str]) -> Path:
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], path: str = "") -> SiteProfile:
        if data.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} file (format {data.get('format')!r})")
        calibration = data["calibration"]
        head = data.get("head")
        return cls(
            name=str(data["name"]), created=str(data["created"]), model_id=str(data["model_id"]),
            images=int(data["images"]), malignant=int(data["malignant"]),
            target_sensitivity=float(data["target_sensitivity"]), threshold=float(data["threshold"]),
            temperature=float(calibration["temperature"]), bias=float(calibration["bias"]),
            active=str(data["active"]), expected=dict(data.get("expected") or {}),
            ood_threshold=None if data.get("ood_threshold") is None else float(data["ood_threshold"]),
            head=SiteHead.from_dict(head) if head else None, reference=dict(data.get("reference") or {}), path=path,
        )  # fmt: skip


def load_site(path: str | os.PathLike[str]) -> SiteProfile:
    """Read a site file.

    Raises:
        ConfigError: missing, not JSON, or not a valid site profile (the message says which).
    """
    file = Path(path)
    try:
        data = json.loads(file.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read the site profile {file}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"the site profile {file} is not JSON: {exc}") from None
    try:
        return SiteProfile.from_dict(data, path=str(file))
    except (KeyError, TypeError, ValueError) as exc:
        detail = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
        raise ConfigError(f"the site profile {file} cannot be used: {detail}") from None
