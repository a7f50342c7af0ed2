"""report.html beside a site profile: reliability before and after, the ROC with the model's and the site's
operating points, and the sensitivity and specificity to expect — all measured on held-out folds of the site's own
images, with intervals."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import roc_curve

from skinscan import DISCLAIMER
from skinscan.evaluation.plots import plot_reliability
from skinscan.runtime.site import SiteProfile

_ROWS = (("before", "the model's own operating point"), ("recalibrated", "recalibrated at the site"),
         ("adapted", "adapted head"))  # fmt: skip


def _roc(labels: np.ndarray, curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path) -> Path:
    fig = Figure(figsize=(5.4, 5.0), layout="constrained")
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], ls="--", color="0.6", lw=1)
    for (name, (prob, calls)), colour in zip(curves.items(), ("#8a8f98", "#1565c0", "#2e7d32"), strict=False):
        fpr, tpr, _ = roc_curve(labels, prob)
        ax.plot(fpr, tpr, color=colour, lw=1.8, label=name)
        tp, fn = int(np.sum(calls & (labels == 1))), int(np.sum(~calls & (labels == 1)))
        fp, tn = int(np.sum(calls & (labels == 0))), int(np.sum(~calls & (labels == 0)))
        ax.plot(fp / max(fp + tn, 1), tp / max(tp + fn, 1), "o", color=colour, ms=8, mec="black")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="1 − specificity", ylabel="sensitivity", aspect="equal",
           title="ROC on held-out folds; dots: operating points")  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.savefig(path, dpi=110)
    return path


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    text = html.escape(alt)
    return f'<figure><img alt="{text}" src="data:image/png;base64,{data}"><figcaption>{text}</figcaption></figure>'


def _pct(value: float | None, ci: list[float] | None) -> str:
    if value is None:
        return "–"
    text = f"{value:.1%}"
    return text + (f" ({ci[0]:.1%}–{ci[1]:.1%})" if ci else " (no interval: too few)")


def _num(value: float | None, ci: list[float] | None) -> str:
    if value is None:
        return "–"
    return f"{value:.3f}" + (f" ({ci[0]:.3f}–{ci[1]:.3f})" if ci else "")


def write_site_report(
    path: Path,
    summary: dict[str, Any],
    labels: np.ndarray,
    before: np.ndarray,
    held: dict[str, tuple[np.ndarray, np.ndarray]],
    model_threshold: float,
    profile: SiteProfile,
) -> Path:
    """Write the report (figures inlined, so the one file travels)."""
    figures = path.with_name("figures")
    figures.mkdir(parents=True, exist_ok=True)
    curves = {"model as shipped": (before, before >= model_threshold)}
    curves |= {name: pair for name, pair in held.items()}
    parts = [
        _img(plot_reliability(labels, before, figures / "reliability_before.png"),
             "Reliability before (model as shipped)"),
        _img(plot_reliability(labels, held[profile.active][0], figures / "reliability_after.png"),
             f"Reliability after ({profile.active}, held-out folds)"),
        _img(_roc(labels, curves, figures / "roc_site.png"), "ROC with the operating points"),
    ]  # fmt: skip
    rows = "".join(
        f"<tr><td>{html.escape(label)}{' <b>(active)</b>' if key == profile.active else ''}</td>"
        f"<td>{_pct(m['sensitivity'], m['sensitivity_ci'])}</td><td>{_pct(m['specificity'], m['specificity_ci'])}</td>"
        f"<td>{_num(m['auc'], m['auc_ci'])}</td><td>{_num(m['ece'], m['ece_ci'])}</td></tr>"
        for key, label in _ROWS
        if (m := summary.get(key)) is not None
    )
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in summary["notes"])
    refused = f"The model's input checks refuse {summary['refused_by_model_checks']:.1%} of these images"
    refused += f"; with the refitted limit, {summary['refused_after']:.1%}." if profile.ood_threshold else "."
    title = f"Site profile {html.escape(profile.name)}"
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#1f2328}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccd;padding:4px 10px;text-align:left}}
figure{{display:inline-block;margin:8px}}img{{max-width:340px}}.disclaimer{{background:#fff4e5;padding:10px}}</style>
</head><body><h1>Site profile: {html.escape(profile.name)}</h1>
<p class="disclaimer">{html.escape(DISCLAIMER)}</p>
<p>Model {html.escape(profile.model_id)}; {profile.images} labelled images ({profile.malignant} malignant); fitted
{html.escape(profile.created)}; target sensitivity {profile.target_sensitivity:.0%}; active: <b>{profile.active}</b>,
threshold {profile.threshold:.4f}.</p>
<p>Every number below is measured on held-out folds ({summary["folds"]}-fold cross-fitting, grouped by lesion or
patient): each image was judged by a calibration fitted on the other folds, never on itself. The profile written is
then fitted on all images. {html.escape(refused)}</p>
<table><tr><th>operating point</th><th>sensitivity (95 % CI)</th><th>specificity (95 % CI)</th><th>AUC</th>
<th>calibration error (ECE)</th></tr>{rows}</table>
{f"<h2>Notes</h2><ul>{notes}</ul>" if notes else ""}
<h2>Figures</h2>{"".join(parts)}
</body></html>
"""
    path.write_text(page)
    return path
