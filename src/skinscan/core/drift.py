"""Drift: whether the images a server sees still look like those its model (or site profile) was checked on.

A *reference* holds, for each measure (the calibrated probability, and the input checks' feature distance), the
deciles and the 99th percentile of its values on reference images: the model's validation images (written into
model.json by `skinscan drift-reference`) or a clinic's own images (written into site.json by `calibrate-site`).
A `DriftMonitor` keeps the last N values of each measure the server produced and compares them with the reference
two ways: the population stability index over the reference's ten equal-mass bins, and the share of recent values
above the reference's 99th percentile (1 % expected; a binomial test says when more is not chance). Either past
its limit raises a warning; drift never refuses an image, it tells whoever runs the server to look (a new camera,
a new population, a broken client).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise
from typing import Any

import numpy as np

MEASURES = ("probability", "ood_distance")
DECILES = tuple(round(0.1 * k, 1) for k in range(1, 10))
# Conventional PSI reading: under 0.1 stable, 0.1–0.25 a moderate shift, above 0.25 a major one.
PSI_WARNING = 0.25
# Values above the reference's 99th percentile warn when that many, of the recent n, would happen by chance less
# than once in a thousand (one-sided binomial test, p = 0.01): 6 of 100, 14 of 500.
TAIL_P = 0.01
TAIL_ALPHA = 0.001
MIN_VALUES = 10  # deciles of fewer values say little
_FLOOR = 1e-4  # bins empty on one side would make PSI infinite


@dataclass(frozen=True)
class MeasureReference:
    """One measure's reference: its deciles and 99th percentile on the reference images."""

    deciles: tuple[float, ...]
    p99: float

    @classmethod
    def of(cls, values: Sequence[float]) -> MeasureReference:
        data = np.asarray(values, dtype=np.float64)
        if data.size < MIN_VALUES:
            raise ValueError(f"a drift reference needs at least {MIN_VALUES} values, not {data.size}")
        return cls(tuple(float(q) for q in np.quantile(data, DECILES)), float(np.quantile(data, 0.99)))

    def to_dict(self) -> dict[str, Any]:
        # six significant digits, not decimals: a confident model's probabilities sit near 1e-6
        return {"deciles": [float(f"{v:.6g}") for v in self.deciles], "p99": float(f"{self.p99:.6g}")}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MeasureReference:
        deciles = tuple(float(v) for v in data["deciles"])
        if len(deciles) != len(DECILES) or any(b < a for a, b in pairwise(deciles)):
            raise ValueError("a reference's deciles must be nine values in increasing order")
        return cls(deciles, float(data["p99"]))


@dataclass(frozen=True)
class Reference:
    """The reference of each measure it has (a reference may hold only some of MEASURES), and what it came from."""

    measures: dict[str, MeasureReference]
    images: int
    source: str

    def to_dict(self) -> dict[str, Any]:
        return {"images": self.images, "source": self.source, **{k: m.to_dict() for k, m in self.measures.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Reference | None:
        """The reference a spec or site file holds; None where it holds none. Raises ValueError when malformed."""
        if not data:
            return None
        measures = {k: MeasureReference.from_dict(data[k]) for k in MEASURES if k in data}
        return cls(measures, int(data.get("images", 0)), str(data.get("source", "")))

    @classmethod
    def of(cls, values: Mapping[str, Iterable[float]], *, source: str) -> Reference:
        """The reference of these values, by measure; a measure with fewer than MIN_VALUES finite ones is left out."""
        columns = {k: [float(v) for v in values[k] if v is not None and np.isfinite(v)]
                   for k in MEASURES if k in values}  # fmt: skip
        images = max((len(v) for v in columns.values()), default=0)
        kept = {k: MeasureReference.of(v) for k, v in columns.items() if len(v) >= MIN_VALUES}
        return cls(kept, images, source)


def population_stability(reference: MeasureReference, recent: np.ndarray) -> float:
    """The PSI of `recent` against the reference's ten equal-mass bins (each expected to hold 10 %)."""
    counts = np.bincount(np.searchsorted(reference.deciles, recent, side="right"), minlength=10)
    actual = np.maximum(counts / max(len(recent), 1), _FLOOR)
    expected = np.full(10, 0.1)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


@lru_cache(maxsize=64)
def tail_limit(n: int, p: float = TAIL_P, alpha: float = TAIL_ALPHA) -> int:
    """The fewest of n values above the reference's 99th percentile that chance gives with probability < alpha."""
    # P(X >= k) = 1 - P(X <= k-1), the pmf summed upward from 0 (k stays near n*p: a few hundred terms at most)
    pmf = (1 - p) ** n
    below = 0.0
    for k in range(n + 1):
        if 1.0 - below < alpha:
            return k
        below += pmf
        pmf *= (n - k) / (k + 1) * p / (1 - p)
    return n + 1


class DriftMonitor:
    """The last `window` values of each measure, compared with a reference. Thread-safe: the server's request
    threads add to it while /health and /metrics read it."""

    def __init__(self, reference: Reference | None, *, window: int = 500, min_count: int = 100) -> None:
        self.reference = reference
        self.window = window
        self.min_count = min(min_count, window)
        self._recent: dict[str, deque[float]] = {k: deque(maxlen=window) for k in MEASURES}
        self._lock = threading.Lock()

    def add(self, probability: float | None, ood_distance: float | None) -> None:
        with self._lock:
            for name, value in (("probability", probability), ("ood_distance", ood_distance)):
                if value is not None and np.isfinite(value):
                    self._recent[name].append(float(value))

    def state(self) -> dict[str, Any]:
        """What /health shows: "ok", "warning" (with the warnings in words), "collecting" (fewer than min_count
        recent values) or "no_reference"; and each measure's numbers."""
        if self.reference is None or not self.reference.measures:
            return {"status": "no_reference", "window": self.window, "warnings": [], "measures": {}}
        with self._lock:
            recent = {k: np.asarray(v, dtype=np.float64) for k, v in self._recent.items()}
        measures: dict[str, Any] = {}
        warnings: list[str] = []
        counted = 0
        for name, ref in self.reference.measures.items():
            values = recent[name]
            counted = max(counted, len(values))
            entry: dict[str, Any] = {"count": len(values), "reference_p99": float(f"{ref.p99:.4g}")}
            if len(values) >= self.min_count:
                psi = population_stability(ref, values)
                above = int(np.sum(values > ref.p99))
                tail = above / len(values)
                entry.update(psi=round(psi, 4), share_above_p99=round(tail, 4))
                if psi > PSI_WARNING:
                    warnings.append(f"the {_WORDS[name]} of the last {len(values)} images has shifted from the "
                                    f"reference (population stability index {psi:.2f} > {PSI_WARNING})")  # fmt: skip
                if above >= tail_limit(len(values)):
                    warnings.append(f"{tail:.0%} of the last {len(values)} images have a {_WORDS[name]} above the "
                                    f"reference's 99th percentile (1 % expected)")  # fmt: skip
            measures[name] = entry
        status = "warning" if warnings else "ok" if counted >= self.min_count else "collecting"
        return {"status": status, "window": self.window, "min_count": self.min_count, "warnings": warnings,
                "reference": {"images": self.reference.images, "source": self.reference.source},
                "measures": measures}  # fmt: skip


_WORDS = {"probability": "probability", "ood_distance": "input-check distance"}
