"""A run's history: history.json, history.csv and curves.png in the run folder (written after every epoch)."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from numpy.typing import NDArray

_TRAIN_COLOUR, _VAL_COLOUR = "#1f77b4", "#ff7f0e"


def write_history(history: Sequence[Mapping[str, Any]], out: Path) -> None:
    """The epochs so far as JSON, CSV and a plot of loss and accuracy."""
    (out / "history.json").write_text(json.dumps(list(history), indent=2))
    with (out / "history.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
    plot_history(history, out / "curves.png")


def plot_history(history: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Write training-versus-validation accuracy and loss per epoch, side by side.

    Args:
        history: one dict per epoch with `epoch`, `train_loss`, `val_loss`, `train_accuracy`, `val_accuracy`
            (missing or None values are left as gaps; extra keys are ignored).
        path: PNG to write.

    Returns:
        The PNG path.
    """
    if not history:
        raise ValueError("history is empty")

    def series(key: str) -> NDArray[np.float64]:
        return np.array([np.nan if row.get(key) is None else float(row[key]) for row in history])

    epochs = np.array([float(row.get("epoch", i + 1)) for i, row in enumerate(history)])
    fig = Figure(figsize=(10.0, 4.0), layout="constrained")
    acc_ax, loss_ax = fig.subplots(1, 2)
    for ax, metric, label in ((acc_ax, "accuracy", "Accuracy"), (loss_ax, "loss", "Loss")):
        for split, colour in (("train", _TRAIN_COLOUR), ("val", _VAL_COLOUR)):
            values = series(f"{split}_{metric}")
            if np.isfinite(values).any():
                name = "training" if split == "train" else "validation"
                ax.plot(epochs, values, "o-", color=colour, ms=3, label=name)
        ax.set(xlabel="epoch", ylabel=label.lower(), title=f"Training vs validation {label.lower()}")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight", format="png")
    return out
