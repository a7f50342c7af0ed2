"""Calibration, threshold choice and the feature Gaussian."""

from __future__ import annotations

import numpy as np
import pytest

from skinscan.core.calibration import sigmoid
from skinscan.training.fitting import choose_threshold, fit_calibration, fit_feature_gaussian


def test_calibration_recovers_temperature_and_bias() -> None:
    rng = np.random.default_rng(0)
    true_logit = rng.normal(0, 2, 20000)
    labels = (rng.uniform(size=true_logit.size) < sigmoid(true_logit)).astype(int)
    over_confident = true_logit * 3.0 + 1.5  # what a class-weighted, overfitted net emits
    cal = fit_calibration(over_confident, labels)
    assert cal.temperature == pytest.approx(3.0, rel=0.1)
    assert cal.bias == pytest.approx(1.5, abs=0.2)


def test_calibration_is_bounded_on_separable_data() -> None:
    cal = fit_calibration(np.array([-5.0, -4, 4, 5]), np.array([0, 0, 1, 1]))
    assert cal.temperature >= 0.05


@pytest.mark.parametrize("target", [0.5, 0.9, 0.95, 1.0])
def test_threshold_meets_the_sensitivity_target(target: float) -> None:
    rng = np.random.default_rng(1)
    prob = rng.uniform(size=500)
    labels = (rng.uniform(size=500) < prob).astype(int)
    t = choose_threshold(prob, labels, target)
    sensitivity = (prob[labels == 1] >= t).mean()
    assert sensitivity >= target
    # and it is the highest such threshold: a hair higher misses the target
    assert (prob[labels == 1] >= t + 1e-9).mean() < target or t >= prob.max()


def test_threshold_holds_the_sensitivity_in_every_source() -> None:
    rng = np.random.default_rng(3)
    # "easy": malignant cases score high; "hard": they overlap the benign ones; "tiny": too few to count
    easy = np.r_[rng.uniform(0.6, 1.0, 200), rng.uniform(0.0, 0.5, 100)]
    hard = np.r_[rng.uniform(0.1, 0.8, 60), rng.uniform(0.0, 0.6, 400)]
    tiny = np.r_[np.full(5, 0.01), rng.uniform(0.0, 0.5, 20)]
    prob = np.r_[easy, hard, tiny]
    labels = np.r_[np.ones(200), np.zeros(100), np.ones(60), np.zeros(400), np.ones(5), np.zeros(20)].astype(int)
    sources = ["easy"] * 300 + ["hard"] * 460 + ["tiny"] * 25
    pooled = choose_threshold(prob, labels, 0.9)
    hard_cases = (np.asarray(sources) == "hard") & (labels == 1)
    assert (prob[hard_cases] >= pooled).mean() < 0.9  # pooled, the easy source carries the target
    t = choose_threshold(prob, labels, 0.9, sources)
    assert t < pooled and (prob[hard_cases] >= t).mean() >= 0.9 and (prob[labels == 1] >= t).mean() >= 0.9
    assert t > 0.01  # the 5 malignant cases of "tiny" set nothing of their own


def test_feature_distance_separates_outliers() -> None:
    rng = np.random.default_rng(2)
    train = rng.normal(size=(800, 32)) @ rng.normal(size=(32, 32))
    gaussian = fit_feature_gaussian(train, k=8)
    inliers = gaussian.distance(train[:200])
    outliers = gaussian.distance(train[:200] + rng.normal(0, 10, size=(200, 32)))
    assert np.quantile(inliers, 0.99) < np.quantile(outliers, 0.01)
