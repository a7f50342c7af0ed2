"""Every training setting in one dataclass, overridable from a TOML file and the command line (no torch)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from skinscan.core.errors import ConfigError
from skinscan.core.preprocess import CROPS


@dataclass
class TrainConfig:
    data: list[str] = field(default_factory=lambda: ["../shared/data/ham10000", "../shared/data/isic-mvb"])
    split: str = "train"  # split of each training source ("" = all of it)
    holdout: list[str] = field(default_factory=lambda: ["../shared/data/ham10000", "../shared/data/isic-mvb"])
    holdout_split: str = "test"  # never trained on, nor any photograph that duplicates it
    duplicates: list[str] = field(default_factory=list)  # extra same_image_as manifests (beside-data ones are found)
    model: str = "efficientnet-lite0"  # a name from `skinscan models`
    input_size: int = 0  # side of the model's input in pixels; 0 = the network's own (224 for EfficientNet-Lite0)
    crop: str = "center_square"  # "trim_square" cuts dark borders first; "resize" squashes; core.preprocess.CROPS
    pretrained: bool = True  # start from ImageNet weights where the model has them
    epochs: int = 12  # upper bound; early stopping usually ends sooner
    batch_size: int = 32
    lr: float = 1e-3  # AdamW peak learning rate
    weight_decay: float = 1e-4
    dropout: float | None = None  # before the last layer; None keeps the model's own (seed-cnn: 0.5)
    freeze_bn: bool = False  # every batch norm keeps its statistics: fine-tuning a network whose batch statistics
    # do not match its weights' (one rebuilt from an export: experiments/onnx_to_checkpoint.py)
    freeze_blocks: int = 3  # stem + first N blocks stay ImageNet (generic, and 2.5x cheaper on CPU); EfficientNet
    balance: str = "pos_weight"  # "pos_weight" (weighted BCE), "sampler" (balanced batches), "source" or "none"
    # "source": balanced within each data source, so a source's look says nothing about the label
    aux_weight: float = 0.0  # weight of an auxiliary 7-class diagnosis loss (HAM10000 dx); training only
    val_fraction: float = 0.15  # grouped by lesion and by duplicate photograph
    monitor: str = "val_auc"  # chooses the best epoch; early stopping watches it too ("val_auc_sources":
    # the mean AUC within each validation source, blind to sources that differ in their share of malignant)
    patience: int = 4  # epochs without improvement before stopping
    schedule: str = "plateau"  # "plateau" (LR drops when the monitor stalls) or "cosine" (per step, after warmup)
    warmup_epochs: float = 1.0  # cosine only: linear warmup from 1 % of lr
    lr_patience: int = 1  # plateau only: epochs without improvement before the LR drops
    lr_factor: float = 0.3  # plateau only
    ema: float = 0.0  # exponential moving average of the weights (e.g. 0.999); validation and export use it
    target_sensitivity: float = 0.92  # on validation; a margin above the 0.90 we promise on unseen data
    feature_images: int = 3000  # training images used to fit the out-of-distribution Gaussian
    augment: bool = True
    augmentation: str = "standard"  # a preset of training.augment.AUGMENTATIONS: "standard" or "clinic"
    seed: int = 0
    max_steps: int = 0  # cap on steps per epoch (smoke runs); 0 = the whole epoch
    max_images: int = 0  # random subset of the training pool (quick runs); 0 = all
    time_limit: float = 0.0  # minutes; stop after the epoch that passes it (shared GPU leases); 0 = none
    threads: int = 0  # torch CPU threads; 0 = all cores
    device: str = "auto"  # "auto", "cpu" or "cuda"
    amp: bool = True  # mixed precision on CUDA (precision "auto")
    precision: str = "auto"  # "fp32", "bf16" or "fp16" autocast; "auto": fp16 on CUDA, see PRECISIONS
    memory_format: str = "auto"  # "channels_last" or "contiguous"; "auto": channels-last (faster on CPU and GPU)
    skip_bad: bool = False  # leave out unreadable images with a warning instead of stopping
    out: str = "runs/efficientnet-lite0"  # checkpoints, history and curves go here
    resume: str = ""  # a last.pt to continue from
    init: str = ""  # a best.pt whose weights start this run (fine-tuning) instead of ImageNet's

    def __post_init__(self) -> None:
        # checked here, before any image is decoded, not after the first epoch's minutes of work
        choices = (("balance", BALANCES), ("monitor", MONITORS), ("schedule", SCHEDULES), ("precision", PRECISIONS),
                   ("memory_format", MEMORY_FORMATS), ("augmentation", AUGMENTATION_NAMES),
                   ("crop", CROPS))  # fmt: skip
        for name, valid in choices:
            if getattr(self, name) not in valid:
                raise ConfigError(f"unknown {name} {getattr(self, name)!r}; valid: {', '.join(valid)}")
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise ConfigError(f"unknown device {self.device!r}; valid: auto, cpu, cuda, cuda:N")
        if not 0 < self.val_fraction < 1:
            raise ConfigError(f"val_fraction must be between 0 and 1, not {self.val_fraction}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError("epochs and batch_size must be at least 1")


BALANCES = ("pos_weight", "sampler", "source", "none")
MONITORS = ("val_auc", "val_auc_sources", "val_loss", "val_accuracy")
SCHEDULES = ("cosine", "plateau")
AUGMENTATION_NAMES = ("standard", "clinic")  # the presets of training.augment.AUGMENTATIONS (which needs torch)
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
MEMORY_FORMATS = ("auto", "channels_last", "contiguous")


def config_from(toml_path: str | Path | None = None, **overrides: Any) -> TrainConfig:
    """A TrainConfig from defaults, then a TOML file, then keyword overrides (None means "not given")."""
    values: dict[str, Any] = {}
    if toml_path:
        import tomllib

        try:
            with open(toml_path, "rb") as f:
                values.update(tomllib.load(f))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read training settings {toml_path}: {exc}") from exc
    values.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown training settings: {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
    return TrainConfig(**values)
