"""The seed's six-step severity scale, made total and tied to the model's threshold."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SeverityStep:
    level: int
    upper: float  # inclusive upper bound on the rescaled probability (the first step: exclusive)
    name: str
    description: str
    recommendation: str
    colour: str


# The seed's steps and cut points; wording for a lay reader. The first step is the only benign one.
DEFAULT_SCALE: tuple[SeverityStep, ...] = (
    SeverityStep(
        1,
        0.5,
        "Benign / no concern",
        "The image shows no features the model associates with skin cancer.",
        "No action needed now. Check your skin monthly and see a doctor if the lesion changes, bleeds or itches.",
        "#2e7d32",
    ),
    SeverityStep(
        2,
        0.6,
        "Mild irregularity",
        "Some features are slightly irregular; most such lesions are harmless.",
        "Have a doctor or dermatologist look at it at your next routine visit, within a few months.",
        "#9e9d24",
    ),
    SeverityStep(
        3,
        0.7,
        "Moderate abnormality",
        "Several features are irregular in ways that can go with skin cancer.",
        "Book an appointment with a dermatologist within the next month.",
        "#f9a825",
    ),
    SeverityStep(
        4,
        0.8,
        "Malignant potential",
        "The lesion shows features often seen in skin cancer.",
        "See a dermatologist within two weeks.",
        "#ef6c00",
    ),
    SeverityStep(
        5,
        0.95,
        "High-risk melanoma",
        "The lesion shows many features strongly associated with melanoma or other skin cancer.",
        "See a dermatologist within a week.",
        "#d84315",
    ),
    SeverityStep(
        6,
        1.0,
        "Critical melanoma",
        "The lesion looks highly suspicious of melanoma or other skin cancer.",
        "See a dermatologist as soon as possible, within days.",
        "#b71c1c",
    ),
)


def rescale(probability: float, threshold: float) -> float:
    """Piecewise-linear map of [0, threshold, 1] onto [0, 0.5, 1], so the threshold falls at 0.5."""
    p = min(max(float(probability), 0.0), 1.0)
    t = min(max(float(threshold), 1e-6), 1 - 1e-6)
    return 0.5 * p / t if p < t else 0.5 + 0.5 * (p - t) / (1 - t)


def severity_for(probability: float, threshold: float, scale: tuple[SeverityStep, ...] = DEFAULT_SCALE) -> SeverityStep:
    """The step of a calibrated probability; the first step exactly when the label is benign."""
    if probability < threshold:  # decided on the probability itself, so it always agrees with the label
        return scale[0]
    r = rescale(probability, threshold)
    for step in scale[1:]:
        if r <= step.upper:
            return step
    return scale[-1]
