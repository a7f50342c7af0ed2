"""Training: one TrainConfig, a loop with early stopping and LR on plateau, checkpoints, history, and the
validation-only fitting (calibration, threshold, feature Gaussian) that export turns into the model's spec."""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from skinscan.core.errors import DataError, InvalidImageError
from skinscan.core.preprocess import PreprocessSpec, prepare_pixels
from skinscan.core.quality import fit_quality_limits, measure_quality
from skinscan.training.augment import AugmentConfig, augment_batch, normalise
from skinscan.training.config import TrainConfig, config_from
from skinscan.training.fitting import MIN_POSITIVES_PER_SOURCE, choose_threshold, fit_calibration, fit_feature_gaussian
from skinscan.training.history import write_history
from skinscan.training.models import Classifier, EfficientNetLite0, create_model
from skinscan.training.records import (
    DIAGNOSES,
    Duplicates,
    Record,
    dedupe,
    diagnosis_of,
    drop_same_images,
    find_manifests,
    load_records,
    source_of,
    split_records,
)

# --- data -------------------------------------------------------------------------------------------


@dataclass
class Prepared:
    """A split's records and their cached, preprocessed uint8 pixels."""

    records: list[Record]
    pixels: np.ndarray  # N x S x S x 3 uint8
    labels: np.ndarray  # N int64

    @cached_property
    def sources(self) -> list[str]:
        """The collection each image comes from (see `skinscan.training.records.source_of`)."""
        return [source_of(r) for r in self.records]


def gather_records(cfg: TrainConfig) -> tuple[list[Record], list[Record], dict[str, Any]]:
    """Training pool minus anything that is (a copy of) a held-out image, deduplicated, split by lesion."""
    split = cfg.split or None
    pool = [r for p in cfg.data for r in load_records(p, split, skip_bad=cfg.skip_bad)]
    dup = Duplicates.from_files([*find_manifests([*cfg.data, *cfg.holdout]), *cfg.duplicates])
    held = [r for p in cfg.holdout for r in load_records(p, cfg.holdout_split or None, skip_bad=cfg.skip_bad)]
    n_pool = len(pool)
    pool = drop_same_images(pool, held, dup)
    n_clean = len(pool)
    pool = dedupe(pool, dup)
    n_deduped = len(pool)
    if cfg.max_images and len(pool) > cfg.max_images:
        pool = random.Random(cfg.seed).sample(pool, cfg.max_images)
    train, val = split_records(pool, cfg.val_fraction, cfg.seed, dup)
    summary = {
        "sources": cfg.data,
        "holdout": cfg.holdout,
        "pool": n_pool,
        "dropped_same_as_holdout": n_pool - n_clean,
        "dropped_duplicates": n_clean - n_deduped,
        "train": len(train),
        "train_malignant": sum(r.label for r in train),
        "val": len(val),
        "val_malignant": sum(r.label for r in val),
    }
    return train, val, summary


def prepare(records: Sequence[Record], spec: PreprocessSpec, skip_bad: bool, desc: str) -> Prepared:
    """Decode and preprocess every image once, up front, so a bad file stops nothing mid-epoch."""
    from skinscan.runtime.imaging import load_image

    kept: list[Record] = []
    pixels = np.empty((len(records), spec.input_size, spec.input_size, 3), dtype=np.uint8)
    bad: list[str] = []
    for r in tqdm(records, desc=desc, unit="img", leave=False, mininterval=1.0):
        try:
            pixels[len(kept)] = prepare_pixels(load_image(r.path, draft_size=spec.input_size), spec)
        except (InvalidImageError, OSError) as exc:
            if not skip_bad:
                raise DataError(f"{r.path}: {exc} (use --skip-bad to leave such images out)") from exc
            bad.append(f"{r.path}: {exc}")
            continue
        kept.append(r)
    if bad:
        import warnings

        from skinscan.training.records import SkippedRecords

        warnings.warn(f"skipped {len(bad)} unreadable images: " + "; ".join(bad[:10]), SkippedRecords, stacklevel=2)
    labels = np.array([r.label for r in kept], dtype=np.int64)
    return Prepared(kept, pixels[: len(kept)], labels)


def preprocess_spec_for(model: Classifier) -> PreprocessSpec:
    info = model.info
    return PreprocessSpec(input_size=info.input_size, mean=info.mean, std=info.std)


# --- loop -------------------------------------------------------------------------------------------


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores)) if 0 < labels.sum() < len(labels) else float("nan")


def auc_within_sources(labels: np.ndarray, scores: np.ndarray, sources: Sequence[str]) -> float:
    """The mean of the AUCs within each source that has both classes (the pooled AUC when none has).

    Pooled over sources that differ in their share of malignant images, an AUC also rewards telling the
    sources apart, which is no help on a new clinic; within each source it cannot.
    """
    names = np.asarray(sources)
    per_source = [_auc(labels[names == s], scores[names == s]) for s in sorted(set(sources))]
    scored = [a for a in per_source if not math.isnan(a)]
    return float(np.mean(scored)) if scored else _auc(labels, scores)


def sampling_weights(labels: np.ndarray, sources: Sequence[str], balance: str) -> np.ndarray | None:
    """Per-image probabilities of being drawn for a training epoch; None for plain shuffling.

    "sampler": both labels equally often. "source": each source keeps its share of the draws, split equally
    between the labels it has, so that where an image comes from no longer predicts its label.
    """
    if balance == "sampler":
        groups = labels.astype(str)
        shares = {g: 1.0 for g in set(groups)}
    elif balance == "source":
        groups = np.array([f"{s}|{y}" for s, y in zip(sources, labels, strict=True)])
        names = np.asarray(sources)
        shares = {}
        for source in set(sources):
            there = names == source
            present = np.unique(labels[there])
            for label in present:  # the source's share of the draws, split equally between its labels
                shares[f"{source}|{label}"] = float(there.mean()) / len(present)
    elif balance in ("pos_weight", "none"):
        return None
    else:
        raise ValueError(f"unknown balance {balance!r}")
    counts = {g: int((groups == g).sum()) for g in shares}
    weights = np.array([shares[g] / counts[g] for g in groups])
    return weights / weights.sum()


class Trainer:
    """Runs the epochs; holds model, optimiser, scheduler and history so a run can resume."""

    def __init__(self, cfg: TrainConfig, model: Classifier, train: Prepared, val: Prepared, device: torch.device):
        self.cfg, self.model, self.train_set, self.val_set, self.device = cfg, model, train, val, device
        self.spec = preprocess_spec_for(model)
        # the auxiliary diagnosis head lives here, not in the model: export and serving never see it
        self.diagnoses = np.array([diagnosis_of(r) for r in train.records], dtype=np.int64)
        self.aux: torch.nn.Linear | None = None
        if cfg.aux_weight > 0:
            with torch.no_grad():
                size = self.spec.input_size
                width = model.pool(model.feature_maps(torch.zeros(1, 3, size, size, device=device))).shape[1]
            self.aux = torch.nn.Linear(width, len(DIAGNOSES)).to(device)
        # the same for every epoch; each epoch draws its own order from it
        self.weights = sampling_weights(train.labels, train.sources, cfg.balance)
        params = [p for p in model.parameters() if p.requires_grad]
        if self.aux is not None:
            params += list(self.aux.parameters())
        self.optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.steps_per_epoch = math.ceil(len(train.labels) / cfg.batch_size)
        if cfg.max_steps:
            self.steps_per_epoch = min(self.steps_per_epoch, cfg.max_steps)
        self.scheduler = make_scheduler(self.optimizer, cfg, self.steps_per_epoch)
        # the averaged weights are what validation scores and what the checkpoint keeps
        self.ema = (
            torch.optim.swa_utils.AveragedModel(
                model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(cfg.ema), use_buffers=True
            )
            if cfg.ema
            else None
        )
        n_pos = int(train.labels.sum())
        n_neg = len(train.labels) - n_pos
        self.pos_weight = (n_neg / max(n_pos, 1)) if cfg.balance == "pos_weight" else 1.0
        self.scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp and device.type == "cuda")
        # on the training device: augmentation draws its random numbers where the batch lives
        self.gen = torch.Generator(device=device).manual_seed(cfg.seed)
        self.history: list[dict[str, float]] = []
        self.epoch = 0
        self.best: float | None = None
        self.best_loss = math.inf
        self.best_state: dict[str, Any] | None = None
        self.stale = 0

    def _order(self) -> np.ndarray:
        n = len(self.train_set.labels)
        rng = np.random.default_rng(self.cfg.seed * 1000 + self.epoch)
        if self.weights is None:
            return rng.permutation(n)
        return rng.choice(n, size=n, replace=True, p=self.weights)

    def train_epoch(self) -> dict[str, float]:
        cfg, model = self.cfg, self.model
        model.train()
        if self.aux is not None:
            self.aux.train()
        if isinstance(model, EfficientNetLite0) and cfg.freeze_blocks:
            # frozen layers keep their ImageNet batch statistics too
            for module in [model._bn0, *model._blocks[: cfg.freeze_blocks]]:
                module.eval()
        order = self._order()
        steps = self.steps_per_epoch
        aug = AugmentConfig() if cfg.augment else None
        total_loss, correct, seen = 0.0, 0, 0
        bar = tqdm(range(steps), desc=f"epoch {self.epoch + 1}/{cfg.epochs}", unit="batch", leave=False)
        for step in bar:
            idx = np.sort(order[step * cfg.batch_size : (step + 1) * cfg.batch_size])
            pixels = torch.from_numpy(self.train_set.pixels[idx]).to(self.device, non_blocking=True)
            y = torch.from_numpy(self.train_set.labels[idx]).float().to(self.device, non_blocking=True)
            if aug is not None:
                x = augment_batch(pixels, aug, self.gen)
            else:
                x = pixels.permute(0, 3, 1, 2).float().div(255.0)
            x = normalise(x, self.spec.mean, self.spec.std)
            if self.device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.scaler.is_enabled()):
                pooled = model.pool(model.feature_maps(x))
                logits = model.logit(pooled).squeeze(1)
            pw = torch.tensor(self.pos_weight, device=self.device)
            loss = F.binary_cross_entropy_with_logits(logits.float(), y, pos_weight=pw)
            dx = self.diagnoses[idx]
            if self.aux is not None and (dx >= 0).any():
                known = torch.from_numpy(np.flatnonzero(dx >= 0)).to(self.device)
                target = torch.from_numpy(dx[dx >= 0]).to(self.device)
                aux_logits = self.aux(F.dropout(pooled.float()[known], 0.2, training=True))
                loss = loss + cfg.aux_weight * F.cross_entropy(aux_logits, target)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if isinstance(self.scheduler, torch.optim.lr_scheduler.LambdaLR):
                self.scheduler.step()
            if self.ema is not None:
                self.ema.update_parameters(model)
            total_loss += float(loss.detach()) * len(idx)
            correct += int(((logits.detach() > 0).float() == y).sum())
            seen += len(idx)
            bar.set_postfix(loss=f"{total_loss / seen:.4f}", acc=f"{correct / seen:.3f}")
        bar.close()
        return {"train_loss": total_loss / max(seen, 1), "train_accuracy": correct / max(seen, 1)}

    @property
    def scored_model(self) -> Classifier:
        """The model that validation scores and the checkpoint keeps: the weight average when there is one."""
        return self.ema.module if self.ema is not None else self.model  # type: ignore[return-value]

    def validate(self) -> dict[str, float]:
        logits, _, _ = predict_logits(self.scored_model, self.val_set.pixels, self.spec, self.device)
        y = self.val_set.labels
        t = torch.from_numpy(logits)
        pw = torch.tensor(self.pos_weight)
        loss = float(F.binary_cross_entropy_with_logits(t, torch.from_numpy(y).float(), pos_weight=pw))
        return {
            "val_loss": loss,
            "val_accuracy": float(((logits > 0) == y).mean()),
            "val_auc": _auc(y, logits),
            "val_auc_sources": auc_within_sources(y, logits, self.val_set.sources),
        }

    def improved(self, row: dict[str, float]) -> bool:
        """Better on the monitored metric, or as good with a lower validation loss (AUC often ties at 1.0
        on easy data)."""
        value = row[self.cfg.monitor]
        if self.best is None or math.isnan(self.best):
            return True
        sign = -1 if self.cfg.monitor.endswith("loss") else 1
        if sign * value != sign * self.best:
            return sign * value > sign * self.best
        return row["val_loss"] < self.best_loss

    def fit(self, out: Path, on_epoch: Any = None) -> None:
        cfg = self.cfg
        started = time.perf_counter()
        while self.epoch < cfg.epochs:
            start = time.perf_counter()
            row: dict[str, float] = {"epoch": self.epoch + 1}
            row.update(self.train_epoch())
            row.update(self.validate())
            row["lr"] = self.optimizer.param_groups[0]["lr"]
            row["seconds"] = round(time.perf_counter() - start, 1)
            self.epoch += 1
            self.history.append(row)
            value = row[cfg.monitor]
            if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                self.scheduler.step(value)
            if self.improved(row):
                self.best, self.best_loss, self.stale = value, row["val_loss"], 0
                self.best_state = {k: v.detach().clone() for k, v in self.scored_model.state_dict().items()}
            else:
                self.stale += 1
            tqdm.write(
                f"epoch {row['epoch']:>3}: train loss {row['train_loss']:.4f} acc {row['train_accuracy']:.3f} | "
                f"val loss {row['val_loss']:.4f} acc {row['val_accuracy']:.3f} auc {row['val_auc']:.4f} "
                f"(within sources {row['val_auc_sources']:.4f}) | "
                f"lr {row['lr']:.2e} | {row['seconds']:.0f}s{' *' if self.stale == 0 else ''}"
            )
            self.save(out / "last.pt")
            write_history(self.history, out)
            if on_epoch is not None:
                on_epoch(row)
            if self.stale >= cfg.patience:
                tqdm.write(f"early stop: {cfg.monitor} has not improved for {cfg.patience} epochs")
                break
            if cfg.time_limit and time.perf_counter() - started > cfg.time_limit * 60:
                tqdm.write(f"time limit: stopping after epoch {self.epoch} ({cfg.time_limit:g} min)")
                break

    def state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "aux": self.aux.state_dict() if self.aux is not None else None,
            "epoch": self.epoch,
            "best": self.best,
            "best_loss": self.best_loss,
            "best_state": self.best_state,
            "stale": self.stale,
            "history": self.history,
            "generator": self.gen.get_state(),
            "config": asdict(self.cfg),
        }

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        torch.save(self.state(), tmp)
        tmp.replace(path)  # never leave a half-written checkpoint behind

    def restore(self, path: Path) -> None:
        state = torch.load(path, map_location=self.device, weights_only=False)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])
        if self.aux is not None and state.get("aux") is not None:
            self.aux.load_state_dict(state["aux"])
        self.epoch, self.best, self.best_state = state["epoch"], state["best"], state["best_state"]
        self.best_loss = state.get("best_loss", math.inf)
        self.stale, self.history = state["stale"], state["history"]
        self.gen.set_state(state["generator"])


def make_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau:
    """ReduceLROnPlateau stepped per epoch, or linear warmup then cosine decay stepped per batch."""
    if cfg.schedule == "plateau":
        mode: Literal["min", "max"] = "min" if cfg.monitor.endswith("loss") else "max"
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode=mode, factor=cfg.lr_factor, patience=cfg.lr_patience
        )
    if cfg.schedule != "cosine":
        raise ValueError(f"unknown schedule {cfg.schedule!r}; valid: cosine, plateau")
    warmup = max(1, round(cfg.warmup_epochs * steps_per_epoch))
    total = max(warmup + 1, cfg.epochs * steps_per_epoch)

    def factor(step: int) -> float:
        if step < warmup:
            return 0.01 + 0.99 * step / warmup
        progress = min(1.0, (step - warmup) / (total - warmup))
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def finalize(
    model: Classifier, cfg: TrainConfig, train: Prepared, val: Prepared, device: torch.device
) -> dict[str, Any]:
    """Fit on validation predictions of the best model: calibration, threshold, and the input checks
    (Gaussians of training features and textures, the validation distances that set their thresholds,
    quality limits)."""
    spec = preprocess_spec_for(model)
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
        "threshold_rule": f"the highest threshold with validation sensitivity >= {cfg.target_sensitivity} overall "
        f"and within every source with >= {MIN_POSITIVES_PER_SOURCE} malignant validation images",
        "val_auc": _auc(val.labels, val_logits),
        "val_n": len(val.labels),
        "val_keys": [r.key for r in val.records],
        "val_logits": val_logits.tolist(),
        "val_labels": val.labels.tolist(),
        "val_ood_distance": features.distance(val_feats).tolist(),
        "val_texture_distance": texture.distance(val_texture).tolist(),
        "feature_gaussian": features.to_dict(),
        "texture_gaussian": texture.to_dict(),
    }


def checkpoint_split(ckpt: dict[str, Any], cfg: TrainConfig | None = None) -> tuple[list[Record], list[Record]]:
    """The training and validation records a checkpoint was trained on, read again from its data.

    Raises:
        DataError: the data no longer give exactly that split.
    """
    cfg = cfg or config_from(None, **ckpt["config"])
    train_records, val_records, _ = gather_records(cfg)
    if {r.key for r in train_records} != set(ckpt["train_keys"]) or [r.key for r in val_records] != ckpt["val_keys"]:
        raise DataError(f"the data in {cfg.data} do not give the split that this checkpoint was trained on")
    return train_records, val_records


def refit(checkpoint: str | Path, out: str | Path, feature_images: int = 0) -> Path:
    """Refit a checkpoint's validation-only extras (calibration, threshold, input checks) on the original
    images of its own split: for a model trained elsewhere from a compressed pack of them (see
    experiments/gpu). The data must give exactly the checkpoint's split.

    Returns:
        The path of the refitted checkpoint.
    """
    model, ckpt = load_checkpoint(checkpoint)
    cfg = config_from(None, **{**ckpt["config"], "feature_images": feature_images})
    train_records, val_records = checkpoint_split(ckpt, cfg)
    spec = preprocess_spec_for(model)
    train_set = prepare(train_records, spec, cfg.skip_bad, "loading training images")
    val_set = prepare(val_records, spec, cfg.skip_bad, "loading validation images")
    extras = finalize(model, cfg, train_set, val_set, torch.device("cpu"))
    refitted = {**ckpt, **extras, "refit": {"from": str(checkpoint), "feature_images": len(train_set.labels)}}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(refitted, out)
    tqdm.write(
        f"refitted on {len(val_set.labels)} validation images: temperature {extras['temperature']:.3f}, "
        f"threshold {extras['threshold']:.3f} (was {ckpt.get('threshold', float('nan')):.3f}) → {out}"
    )
    return out


def initial_weights(cfg: TrainConfig) -> dict[str, torch.Tensor]:
    """The weights of the checkpoint that `cfg.init` names, checked to be of the network being trained."""
    _, ckpt = load_checkpoint(cfg.init)
    if ckpt["model_name"] != cfg.model:
        raise DataError(f"{cfg.init} holds a {ckpt['model_name']}, not the {cfg.model} being trained")
    return ckpt["model"]


def train(cfg: TrainConfig) -> Path:
    """Train, keep the best epoch, fit the validation-only extras, and write `best.pt` in cfg.out.

    Returns:
        The path of the best checkpoint.
    """
    spec = preprocess_spec_for(create_model(cfg.model, pretrained=False))
    if cfg.init:
        initial_weights(cfg)  # a wrong or unreadable checkpoint stops the run before the images load
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


def train_prepared(cfg: TrainConfig, train_set: Prepared, val_set: Prepared, summary: dict[str, Any]) -> Path:
    """The training run proper, on images already decoded and preprocessed (see `prepare`)."""
    seed_everything(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    model = create_model(cfg.model, pretrained=cfg.pretrained and not cfg.init, dropout=cfg.dropout).to(device)
    if cfg.init:
        model.load_state_dict(initial_weights(cfg))
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    if isinstance(model, EfficientNetLite0) and cfg.freeze_blocks:
        model.freeze_stem(cfg.freeze_blocks)
    spec = preprocess_spec_for(model)
    trainer = Trainer(cfg, model, train_set, val_set, device)
    if cfg.resume:
        trainer.restore(Path(cfg.resume))
        tqdm.write(f"resumed from {cfg.resume} at epoch {trainer.epoch}")
    trainer.fit(out)
    if trainer.best_state is not None:
        model.load_state_dict(trainer.best_state)
    extras = finalize(model, cfg, train_set, val_set, device)
    sign = -1 if cfg.monitor.endswith("loss") else 1
    best_epoch = max(trainer.history, key=lambda r: (sign * r[cfg.monitor], -r["val_loss"]))
    checkpoint = {
        "format": "skinscan-checkpoint-1",
        "model_name": cfg.model,
        "model": {k: v.cpu().contiguous() for k, v in model.state_dict().items()},
        "info": asdict(model.info),
        "preprocess": asdict(spec),
        "config": asdict(cfg),
        "data": summary,
        "history": trainer.history,
        "best_epoch": best_epoch,
        "train_keys": [r.key for r in train_set.records],
        **extras,
    }
    best = out / "best.pt"
    torch.save(checkpoint, best)
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
    tqdm.write(
        f"best epoch {int(best_epoch['epoch'])}: val auc {extras['val_auc']:.4f}; "
        f"temperature {extras['temperature']:.3f}, threshold {extras['threshold']:.3f} → {best}"
    )
    return best


def load_checkpoint(path: str | Path) -> tuple[Classifier, dict[str, Any]]:
    """A trained model (eval mode, CPU) and its checkpoint dict."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError) as exc:
        from skinscan.core.errors import ModelFormatError

        raise ModelFormatError(f"cannot read checkpoint {path}: {exc}") from exc
    model = create_model(ckpt["model_name"], pretrained=False)
    model.load_state_dict(ckpt["model"])
    return model.eval(), ckpt
