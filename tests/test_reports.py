"""Tests for skinscan.evaluation.report: metrics against hand-computed values, intervals, ECE, files written."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.transforms import Bbox
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from skinscan import DISCLAIMER
from skinscan.evaluation.metrics import (
    CI_BOOTSTRAP,
    CI_OFF,
    CI_TOO_FEW,
    CI_UNDEFINED,
    CI_WILSON,
    METRIC_KEYS,
    classification_report_text,
    rates_by_group,
    reliability_bins,
    wilson_interval,
)
from skinscan.evaluation.plots import CAPTION_CHARS, _grid_sample, grid_figure, plot_grid, short_name
from skinscan.evaluation.report import compute_metrics, write_evaluation

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# Hand-worked case: at threshold 0.5, tp=3 (0.7, 0.8, 0.9), fn=1 (0.4), fp=2 (0.6, 0.55), tn=4.
Y = np.array([0, 0, 0, 0, 1, 1, 1, 0, 1, 0])
P = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.8, 0.4, 0.05, 0.9, 0.55])


def _synthetic(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.35).astype(int)
    prob = np.clip(rng.normal(0.3 + 0.35 * y, 0.18), 0.0, 1.0)
    return y, prob


def test_metrics_match_hand_computed_values() -> None:
    m = compute_metrics(Y, P, 0.5, n_boot=0)
    assert m["confusion_matrix"] == [[4, 2], [1, 3]]
    assert m["sensitivity"] == pytest.approx(3 / 4, abs=1e-4)
    assert m["specificity"] == pytest.approx(4 / 6, abs=1e-4)
    assert m["precision"] == pytest.approx(3 / 5, abs=1e-4)
    assert m["f1"] == pytest.approx(2 * 3 / (2 * 3 + 2 + 1), abs=1e-4)
    assert m["accuracy"] == pytest.approx(7 / 10, abs=1e-4)
    assert m["balanced_accuracy"] == pytest.approx((3 / 4 + 4 / 6) / 2, abs=1e-4)
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(Y, P >= 0.5), abs=1e-4)
    assert m["auc"] == pytest.approx(22 / 24, abs=1e-4)  # the 0.4 positive ranks above 4 of 6 negatives
    assert (m["threshold"], m["n"], m["n_malignant"], m["n_boot"]) == (0.5, 10, 4, 0)
    assert all(m[f"{key}_ci"] is None for key in METRIC_KEYS)


def test_threshold_is_inclusive() -> None:
    m = compute_metrics([0, 1], [0.5, 0.5], 0.5, n_boot=0)
    assert m["confusion_matrix"] == [[0, 1], [0, 1]]


@pytest.mark.parametrize("decimals", [1, 2, 6])
def test_auc_matches_sklearn_with_ties(decimals: int) -> None:
    y, prob = _synthetic(500, seed=decimals)
    prob = prob.round(decimals)
    assert compute_metrics(y, prob, 0.5, n_boot=0)["auc"] == pytest.approx(roc_auc_score(y, prob), abs=1e-4)


def test_intervals_contain_estimate_and_are_seed_deterministic() -> None:
    y, prob = _synthetic(400)
    first = compute_metrics(y, prob, 0.5, n_boot=300, seed=7)
    again = compute_metrics(y, prob, 0.5, n_boot=300, seed=7)
    other = compute_metrics(y, prob, 0.5, n_boot=300, seed=8)
    assert first == again
    assert first != other
    for key in METRIC_KEYS:
        low, high = first[f"{key}_ci"]
        assert low <= first[key] <= high, key
        assert high - low < 0.25, key


def test_ece_hand_computed_and_matches_reliability_bins() -> None:
    assert compute_metrics([0, 1], [0.2, 0.2], 0.5, n_boot=0)["ece"] == pytest.approx(0.3)
    assert compute_metrics([1, 0], [0.9, 0.1], 0.5, n_boot=0)["ece"] == pytest.approx(0.1)
    bins = reliability_bins(Y, P)
    assert bins.count.sum() == Y.size and len(bins.count) == 15
    assert compute_metrics(Y, P, 0.5, n_boot=0)["ece"] == pytest.approx(bins.ece, abs=1e-4)


def test_ece_small_when_calibrated_and_large_when_not() -> None:
    rng = np.random.default_rng(0)
    prob = rng.random(20_000)
    y = (rng.random(prob.size) < prob).astype(int)
    assert compute_metrics(y, prob, 0.5, n_boot=0)["ece"] < 0.03
    overconfident = np.where(prob >= 0.5, 0.99, 0.01)
    assert compute_metrics(y, overconfident, 0.5, n_boot=0)["ece"] > 0.2


@pytest.mark.parametrize("label", [0, 1])
def test_single_class_does_not_crash(label: int) -> None:
    y = np.full(20, label)
    prob = np.linspace(0.0, 1.0, 20)
    m = compute_metrics(y, prob, 0.5, n_boot=100)
    assert m["auc"] is None and m["auc_ci"] is None
    # Zero denominators are reported as 0.0: no positives -> sensitivity 0; no negatives -> specificity 0.
    assert m["sensitivity" if label == 0 else "specificity"] == 0.0
    assert m["accuracy"] == pytest.approx(0.5)
    json.dumps(m, allow_nan=False)
    assert "malignant" in classification_report_text(y, prob, 0.5)


@pytest.mark.parametrize(
    ("y_true", "prob"),
    [([0, 1], [0.2]), ([0, 2], [0.1, 0.2]), ([0, 1], [0.1, 1.5]), ([0, 1], [0.1, float("nan")]), ([], [])],
)
def test_invalid_input_raises(y_true: list[int], prob: list[float]) -> None:
    with pytest.raises(ValueError):
        compute_metrics(y_true, prob, 0.5)


def test_grid_sample_puts_most_confident_errors_first() -> None:
    probs = np.array([0.95, 0.6, 0.1, 0.2, 0.3, 0.7, 0.8, 0.05, 0.4, 0.9])
    labels = np.array([0, 0, 1, 0, 0, 1, 1, 0, 0, 1])  # errors: 0.95 (margin .45), 0.6 (.1), 0.1 (.4)
    picked = _grid_sample(probs, labels, 0.5, 6)
    assert picked[:3] == [0, 2, 1]
    assert len(picked) == len(set(picked)) == 6
    assert _grid_sample(probs, labels, 0.5, 6) == picked
    assert _grid_sample(probs, labels, 0.5, 20) == list(range(10))


def test_write_evaluation_writes_every_file(tmp_path: Path) -> None:
    y, prob = _synthetic(120)
    rng = np.random.default_rng(1)
    thumbs = [rng.integers(0, 256, size=(24, 24, 3), dtype=np.uint8) for _ in range(y.size)]
    names = [f"case_{i:03d}" for i in range(y.size)]
    info = {"model": "tiny <test> & model", "data": "synthetic"}
    metrics = write_evaluation(tmp_path / "eval", y, prob, 0.5, thumbs=thumbs, names=names, info=info, n_boot=200)

    out = tmp_path / "eval"
    for name in ("roc.png", "pr.png", "reliability.png", "confusion.png", "grid.png"):
        assert (out / name).read_bytes().startswith(PNG_MAGIC), name
    assert "benign" in (out / "classification_report.txt").read_text()

    saved = json.loads((out / "metrics.json").read_text())
    required = {*METRIC_KEYS, *(f"{k}_ci" for k in METRIC_KEYS), "threshold", "n", "n_malignant"}
    assert required | {"confusion_matrix", "n_boot", "disclaimer"} <= saved.keys()
    assert saved["disclaimer"] == DISCLAIMER
    assert {k: v for k, v in saved.items() if k != "disclaimer"} == metrics

    page = (out / "report.html").read_text()
    assert "http://" not in page and "https://" not in page
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) == 5 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "<script" not in page and "<link" not in page
    assert DISCLAIMER in page
    assert "tiny &lt;test&gt; &amp; model" in page and "<test>" not in page


def test_wilson_interval_known_values() -> None:
    # Wilson score intervals from the closed form (Newcombe 1998, table I): 0/10, 5/10, 81/263
    assert wilson_interval(0, 10) == pytest.approx([0.0, 0.2775], abs=1e-4)
    assert wilson_interval(5, 10) == pytest.approx([0.2366, 0.7634], abs=1e-4)
    assert wilson_interval(81, 263) == pytest.approx([0.2553, 0.3662], abs=1e-4)
    assert wilson_interval(0, 0) is None


def test_rates_by_group_hand_computed() -> None:
    y = [1, 1, 1, 0, 0, 0, 0, 1]
    p = [0.9, 0.4, 0.6, 0.7, 0.1, 0.2, 0.5, 0.3]
    groups = ["mel", "mel", "mel", "bkl", "bkl", "nv", "nv", ""]
    rows = {r["group"]: r for r in rates_by_group(y, p, 0.5, groups)}
    assert list(rows) == ["mel", "bkl", "nv"]  # malignant first, then by size and name; the unnamed case is left out
    assert (rows["mel"]["n"], rows["mel"]["n_malignant"], rows["mel"]["called_malignant"]) == (3, 3, 2)
    assert rows["mel"]["rate"] == pytest.approx(2 / 3, abs=1e-4)  # a sensitivity
    assert (rows["mel"]["kind"], rows["bkl"]["kind"]) == ("malignant", "benign")
    mixed = rates_by_group([0, 1], [0.2, 0.8], 0.5, ["x", "x"])[0]
    assert (mixed["kind"], mixed["rate"]) == ("mixed", 0.5)
    assert rows["bkl"]["rate"] == 0.5 and rows["nv"]["rate"] == 0.5  # false alarms; 0.5 is called malignant
    assert rows["bkl"]["mean_probability"] == pytest.approx(0.4)
    assert rows["mel"]["rate_ci"] == wilson_interval(2, 3)
    with pytest.raises(ValueError, match="groups"):
        rates_by_group(y, p, 0.5, groups[:-1])
    # a small malignant group still comes before a large benign one
    order = [r["group"] for r in rates_by_group([0, 0, 0, 1, 0], [0.1] * 5, 0.5, ["nv", "nv", "nv", "mel", "df"])]
    assert order == ["mel", "nv", "df"]


def test_write_evaluation_reports_each_diagnosis(tmp_path: Path) -> None:
    y, prob = _synthetic(120)
    dx = ["mel" if label else ("nv" if i % 3 else "bkl") for i, label in enumerate(y)]
    metrics = write_evaluation(tmp_path, y, prob, 0.5, n_boot=0, by={"diagnosis": dx})
    rows = {r["group"]: r for r in metrics["by_diagnosis"]}
    assert sum(r["n"] for r in rows.values()) == 120
    tp, fp = metrics["confusion_matrix"][1][1], metrics["confusion_matrix"][0][1]
    assert rows["mel"]["called_malignant"] == tp
    assert rows["nv"]["called_malignant"] + rows["bkl"]["called_malignant"] == fp
    assert json.loads((tmp_path / "metrics.json").read_text())["by_diagnosis"] == metrics["by_diagnosis"]
    page = (tmp_path / "report.html").read_text()
    assert "By diagnosis" in page and "sensitivity" in page and "false alarms" in page
    # without names for the cases there is no breakdown at all
    plain = write_evaluation(tmp_path / "plain", y, prob, 0.5, n_boot=0, by={"diagnosis": [""] * 120})
    assert "by_diagnosis" not in plain and "By diagnosis" not in (tmp_path / "plain" / "report.html").read_text()


def test_write_evaluation_single_class_without_thumbs(tmp_path: Path) -> None:
    metrics = write_evaluation(tmp_path, np.zeros(8, dtype=int), np.linspace(0.1, 0.9, 8), 0.5, n_boot=50)
    assert metrics["auc"] is None
    assert not (tmp_path / "grid.png").exists()
    assert (tmp_path / "report.html").exists()


def test_plot_grid_rejects_bad_thumbnails(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="uint8"):
        plot_grid([np.zeros((8, 8, 3), dtype=np.float32)], [0.3], [0], 0.5, tmp_path / "g.png")


def test_reports_import_neither_torch_nor_qt_nor_pyplot() -> None:
    code = (
        "import sys, skinscan.evaluation.report; "
        "bad = [m for m in ('torch', 'qtpy', 'PyQt5', 'matplotlib.pyplot') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


# --- intervals that do not collapse on small data, and a readable grid (issue 15, item 7) ---------------------------


def test_npv_hand_computed() -> None:
    m = compute_metrics(Y, P, 0.5, n_boot=0)
    assert m["npv"] == pytest.approx(4 / 5, abs=1e-4)  # tn=4 of the 5 benign calls
    assert m["counts"] == {"accuracy": [7, 10], "sensitivity": [3, 4], "specificity": [4, 6], "precision": [3, 5],
                           "npv": [4, 5]}  # fmt: skip
    assert set(m["ci_method"].values()) == {CI_OFF}


def test_proportions_get_wilson_intervals_that_do_not_collapse_on_small_data() -> None:
    """10 of 10 right: a bootstrap resamples 10 of 10 every time and says 1.0000–1.0000; Wilson says 0.72–1."""
    y = np.array([0] * 5 + [1] * 5)
    m = compute_metrics(y, np.where(y == 1, 0.9, 0.1), 0.5, n_boot=200)
    assert m["accuracy_ci"] == wilson_interval(10, 10) == pytest.approx([0.7225, 1.0], abs=1e-4)
    for key in ("sensitivity", "specificity", "precision", "npv"):
        assert m[f"{key}_ci"] == wilson_interval(5, 5), key
        assert m["ci_method"][key] == CI_WILSON
    # an AUC of 1 from 5 + 5 cases, and F1 and balanced accuracy of 1: the bootstrap cannot bound them
    for key in ("auc", "balanced_accuracy", "f1"):
        assert m[f"{key}_ci"] is None and m["ci_method"][key] == CI_TOO_FEW, key
    # the same counts at a large size have intervals from both methods, every one of them of some width
    big = compute_metrics(*_synthetic(400), 0.5, n_boot=200)
    assert {big["ci_method"][k] for k in METRIC_KEYS} == {CI_WILSON, CI_BOOTSTRAP}
    assert all(big[f"{k}_ci"][0] < big[f"{k}_ci"][1] for k in METRIC_KEYS)


@pytest.mark.parametrize(("n_benign", "n_malignant"), [(40, 4), (4, 40), (2, 2), (30, 0)])
def test_auc_interval_on_tiny_or_one_sided_data_is_never_a_point(n_benign: int, n_malignant: int) -> None:
    y = np.array([0] * n_benign + [1] * n_malignant)
    prob = np.random.default_rng(0).random(y.size)
    m = compute_metrics(y, prob, 0.5, n_boot=300)
    assert m["auc_ci"] is None
    assert m["ci_method"]["auc"] == (CI_TOO_FEW if n_malignant else CI_UNDEFINED)
    for key in METRIC_KEYS:  # no metric's interval, however it was had, is of zero width
        ci = m[f"{key}_ci"]
        assert ci is None or ci[0] < ci[1], (key, ci)


def test_bootstrap_that_never_varies_is_not_enough_data() -> None:
    # 12 of each class, perfectly ranked: enough cases for an AUC interval, but every resample has AUC 1
    y = np.array([0] * 12 + [1] * 12)
    m = compute_metrics(y, np.linspace(0.01, 0.99, 24), 0.5, n_boot=300)
    assert m["auc"] == 1.0 and m["auc_ci"] is None and m["ci_method"]["auc"] == CI_TOO_FEW


def test_report_names_each_interval_and_shows_no_zero_width_one(tmp_path: Path) -> None:
    y = np.array([0] * 5 + [1] * 5)
    write_evaluation(tmp_path, y, np.where(y == 1, 0.9, 0.1), 0.5, n_boot=200)
    page = (tmp_path / "report.html").read_text()
    assert not re.search(r"(\d\.\d{4}) – \1", page)  # the "1.0000 – 1.0000" of issue 15
    rows = {m.group(1): m.group(0) for m in re.finditer(r"<tr><td>([^<]+)</td>.*?</tr>", page)}
    sensitivity = rows["Sensitivity (malignant recall)"]
    assert "Wilson score" in sensitivity and "5 of 5" in sensitivity
    assert "0.7225 – 1.0000" in rows["Accuracy"]
    assert "not enough data" in rows["ROC AUC"] and "not enough data" in rows["F1 (malignant)"]
    assert "percentile bootstrap: too few cases" in rows["F1 (malignant)"]  # the interval it would have had
    assert "Negative predictive value (NPV)" in rows
    big = tmp_path / "big"
    write_evaluation(big, *_synthetic(300), 0.5, n_boot=100)
    assert "percentile bootstrap, 100 resamples" in (big / "report.html").read_text()


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("isic2017:images/ISIC_0000000.jpg", "ISIC_0000000.jpg"),
        ("ham10000:ISIC_0024306", "ISIC_0024306"),
        ("isic-mvb:train/benign/12.jpg", "12.jpg"),
        ("clinic:photos/very_long_clinic_photo_name_2023-01-01.jpeg", "very_long…01-01.jpeg"),
        (r"C:\photos\mole.jpg", "mole.jpg"),
    ],
)  # fmt: skip
def test_short_name_is_the_file_name_shortened_in_the_middle(name: str, shown: str) -> None:
    assert short_name(name) == shown
    assert len(short_name(name)) <= CAPTION_CHARS


def _boxes_overlap(a: Bbox, b: Bbox) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


@pytest.mark.parametrize("n", [1, 3, 8, 10, 48, 120])
def test_grid_captions_are_readable_and_nothing_overlaps(n: int) -> None:
    """Each caption names the file (whole, or shortened in the middle), the probability and the true label; the
    title, the captions and the images are laid out apart, for a single row as for six."""
    y, prob = _synthetic(n, seed=n)
    thumbs = [np.full((40, 40, 3), 120, dtype=np.uint8)] * n
    names = [f"clinic:photos/a_rather_long_photo_name_{i:04d}.jpeg" for i in range(n)]
    fig = grid_figure(thumbs, prob, y, 0.5, names=names)
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)  # the layout is set as the figure is drawn
    axes = fig.axes
    assert len(axes) == min(n, 48)
    for ax in axes:
        caption = ax.title.get_text().splitlines()
        assert len(caption) == 2 and caption[0].startswith("a_rather_") and caption[0].endswith(".jpeg")
        assert "…" in caption[0] and re.fullmatch(r"(WRONG )?p=\d\.\d\d · true (benign|malignant)", caption[1])
    title = fig._suptitle
    assert title is not None
    texts = [title.get_window_extent(renderer)] + [ax.title.get_window_extent(renderer) for ax in axes]
    images = [ax.get_window_extent(renderer) for ax in axes]
    boxes = texts + images
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert not _boxes_overlap(a, b), (a, b)
    # and all of it inside the picture
    page = fig.bbox
    assert all(page.x0 <= b.x0 and b.x1 <= page.x1 and page.y0 <= b.y0 and b.y1 <= page.y1 for b in boxes)
