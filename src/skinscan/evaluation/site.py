"""`skinscan calibrate-site`: fit a clinic's own operating point on its labelled photos, and say what to expect.

On the site's images it fits (1) the probability calibration (temperature and bias) and the threshold that gives
the requested sensitivity, and, with enough malignant images, (2) an adapted head: a regularised logistic regression
on the model's pooled features and its own logit, its strength chosen by cross-validation. Both are measured by
cross-fitting: the images are cut into folds (grouped by lesion or patient where the data say), each fold is
predicted by what was fitted on the others, and the sensitivity, specificity, AUC and calibration error to expect
are read from those held-out predictions, with intervals — never from the images a fit has seen. The final
profile is then fitted on every image. It may also widen the input checks' feature-distance limit so that the
clinic's camera is not refused (`refit_checks`).
"""

from __future__ import annotations

import datetime
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from skinscan.core.drift import Reference
from skinscan.core.errors import ConfigError, DataError, InvalidImageError
from skinscan.core.preprocess import prepare_pixels, to_input
from skinscan.core.quality import measure_quality
from skinscan.evaluation.metrics import compute_metrics
from skinscan.runtime.checks import refusal_reason
from skinscan.runtime.engine import Engine
from skinscan.runtime.site import SiteHead, SiteProfile
from skinscan.training.fitting import choose_threshold, fit_calibration
from skinscan.training.records import Record, SkippedRecords, load_records

MIN_MALIGNANT = 30  # below this the sensitivity's interval is too wide to promise anything; said, not refused
MIN_MALIGNANT_TO_ADAPT = 100  # the adapted head needs at least this many malignant images (and as many benign)
OOD_SITE_QUANTILE = 0.99  # with refit_checks: the limit lets 99 % of the site's own images through
ADAPT_MARGIN = 0.01  # the adapted head becomes active only when it beats recalibration by this much held-out AUC


@dataclass
class SiteScores:
    """The model's raw outputs on the site's readable images."""

    records: list[Record]
    labels: np.ndarray  # 0/1
    groups: np.ndarray  # lesion or patient, or the image's own key
    logits: np.ndarray
    features: np.ndarray | None
    ood: np.ndarray
    refused: np.ndarray  # by the model's own input checks
    unreadable: list[str]
    qualities: list[Any]

    def refused_at(self, engine: Engine, ood_threshold: float | None) -> np.ndarray:
        """Which images the input checks would refuse with this feature-distance limit."""
        limits = engine.spec.quality_limits
        return np.array([refusal_reason(q, limits, float(d), ood_threshold) is not None
                         for q, d in zip(self.qualities, self.ood, strict=True)])  # fmt: skip


def score_site(engine: Engine, records: Sequence[Record], *, batch_size: int = 32) -> SiteScores:
    """Run the model over the records, keeping logits, pooled features, feature distances and refusals."""
    kept: list[Record] = []
    logits, features, ood, qualities = [], [], [], []
    unreadable: list[str] = []
    spec = engine.spec
    for start in range(0, len(records), batch_size):
        chunk, pixels = [], []
        for r in records[start : start + batch_size]:
            try:
                pixels.append(prepare_pixels(engine.decode(r.path), spec.preprocess))
                chunk.append(r)
            except InvalidImageError as exc:
                unreadable.append(f"{r.path}: {exc}")
        if not chunk:
            continue
        out = engine.run_outputs(to_input(np.stack(pixels), spec.preprocess))
        logits.append(out["logit"])
        ood.append(out["ood"])
        if "features" in out:
            features.append(out["features"])
        qualities += [measure_quality(px) for px in pixels]
        kept += chunk
    if not kept:
        raise DataError("none of the site's images could be read")
    scores = SiteScores(
        records=kept, labels=np.array([r.label for r in kept]), groups=np.array([r.group or r.key for r in kept]),
        logits=np.concatenate(logits).astype(np.float64), ood=np.concatenate(ood).astype(np.float64),
        features=np.concatenate(features).astype(np.float64) if features else None,
        refused=np.zeros(len(kept), dtype=bool), unreadable=unreadable, qualities=qualities,
    )  # fmt: skip
    scores.refused = scores.refused_at(engine, engine.ood_threshold)
    return scores


def folds_of(labels: np.ndarray, groups: np.ndarray, k: int, seed: int) -> np.ndarray:
    """A fold number per image, stratified by label and never splitting a group (a lesion, a patient)."""
    from sklearn.model_selection import StratifiedGroupKFold

    fold = np.zeros(labels.size, dtype=np.int64)
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    for i, (_, held) in enumerate(splitter.split(np.zeros(labels.size), labels, groups)):
        fold[held] = i
    return fold


def _recalibrate(logits: np.ndarray, labels: np.ndarray, sensitivity: float) -> tuple[float, float, float]:
    calibration = fit_calibration(logits, labels)
    threshold = choose_threshold(calibration.apply(logits), labels, sensitivity)
    return calibration.temperature, calibration.bias, threshold


def _fit_head(features: np.ndarray, logits: np.ndarray, labels: np.ndarray, seed: int) -> SiteHead:
    """L2 logistic regression on standardised features plus the model's logit; its strength C chosen by 5-fold
    cross-validated log loss (grouped folds are not needed here: the caller's held-out folds judge the result)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    from sklearn.model_selection import StratifiedKFold

    mean = features.mean(axis=0)
    scale = features.std(axis=0) + 1e-6
    x = np.column_stack([(features - mean) / scale, logits])
    inner = StratifiedKFold(n_splits=min(5, int(np.bincount(labels).min())), shuffle=True, random_state=seed)
    losses = {}
    for c in np.logspace(-4, 1, 11):
        fold_losses = []
        for train, held in inner.split(x, labels):
            fit = LogisticRegression(C=c, max_iter=2000).fit(x[train], labels[train])
            fold_losses.append(log_loss(labels[held], fit.predict_proba(x[held])[:, 1], labels=[0, 1]))
        losses[float(c)] = float(np.mean(fold_losses))
    best = min(losses, key=lambda c: losses[c])
    fit = LogisticRegression(C=best, max_iter=2000).fit(x, labels)
    coef = fit.coef_[0]
    return SiteHead(mean=mean, scale=scale, coef=coef[:-1], logit_coef=float(coef[-1]),
                    intercept=float(fit.intercept_[0]))  # fmt: skip


def _held_out(scores: SiteScores, fold: np.ndarray, sensitivity: float, adapt: bool, seed: int) -> dict[str, Any]:
    """Out-of-fold probabilities and calls of each variant: every image judged by what the other folds fitted."""
    n = scores.labels.size
    out: dict[str, Any] = {"recalibrated": (np.zeros(n), np.zeros(n, dtype=bool))}
    if adapt:
        out["adapted"] = (np.zeros(n), np.zeros(n, dtype=bool))
    for f in np.unique(fold):
        train, held = fold != f, fold == f
        t, b, thr = _recalibrate(scores.logits[train], scores.labels[train], sensitivity)
        p = 1 / (1 + np.exp(-(scores.logits[held] - b) / t))
        out["recalibrated"][0][held], out["recalibrated"][1][held] = p, p >= thr
        if adapt:
            assert scores.features is not None
            head = _fit_head(scores.features[train], scores.logits[train], scores.labels[train], seed)
            z_train = head.logits(scores.features[train], scores.logits[train])
            p_train = 1 / (1 + np.exp(-z_train))
            thr = choose_threshold(p_train, scores.labels[train], sensitivity)
            p = 1 / (1 + np.exp(-head.logits(scores.features[held], scores.logits[held])))
            out["adapted"][0][held], out["adapted"][1][held] = p, p >= thr
    return out


def _measured(labels: np.ndarray, prob: np.ndarray, calls: np.ndarray, n_boot: int) -> dict[str, Any]:
    """Metrics of held-out calls (each fold had its own threshold, so the calls, not one threshold, decide)."""
    # the calls as probabilities on either side of 0.5 give the confusion counts; AUC and ECE use `prob`
    at_calls = compute_metrics(labels, np.where(calls, 1.0, 0.0), 0.5, n_boot=n_boot)
    of_probs = compute_metrics(labels, prob, 0.5, n_boot=n_boot)
    keys = ("sensitivity", "specificity", "accuracy")
    return {
        **{k: at_calls[k] for k in keys}, **{f"{k}_ci": at_calls[f"{k}_ci"] for k in keys},
        "auc": of_probs["auc"], "auc_ci": of_probs["auc_ci"], "ece": of_probs["ece"], "ece_ci": of_probs["ece_ci"],
        "n": int(labels.size), "n_malignant": int(labels.sum()),
    }  # fmt: skip


def interval_note(n_malignant: int, sensitivity: float) -> str:
    """What `n_malignant` malignant images let one say about a sensitivity (the Wilson interval's width)."""
    from skinscan.evaluation.metrics import wilson_interval

    ci = wilson_interval(round(sensitivity * n_malignant), n_malignant) or [0.0, 1.0]
    return (f"with {n_malignant} malignant images, a measured sensitivity of {sensitivity:.0%} has a 95 % interval "
            f"of {ci[0]:.0%}–{ci[1]:.0%}")  # fmt: skip


def calibrate_site(
    data: str | Path,
    out: str | Path,
    *,
    model: str | None = None,
    sensitivity: float = 0.90,
    split: str | None = None,
    name: str | None = None,
    adapt: str = "auto",
    refit_checks: bool = False,
    folds: int = 5,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Fit a site profile on the labelled images in `data`; write it to `out` (site.json) with report.html beside.

    Args:
        adapt: "auto" (the adapted head where there are MIN_MALIGNANT_TO_ADAPT malignant images and it beats
            recalibration on held-out folds), "always" (if the data allow it at all) or "never".
        refit_checks: widen the input checks' feature-distance limit to let OOD_SITE_QUANTILE of the site's images
            through (never narrower than the model's own).

    Returns:
        The summary written into report.html: the profile, and before/after metrics measured on held-out folds.

    Raises:
        ConfigError: a setting out of range. DataError: no readable images, one class only, unreadable files.
    """
    if not 0.5 <= sensitivity < 1.0:
        raise ConfigError(f"the target sensitivity must lie in [0.5, 1), not {sensitivity}")
    if adapt not in ("auto", "always", "never"):
        raise ConfigError(f"adapt must be auto, always or never, not {adapt!r}")
    out = Path(out)
    engine = Engine(model, check_inputs=True)
    with warnings.catch_warnings(record=True) as skipped:
        warnings.simplefilter("always", SkippedRecords)
        records = load_records(data, split, skip_bad=True)
    scores = score_site(engine, records)
    if scores.unreadable:
        raise DataError(f"{len(scores.unreadable)} of the site's images cannot be read; fix or remove them first: "
                        + "; ".join(scores.unreadable[:5]))  # fmt: skip
    n_pos = int(scores.labels.sum())
    n_neg = int(scores.labels.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        raise DataError(f"the site's images are all {'benign' if n_pos == 0 else 'malignant'}: a calibration needs "
                        "both benign and malignant images")  # fmt: skip
    k = int(min(folds, n_pos, n_neg, len(set(scores.groups))))
    if k < 2:
        raise DataError("too few images to hold any out: at least two malignant and two benign, in different lesions")

    ood_threshold = None
    refused_after = scores.refused
    if refit_checks and engine.ood_threshold is not None:
        ood_threshold = max(engine.ood_threshold, float(np.quantile(scores.ood, OOD_SITE_QUANTILE)))
        refused_after = scores.refused_at(engine, ood_threshold)
    enough = min(n_pos, n_neg) >= (2 if adapt == "always" else MIN_MALIGNANT_TO_ADAPT)
    can_adapt = scores.features is not None and enough
    fold = folds_of(scores.labels, scores.groups, k, seed)
    held = _held_out(scores, fold, sensitivity, adapt != "never" and can_adapt, seed)

    before_prob = engine.calibration.apply(scores.logits)
    report: dict[str, Any] = {
        "before": _measured(scores.labels, before_prob, before_prob >= engine.threshold, n_boot),
        "recalibrated": _measured(scores.labels, held["recalibrated"][0], held["recalibrated"][1], n_boot),
    }
    if "adapted" in held:
        report["adapted"] = _measured(scores.labels, held["adapted"][0], held["adapted"][1], n_boot)
    active = "recalibrated"
    if "adapted" in report:
        gain = (report["adapted"]["auc"] or 0) - (report["recalibrated"]["auc"] or 0)
        if adapt == "always" or gain >= ADAPT_MARGIN:
            active = "adapted"

    # the profile itself: fitted on every image
    t, b, thr = _recalibrate(scores.logits, scores.labels, sensitivity)
    head = None
    if "adapted" in held:
        assert scores.features is not None
        head = _fit_head(scores.features, scores.logits, scores.labels, seed)
        if active == "adapted":
            t, b = 1.0, 0.0  # a logistic regression's output is its own calibration
            # the threshold from the held-out probabilities: on the images it was fitted on, a head with hundreds of
            # weights separates the classes better than it will on new ones, and its threshold would promise a
            # sensitivity that new photos do not reach
            thr = choose_threshold(held["adapted"][0], scores.labels, sensitivity)
            # and what to expect, at that threshold, from the same held-out probabilities
            report["adapted"] = _measured(scores.labels, held["adapted"][0], held["adapted"][0] >= thr, n_boot)
    expected = {k: report[active][k] for k in ("sensitivity", "sensitivity_ci", "specificity", "specificity_ci",
                                               "auc", "auc_ci", "ece", "ece_ci")}  # fmt: skip
    profile = SiteProfile(
        name=name or Path(data).name, created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        model_id=engine.spec.id, images=int(scores.labels.size), malignant=n_pos, target_sensitivity=sensitivity,
        threshold=float(thr), temperature=float(t), bias=float(b), active=active, expected=expected,
        ood_threshold=ood_threshold, head=head,
        # what the server's drift monitor compares the clinic's new images with: these images' held-out
        # probabilities under the active head (of those the checks accept) and all their feature distances
        reference=Reference.of({"probability": held[active][0][~refused_after], "ood_distance": scores.ood},
                               source=f"calibrate-site {Path(data).name}").to_dict(),
    )  # fmt: skip
    profile.save(out)
    notes = []
    if n_pos < MIN_MALIGNANT:
        notes.append(f"Too few malignant images to promise a sensitivity: {interval_note(n_pos, sensitivity)}. "
                     f"Collect at least {MIN_MALIGNANT}.")  # fmt: skip
    if adapt != "never" and not can_adapt:
        notes.append(
            f"No adapted head: it needs at least {MIN_MALIGNANT_TO_ADAPT} malignant and as many benign "
            "images" + ("" if scores.features is not None else ", and a model with a features output") + "."
        )
    if skipped:
        notes.append(f"{sum(1 for _ in skipped)} warning(s) while reading the data: "
                     + "; ".join(str(w.message) for w in skipped)[:400])  # fmt: skip
    summary = {
        "profile": profile.to_dict() | {"head": "fitted" if head is not None else None}, "folds": k,
        "refused_by_model_checks": float(scores.refused.mean()), "refused_after": float(refused_after.mean()),
        "notes": notes, **report,
    }  # fmt: skip
    from skinscan.evaluation.site_report import write_site_report

    write_site_report(out.with_name("report.html"), summary, scores.labels, before_prob, held, engine.threshold,
                      profile)  # fmt: skip
    return summary
