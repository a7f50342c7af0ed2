"""Calibration, threshold choice and the feature Gaussian."""

from __future__ import annotations

import numpy as np
import pytest

from skinscan.calibrate import choose_threshold, fit_calibration, fit_feature_gaussian, sigmoid


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


def test_feature_distance_separates_outliers() -> None:
    rng = np.random.default_rng(2)
    train = rng.normal(size=(800, 32)) @ rng.normal(size=(32, 32))
    gaussian = fit_feature_gaussian(train, k=8)
    inliers = gaussian.distance(train[:200])
    outliers = gaussian.distance(train[:200] + rng.normal(0, 10, size=(200, 32)))
    assert np.quantile(inliers, 0.99) < np.quantile(outliers, 0.01)
