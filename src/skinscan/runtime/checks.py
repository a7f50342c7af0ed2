"""The input checks' one refusal rule: when an image is not fit to judge, and the words that say why. The engine
refuses with it and `skinscan evaluate` counts with it, so the rate evaluate reports is the engine's. The reasons
are plain sentences that API, CLI and GUI show as they are; each says what to do instead."""

from __future__ import annotations

from skinscan.core.quality import Quality, QualityLimits

NOT_A_LESION = (
    "This does not look like a close-up photo of a skin lesion, so it cannot be judged. "
    "Send a sharp, well-lit dermoscopic or close-up photo with the lesion in the centre."
)
TOO_DARK = "The photo is too dark to judge. Retake it in good, even light."
NEARLY_BLANK = "The photo is nearly blank (almost no detail). Retake it with the lesion in the centre."
NOT_IN_COLOUR = (
    "The photo is black and white, so it cannot be judged: the colours of a lesion matter, and the model has "
    "only learned from colour photos. Send a colour photo, taken without a black-and-white filter."
)
TOO_BLURRED = "The photo is too blurred to judge. Hold the camera steady and focus on the lesion."


# A short name per reason, for counting refusals (the metrics) where the sentence would be too long a label.
REASON_CODES = {NOT_A_LESION: "not_a_lesion", TOO_DARK: "too_dark", NEARLY_BLANK: "nearly_blank",
                NOT_IN_COLOUR: "not_in_colour", TOO_BLURRED: "too_blurred"}  # fmt: skip


def reason_code(reason: str | None) -> str:
    """The short name of a refusal reason ("other" for one this module did not write)."""
    return REASON_CODES.get(reason or "", "other")


def quality_problem(quality: Quality, limits: QualityLimits) -> str | None:
    """Why the image's measures alone make it unfit to judge, or None."""
    if quality.brightness < limits.min_brightness:
        return TOO_DARK
    # before "blank": a flat pure colour is better told that it is not skin than to retake the same thing
    if quality.saturation > limits.max_saturation:
        return NOT_A_LESION
    if quality.contrast < limits.min_contrast:
        return NEARLY_BLANK
    # after "blank": a flat grey image is told that it is blank, which is what is wrong with it
    if quality.chroma < limits.min_chroma:
        return NOT_IN_COLOUR
    if quality.sharpness < limits.min_sharpness:
        return TOO_BLURRED
    return None


def refusal_reason(
    quality: Quality, limits: QualityLimits, distance: float | None = None, ood_threshold: float | None = None
) -> str | None:
    """Why an image cannot be judged, or None when it can.

    Args:
        quality: the image's quality measures (of the model's prepared pixels).
        limits: the model's quality limits.
        distance: the model's feature distance for the image; None before the model has run, which checks the
            quality alone (so the engine spares unfit images the model run).
        ood_threshold: the distance above which an image is not a skin lesion; None: the model has no such check.
    """
    problem = quality_problem(quality, limits)
    if problem is not None:
        return problem
    if distance is not None and ood_threshold is not None and distance > ood_threshold:
        return NOT_A_LESION
    return None
