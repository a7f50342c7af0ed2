"""The six-step scale: total, monotone, and tied to the threshold."""

from __future__ import annotations

import numpy as np
import pytest

from skinscan.core.severity import (
    DEFAULT_SCALE,
    LOW_CONCERN,
    SEE_DOCTOR,
    SEE_DOCTOR_SOON,
    VERDICTS,
    rescale,
    severity_for,
)


@pytest.mark.parametrize("threshold", [0.05, 0.2, 0.5, 0.8])
def test_benign_step_exactly_when_label_is_benign(threshold: float) -> None:
    for p in np.linspace(0, 1, 1001):
        step = severity_for(float(p), threshold)
        assert (step.level == 1) == (p < threshold)


@pytest.mark.parametrize("threshold", [0.1, 0.5, 0.9])
def test_scale_is_total_and_monotone(threshold: float) -> None:
    levels = [severity_for(float(p), threshold).level for p in np.linspace(0, 1, 2001)]
    assert levels == sorted(levels)
    assert set(levels) == {1, 2, 3, 4, 5, 6}


@pytest.mark.parametrize(
    ("p", "level"), [(0.0, 1), (0.49, 1), (0.5, 2), (0.6, 2), (0.65, 3), (0.75, 4), (0.9, 5), (0.95, 5), (0.96, 6)]
)
def test_seed_cut_points_at_threshold_one_half(p: float, level: int) -> None:
    assert severity_for(p, 0.5).level == level


def test_rescale_maps_threshold_to_one_half() -> None:
    assert rescale(0.2, 0.2) == pytest.approx(0.5)
    assert rescale(0.0, 0.2) == 0.0 and rescale(1.0, 0.2) == pytest.approx(1.0)
    assert rescale(1.7, 0.2) == pytest.approx(1.0)  # out-of-range input is clamped


def test_every_step_has_words_for_a_lay_reader() -> None:
    for step in DEFAULT_SCALE:
        assert step.name and step.description.endswith(".") and step.recommendation.endswith(".")
        assert step.colour.startswith("#")


def test_label_and_step_agree_even_at_extreme_thresholds() -> None:
    for threshold in (1 - 1e-9, 1e-9):
        for p in (0.0, threshold * 0.999999, threshold, 1.0):
            assert (severity_for(p, threshold).level == 1) == (p < threshold)


@pytest.mark.parametrize("threshold", [0.05, 0.154, 0.5])
def test_the_verdict_is_an_action_that_agrees_with_the_label(threshold: float) -> None:
    for p in np.linspace(0, 1, 501):
        verdict = severity_for(float(p), threshold).verdict
        # below the threshold, and only there: low concern; at or above it, always a doctor
        assert (verdict == LOW_CONCERN) == (p < threshold)
        assert verdict in (LOW_CONCERN, SEE_DOCTOR, SEE_DOCTOR_SOON)
    # the more suspicious steps never ask for less than the milder ones
    order = [LOW_CONCERN, SEE_DOCTOR, SEE_DOCTOR_SOON]
    assert [order.index(s.verdict) for s in DEFAULT_SCALE] == sorted(order.index(s.verdict) for s in DEFAULT_SCALE)


def test_no_step_names_a_diagnosis() -> None:
    # the model tells malignant from benign; naming melanoma is the diagnosis output's job, where it says so
    for step in DEFAULT_SCALE:
        for text in (step.name, step.description, step.recommendation, step.verdict.headline):
            assert not any(word in text.lower() for word in ("melanoma", "carcinoma", "malignant", "benign")), text


def test_verdict_codes_are_distinct_and_stable() -> None:
    assert [v.code for v in VERDICTS] == ["low_concern", "see_doctor", "see_doctor_soon", "cannot_judge"]
    assert len({v.headline for v in VERDICTS}) == len(VERDICTS)
