"""`skinscan evaluate`: run an exported model (or a training checkpoint) over labelled data and report."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from skinscan.core.errors import ConfigError, DataError, InvalidImageError
from skinscan.core.preprocess import prepare_pixels, to_input
from skinscan.core.quality import measure_quality
from skinscan.runtime.checks import refusal_reason
from skinscan.training.duplicates import Duplicates, drop_same_images, find_manifests
from skinscan.training.records import CLASS_NAMES, Record, SkippedRecords, list_splits, load_records

# (logits, ood distances) of a normalised float32 batch
BatchFn = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


class Scorer:
    """What evaluate needs of a model, whether exported (ONNX Runtime) or a checkpoint (torch)."""

    def __init__(self, model: str | None, site: str | None = None) -> None:
        if model is not None and Path(model).suffix == ".pt":
            if site is not None:
                raise ConfigError("a site profile applies to an exported model, not a checkpoint")
            self._from_checkpoint(model)
        else:
            self._from_export(model, site)

    def _from_export(self, model: str | None, site: str | None) -> None:
        from skinscan.runtime.engine import Engine

        engine = Engine(model, site=site)  # with a site: its calibration, threshold, limit and head
        spec = engine.spec
        self.name, self.preprocess, self.threshold = f"{spec.id} (v{spec.version})", spec.preprocess, engine.threshold
        if engine.site is not None:
            self.name += f" with the site profile {engine.site.name!r} ({engine.site.active})"
        self.calibrate = engine.calibration.apply
        self.ood_threshold, self.quality = engine.ood_threshold, spec.quality_limits

        def run(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            out = engine.run_outputs(batch)
            return engine.site_logits(out), out["ood"]

        self.batch_fn: BatchFn = run

    def _from_checkpoint(self, path: str) -> None:
        import torch

        from skinscan.training.checkpoint import load_checkpoint
        from skinscan.training.export import OOD_QUANTILE, ExportModule, ood_thresholds

        net, ckpt = load_checkpoint(path)
        self.name = f"{ckpt.model_name} checkpoint {path}"
        self.preprocess = ckpt.preprocess
        self.threshold = ckpt.threshold
        self.calibrate = ckpt.calibration.apply
        # the exported graph in torch: the same input-check score and thresholds as `skinscan export`
        module = ExportModule(net, ckpt).eval()
        self.ood_threshold = 1.0 if ood_thresholds(ckpt, OOD_QUANTILE) else None
        self.quality = ckpt.limits

        @torch.no_grad()
        def run(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            logit, _, ood, *_ = module(torch.from_numpy(batch))
            return logit.numpy(), ood.numpy()

        self.batch_fn = run


def tta_views(batch: np.ndarray) -> list[np.ndarray]:
    """The batch, flipped and rotated by 90°: lesions have no up or left."""
    return [batch, batch[..., ::-1], batch[..., ::-1, :], np.rot90(batch, 1, axes=(-2, -1))]


def score_records(
    records: Sequence[Record], scorer: Scorer, *, tta: bool = False, skip_bad: bool = False, batch_size: int = 32
) -> dict[str, Any]:
    """Probabilities, rejection flags (the engine's refusal rule) and thumbnails for records; unreadable images stop
    it (or are skipped)."""
    from skinscan.runtime.imaging import load_image

    kept: list[Record] = []
    probs, rejected, thumbs = [], [], []
    bad: list[str] = []
    bar = tqdm(total=len(records), desc="evaluating", unit="img", mininterval=1.0)
    for start in range(0, len(records), batch_size):
        chunk, pixels = [], []
        for r in records[start : start + batch_size]:
            try:
                pixels.append(
                    prepare_pixels(load_image(r.path, draft_size=scorer.preprocess.input_size), scorer.preprocess)
                )
                chunk.append(r)
            except InvalidImageError as exc:
                if not skip_bad:
                    raise DataError(f"{r.path}: {exc} (use --skip-bad to leave such images out)") from exc
                bad.append(f"{r.path}: {exc}")
        bar.update(len(records[start : start + batch_size]))
        if not chunk:
            continue
        batch = to_input(np.stack(pixels), scorer.preprocess)
        logits, ood = scorer.batch_fn(batch)
        if tta:
            logits = np.mean([scorer.batch_fn(np.ascontiguousarray(v))[0] for v in tta_views(batch)], axis=0)
        probs.append(scorer.calibrate(logits))
        for px, dist in zip(pixels, ood, strict=True):
            reason = refusal_reason(measure_quality(px), scorer.quality, float(dist), scorer.ood_threshold)
            rejected.append(reason is not None)
            thumbs.append(px[::3, ::3].copy())
        kept += chunk
    bar.close()
    if bad:
        warnings.warn(f"skipped {len(bad)} unreadable images: " + "; ".join(bad[:10]), SkippedRecords, stacklevel=2)
    if not kept:
        raise DataError("no readable images to evaluate")
    return {"records": kept, "prob": np.concatenate(probs), "rejected": np.array(rejected), "thumbs": thumbs}


def load_split(data: str | Path, split: str | None, *, skip_bad: bool = False) -> list[Record]:
    """The records of one split of the data (all of them for None); a split the data do not have is a usage error
    (ConfigError) that names the splits they have, before any image is read.

    A report of the wrong images under the asked-for name is worse than no report, and the data's own error for
    it (a DataError) would read as unreadable data, not as a mistyped option.
    """
    if split is None:
        return load_records(data, None, skip_bad=skip_bad)
    splits = list_splits(Path(data))
    if splits:
        if split not in splits:
            raise ConfigError(f"{data} has no split {split!r}; it has: {', '.join(splits)}")
        return load_records(data, split, skip_bad=skip_bad)
    root = Path(data)
    if root.is_dir() and (root / split).is_dir():  # benign/ and malignant/ beside a SPLIT/ holding its own
        return load_records(data, split, skip_bad=skip_bad)
    # No list of splits: a folder per class, a CSV without a split column, or an official HAM10000 / ISIC 2018 file,
    # which is one split of its own; the records say which.
    records = load_records(data, None, skip_bad=skip_bad)
    names = sorted({r.split for r in records} - {""})
    if split not in names:
        has = f"it has: {', '.join(names)}" if names else "it has no splits; leave out --split to use all of it"
        raise ConfigError(f"{data} has no split {split!r}; {has}")
    return [r for r in records if r.split == split]


def evaluate(
    data: str | Path,
    *,
    out: str | Path,
    split: str | None = None,
    model: str | None = None,
    threshold: float | None = None,
    tta: bool = False,
    exclude_same_as: Sequence[str] = (),
    exclude_split: str | None = None,
    duplicates: Sequence[str] = (),
    skip_bad: bool = False,
    n_boot: int = 1000,
    site: str | None = None,
) -> dict[str, Any]:
    """Evaluate a model on labelled data; writes metrics.json, predictions.csv, plots and report.html into `out`.

    Where the data name each image's diagnosis (HAM10000, ISIC 2018, a CSV with a dx column), the report also
    says how often each diagnosis is called malignant (`by_diagnosis`).

    Args:
        data: any layout `load_records` reads.
        split: the data's split ("test", "train", ...); one the data do not have raises ConfigError.
        model: an exported model (file or folder) or a `.pt` checkpoint; None: the bundled model.
        threshold: overrides the model's (or the site profile's) threshold.
        site: a site profile (`calibrate-site`) to evaluate the model with.
        tta: average the logits over flips and a rotation.
        exclude_same_as: datasets whose photographs (and duplicates of them) are left out of the evaluation,
            e.g. the training data of a cross-source experiment.
        duplicates: extra same_image_as manifests (those beside the data are found automatically).
    """
    from skinscan.evaluation.report import write_evaluation

    records = load_split(data, split, skip_bad=skip_bad)
    n_all = len(records)
    if exclude_same_as:
        dup = Duplicates.from_files([*find_manifests([data, *exclude_same_as]), *duplicates])
        others = [r for p in exclude_same_as for r in load_split(p, exclude_split, skip_bad=skip_bad)]
        records = drop_same_images(records, others, dup)
    scorer = Scorer(model, site)
    scored = score_records(records, scorer, tta=tta, skip_bad=skip_bad)
    kept: list[Record] = scored["records"]
    y = np.array([r.label for r in kept])
    chosen = scorer.threshold if threshold is None else threshold
    info = {
        "model": scorer.name,
        "data": f"{data}" + (f" (split {split})" if split else ""),
        "images": f"{len(kept)} of {n_all}"
        + (" after excluding copies of " + ", ".join(exclude_same_as) if exclude_same_as else ""),
        "test-time augmentation": "on" if tta else "off",
        "input checks": f"{float(scored['rejected'].mean()):.2%} of these images would be refused by the engine",
    }
    rejected_fraction = round(float(scored["rejected"].mean()), 4)
    metrics = write_evaluation(
        out,
        y,
        scored["prob"],
        chosen,
        thumbs=scored["thumbs"],
        names=[r.key for r in kept],
        title=f"skinscan evaluation: {Path(data).name}{f' / {split}' if split else ''}",
        info=info,
        n_boot=n_boot,
        extra={"rejected_fraction": rejected_fraction, "model": scorer.name, "data": info["data"]},
        by={"diagnosis": [r.meta.get("dx", "") for r in kept]},  # data without diagnoses get no breakdown
    )
    metrics["rejected_fraction"] = rejected_fraction
    write_predictions(Path(out) / "predictions.csv", kept, scored["prob"], scored["rejected"], chosen)
    return metrics


def write_predictions(
    path: Path, records: Sequence[Record], prob: np.ndarray, rejected: np.ndarray, threshold: float
) -> None:
    """One row per image: what a clinic needs to check a threshold or calibration on its own cases."""
    import csv

    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["key", "path", "label", "diagnosis", "probability", "call", "refused_by_input_checks"])
        for record, p, refused in zip(records, prob, rejected, strict=True):
            call = "malignant" if p >= threshold else "benign"
            label, dx = CLASS_NAMES[record.label], record.meta.get("dx", "")
            writer.writerow([record.key, record.path, label, dx, f"{p:.6f}", call, int(refused)])
