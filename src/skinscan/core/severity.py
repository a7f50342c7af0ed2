"""The seed's six-step severity scale, made total and tied to the model's threshold, and the verdict: what to do,
the headline of every result in every interface (API, web, desktop, CLI, reports), in the same words.

The model tells malignant from benign (melanoma, basal cell carcinoma and actinic keratosis against the rest), so no
step names a diagnosis; the diagnosis output, where a model has one, names the likely diagnoses beside the verdict.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    """What a person should do about a result: a stable code for programs and the headline for people."""

    code: str
    headline: str


LOW_CONCERN = Verdict("low_concern", "Low concern: keep an eye on it")
SEE_DOCTOR = Verdict("see_doctor", "Have a doctor look at it")
SEE_DOCTOR_SOON = Verdict("see_doctor_soon", "See a doctor soon")
CANNOT_JUDGE = Verdict("cannot_judge", "Cannot judge this photo")
VERDICTS = (LOW_CONCERN, SEE_DOCTOR, SEE_DOCTOR_SOON, CANNOT_JUDGE)


@dataclass(frozen=True)
class SeverityStep:
    level: int
    upper: float  # inclusive upper bound on the rescaled probability (the first step: exclusive)
    name: str
    description: str
    recommendation: str
    colour: str
    verdict: Verdict


# The seed's steps and cut points; wording for a lay reader. The first step is the only benign one.
DEFAULT_SCALE: tuple[SeverityStep, ...] = (
    SeverityStep(
        1,
        0.5,
        "No concern found",
        "The image shows no features the model associates with skin cancer.",
        "No action needed now. Check your skin monthly and see a doctor if the lesion changes, bleeds or itches.",
        "#2e7d32",
        LOW_CONCERN,
    ),
    SeverityStep(
        2,
        0.6,
        "Mild irregularity",
        "Some features are slightly irregular; most such lesions are harmless, but a doctor should judge it.",
        "Have a doctor or dermatologist look at it at your next routine visit, within a few months.",
        "#9e9d24",
        SEE_DOCTOR,
    ),
    SeverityStep(
        3,
        0.7,
        "Moderate irregularity",
        "Several features are irregular in ways that can go with skin cancer.",
        "Book an appointment with a dermatologist within the next month.",
        "#f9a825",
        SEE_DOCTOR,
    ),
    SeverityStep(
        4,
        0.8,
        "Suspicious",
        "The lesion shows features often seen in skin cancer.",
        "See a dermatologist within two weeks.",
        "#ef6c00",
        SEE_DOCTOR_SOON,
    ),
    SeverityStep(
        5,
        0.95,
        "Highly suspicious",
        "The lesion shows many features strongly associated with skin cancer.",
        "See a dermatologist within a week.",
        "#d84315",
        SEE_DOCTOR_SOON,
    ),
    SeverityStep(
        6,
        1.0,
        "Very highly suspicious",
        "The lesion looks highly suspicious of skin cancer.",
        "See a dermatologist as soon as possible, within days.",
        "#b71c1c",
        SEE_DOCTOR_SOON,
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
