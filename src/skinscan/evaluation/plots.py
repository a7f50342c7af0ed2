"""Evaluation figures (ROC, PR, reliability, confusion matrix, thumbnail grid, training history) as PNG files."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from numpy.typing import ArrayLike, NDArray
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

from skinscan.evaluation.metrics import CLASS_NAMES, check_predictions, reliability_bins

# Figures are built as bare Figure objects (no pyplot), so nothing touches global backend state and the
# Agg canvas is picked by savefig for PNG output.
DPI = 110
_WRONG = "#d62728"
_RIGHT = "#2ca02c"
_BENIGN = "#1f77b4"
_MALIGNANT = "#ff7f0e"


def _save(fig: Figure, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=DPI, bbox_inches="tight", format="png")
    return out


def _placeholder(ax: Axes, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, wrap=True)


def _operating_point(y: NDArray[np.int64], p: NDArray[np.float64], threshold: float) -> tuple[int, int, int, int]:
    pred = p >= threshold
    tp = int(np.sum(pred & (y == 1)))
    fp = int(np.sum(pred & (y == 0)))
    fn = int(np.sum(~pred & (y == 1)))
    tn = int(np.sum(~pred & (y == 0)))
    return tn, fp, fn, tp


def plot_roc(
    y_true: ArrayLike,
    prob: ArrayLike,
    path: str | Path,
    *,
    threshold: float | None = None,
    title: str = "ROC curve (malignant vs benign)",
) -> Path:
    """Write the ROC curve with its AUC, marking the operating point when a threshold is given.

    Returns:
        The PNG path.
    """
    y, p = check_predictions(y_true, prob)
    fig = Figure(figsize=(5.2, 5.0), layout="constrained")
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], ls="--", color="0.6", lw=1, label="chance")
    if 0 < y.sum() < y.size:
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, color=_BENIGN, lw=2, label=f"AUC = {roc_auc_score(y, p):.3f}")
        if threshold is not None:
            tn, fp, fn, tp = _operating_point(y, p, threshold)
            ax.plot(fp / (fp + tn), tp / (tp + fn), "o", color=_WRONG, ms=8, label=f"threshold {threshold:.3g}")
    else:
        _placeholder(ax, "ROC undefined: only one class present")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="1 − specificity (false positive rate)")
    ax.set(ylabel="sensitivity (true positive rate)", title=title, aspect="equal")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return _save(fig, path)


def plot_pr(y_true: ArrayLike, prob: ArrayLike, path: str | Path, *, threshold: float | None = None) -> Path:
    """Write the precision-recall curve with average precision, the prevalence baseline and the operating point.

    Returns:
        The PNG path.
    """
    y, p = check_predictions(y_true, prob)
    fig = Figure(figsize=(5.2, 5.0), layout="constrained")
    ax = fig.add_subplot()
    if y.sum() > 0:
        precision, recall, _ = precision_recall_curve(y, p)
        ap = average_precision_score(y, p)
        ax.plot(recall, precision, color=_BENIGN, lw=2, drawstyle="steps-post", label=f"AP = {ap:.3f}")
        prevalence = float(y.mean())
        ax.axhline(prevalence, ls="--", color="0.6", lw=1, label=f"prevalence {prevalence:.3f}")
        if threshold is not None:
            _, fp, fn, tp = _operating_point(y, p, threshold)
            # With no malignant predictions precision is undefined, so there is no point to mark.
            if tp + fp > 0:
                ax.plot(tp / (tp + fn), tp / (tp + fp), "o", color=_WRONG, ms=8, label=f"threshold {threshold:.3g}")
        ax.legend(loc="lower left")
    else:
        _placeholder(ax, "precision-recall undefined: no malignant cases")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="recall (sensitivity)", ylabel="precision (PPV)")
    ax.set(title="Precision-recall curve (malignant)", aspect="equal")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_reliability(y_true: ArrayLike, prob: ArrayLike, path: str | Path) -> Path:
    """Write the reliability diagram (observed malignant rate per probability bin vs the diagonal) with the ECE
    in the title and a histogram of predicted probabilities by true class underneath.

    Returns:
        The PNG path.
    """
    y, p = check_predictions(y_true, prob)
    bins = reliability_bins(y, p)
    fig = Figure(figsize=(5.2, 6.4), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    width = float(bins.edges[1] - bins.edges[0])
    centers = bins.edges[:-1] + width / 2
    filled = bins.count > 0
    top.plot([0, 1], [0, 1], ls="--", color="0.6", lw=1, label="perfect calibration")
    top.bar(
        centers[filled],
        bins.pos_rate[filled],
        width=width * 0.9,
        color=_BENIGN,
        alpha=0.35,
        edgecolor=_BENIGN,
        label="observed malignant rate",
    )
    top.plot(
        bins.mean_prob[filled],
        bins.pos_rate[filled],
        "o-",
        color=_BENIGN,
        ms=5,
        label="bin (mean probability, malignant rate)",
    )
    top.set(xlim=(0, 1), ylim=(0, 1.01), ylabel="observed malignant fraction")
    top.set_title(f"Reliability diagram — ECE = {bins.ece:.3f} ({len(bins.count)} bins)")
    top.grid(alpha=0.3)
    top.legend(loc="upper left", fontsize="small")

    bottom.hist(
        [p[y == 0], p[y == 1]],
        bins=bins.edges,
        stacked=True,
        color=[_BENIGN, _MALIGNANT],
        label=list(CLASS_NAMES),
    )
    bottom.set(xlabel="predicted probability of malignancy", ylabel="cases")
    bottom.legend(loc="best", fontsize="small")
    return _save(fig, path)


def plot_confusion(cm: Sequence[Sequence[int]] | NDArray[np.int64], path: str | Path) -> Path:
    """Write a 2×2 confusion matrix ([[tn, fp], [fn, tp]]) with counts and row percentages.

    Returns:
        The PNG path.
    """
    counts = np.asarray(cm, dtype=np.int64)
    if counts.shape != (2, 2):
        raise ValueError(f"confusion matrix must be 2x2, got shape {counts.shape}")
    row_total = counts.sum(axis=1, keepdims=True)
    # A class absent from the data has an all-zero row; show 0 % rather than dividing by zero.
    share = np.divide(counts, row_total, out=np.zeros((2, 2)), where=row_total > 0)

    fig = Figure(figsize=(4.6, 4.0), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of true class")
    for i in range(2):
        for j in range(2):
            colour = "white" if share[i, j] > 0.55 else "black"
            ax.text(j, i, f"{counts[i, j]}\n{share[i, j]:.1%}", ha="center", va="center", color=colour, fontsize=12)
    ax.set_xticks([0, 1], labels=list(CLASS_NAMES))
    ax.set_yticks([0, 1], labels=list(CLASS_NAMES))
    ax.set(xlabel="predicted", ylabel="true", title="Confusion matrix")
    return _save(fig, path)


def _grid_sample(probs: NDArray[np.float64], labels: NDArray[np.int64], threshold: float, k: int) -> list[int]:
    """Up to k indices: the most confident errors first (at most half), then an even spread of the rest by prob."""
    n = probs.size
    if n <= k:
        return list(range(n))
    wrong = (probs >= threshold) != (labels == 1)
    # Distance from the threshold measures how sure the model was of its (wrong) call.
    margin = np.abs(probs - threshold)
    errors = [int(i) for i in np.flatnonzero(wrong)[np.argsort(-margin[wrong], kind="stable")]][: k // 2]
    chosen = set(errors)
    rest = [int(i) for i in np.argsort(probs, kind="stable") if int(i) not in chosen]
    picks = np.unique(np.linspace(0, len(rest) - 1, k - len(errors)).round().astype(int))
    return errors + [rest[i] for i in picks]


# Longest file name a grid caption shows whole; a longer one keeps its start and its end (where the number and
# the extension are) around an ellipsis.
CAPTION_CHARS = 20


def short_name(name: str, width: int = CAPTION_CHARS) -> str:
    """The file name of a case's key or path ("isic2017:images/ISIC_0000000.jpg" → "ISIC_0000000.jpg"), shortened
    in the middle to `width` characters when longer."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1].rsplit(":", 1)[-1] or name
    if len(base) <= width:
        return base
    tail = (width - 1) // 2 + (width - 1) % 2
    head = width - 1 - tail
    return f"{base[:head]}…{base[-tail:]}"


def grid_figure(
    thumbs: Sequence[NDArray[np.uint8]],
    probs: ArrayLike,
    labels: ArrayLike,
    threshold: float,
    *,
    names: Sequence[str] | None = None,
    max_images: int = 48,
) -> Figure:
    """The figure `plot_grid` writes (see there)."""
    y, p = check_predictions(labels, probs)
    if len(thumbs) != y.size:
        raise ValueError(f"{len(thumbs)} thumbnails but {y.size} probabilities")
    if names is not None and len(names) != y.size:
        raise ValueError(f"{len(names)} names but {y.size} thumbnails")
    for thumb in thumbs:
        if thumb.ndim != 3 or thumb.shape[2] != 3 or thumb.dtype != np.uint8:
            raise ValueError(f"thumbnails must be HxWx3 uint8, got {thumb.shape} {thumb.dtype}")
    if max_images < 1:
        raise ValueError(f"max_images must be >= 1, got {max_images}")

    order = _grid_sample(p, y, threshold, max_images)
    cols = min(8, len(order))
    rows = math.ceil(len(order) / cols)
    # Constrained layout sets the room for the title and for each caption from their drawn size, so neither
    # overlaps the other, nor a caption the image above it, however few rows there are.
    # at least as wide as the two-line title, for a grid of one or two cases
    fig = Figure(figsize=(max(1.9 * cols, 3.6), 2.2 * rows + 0.6), layout="constrained")
    n_wrong = int(np.sum((p >= threshold) != (y == 1)))
    fig.suptitle(
        f"{len(order)} of {y.size} cases, threshold {threshold:.3g}\n"
        f"{n_wrong} misclassified in total (red frame, WRONG)",
        fontsize=10,
    )
    for slot, i in enumerate(order):
        ax = fig.add_subplot(rows, cols, slot + 1)
        ax.imshow(thumbs[i], interpolation="antialiased")
        ax.set_xticks([])
        ax.set_yticks([])
        wrong = (p[i] >= threshold) != (y[i] == 1)
        colour = _WRONG if wrong else _RIGHT
        for spine in ax.spines.values():
            spine.set_edgecolor(colour)
            spine.set_linewidth(4 if wrong else 1.5)
        lines = [short_name(str(names[i]))] if names is not None else []
        lines.append(f"{'WRONG ' if wrong else ''}p={p[i]:.2f} · true {CLASS_NAMES[y[i]]}")
        ax.set_title("\n".join(lines), fontsize=7.5, color=colour, fontweight="bold" if wrong else "normal")
    return fig


def plot_grid(
    thumbs: Sequence[NDArray[np.uint8]],
    probs: ArrayLike,
    labels: ArrayLike,
    threshold: float,
    path: str | Path,
    *,
    names: Sequence[str] | None = None,
    max_images: int = 48,
) -> Path:
    """Write a grid of RGB thumbnails captioned with the file name, the predicted probability and the true label;
    errors get a red frame and "WRONG". Above max_images, shows the most confident errors first and then an even
    spread of the rest.

    Args:
        thumbs: HxWx3 uint8 images (sizes may differ).
        probs: predicted probability of malignancy per image.
        labels: true label per image, 0 (benign) / 1 (malignant).
        threshold: operating point; prob >= threshold is a malignant call.
        path: PNG to write.
        names: optional key or path per image; its file name is shown (see `short_name`).
        max_images: most thumbnails drawn.

    Returns:
        The PNG path.
    """
    return _save(grid_figure(thumbs, probs, labels, threshold, names=names, max_images=max_images), path)
