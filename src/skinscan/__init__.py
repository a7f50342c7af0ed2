"""skinscan: skin-lesion screening with a CNN. A screening aid, not a diagnosis."""

from __future__ import annotations

__version__ = "0.1.0"

DISCLAIMER = (
    "skinscan is a research screening aid, not a diagnosis. It can be wrong. "
    "Any changing, bleeding, itching or worrying skin lesion should be examined by a doctor."
)
