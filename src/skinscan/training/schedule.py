"""Learning-rate schedules behind one interface: reduce-on-plateau, stepped per epoch by the monitored
metric, or a linear warm-up and cosine decay, stepped per batch."""

from __future__ import annotations

import math
from typing import Any, Literal

import torch

from skinscan.core.errors import ConfigError
from skinscan.training.config import SCHEDULES, TrainConfig


class Schedule:
    """Moves the optimiser's learning rate; the trainer calls `after_step` and `after_epoch`."""

    def __init__(self, scheduler: torch.optim.lr_scheduler.LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau):
        self.scheduler = scheduler

    def after_step(self) -> None:
        if not isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step()

    def after_epoch(self, monitored: float) -> None:
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(monitored)

    def state_dict(self) -> dict[str, Any]:
        return self.scheduler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scheduler.load_state_dict(state)


def make_schedule(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int) -> Schedule:
    """The schedule `cfg.schedule` names, for an optimiser whose lr is the peak."""
    if cfg.schedule == "plateau":
        mode: Literal["min", "max"] = "min" if cfg.monitor.endswith("loss") else "max"
        return Schedule(
            torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode=mode, factor=cfg.lr_factor, patience=cfg.lr_patience
            )
        )
    if cfg.schedule != "cosine":
        raise ConfigError(f"unknown schedule {cfg.schedule!r}; valid: {', '.join(SCHEDULES)}")
    warmup = max(1, round(cfg.warmup_epochs * steps_per_epoch))
    total = max(warmup + 1, cfg.epochs * steps_per_epoch)

    def factor(step: int) -> float:
        if step < warmup:
            return 0.01 + 0.99 * step / warmup
        progress = min(1.0, (step - warmup) / (total - warmup))
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress))

    return Schedule(torch.optim.lr_scheduler.LambdaLR(optimizer, factor))
