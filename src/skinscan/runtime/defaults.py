"""The defaults that depend on the machine: how many cores this process may use, and which bundled model it runs.

The 8-bit copy (models/int8) is the default only where three things hold: its recorded test metrics match the float
model's within the float model's 95 % intervals (it is the same model, not a different operating point); its input
check refuses no more of the validation images than the float model's does (its feature distances, recorded in
model.json `reference`, may drift under quantisation while the test metrics, which leave refused images out, do
not show it); and the CPU has 8-bit dot-product instructions (VNNI or AMX) that make it faster. Without them ONNX
Runtime emulates the 8-bit products in wider registers and the copy gains little (1.08× on this project's AMD EPYC)
for its differences.
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# /proc/cpuinfo flags of 8-bit integer dot products: AVX-512 VNNI (Cascade Lake, Zen 4 and later), AVX-VNNI
# (Alder Lake and later) and AMX-INT8 (Sapphire Rapids and later)
INT8_FLAGS = ("amx_int8", "avx512_vnni", "avx_vnni")
INT8_DIR = "int8"  # where the 8-bit copy lies beside the bundled float model
MAX_WORKERS = 256  # Settings.workers' own upper limit
MAX_THREADS = 4  # ONNX Runtime threads per model (engine.default_threads)


@dataclass(frozen=True)
class ModelChoice:
    """The model a run uses when none is named, and why."""

    path: Path
    reason: str

    @property
    def int8(self) -> bool:
        return self.path.parent.name == INT8_DIR


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity (taskset, cpusets), lowered to a cgroup CPU quota
    (`podman run --cpus`, Kubernetes limits) where one is set; os.cpu_count() counts the machine's."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on macOS or Windows
        cores = os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    if quota is not None:
        cores = min(cores, max(1, math.ceil(quota)))
    return max(1, cores)


def cgroup_cpu_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The CPUs' worth of time this process's cgroup may use (cgroup v2 cpu.max, else v1's CFS quota), or None."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        try:
            quota = (root / "cpu" / "cpu.cfs_quota_us").read_text().strip()
            period = (root / "cpu" / "cpu.cfs_period_us").read_text().strip()
        except OSError:
            return None
    try:
        q, p = float(quota), float(period)
    except ValueError:  # v2 writes "max" for no limit
        return None
    return q / p if q > 0 and p > 0 else None  # v1 writes -1 for no limit


def default_workers() -> int:
    """Server processes when none are asked for: one per usable core (each runs its model on its own core)."""
    return min(MAX_WORKERS, usable_cores())


def threads_per_worker(workers: int) -> int:
    """ONNX Runtime threads for each of `workers` processes: the usable cores shared out, never oversubscribed,
    and at most MAX_THREADS (beyond 4 threads a model this small gains little)."""
    return max(1, min(MAX_THREADS, usable_cores() // max(1, workers)))


@functools.cache
def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The CPU feature flags the kernel reports (the first processor's), or none where there is no /proc/cpuinfo."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):  # "Features" on ARM
            return frozenset(value.split())
    return frozenset()


def int8_instructions(flags: Iterable[str]) -> list[str]:
    """Which of the 8-bit dot-product instructions (VNNI, AMX) these flags name."""
    have = set(flags)
    return [flag for flag in INT8_FLAGS if flag in have]


def metric_mismatches(reference: Mapping[str, Any], candidate: Mapping[str, Any]) -> list[str]:
    """Where the candidate's test metrics fall outside the reference's 95 % intervals, as readable lines.

    Both are model.json `metrics` blocks: {split: {name: value, name_ci: [low, high], ...}}. Every metric that the
    reference gives an interval for and the candidate a value, on every split both were tested on, is compared; a
    value outside the interval either way is a mismatch (better there still means a different operating point).
    No split in common is a mismatch too: nothing shows they match.
    """
    shared = [split for split in reference if split in candidate]
    if not shared:
        return ["no test split measured for both"]
    out = []
    for split in shared:
        ref, cand = reference[split], candidate[split]
        if not isinstance(ref, Mapping) or not isinstance(cand, Mapping):
            continue
        for name, interval in ref.items():
            base = name.removesuffix("_ci")
            if base == name or not isinstance(cand.get(base), int | float):
                continue
            if not (isinstance(interval, list | tuple) and len(interval) == 2):
                continue
            low, high = float(interval[0]), float(interval[1])
            value = float(cand[base])
            if not low <= value <= high:
                out.append(f"{split} {base} {value:.3f} outside {low:.3f}–{high:.3f}")
    return out


# the quantiles model.json `reference.ood_distance` records: deciles, then p99
_RECORDED_QUANTILES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.99)


def refused_share(card: Mapping[str, Any]) -> tuple[float, float] | None:
    """Bounds on the share of its own validation images a model's input check refuses as not skin lesions: where its
    ood_threshold falls among the recorded quantiles of their feature distances. None where either is not recorded.

    Args:
        card: a model.json.
    """
    limit = card.get("ood_threshold")
    recorded = (card.get("reference") or {}).get("ood_distance") or {}
    values = [*recorded.get("deciles", []), recorded.get("p99")]
    if not isinstance(limit, int | float) or len(values) != len(_RECORDED_QUANTILES):
        return None
    if not all(isinstance(v, int | float) for v in values):
        return None
    pairs = list(zip(_RECORDED_QUANTILES, values, strict=True))
    # beyond a quantile over the limit every image is refused; beyond one under it, at most the rest
    low = max((1 - q for q, v in pairs if v > limit), default=0.0)
    high = min((1 - q for q, v in pairs if v <= limit), default=1.0)
    return round(low, 4), round(high, 4)


def input_check_mismatch(reference: Mapping[str, Any], candidate: Mapping[str, Any]) -> str | None:
    """How the candidate's input check refuses more of the validation images than the reference's, or None.

    Args:
        reference, candidate: the two model.json cards.
    """
    ours, theirs = refused_share(reference), refused_share(candidate)
    if ours is None or theirs is None or theirs[0] <= ours[1]:
        return None
    return (f"input check refuses {theirs[0] * 100:.0f}–{theirs[1] * 100:.0f} % of the validation images as not skin "
            f"lesions, the float model's at most {ours[1] * 100:.0f} %")  # fmt: skip


def choose_model(float_path: Path, flags: Iterable[str] | None = None) -> ModelChoice:
    """The float model at float_path, or the 8-bit copy in its int8/ folder where the rule above allows it.

    Args:
        float_path: the bundled float model.onnx.
        flags: the CPU's feature flags (default: this machine's).
    """
    int8_path = float_path.parent / INT8_DIR / "model.onnx"
    if not int8_path.is_file():
        return ModelChoice(float_path, "the float model: there is no 8-bit copy beside it")
    reasons = []
    try:
        float_card, int8_card = _card(float_path), _card(int8_path)
        mismatches = metric_mismatches(_metrics(float_card), _metrics(int8_card))
        refusals = input_check_mismatch(float_card, int8_card)
    except (OSError, ValueError, AttributeError) as exc:
        mismatches, refusals = [f"their recorded metrics cannot be read ({exc})"], None
    if mismatches:
        more = f" and {len(mismatches) - 1} more" if len(mismatches) > 1 else ""
        reasons.append(
            f"the 8-bit copy's test metrics differ from it beyond their 95 % intervals ({mismatches[0]}{more})"
        )
    if refusals is not None:
        reasons.append(f"the 8-bit copy's {refusals}")
    found = int8_instructions(cpu_flags() if flags is None else flags)
    if not found:
        reasons.append("this CPU has no VNNI or AMX instructions for 8-bit arithmetic")
    if reasons:
        return ModelChoice(float_path, "the float model: " + "; and ".join(reasons))
    return ModelChoice(
        int8_path,
        f"the 8-bit copy: its test metrics match the float model's within their 95 % intervals and this CPU has "
        f"{', '.join(found)}",
    )


def _card(model_path: Path) -> dict[str, Any]:
    card = json.loads(model_path.with_name("model.json").read_text())
    if not isinstance(card, dict):
        raise ValueError(f"{model_path.with_name('model.json')} is not an object")
    return card


def _metrics(card: Mapping[str, Any]) -> dict[str, Any]:
    metrics = card.get("metrics") or {}
    if not isinstance(metrics, dict):
        raise ValueError("metrics is not an object")
    return metrics
