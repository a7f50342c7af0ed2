"""The exported model's self-description (model.json / ONNX metadata), read by engine, API, GUI and CLI."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from skinscan.core.errors import ModelFormatError
from skinscan.core.preprocess import PreprocessSpec
from skinscan.core.quality import QualityLimits

SPEC_FORMAT = "skinscan-model-1"
METADATA_KEY = "skinscan_spec"


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to run and describe a model; preprocessing constants live here and only here."""

    id: str
    version: str
    architecture: str
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    colour_constancy: str | None = "shades_of_gray"
    crop: str = "center_square"
    class_names: tuple[str, str] = ("benign", "malignant")
    temperature: float = 1.0
    logit_bias: float = 0.0
    threshold: float = 0.5
    target_sensitivity: float = 0.9
    ood_threshold: float | None = None  # feature distance above which an image is "not a skin lesion"
    quality: dict[str, float] = field(default_factory=lambda: asdict(QualityLimits()))
    cam_size: tuple[int, int] = (7, 7)
    outputs: tuple[str, ...] = ("logit", "cam", "ood")  # newer models add "features" and "diagnosis"
    diagnoses: tuple[str, ...] = ()  # the codes of the "diagnosis" output (core.diagnosis.DIAGNOSES), if any
    training_data: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)  # test metrics by dataset name
    # deciles and 99th percentiles of probability and input-check distance on reference images (core/drift.py)
    reference: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    license: str = ""
    intended_use: str = ""
    command: str = ""
    format: str = SPEC_FORMAT

    @property
    def preprocess(self) -> PreprocessSpec:
        return PreprocessSpec(self.input_size, self.mean, self.std, self.colour_constancy, self.crop)

    @property
    def quality_limits(self) -> QualityLimits:
        return QualityLimits(**self.quality)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        if data.get("format") != SPEC_FORMAT:
            raise ModelFormatError(f"unsupported model spec format {data.get('format')!r}; expected {SPEC_FORMAT}")
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for key in ("mean", "std", "class_names", "cam_size", "outputs", "diagnoses"):
            if key in values:
                values[key] = tuple(values[key])
        try:
            return cls(**values)
        except TypeError as exc:
            raise ModelFormatError(f"incomplete model spec: {exc}") from exc

    @classmethod
    def from_json(cls, text: str) -> ModelSpec:
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise ModelFormatError(f"model spec is not valid JSON: {exc}") from exc


def write_spec(spec: ModelSpec, path: Path) -> None:
    path.write_text(spec.to_json() + "\n")
