"""The trained model on disk (best.pt): one `Checkpoint` dataclass with one format version, read and written
here only. A run's resumable state (last.pt) is the trainer's, not this."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skinscan.core.calibration import Calibration
from skinscan.core.errors import ModelFormatError
from skinscan.core.preprocess import PreprocessSpec
from skinscan.core.quality import QualityLimits

if TYPE_CHECKING:
    import torch

    from skinscan.training.config import TrainConfig
    from skinscan.training.models import Classifier

FORMAT_VERSION = 1
FORMAT = f"skinscan-checkpoint-{FORMAT_VERSION}"


@dataclass
class Checkpoint:
    """A trained network, how to feed it, what it was trained on, and what validation fitted to it.

    On disk it is a plain dict of these fields (the weights under "model", as `torch.save` keeps them), so
    a checkpoint written before this class existed reads the same.
    """

    model_name: str  # a name from `skinscan models`
    model: dict[str, torch.Tensor]  # the weights (state dict)
    preprocess: PreprocessSpec
    config: dict[str, Any] = field(default_factory=dict)  # the TrainConfig, as a dict
    info: dict[str, Any] = field(default_factory=dict)  # the network's ModelInfo
    data: dict[str, Any] = field(default_factory=dict)  # which data, how much of it, what was dropped
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: dict[str, float] = field(default_factory=dict)
    train_keys: list[str] = field(default_factory=list)
    # fitted on the validation split only (training.finalize)
    temperature: float = 1.0
    logit_bias: float = 0.0
    threshold: float = 0.5
    target_sensitivity: float = 0.9
    threshold_rule: str = "the highest with validation sensitivity >= the target"
    quality_limits: dict[str, float] | None = None
    val_auc: float | None = None
    val_n: int = 0
    val_keys: list[str] = field(default_factory=list)
    val_logits: list[float] = field(default_factory=list)
    val_labels: list[int] = field(default_factory=list)
    val_ood_distance: list[float] = field(default_factory=list)
    val_texture_distance: list[float] = field(default_factory=list)
    feature_gaussian: dict[str, Any] | None = None
    texture_gaussian: dict[str, Any] | None = None
    refit: dict[str, Any] | None = None  # set by `skinscan refit`: from where, on how many images
    # the auxiliary 7-class diagnosis head (weight, bias over core.diagnosis.DIAGNOSES) of the kept epoch
    diagnosis_head: dict[str, torch.Tensor] | None = None
    format: str = FORMAT
    extra: dict[str, Any] = field(default_factory=dict)  # keys this version does not know (a soup's), kept as they are

    @property
    def calibration(self) -> Calibration:
        return Calibration(self.temperature, self.logit_bias)

    @property
    def limits(self) -> QualityLimits:
        return QualityLimits(**self.quality_limits) if self.quality_limits else QualityLimits()

    def train_config(self, **overrides: Any) -> TrainConfig:
        """The TrainConfig this checkpoint was trained with (settings since removed are an error)."""
        from skinscan.training.config import config_from

        return config_from(None, **{**self.config, **overrides})

    def build_model(self) -> Classifier:
        """The trained network, in eval mode on the CPU."""
        from skinscan.training.models import create_model

        model = create_model(self.model_name, pretrained=False)
        try:
            model.load_state_dict(self.model)
        except RuntimeError as exc:
            raise ModelFormatError(f"the weights do not fit a {self.model_name}: {exc}") from exc
        return model.eval()

    def with_fit(self, **fitted: Any) -> Checkpoint:
        """A copy with validation-fitted fields replaced (unknown names are an error)."""
        return replace(self, **fitted)

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        data["preprocess"] = asdict(self.preprocess)
        return {**self.extra, **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "checkpoint") -> Checkpoint:
        if data.get("format") != FORMAT:
            if "optimizer" in data and "epoch" in data:
                raise ModelFormatError(
                    f"{source} is a run's resumable state (last.pt), not a trained model: resume from it with "
                    "--resume, or use the best.pt beside it"
                )
            raise ModelFormatError(f"{source} is not a skinscan checkpoint (format {data.get('format')!r}; "
                                   f"this version reads {FORMAT})")  # fmt: skip
        known = {f.name for f in fields(cls)} - {"extra"}
        values = {k: v for k, v in data.items() if k in known}
        values["extra"] = {k: v for k, v in data.items() if k not in known}
        try:
            pre = dict(values["preprocess"])
            for key in ("mean", "std"):
                pre[key] = tuple(pre[key])
            values["preprocess"] = PreprocessSpec(**pre)
            return cls(**values)
        except (KeyError, TypeError) as exc:
            raise ModelFormatError(f"{source} is an incomplete skinscan checkpoint: {exc}") from exc

    def save(self, path: str | Path) -> Path:
        """Write atomically: a crash never leaves half a checkpoint under the final name."""
        import torch

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(self.to_dict(), tmp)
        tmp.replace(path)
        return path


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read a best.pt (or a refitted one).

    Raises:
        ModelFormatError: unreadable, not a skinscan checkpoint, or a last.pt.
    """
    import pickle

    import torch

    try:
        data = torch.load(path, map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as exc:
        raise ModelFormatError(f"cannot read checkpoint {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelFormatError(f"{path} is not a skinscan checkpoint")
    return Checkpoint.from_dict(data, str(path))


def load_checkpoint(path: str | Path) -> tuple[Classifier, Checkpoint]:
    """The trained network (eval mode, CPU) and its checkpoint."""
    ckpt = read_checkpoint(path)
    return ckpt.build_model(), ckpt
