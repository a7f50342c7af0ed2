"""The input checks' one refusal rule: when an image is not fit to judge, and the words that say why. The engine
refuses with it and `skinscan evaluate` counts with it, so the rate evaluate reports is the engine's."""

from __future__ import annotations

from skinscan.core.quality import Quality, QualityLimits

NOT_A_LESION = (
    "This does not look like a close-up photo of a skin lesion, so it cannot be judged. "
    "Send a sharp, well-lit dermoscopic or close-up photo with the lesion in the centre."
)


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
    problem = limits.problem(quality)
    if problem is not None:
        return problem
    if distance is not None and ood_threshold is not None and distance > ood_threshold:
        return NOT_A_LESION
    return None
