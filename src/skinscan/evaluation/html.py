"""A self-contained HTML evaluation report: inline CSS, PNGs embedded as data URIs, nothing fetched."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

from skinscan import DISCLAIMER
from skinscan.evaluation.metrics import CI_BOOTSTRAP, CI_TOO_FEW, CI_WILSON, CLASS_NAMES, METRIC_KEYS, PROPORTIONS

METRIC_LABELS = {
    "auc": "ROC AUC",
    "accuracy": "Accuracy",
    "balanced_accuracy": "Balanced accuracy",
    "sensitivity": "Sensitivity (malignant recall)",
    "specificity": "Specificity (benign recall)",
    "precision": "Precision (PPV)",
    "npv": "Negative predictive value (NPV)",
    "f1": "F1 (malignant)",
    "ece": "Expected calibration error (lower is better)",
}

# No web fonts, no url(): the file must open offline and leak no requests.
_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto; max-width: 1100px;
       padding: 0 1rem; color: #1d1d1f; line-height: 1.45; }
h1 { margin-bottom: 0.3rem; }
.disclaimer { border: 2px solid #b3261e; background: #fdecea; color: #5f1410; padding: 0.9rem 1.1rem;
              border-radius: 6px; font-size: 1.05rem; font-weight: 600; margin: 1rem 0 1.5rem; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; }
th, td { border: 1px solid #d0d0d5; padding: 0.35rem 0.8rem; text-align: left; }
th { background: #f2f2f5; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: #f6f6f8; padding: 0.8rem 1rem; border-radius: 6px; overflow-x: auto; }
.figures { display: flex; flex-wrap: wrap; gap: 1.5rem; }
figure { margin: 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #e0e0e5; }
figcaption { font-size: 0.9rem; color: #555; }
.note { font-size: 0.9rem; color: #555; }
"""


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _metrics_table(metrics: Mapping[str, Any]) -> str:
    methods: Mapping[str, str] = metrics.get("ci_method", {})
    counts: Mapping[str, Sequence[int]] = metrics.get("counts", {})
    rows = []
    for key in METRIC_KEYS:
        ci = metrics.get(f"{key}_ci")
        method = methods.get(key, "")
        ci_text = f"{_fmt(ci[0])} – {_fmt(ci[1])}" if ci else CI_TOO_FEW if method == CI_TOO_FEW else "n/a"
        if method == CI_BOOTSTRAP:
            method = f"{method}, {metrics.get('n_boot')} resamples"
        elif method == CI_TOO_FEW:  # which interval it would have had, and why there is none
            why = "no cases to count" if key in PROPORTIONS else "too few cases, or every resample alike"
            method = f"{CI_WILSON if key in PROPORTIONS else CI_BOOTSTRAP}: {why}"
        count = f"{counts[key][0]} of {counts[key][1]}" if key in counts else ""
        label = escape(METRIC_LABELS.get(key, key))
        rows.append(
            f'<tr><td>{label}</td><td class="num">{escape(_fmt(metrics.get(key)))}</td>'
            f'<td class="num">{escape(count)}</td><td class="num">{escape(ci_text)}</td><td>{escape(method)}</td></tr>'
        )
    head = "<tr><th>Metric</th><th>Value</th><th>cases</th><th>95 % interval</th><th>interval</th></tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def _confusion_table(metrics: Mapping[str, Any]) -> str:
    cm = metrics.get("confusion_matrix")
    if not cm:
        return '<p class="note">No confusion matrix.</p>'
    head = f"<tr><th>true \\ predicted</th><th>{CLASS_NAMES[0]}</th><th>{CLASS_NAMES[1]}</th></tr>"
    rows = "".join(
        f'<tr><th>{CLASS_NAMES[i]}</th><td class="num">{escape(str(cm[i][0]))}</td>'
        f'<td class="num">{escape(str(cm[i][1]))}</td></tr>'
        for i in range(2)
    )
    return f"<table>{head}{rows}</table>"


def _info_table(info: Mapping[str, str], metrics: Mapping[str, Any]) -> str:
    facts = dict(info)
    for key in ("threshold", "n", "n_malignant", "n_boot"):
        if key in metrics:
            facts.setdefault(key, _fmt(metrics[key]))
    rows = "".join(f"<tr><th>{escape(str(k))}</th><td>{escape(str(v))}</td></tr>" for k, v in facts.items())
    return f"<table>{rows}</table>"


def _breakdown_table(name: str, rows: Sequence[Mapping[str, Any]]) -> str:
    """How often each group is called malignant: a sensitivity for malignant groups, a false-alarm rate for
    benign ones."""
    meanings = {"malignant": "sensitivity", "benign": "false alarms", "mixed": "called malignant"}
    body = []
    for row in rows:
        meaning = meanings[row["kind"]]
        ci = row["rate_ci"]
        interval = f"{ci[0]:.3f} – {ci[1]:.3f}" if ci else "n/a"
        body.append(
            f'<tr><td>{escape(row["group"])}</td><td class="num">{row["n"]}</td>'
            f'<td class="num">{row["n_malignant"]}</td><td class="num">{row["called_malignant"]}</td>'
            f'<td class="num">{row["rate"]:.3f}</td><td class="num">{escape(interval)}</td><td>{meaning}</td>'
            f'<td class="num">{row["mean_probability"]:.3f}</td></tr>'
        )
    head = (
        f"<tr><th>{escape(name)}</th><th>images</th><th>malignant</th><th>called malignant</th><th>rate</th>"
        "<th>95 % CI (Wilson)</th><th>the rate is</th><th>mean probability</th></tr>"
    )
    return f"<table>{head}{''.join(body)}</table>"


def _figure(name: str, path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    caption = escape(name)
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{caption}"><figcaption>{caption}</figcaption></figure>'
    )


def write_report_html(
    out_dir: str | Path,
    *,
    title: str,
    metrics: Mapping[str, Any],
    report_text: str,
    images: Mapping[str, Path],
    info: Mapping[str, str],
    breakdowns: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
) -> Path:
    """Write `report.html` into out_dir, embedding every image so the file stands alone.

    Args:
        out_dir: folder to write into (created if missing).
        title: page heading.
        metrics: the dict from `compute_metrics`.
        report_text: sklearn classification report, shown preformatted.
        images: caption -> PNG path, embedded in this order.
        info: facts about the run (model, data, date, ...), shown as a table.
        breakdowns: group name → `rates_by_group` rows, each shown as a table (empty ones are left out).

    Returns:
        The path of report.html.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures = "".join(_figure(name, path) for name, path in images.items())
    sections = "".join(
        f'<h2>By {escape(name)}</h2>\n<p class="note">How often the cases of each {escape(name)} are called '
        "malignant at the threshold: for a malignant group that is its sensitivity, for a benign group its rate "
        f"of false alarms.</p>\n{_breakdown_table(name, rows)}\n"
        for name, rows in (breakdowns or {}).items()
        if rows
    )
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title>
<style>{_CSS}</style>
</head>
<body>
<h1>{escape(title)}</h1>
<div class="disclaimer" role="note">{escape(DISCLAIMER)}</div>
<h2>Run</h2>
{_info_table(info, metrics)}
<h2>Metrics</h2>
<p class="note">Malignant is the positive class; a case is called malignant when its probability is at or above the
threshold. The proportions (accuracy, sensitivity, specificity, PPV, NPV: a count of cases out of a count of cases,
shown under "cases") have Wilson score 95 % intervals, which stay honest on small counts and on rates of 0 or 1. The
other metrics have percentile bootstrap 95 % intervals over resampled cases; where the cases are too few for the
bootstrap to vary (a handful of one class, or every resample alike), the interval says "not enough data" rather than
show a range of zero width. The last column names each metric's interval.</p>
{_metrics_table(metrics)}
<h2>Confusion matrix</h2>
{_confusion_table(metrics)}
{sections}<h2>Classification report</h2>
<pre>{escape(report_text)}</pre>
<h2>Figures</h2>
<div class="figures">{figures}</div>
</body>
</html>
"""
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
