"""Binary screening metrics (benign 0 / malignant 1) with 95 % intervals: Wilson score intervals for the
proportions, seed-deterministic percentile bootstrap intervals for the rest."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.metrics import classification_report

CLASS_NAMES = ("benign", "malignant")
METRIC_KEYS = (
    "auc", "accuracy", "balanced_accuracy", "sensitivity", "specificity", "precision", "npv", "f1", "ece",
)  # fmt: skip
# The metrics that are a count of cases out of a count of cases, as (hits, of) in confusion-matrix cells: each gets
# a Wilson interval, which a bootstrap cannot replace on small data (10 of 10 resamples to 10 of 10 every time).
PROPORTIONS = {
    "accuracy": (("tp", "tn"), ("tp", "tn", "fp", "fn")),
    "sensitivity": (("tp",), ("tp", "fn")),
    "specificity": (("tn",), ("tn", "fp")),
    "precision": (("tp",), ("tp", "fp")),
    "npv": (("tn",), ("tn", "fn")),
}
# How each interval was had, as metrics.json's `ci_method` and the report name them.
CI_WILSON = "Wilson score"
CI_BOOTSTRAP = "percentile bootstrap"
CI_TOO_FEW = "not enough data"
CI_OFF = "not computed (n_boot is 0)"
CI_UNDEFINED = "no value"
# Below these counts a bootstrap's resamples take only a handful of distinct values, so their percentiles are no
# interval: an AUC from under 5 cases of a class, any other bootstrap metric from under 10 cases.
MIN_CLASS_FOR_AUC_CI = 5
MIN_CASES_FOR_BOOTSTRAP_CI = 10
ECE_BINS = 15
# Bound the (resamples x cases) count matrix to ~4M cells so memory stays flat for large test sets.
_MAX_CELLS = 4_000_000
_DIGITS = 4


@dataclass(frozen=True)
class ReliabilityBins:
    """Equal-width bins over [0, 1] of the predicted malignancy probability; empty bins hold NaN means."""

    edges: NDArray[np.float64]  # n_bins + 1 edges
    count: NDArray[np.int64]  # cases per bin
    mean_prob: NDArray[np.float64]  # mean predicted probability per bin (the "confidence")
    pos_rate: NDArray[np.float64]  # observed malignant fraction per bin (the "accuracy")

    @property
    def ece(self) -> float:
        """Expected calibration error: count-weighted mean |pos_rate - mean_prob| over non-empty bins."""
        total = int(self.count.sum())
        if total == 0:
            return 0.0
        filled = self.count > 0
        gaps = np.abs(self.pos_rate[filled] - self.mean_prob[filled])
        return float(np.sum(self.count[filled] * gaps) / total)


def check_predictions(y_true: ArrayLike, prob: ArrayLike) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Return labels and probabilities as 1-D arrays, or raise ValueError if they are not 0/1 and [0, 1]."""
    y = np.asarray(y_true)
    p = np.asarray(prob, dtype=np.float64)
    if y.ndim != 1 or p.ndim != 1:
        raise ValueError(f"y_true and prob must be 1-D, got shapes {y.shape} and {p.shape}")
    if y.shape != p.shape:
        raise ValueError(f"y_true and prob differ in length: {y.shape[0]} vs {p.shape[0]}")
    if y.size == 0:
        raise ValueError("no cases to evaluate")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("y_true must contain only 0 (benign) and 1 (malignant)")
    if not np.isfinite(p).all() or p.min() < 0.0 or p.max() > 1.0:
        raise ValueError("prob must be finite probabilities in [0, 1]")
    return y.astype(np.int64), p


def _bin_index(prob: NDArray[np.float64], n_bins: int) -> NDArray[np.int64]:
    # prob == 1.0 belongs to the last bin, not to an extra one past the edge.
    return np.minimum((prob * n_bins).astype(np.int64), n_bins - 1)


def reliability_bins(y_true: ArrayLike, prob: ArrayLike, n_bins: int = ECE_BINS) -> ReliabilityBins:
    """Bin cases by predicted malignancy probability for the reliability diagram and the ECE.

    Args:
        y_true: 0 (benign) / 1 (malignant) per case.
        prob: predicted probability of malignancy per case.
        n_bins: number of equal-width bins over [0, 1].

    Returns:
        The per-bin counts, mean predicted probability and observed malignant rate.
    """
    y, p = check_predictions(y_true, prob)
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    idx = _bin_index(p, n_bins)
    count = np.bincount(idx, minlength=n_bins).astype(np.int64)
    sum_p = np.bincount(idx, weights=p, minlength=n_bins)
    sum_y = np.bincount(idx, weights=y.astype(np.float64), minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_prob = np.where(count > 0, sum_p / count, np.nan)
        pos_rate = np.where(count > 0, sum_y / count, np.nan)
    return ReliabilityBins(np.linspace(0.0, 1.0, n_bins + 1), count, mean_prob, pos_rate)


def _safe_div(num: NDArray[np.float64], den: NDArray[np.float64]) -> NDArray[np.float64]:
    # The documented convention: a rate whose denominator is zero (no positives, no predicted positives...) is 0.0.
    out = np.zeros_like(num, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


@dataclass(frozen=True)
class _Levels:
    """The cases sorted by probability and grouped into tied-probability levels, shared by point and bootstrap."""

    case_starts: NDArray[np.intp]  # first sorted case of each level
    value: NDArray[np.float64]  # probability of each level (ascending)
    positive: NDArray[np.float64]  # 1.0 where the sorted case is malignant
    predicted: NDArray[np.bool_]  # per level: labelled malignant at the threshold
    bin_starts: NDArray[np.intp]  # first level of each non-empty ECE bin


def _levels(y: NDArray[np.int64], p: NDArray[np.float64], threshold: float) -> _Levels:
    order = np.argsort(p, kind="stable")
    ps = p[order]
    case_starts = np.flatnonzero(np.r_[True, ps[1:] != ps[:-1]])
    value = ps[case_starts]
    level_bin = _bin_index(value, ECE_BINS)
    bin_starts = np.flatnonzero(np.r_[True, level_bin[1:] != level_bin[:-1]])
    return _Levels(case_starts, value, y[order].astype(np.float64), value >= threshold, bin_starts)


def _stats(weights: NDArray[np.float64], lv: _Levels) -> dict[str, NDArray[np.float64]]:
    """Every metric for each row of `weights` (how often each sorted case is drawn), vectorised over rows."""
    pos = np.add.reduceat(weights * lv.positive, lv.case_starts, axis=1)
    neg = np.add.reduceat(weights, lv.case_starts, axis=1) - pos
    n = weights.sum(axis=1)
    n_pos, n_neg = pos.sum(axis=1), neg.sum(axis=1)

    tp = pos[:, lv.predicted].sum(axis=1)
    fp = neg[:, lv.predicted].sum(axis=1)
    fn, tn = n_pos - tp, n_neg - fp
    sensitivity, specificity = _safe_div(tp, tp + fn), _safe_div(tn, tn + fp)

    # Mann-Whitney AUC from level counts: each positive beats the negatives below it and ties half of its level.
    neg_below = np.cumsum(neg, axis=1) - neg
    pairs = n_pos * n_neg
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = np.where(pairs > 0, np.sum(pos * (neg_below + 0.5 * neg), axis=1) / pairs, np.nan)

    # Tied levels never straddle a bin edge, so the bins are contiguous runs of levels.
    sum_y = np.add.reduceat(pos, lv.bin_starts, axis=1)
    sum_p = np.add.reduceat((pos + neg) * lv.value, lv.bin_starts, axis=1)
    ece = np.abs(sum_y - sum_p).sum(axis=1) / n

    return {
        "auc": auc,
        "accuracy": (tp + tn) / n,
        "balanced_accuracy": (sensitivity + specificity) / 2,
        "sensitivity": sensitivity,
        "specificity": specificity,
        "precision": _safe_div(tp, tp + fp),
        "npv": _safe_div(tn, tn + fn),
        "f1": _safe_div(2 * tp, 2 * tp + fp + fn),
        "ece": ece,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
    }


def _bootstrap(lv: _Levels, n: int, n_boot: int, seed: int) -> dict[str, list[NDArray[np.float64]]]:
    rng = np.random.default_rng(seed)
    rows = max(1, _MAX_CELLS // n)
    draws: dict[str, list[NDArray[np.float64]]] = {key: [] for key in METRIC_KEYS if key not in PROPORTIONS}
    for start in range(0, n_boot, rows):
        m = min(rows, n_boot - start)
        # Positions in the sorted order; drawing them directly is the same as resampling cases.
        idx = rng.integers(0, n, size=(m, n))
        flat = (np.arange(m)[:, None] * n + idx).ravel()
        weights = np.bincount(flat, minlength=m * n).reshape(m, n).astype(np.float64)
        stats = _stats(weights, lv)
        for key in draws:
            draws[key].append(stats[key])
    return draws


def _round(x: float) -> float:
    return round(float(x), _DIGITS)


def _interval(values: NDArray[np.float64]) -> list[float] | None:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    low, high = (_round(v) for v in np.percentile(values, [2.5, 97.5]))
    # (nearly) every resample gave the same value, as all correct or a perfect ranking do: that is too little data
    # for the bootstrap to bound the metric, not a metric known exactly
    if low == high:
        return None
    return [low, high]


def _bootstrap_ci(key: str, samples: list[NDArray[np.float64]], n: int, n_pos: int) -> tuple[list[float] | None, str]:
    too_few = n < MIN_CASES_FOR_BOOTSTRAP_CI
    if key == "auc":
        too_few = too_few or min(n_pos, n - n_pos) < MIN_CLASS_FOR_AUC_CI
    if too_few:
        return None, CI_TOO_FEW
    ci = _interval(np.concatenate(samples))
    return ci, CI_BOOTSTRAP if ci is not None else CI_TOO_FEW


def compute_metrics(
    y_true: ArrayLike, prob: ArrayLike, threshold: float, *, n_boot: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """Point metrics and 95 % intervals for a benign/malignant classifier.

    A case is labelled malignant when prob >= threshold. A rate whose denominator is zero (e.g. sensitivity
    with no malignant cases, precision with no malignant predictions) is reported as 0.0, without an interval.
    With only one class present, AUC and its interval are None (JSON null). ECE uses 15 equal-width bins of the
    malignancy probability vs the observed malignant rate.

    The proportions (PROPORTIONS: accuracy, sensitivity, specificity, precision = PPV, NPV) get Wilson score
    intervals of their counts; AUC, balanced accuracy, F1 and ECE get percentile bootstrap intervals over
    resampled cases (resamples holding one class are skipped for the AUC), or None where the data are too few
    for one (see MIN_CLASS_FOR_AUC_CI, MIN_CASES_FOR_BOOTSTRAP_CI) or every resample gives the same value.
    `ci_method` says which each metric got.

    Args:
        y_true: 0 (benign) / 1 (malignant) per case.
        prob: predicted probability of malignancy per case, in [0, 1].
        threshold: operating point.
        n_boot: bootstrap resamples; 0 leaves out every interval (they are then None), for a quick look.
        seed: bootstrap seed; the same inputs and seed give the same intervals.

    Returns:
        A flat JSON-serialisable dict: each metric in METRIC_KEYS, `<metric>_ci` = [low, high] or None,
        `ci_method` (metric → CI_WILSON, CI_BOOTSTRAP, CI_TOO_FEW, CI_OFF or CI_UNDEFINED), `counts` (proportion →
        [hits, of]), `threshold`, `n`, `n_malignant`, `confusion_matrix` = [[tn, fp], [fn, tp]] and `n_boot`;
        values rounded to 4 decimals.
    """
    y, p = check_predictions(y_true, prob)
    if n_boot < 0:
        raise ValueError(f"n_boot must be >= 0, got {n_boot}")
    n = int(y.size)
    n_pos = int(y.sum())
    lv = _levels(y, p, float(threshold))
    point = _stats(np.ones((1, n)), lv)
    cells = {k: int(point[k][0]) for k in ("tn", "fp", "fn", "tp")}
    draws = _bootstrap(lv, n, n_boot, seed) if n_boot > 0 else {}

    result: dict[str, Any] = {}
    methods: dict[str, str] = {}
    counts: dict[str, list[int]] = {}
    for key in METRIC_KEYS:
        value = float(point[key][0])
        if key == "ece":
            value = reliability_bins(y, p, ECE_BINS).ece  # the diagram's own number, so plot and JSON agree
        result[key] = _round(value) if np.isfinite(value) else None
        ci: list[float] | None = None
        if key in PROPORTIONS:
            hits, of = (sum(cells[c] for c in part) for part in PROPORTIONS[key])
            counts[key] = [hits, of]
            if n_boot > 0:
                ci = wilson_interval(hits, of)
                methods[key] = CI_WILSON if ci is not None else CI_TOO_FEW
        elif n_boot > 0:
            ci, methods[key] = _bootstrap_ci(key, draws[key], n, n_pos)
        if n_boot == 0:
            methods[key] = CI_OFF
        if result[key] is None:
            ci, methods[key] = None, CI_UNDEFINED
        result[f"{key}_ci"] = ci
    result.update(
        ci_method=methods,
        counts=counts,
        threshold=float(threshold),
        n=n,
        n_malignant=n_pos,
        confusion_matrix=[[cells["tn"], cells["fp"]], [cells["fn"], cells["tp"]]],
        n_boot=int(n_boot),
    )
    return result


def classification_report_text(y_true: ArrayLike, prob: ArrayLike, threshold: float) -> str:
    """sklearn's per-class precision/recall/F1 table at the threshold, with zero divisions reported as 0."""
    y, p = check_predictions(y_true, prob)
    pred = (p >= threshold).astype(np.int64)
    text = classification_report(
        y, pred, labels=[0, 1], target_names=list(CLASS_NAMES), digits=_DIGITS, zero_division=0
    )
    return str(text)


def wilson_interval(hits: int, n: int, z: float = 1.96) -> list[float] | None:
    """Wilson score 95 % interval of a proportion: sound for small groups and rates near 0 or 1."""
    if n <= 0:
        return None
    rate = hits / n
    centre = (rate + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [_round(max(0.0, centre - half)), _round(min(1.0, centre + half))]


def rates_by_group(y_true: ArrayLike, prob: ArrayLike, threshold: float, groups: Sequence[str]) -> list[dict[str, Any]]:
    """How often each group (a diagnosis, a clinic, a camera) is called malignant at the threshold.

    For a group whose cases are all malignant the rate is its sensitivity; for an all-benign group it is its
    false-alarm rate (1 - specificity). Cases whose group is "" are left out. Groups come by their share of
    malignant cases (malignant ones first), then largest first.

    Returns:
        One dict a group: `group`, `kind` ("malignant", "benign" or "mixed": its cases' labels), `n`,
        `n_malignant`, `called_malignant` (count), `rate` with `rate_ci` (Wilson 95 %) and `mean_probability`.
    """
    y, p = check_predictions(y_true, prob)
    names = np.asarray(list(groups), dtype=object)
    if names.shape != y.shape:
        raise ValueError(f"{names.size} groups for {y.size} cases")
    rows = []

    def order(name: str) -> tuple[float, int, str]:  # malignant groups first, then mixed, then benign; larger first
        there = names == name
        return (-float(y[there].mean()), -int(there.sum()), name)

    for name in sorted({str(g) for g in names if g}, key=order):
        there = names == name
        n, called, n_malignant = int(there.sum()), int(np.sum(p[there] >= threshold)), int(y[there].sum())
        rows.append(
            {
                "group": name,
                "kind": "malignant" if n_malignant == n else "benign" if n_malignant == 0 else "mixed",
                "n": n,
                "n_malignant": n_malignant,
                "called_malignant": called,
                "rate": _round(called / n),
                "rate_ci": wilson_interval(called, n),
                "mean_probability": _round(float(p[there].mean())),
            }
        )
    return rows
