"""The input checks' refusal rule, case by case (the engine and evaluate both apply it)."""

from __future__ import annotations

import pytest

from skinscan.core.quality import Quality, QualityLimits
from skinscan.runtime.checks import NOT_A_LESION, refusal_reason

FINE = Quality(brightness=120.0, contrast=30.0, sharpness=5.0)
DARK = Quality(brightness=5.0, contrast=30.0, sharpness=5.0)


@pytest.mark.parametrize(
    ("quality", "distance", "ood_threshold", "expected"),
    [
        (FINE, None, None, None),
        (FINE, 0.5, 1.0, None),
        (FINE, 1.0, 1.0, None),  # at the threshold is still a lesion
        (FINE, 1.5, 1.0, NOT_A_LESION),
        (FINE, 1.5, None, None),  # a model without the check
        (FINE, None, 1.0, None),  # before the model has run: the quality alone
        (DARK, None, None, "too dark"),
        (DARK, 1.5, 1.0, "too dark"),  # the quality's reason comes first
    ],
)  # fmt: skip
def test_refusal_reason(quality: Quality, distance: float | None, ood_threshold: float | None,
                        expected: str | None) -> None:  # fmt: skip
    reason = refusal_reason(quality, QualityLimits(), distance, ood_threshold)
    if expected is None or expected == NOT_A_LESION:
        assert reason == expected
    else:
        assert reason is not None and expected in reason
