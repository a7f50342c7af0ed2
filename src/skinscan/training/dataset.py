"""From records to the images a run trains on: the training pool minus held-out copies, the grouped split,
and every image decoded and preprocessed once into a uint8 cache (NumPy; no torch)."""

from __future__ import annotations

import random
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from skinscan.core.errors import DataError, InvalidImageError
from skinscan.core.preprocess import PreprocessSpec, prepare_pixels
from skinscan.runtime.imaging import load_image
from skinscan.training.config import TrainConfig
from skinscan.training.duplicates import Duplicates, dedupe, drop_same_images, find_manifests, split_records
from skinscan.training.records import Record, SkippedRecords, diagnosis_of, load_records, source_of

if TYPE_CHECKING:
    from skinscan.training.checkpoint import Checkpoint


@dataclass
class Prepared:
    """A split's records and their cached, preprocessed uint8 pixels."""

    records: list[Record]
    pixels: np.ndarray  # N x S x S x 3 uint8
    labels: np.ndarray  # N int64

    @cached_property
    def sources(self) -> list[str]:
        """The collection each image comes from (see `skinscan.training.records.source_of`)."""
        return [source_of(r) for r in self.records]

    @cached_property
    def diagnoses(self) -> np.ndarray:
        """Each image's index in DIAGNOSES, -1 where the data name none."""
        return np.array([diagnosis_of(r) for r in self.records], dtype=np.int64)


def gather_records(cfg: TrainConfig) -> tuple[list[Record], list[Record], dict[str, Any]]:
    """Training pool minus anything that is (a copy of) a held-out image, deduplicated, split by lesion."""
    split = cfg.split or None
    pool = [r for p in cfg.data for r in load_records(p, split, skip_bad=cfg.skip_bad)]
    dup = Duplicates.from_files([*find_manifests([*cfg.data, *cfg.holdout]), *cfg.duplicates])
    held = [r for p in cfg.holdout for r in load_records(p, cfg.holdout_split or None, skip_bad=cfg.skip_bad)]
    n_pool = len(pool)
    pool = drop_same_images(pool, held, dup)
    n_clean = len(pool)
    pool = dedupe(pool, dup)
    n_deduped = len(pool)
    if cfg.max_images and len(pool) > cfg.max_images:
        pool = random.Random(cfg.seed).sample(pool, cfg.max_images)
    train, val = split_records(pool, cfg.val_fraction, cfg.seed, dup)
    summary = {
        "sources": cfg.data,
        "holdout": cfg.holdout,
        "pool": n_pool,
        "dropped_same_as_holdout": n_pool - n_clean,
        "dropped_duplicates": n_clean - n_deduped,
        "train": len(train),
        "train_malignant": sum(r.label for r in train),
        "val": len(val),
        "val_malignant": sum(r.label for r in val),
    }
    return train, val, summary


def prepare(records: Sequence[Record], spec: PreprocessSpec, skip_bad: bool, desc: str) -> Prepared:
    """Decode and preprocess every image once, up front, so a bad file stops nothing mid-epoch."""
    kept: list[Record] = []
    pixels = np.empty((len(records), spec.input_size, spec.input_size, 3), dtype=np.uint8)
    bad: list[str] = []
    for r in tqdm(records, desc=desc, unit="img", leave=False, mininterval=1.0):
        try:
            pixels[len(kept)] = prepare_pixels(load_image(r.path, draft_size=spec.input_size), spec)
        except (InvalidImageError, OSError) as exc:
            if not skip_bad:
                raise DataError(f"{r.path}: {exc} (use --skip-bad to leave such images out)") from exc
            bad.append(f"{r.path}: {exc}")
            continue
        kept.append(r)
    if bad:
        warnings.warn(f"skipped {len(bad)} unreadable images: " + "; ".join(bad[:10]), SkippedRecords, stacklevel=2)
    labels = np.array([r.label for r in kept], dtype=np.int64)
    return Prepared(kept, pixels[: len(kept)], labels)


def checkpoint_split(ckpt: Checkpoint, cfg: TrainConfig | None = None) -> tuple[list[Record], list[Record]]:
    """The training and validation records a checkpoint was trained on, found again by their keys in its data
    (so a later change to deduplication or splitting cannot move an image from one side to the other).

    Raises:
        DataError: an image of the checkpoint's split is no longer in its data.
    """
    cfg = cfg or ckpt.train_config()
    split = cfg.split or None
    by_key = {r.key: r for p in cfg.data for r in load_records(p, split, skip_bad=cfg.skip_bad)}
    missing = [k for k in [*ckpt.train_keys, *ckpt.val_keys] if k not in by_key]
    if missing or not ckpt.val_keys:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise DataError(f"the data in {cfg.data} do not hold the split this checkpoint was trained on"
                        + (f" (missing: {shown})" if missing else " (it records no validation images)"))  # fmt: skip
    return [by_key[k] for k in ckpt.train_keys], [by_key[k] for k in ckpt.val_keys]
