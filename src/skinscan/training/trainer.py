"""The epoch loop: draws batches, augments them, steps the optimiser and schedule it is given, keeps a
weight average, validates, keeps the best epoch, stops early or at a time limit, and saves a resumable
state (last.pt) after every epoch."""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from skinscan.training.augment import AugmentConfig, augment_batch, normalise
from skinscan.training.config import TrainConfig
from skinscan.training.dataset import Prepared
from skinscan.training.history import write_history
from skinscan.training.loss import ScreeningLoss
from skinscan.training.models import Classifier
from skinscan.training.sampling import epoch_order, sampling_weights
from skinscan.training.schedule import Schedule
from skinscan.training.scoring import auc, auc_within_sources, predict_logits

EMA = torch.optim.swa_utils.AveragedModel


def steps_per_epoch(n_images: int, cfg: TrainConfig) -> int:
    """Batches in one epoch: the whole training set, or at most `cfg.max_steps` (smoke runs)."""
    steps = math.ceil(n_images / cfg.batch_size)
    return min(steps, cfg.max_steps) if cfg.max_steps else steps


def make_ema(model: Classifier, decay: float) -> EMA | None:
    """An exponential moving average of the weights (and batch statistics), or None for decay 0."""
    if not decay:
        return None
    return EMA(model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(decay), use_buffers=True)


class Trainer:
    """Runs the epochs of one run; holds everything a resumed run needs.

    Args:
        cfg: the loop's settings (epochs, batch size, monitor, patience, time limit, seed...).
        model: the network, on `device`, with any layers already frozen.
        loss: the objective (its own parameters, the diagnosis head, are in `optimizer` too).
        optimizer: over the trainable parameters of model and loss.
        schedule: moves the optimiser's learning rate.
        train, val: the cached images.
        device: where the batches go.
        ema: a weight average of `model` (validation and the best state use it), or None.
        augment: the augmentation, or None for none.
        memory_format: the layout of each batch (channels-last is much faster for these CNNs on CPU and GPU).
        autocast: a reduced-precision dtype for the forward pass, or None.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        model: Classifier,
        loss: ScreeningLoss,
        optimizer: torch.optim.Optimizer,
        schedule: Schedule,
        train: Prepared,
        val: Prepared,
        device: torch.device,
        *,
        ema: EMA | None = None,
        augment: AugmentConfig | None = None,
        memory_format: torch.memory_format = torch.contiguous_format,
        autocast: torch.dtype | None = None,
    ) -> None:
        self.cfg, self.model, self.loss, self.optimizer, self.schedule = cfg, model, loss, optimizer, schedule
        self.train_set, self.val_set, self.device = train, val, device
        self.ema, self.augment, self.memory_format, self.autocast = ema, augment, memory_format, autocast
        self.spec = model.info.preprocess
        # the same for every epoch; each epoch draws its own order from it
        self.weights = sampling_weights(train.labels, train.sources, cfg.balance)
        self.steps_per_epoch = steps_per_epoch(len(train.labels), cfg)
        # fp16 needs loss scaling; bf16 (and fp32) do not
        self.scaler = torch.amp.GradScaler("cuda", enabled=autocast == torch.float16 and device.type == "cuda")
        # on the training device: augmentation draws its random numbers where the batch lives
        self.gen = torch.Generator(device=device).manual_seed(cfg.seed)
        self.history: list[dict[str, float]] = []
        self.epoch = 0
        self.best: float | None = None
        self.best_loss = math.inf
        self.best_state: dict[str, Any] | None = None
        self.best_aux: dict[str, Any] | None = None  # the diagnosis head of the best epoch
        self.stale = 0
        # how often each (source, label) was drawn over the run: the mix the balance setting promises
        self.drawn: Counter[tuple[str, int]] = Counter()

    def batch(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Normalised (augmented) images, labels and diagnoses of the training images at `idx`."""
        pixels = torch.from_numpy(self.train_set.pixels[idx]).to(self.device, non_blocking=True)
        if self.augment is not None:
            x = augment_batch(pixels, self.augment, self.gen)
        else:
            x = pixels.permute(0, 3, 1, 2).float().div(255.0)
        x = normalise(x, self.spec.mean, self.spec.std).contiguous(memory_format=self.memory_format)
        y = torch.from_numpy(self.train_set.labels[idx]).to(self.device)
        dx = torch.from_numpy(self.train_set.diagnoses[idx]).to(self.device)
        return x, y, dx

    def compute_loss(self, x: torch.Tensor, y: torch.Tensor, dx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The objective of one batch, and its malignancy logits."""
        with torch.autocast(self.device.type, dtype=self.autocast or torch.bfloat16, enabled=self.autocast is not None):
            pooled = self.model.pool(self.model.feature_maps(x))
            logits = self.model.logit(pooled).squeeze(1)
        return self.loss(logits, pooled, y, dx), logits

    def train_epoch(self) -> dict[str, float]:
        self.model.train()
        self.loss.train()
        order = epoch_order(len(self.train_set.labels), self.weights, self.cfg.seed, self.epoch)
        total_loss, correct, seen = 0.0, 0, 0
        bar = tqdm(range(self.steps_per_epoch), desc=f"epoch {self.epoch + 1}/{self.cfg.epochs}", unit="batch",
                   leave=False)  # fmt: skip
        for step in bar:
            idx = np.sort(order[step * self.cfg.batch_size : (step + 1) * self.cfg.batch_size])
            x, y, dx = self.batch(idx)
            self.drawn.update((self.train_set.sources[i], int(self.train_set.labels[i])) for i in idx)
            loss, logits = self.compute_loss(x, y, dx)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.schedule.after_step()
            if self.ema is not None:
                self.ema.update_parameters(self.model)
            total_loss += float(loss.detach()) * len(idx)
            correct += int(((logits.detach() > 0).long() == y).sum())
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
        with torch.no_grad():
            loss = float(self.loss.bce(torch.from_numpy(logits).to(self.device), torch.from_numpy(y).to(self.device)))
        return {
            "val_loss": loss,
            "val_accuracy": float(((logits > 0) == y).mean()),
            "val_auc": auc(y, logits),
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

    def fit(self, out: Path, on_epoch: Callable[[dict[str, float]], None] | None = None) -> None:
        """Train until `cfg.epochs`, early stopping or the time limit; after each epoch write last.pt and
        the history into `out`."""
        cfg = self.cfg
        out.mkdir(parents=True, exist_ok=True)
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
            self.schedule.after_epoch(row[cfg.monitor])
            if self.improved(row):
                self.best, self.best_loss, self.stale = row[cfg.monitor], row["val_loss"], 0
                self.best_state = {k: v.detach().clone() for k, v in self.scored_model.state_dict().items()}
                if self.loss.aux is not None:
                    self.best_aux = {k: v.detach().cpu().clone() for k, v in self.loss.aux.state_dict().items()}
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

    @property
    def best_epoch(self) -> dict[str, float]:
        """The history row of the epoch the best state comes from."""
        sign = -1 if self.cfg.monitor.endswith("loss") else 1
        return max(self.history, key=lambda r: (sign * r[self.cfg.monitor], -r["val_loss"]))

    def state(self) -> dict[str, Any]:
        from dataclasses import asdict

        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.schedule.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "aux": self.loss.aux.state_dict() if self.loss.aux is not None else None,
            "epoch": self.epoch,
            "best": self.best,
            "best_loss": self.best_loss,
            "best_state": self.best_state,
            "best_aux": self.best_aux,
            "stale": self.stale,
            "history": self.history,
            "generator": self.gen.get_state(),
            "torch_rng": torch.get_rng_state(),  # dropout and drop-path draw from it (or, on a GPU, from CUDA's)
            "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None,
            "drawn": dict(self.drawn),
            "config": asdict(self.cfg),
        }

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        torch.save(self.state(), tmp)
        tmp.replace(path)  # never leave a half-written state behind

    def restore(self, path: Path) -> None:
        """Continue a run from its last.pt: weights, optimiser and schedule state, averages, history, RNG."""
        state = torch.load(path, map_location=self.device, weights_only=False)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["scheduler"])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])
        if self.loss.aux is not None and state.get("aux") is not None:
            self.loss.aux.load_state_dict(state["aux"])
        self.epoch, self.best, self.best_state = state["epoch"], state["best"], state["best_state"]
        self.best_loss = state.get("best_loss", math.inf)
        self.best_aux = state.get("best_aux")
        self.stale, self.history = state["stale"], state["history"]
        self.gen.set_state(state["generator"].cpu())  # a generator state is a CPU tensor, whatever the device
        if "torch_rng" in state:
            torch.set_rng_state(state["torch_rng"].cpu())
        if state.get("cuda_rng") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda_rng"]])
        self.drawn = Counter(state.get("drawn", {}))
