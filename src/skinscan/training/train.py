"""`skinscan train` and `skinscan refit`, top to bottom: settings → data → network → objective, optimiser and
schedule → the loop → the best epoch → validation-only fitting → best.pt."""

from __future__ import annotations

import json
import random
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from skinscan.core.errors import ConfigError, DataError
from skinscan.core.preprocess import PreprocessSpec
from skinscan.training.augment import AUGMENTATIONS
from skinscan.training.checkpoint import Checkpoint, read_checkpoint
from skinscan.training.config import TrainConfig
from skinscan.training.dataset import Prepared, checkpoint_split, gather_records, prepare
from skinscan.training.finalize import finalize
from skinscan.training.loss import ScreeningLoss
from skinscan.training.models import Classifier, create_model
from skinscan.training.schedule import make_schedule
from skinscan.training.trainer import Trainer, make_ema, steps_per_epoch


def pick_device(name: str) -> torch.device:
    """The device `name` means here; a CUDA device this machine lacks is a ConfigError, not a traceback."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} was asked for, but this machine has no CUDA GPU; use --device cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def initial_weights(cfg: TrainConfig) -> dict[str, torch.Tensor]:
    """The weights of the checkpoint that `cfg.init` names, checked to be of the network being trained."""
    ckpt = read_checkpoint(cfg.init)
    if ckpt.model_name != cfg.model:
        raise DataError(f"{cfg.init} holds a {ckpt.model_name}, not the {cfg.model} being trained")
    return ckpt.model


def train(cfg: TrainConfig) -> Path:
    """Train, keep the best epoch, fit the validation-only extras, and write `best.pt` in cfg.out.

    Returns:
        The path of the best checkpoint.
    """
    pick_device(cfg.device)  # an unusable device stops the run before the images load, as a bad --init does
    spec = preprocess_for(cfg)
    if cfg.init:
        initial_weights(cfg)
    train_records, val_records, summary = gather_records(cfg)
    tqdm.write(
        f"data: {summary['train']} training images ({summary['train_malignant']} malignant), "
        f"{summary['val']} validation ({summary['val_malignant']} malignant); "
        f"{summary['dropped_same_as_holdout']} dropped as copies of held-out images"
    )
    if not train_records or not val_records or len({r.label for r in val_records}) < 2:
        raise DataError("training needs both classes in the training and validation splits")
    train_set = prepare(train_records, spec, cfg.skip_bad, "loading training images")
    val_set = prepare(val_records, spec, cfg.skip_bad, "loading validation images")
    return train_prepared(cfg, train_set, val_set, summary)


def preprocess_for(cfg: TrainConfig) -> PreprocessSpec:
    """The network's own preprocessing, at the input size and with the crop the config asks for."""
    spec = create_model(cfg.model, pretrained=False).info.preprocess
    return replace(spec, input_size=cfg.input_size or spec.input_size, crop=cfg.crop)


def build_network(cfg: TrainConfig, device: torch.device) -> Classifier:
    """The network to train: ImageNet or `cfg.init` weights, first layers frozen, in the device's best layout."""
    model = create_model(cfg.model, pretrained=cfg.pretrained and not cfg.init, dropout=cfg.dropout)
    if cfg.init:
        model.load_state_dict(initial_weights(cfg))
    model.freeze(cfg.freeze_blocks)
    model.frozen_norms = cfg.freeze_bn
    return model.to(device).to(memory_format=memory_format_for(cfg))  # type: ignore[call-overload]


def memory_format_for(cfg: TrainConfig) -> torch.memory_format:
    # channels-last lets oneDNN (CPU) and cuDNN (GPU) run depthwise convolutions without layout changes:
    # benchmarks/bench_train.py measures it on both sides
    return torch.contiguous_format if cfg.memory_format == "contiguous" else torch.channels_last


def autocast_for(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The reduced precision of the forward pass, or None for fp32."""
    if cfg.precision == "auto":
        if device.type == "cuda":
            return torch.float16 if cfg.amp else None
        # bf16 saves nothing over a channels-last fp32 step even with AMX (benchmarks/results/train.md, two runs:
        # 2.02 against 2.07 s, 2.00 against 1.94 s): not worth its coarser gradients
        return None
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[cfg.precision]


def build_loss(cfg: TrainConfig, model: Classifier, train_set: Prepared, device: torch.device) -> ScreeningLoss:
    """BCE, class-weighted for "pos_weight" balance, plus the diagnosis loss when cfg.aux_weight > 0."""
    n_pos = int(train_set.labels.sum())
    pos_weight = (len(train_set.labels) - n_pos) / max(n_pos, 1) if cfg.balance == "pos_weight" else 1.0
    width = 0
    if cfg.aux_weight > 0:
        # in eval mode: a probe in training mode would move every batch norm's statistics toward a black image
        was_training, size = model.training, model.info.input_size
        model.eval()
        with torch.no_grad():
            width = model.pool(model.feature_maps(torch.zeros(1, 3, size, size, device=device))).shape[1]
        model.train(was_training)
    return ScreeningLoss(pos_weight, cfg.aux_weight, width).to(device)


def build_trainer(cfg: TrainConfig, train_set: Prepared, val_set: Prepared, device: torch.device) -> Trainer:
    """The network, objective, AdamW, schedule, weight average and augmentation that `cfg` asks for."""
    model = build_network(cfg, device)
    loss = build_loss(cfg, model, train_set, device)
    params = [p for p in [*model.parameters(), *loss.parameters()] if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = make_schedule(optimizer, cfg, steps_per_epoch(len(train_set.labels), cfg))
    return Trainer(
        cfg, model, loss, optimizer, schedule, train_set, val_set, device,
        ema=make_ema(model, cfg.ema), augment=AUGMENTATIONS[cfg.augmentation] if cfg.augment else None,
        memory_format=memory_format_for(cfg), autocast=autocast_for(cfg, device),
    )  # fmt: skip


def train_prepared(cfg: TrainConfig, train_set: Prepared, val_set: Prepared, summary: dict[str, Any]) -> Path:
    """The training run proper, on images already decoded and preprocessed (see `prepare`)."""
    seed_everything(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)

    trainer = build_trainer(cfg, train_set, val_set, device)
    model = trainer.model
    if cfg.resume:
        trainer.restore(Path(cfg.resume))
        tqdm.write(f"resumed from {cfg.resume} at epoch {trainer.epoch}")
    trainer.fit(out)

    if trainer.best_state is not None:
        model.load_state_dict(trainer.best_state)
    checkpoint = Checkpoint(
        model_name=cfg.model,
        model={k: v.cpu().contiguous() for k, v in model.state_dict().items()},
        preprocess=preprocess_for(cfg),
        config=asdict(cfg),
        info=asdict(model.info),
        data=summary,
        history=trainer.history,
        best_epoch=trainer.best_epoch,
        train_keys=[r.key for r in train_set.records],
        diagnosis_head=trainer.best_aux,
    ).with_fit(**finalize(model, cfg, train_set, val_set, device))
    best = checkpoint.save(out / "best.pt")
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
    tqdm.write(
        f"best epoch {int(checkpoint.best_epoch['epoch'])}: val auc {checkpoint.val_auc:.4f}; "
        f"temperature {checkpoint.temperature:.3f}, threshold {checkpoint.threshold:.3f} → {best}"
    )
    return best


def refit(checkpoint: str | Path, out: str | Path, feature_images: int = 0) -> Path:
    """Refit a checkpoint's validation-only extras (calibration, threshold, input checks) on the original
    images of its own split: for a model trained elsewhere from a compressed pack of them (see
    experiments/gpu). The data must give exactly the checkpoint's split.

    Returns:
        The path of the refitted checkpoint.
    """
    ckpt = read_checkpoint(checkpoint)
    model = ckpt.build_model()
    cfg = ckpt.train_config(feature_images=feature_images)
    train_records, val_records = checkpoint_split(ckpt, cfg)
    spec = ckpt.preprocess
    train_set = prepare(train_records, spec, cfg.skip_bad, "loading training images")
    val_set = prepare(val_records, spec, cfg.skip_bad, "loading validation images")
    refitted = ckpt.with_fit(
        **finalize(model, cfg, train_set, val_set, torch.device("cpu")),
        refit={"from": str(checkpoint), "feature_images": len(train_set.labels)},
    )
    refitted.save(out)
    tqdm.write(
        f"refitted on {len(val_set.labels)} validation images: temperature {refitted.temperature:.3f}, "
        f"threshold {refitted.threshold:.3f} (was {ckpt.threshold:.3f}) → {out}"
    )
    return Path(out)
