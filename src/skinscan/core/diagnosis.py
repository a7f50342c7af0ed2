"""The seven diagnoses of HAM10000 / ISIC 2018 that the diagnosis output of a model names, in its order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

DIAGNOSES = ("mel", "nv", "bcc", "akiec", "bkl", "df", "vasc")
NAMES = {
    "mel": "melanoma",
    "nv": "naevus (mole)",
    "bcc": "basal cell carcinoma",
    "akiec": "actinic keratosis or Bowen's disease",
    "bkl": "benign keratosis (seborrhoeic keratosis, solar lentigo)",
    "df": "dermatofibroma",
    "vasc": "vascular lesion",
}
# akiec (actinic keratosis / Bowen's) is pre-cancerous: "needs a doctor", so it counts as malignant
MALIGNANT = frozenset({"mel", "bcc", "akiec"})


def most_likely(probabilities: Sequence[float], codes: Sequence[str] = DIAGNOSES, k: int = 3) -> list[dict[str, Any]]:
    """The k most likely diagnoses, most likely first: code, name, probability (four decimals), malignant."""
    ranked = sorted(zip(codes, probabilities, strict=True), key=lambda pair: -pair[1])[:k]
    return [
        {"code": code, "name": NAMES.get(code, code), "probability": round(float(p), 4), "malignant": code in MALIGNANT}
        for code, p in ranked
    ]
