"""Evaluation reports: metrics with bootstrap intervals, figures, and a self-contained HTML page."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from skinscan import DISCLAIMER
from skinscan.evaluation.html import write_report_html
from skinscan.evaluation.metrics import check_predictions, classification_report_text, compute_metrics, rates_by_group
from skinscan.evaluation.plots import plot_confusion, plot_grid, plot_pr, plot_reliability, plot_roc

__all__ = ["compute_metrics", "write_evaluation"]


def write_evaluation(
    out_dir: str | Path,
    y_true: ArrayLike,
    prob: ArrayLike,
    threshold: float,
    *,
    thumbs: Sequence[NDArray[np.uint8]] | None = None,
    names: Sequence[str] | None = None,
    title: str = "skinscan evaluation",
    info: Mapping[str, str] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    extra: Mapping[str, Any] | None = None,
    by: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Any]:
    """Write a full evaluation of benign/malignant predictions into out_dir.

    Files: metrics.json (the metrics plus the disclaimer), classification_report.txt, roc.png, pr.png,
    reliability.png, confusion.png, grid.png (only with thumbs) and report.html (self-contained).

    Args:
        out_dir: folder to write into (created if missing).
        y_true: 0 (benign) / 1 (malignant) per case.
        prob: predicted probability of malignancy per case.
        threshold: operating point; prob >= threshold is a malignant call.
        thumbs: optional HxWx3 uint8 thumbnail per case, in the same order, for the grid.
        names: optional short name per case for the grid.
        title: report heading.
        info: facts shown in the report (model, data, ...); `date` defaults to now (UTC).
        n_boot: bootstrap resamples for the 95 % intervals.
        seed: bootstrap seed.
        extra: more JSON-ready keys for metrics.json (the caller's own measurements, the model's name, ...).
        by: a grouping of the cases (e.g. "diagnosis" → one name per case, "" where unknown): metrics.json gets
            `by_<name>` (see `rates_by_group`) and the report a table of how often each group is called malignant.

    Returns:
        The metrics dict from `compute_metrics` (without the disclaimer).
    """
    y, p = check_predictions(y_true, prob)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    metrics = compute_metrics(y, p, threshold, n_boot=n_boot, seed=seed)
    breakdowns = {name: rates_by_group(y, p, threshold, groups) for name, groups in (by or {}).items()}
    metrics.update({f"by_{name}": rows for name, rows in breakdowns.items() if rows})
    # allow_nan=False: metrics.json must stay strict JSON for other tools; compute_metrics never yields NaN.
    (out / "metrics.json").write_text(
        json.dumps({**metrics, **(extra or {}), "disclaimer": DISCLAIMER}, indent=2, allow_nan=False) + "\n",
        encoding="utf-8",
    )
    report_text = classification_report_text(y, p, threshold)
    (out / "classification_report.txt").write_text(report_text, encoding="utf-8")

    images = {
        "ROC curve": plot_roc(y, p, out / "roc.png", threshold=threshold),
        "Precision-recall curve": plot_pr(y, p, out / "pr.png", threshold=threshold),
        "Reliability diagram": plot_reliability(y, p, out / "reliability.png"),
        "Confusion matrix": plot_confusion(metrics["confusion_matrix"], out / "confusion.png"),
    }
    if thumbs is not None:
        images["Example cases"] = plot_grid(thumbs, p, y, threshold, out / "grid.png", names=names)

    facts = dict(info or {})
    facts.setdefault("date", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))
    write_report_html(
        out, title=title, metrics=metrics, report_text=report_text, images=images, info=facts, breakdowns=breakdowns
    )
    return metrics
