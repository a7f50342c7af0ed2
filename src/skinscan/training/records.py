"""Labelled records from real dermoscopy layouts, duplicate handling and grouped, seeded splits (no torch).

Layouts `load_records` understands:
1. a folder per class: ROOT/[SPLIT/]{benign,malignant}/* (the Kaggle layout);
2. the official HAM10000 files: HAM10000_metadata.csv (split "train") and the ISIC 2018 Task 3
   ground-truth CSV (split "test"), images searched below ROOT by image id;
3. a CSV with an image column (path, file or image) and a label column (benign/malignant or 0/1); optional
   columns: split, lesion_id (images of one lesion never straddle a split) and dx or diagnosis.
"""

from __future__ import annotations

import csv
import random
import warnings
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from skinscan.core.errors import DataError
from skinscan.runtime.imaging import IMAGE_SUFFIXES

CLASS_NAMES = ("benign", "malignant")
# HAM10000 diagnosis → binary. akiec (actinic keratosis / Bowen's) is pre-cancerous: "needs a doctor".
HAM_MALIGNANT = {"mel", "bcc", "akiec"}
HAM_BENIGN = {"nv", "bkl", "df", "vasc"}
HAM_METADATA = "HAM10000_metadata.csv"
HAM_SOURCE = "ham10000"
_ISIC_CLASSES = ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC")
DIAGNOSES = tuple(c.lower() for c in _ISIC_CLASSES)  # the 7 HAM10000 / ISIC 2018 diagnoses
_LABEL_WORDS = {"benign": 0, "0": 0, "malignant": 1, "1": 1}


@dataclass(frozen=True)
class Record:
    """One labelled image."""

    path: Path
    label: int  # 0 benign, 1 malignant
    key: str  # "<source>:<id>", stable across machines; used for duplicates and reports
    group: str  # images sharing a group (same lesion) never straddle a split
    split: str = ""
    meta: dict[str, str] = field(default_factory=dict, compare=False, hash=False)


def source_of(record: Record) -> str:
    """The collection a record comes from (the part of its key before the colon)."""
    return record.key.split(":", 1)[0]


def diagnosis_of(record: Record) -> int:
    """Index of the record's diagnosis in DIAGNOSES, or -1 where it has only a benign/malignant label."""
    dx = record.meta.get("dx", "")
    return DIAGNOSES.index(dx) if dx in DIAGNOSES else -1


class SkippedRecords(UserWarning):
    """Records left out with --skip-bad."""


def _problem(message: str, skip_bad: bool, skipped: list[str]) -> None:
    if not skip_bad:
        raise DataError(message + " (use --skip-bad to leave such images out)")
    skipped.append(message)


def _report_skipped(skipped: list[str]) -> None:
    if skipped:
        shown = "\n  ".join(skipped[:20])
        more = f"\n  ... and {len(skipped) - 20} more" if len(skipped) > 20 else ""
        warnings.warn(f"skipped {len(skipped)} bad records:\n  {shown}{more}", SkippedRecords, stacklevel=3)


def _parse_label(value: str) -> int | None:
    return _LABEL_WORDS.get(value.strip().lower())


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            return [c.strip() for c in reader.fieldnames or []], rows
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read CSV {path}: {exc}") from exc


def _image_index(root: Path) -> dict[str, Path]:
    """Image stem → path for every image below root (HAM10000 spreads them over several folders)."""
    index: dict[str, Path] = {}
    for p in sorted(root.rglob("*")):
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file():
            index.setdefault(p.stem, p)
    return index


def _load_class_folders(root: Path, split: str, skip_bad: bool, skipped: list[str]) -> list[Record]:
    source = root.name if not split else root.parent.name
    base = root if not split else root.parent
    records = []
    for label, name in enumerate(CLASS_NAMES):
        folder = root / name
        if not folder.is_dir():
            continue
        for p in sorted(folder.rglob("*")):
            if not p.is_file() or p.name.startswith("."):
                continue
            if p.suffix.lower() not in IMAGE_SUFFIXES:
                _problem(f"{p}: not an image file name", skip_bad, skipped)
                continue
            key = f"{source}:{p.relative_to(base).as_posix()}"
            records.append(Record(p, label, key, key, split))
    return records


def _load_ham_metadata(csv_path: Path, index: dict[str, Path], skip_bad: bool, skipped: list[str]) -> list[Record]:
    _, rows = _read_csv(csv_path)
    records = []
    for row in rows:
        image_id, dx = row.get("image_id", "").strip(), row.get("dx", "").strip().lower()
        if dx in HAM_MALIGNANT:
            label = 1
        elif dx in HAM_BENIGN:
            label = 0
        else:
            _problem(f"{csv_path}: image {image_id!r} has unknown dx {dx!r}", skip_bad, skipped)
            continue
        if image_id not in index:
            _problem(f"{csv_path}: image {image_id!r} not found below {csv_path.parent}", skip_bad, skipped)
            continue
        meta = {k: (row.get(k) or "").strip() for k in ("dx", "dx_type", "age", "sex", "localization", "dataset")}
        lesion = (row.get("lesion_id") or "").strip() or image_id
        records.append(Record(index[image_id], label, f"{HAM_SOURCE}:{image_id}", f"lesion:{lesion}", "train", meta))
    return records


def _load_isic_truth(csv_path: Path, index: dict[str, Path], skip_bad: bool, skipped: list[str]) -> list[Record]:
    _, rows = _read_csv(csv_path)
    records = []
    for row in rows:
        image_id = row.get("image", "").strip()
        try:
            hot = {c: float(row[c]) for c in _ISIC_CLASSES}
        except (KeyError, ValueError):
            _problem(f"{csv_path}: image {image_id!r} has no valid one-hot label", skip_bad, skipped)
            continue
        dx = max(hot, key=lambda c: hot[c]).lower()
        if image_id not in index:
            _problem(f"{csv_path}: image {image_id!r} not found below {csv_path.parent}", skip_bad, skipped)
            continue
        key = f"{HAM_SOURCE}:{image_id}"
        records.append(Record(index[image_id], int(dx in HAM_MALIGNANT), key, key, "test", {"dx": dx}))
    return records


def _is_isic_truth(columns: Sequence[str]) -> bool:
    return "image" in columns and all(c in columns for c in _ISIC_CLASSES)


def _load_generic_csv(csv_path: Path, split: str | None, skip_bad: bool, skipped: list[str]) -> list[Record]:
    columns, rows = _read_csv(csv_path)
    image_col = next((c for c in ("path", "file", "image") if c in columns), None)
    if image_col is None or "label" not in columns:
        raise DataError(f"{csv_path}: a CSV needs an image column (path, file or image) and a label column")
    records = []
    for row in rows:
        if split and "split" in row and row["split"].strip() != split:
            continue
        rel, label = row[image_col].strip(), _parse_label(row["label"])
        path = (csv_path.parent / rel).resolve()
        if label is None:
            _problem(f"{csv_path}: {rel!r} has unknown label {row['label']!r}", skip_bad, skipped)
        elif not path.is_file():
            _problem(f"{csv_path}: image {path} does not exist", skip_bad, skipped)
        else:
            key = f"{csv_path.parent.name}:{rel}"
            group = (row.get("lesion_id") or "").strip() or key
            dx = (row.get("dx") or row.get("diagnosis") or "").strip().lower()
            meta = {"dx": dx} if dx else {}
            records.append(Record(path, label, key, group, (row.get("split") or split or "").strip(), meta))
    return records


def _ham_csvs(root: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for p in sorted(root.glob("*.csv")):
        columns, _ = _read_csv(p) if p.stat().st_size < 50_000_000 else ([], [])
        if {"lesion_id", "image_id", "dx"} <= set(columns):
            found.setdefault("train", p)
        elif _is_isic_truth(columns):
            found.setdefault("test" if "test" in p.name.lower() else "train", p)
    return found


def describe_layout(root: Path) -> str:
    return (
        f"{root} is not a dataset skinscan can read. Give a folder with benign/ and malignant/ subfolders "
        "(optionally below train/, test/ ...), a folder with HAM10000_metadata.csv or the ISIC 2018 Task 3 "
        "ground-truth CSV, or a CSV with an image column (path, file or image) and a label column."
    )


def list_splits(root: Path) -> list[str]:
    """The split names a folder offers (empty when it has none)."""
    root = Path(root)
    if not root.is_dir():
        return []
    ham = _ham_csvs(root)
    if ham:
        return sorted(ham)
    return sorted(p.name for p in root.iterdir() if p.is_dir() and any((p / c).is_dir() for c in CLASS_NAMES))


def load_records(path: str | Path, split: str | None = None, *, skip_bad: bool = False) -> list[Record]:
    """Read labelled records from any supported layout.

    Args:
        path: a dataset folder or CSV file.
        split: "train", "test", ... where the layout has splits; None takes every split.
        skip_bad: leave out missing images and unknown labels with a warning instead of an error.

    Raises:
        DataError: unknown layout, unknown split, missing image or unknown label (without skip_bad).
    """
    root = Path(path)
    skipped: list[str] = []
    if not root.exists():
        raise DataError(f"{root} does not exist")
    if root.is_file():
        columns, _ = _read_csv(root)
        if {"lesion_id", "image_id", "dx"} <= set(columns):
            records = _load_ham_metadata(root, _image_index(root.parent), skip_bad, skipped)
        elif _is_isic_truth(columns):
            records = _load_isic_truth(root, _image_index(root.parent), skip_bad, skipped)
        else:
            records = _load_generic_csv(root, split, skip_bad, skipped)
    elif ham := _ham_csvs(root):
        if split is not None and split not in ham:
            raise DataError(f"{root} has no split {split!r}; it has: {', '.join(sorted(ham))}")
        index = _image_index(root)
        records = []
        for name, csv_path in sorted(ham.items()):
            if split is None or split == name:
                columns, _ = _read_csv(csv_path)
                loader = _load_isic_truth if _is_isic_truth(columns) else _load_ham_metadata
                records += [
                    r if r.split == name else Record(r.path, r.label, r.key, r.group, name, r.meta)
                    for r in loader(csv_path, index, skip_bad, skipped)
                ]
    elif any((root / c).is_dir() for c in CLASS_NAMES):
        if split is not None and (root / split).is_dir():
            records = _load_class_folders(root / split, split, skip_bad, skipped)
        else:
            records = _load_class_folders(root, "", skip_bad, skipped)
    elif splits := list_splits(root):
        if split is not None and split not in splits:
            raise DataError(f"{root} has no split {split!r}; it has: {', '.join(splits)}")
        records = []
        for name in splits if split is None else [split]:
            records += _load_class_folders(root / name, name, skip_bad, skipped)
    else:
        raise DataError(describe_layout(root))
    _report_skipped(skipped)
    if not records:
        raise DataError(f"{root}{f' (split {split})' if split else ''} holds no labelled images")
    return records


# --- duplicates -----------------------------------------------------------------------------------


class Duplicates:
    """Which records are the same photograph, from manifests with a `same_image_as` column."""

    def __init__(self) -> None:
        self._links: dict[str, set[str]] = defaultdict(set)

    def add(self, a: str, b: str) -> None:
        self._links[a].add(b)
        self._links[b].add(a)

    def of(self, key: str) -> set[str]:
        return self._links.get(key, set())

    def __len__(self) -> int:
        return sum(len(v) for v in self._links.values()) // 2

    @classmethod
    def from_files(cls, paths: Iterable[str | Path]) -> Duplicates:
        dup = cls()
        for p in paths:
            dup.read(Path(p))
        return dup

    def read(self, manifest: Path) -> None:
        """Read `path,...,same_image_as`; ids in same_image_as are "<source>:<id>" separated by ';'."""
        columns, rows = _read_csv(manifest)
        if "same_image_as" not in columns or "path" not in columns:
            raise DataError(f"{manifest}: a duplicates list needs the columns path and same_image_as")
        source = manifest.parent.name
        for row in rows:
            key = f"{source}:{row['path'].strip()}"
            for other in (row.get("same_image_as") or "").split(";"):
                if other.strip():
                    self.add(key, other.strip())


def find_manifests(paths: Iterable[str | Path]) -> list[Path]:
    """Duplicate manifests that ship beside datasets (a manifest.csv with same_image_as)."""
    found = []
    for p in paths:
        root = Path(p)
        candidate = (root if root.is_dir() else root.parent) / "manifest.csv"
        if candidate.is_file() and "same_image_as" in _read_csv(candidate)[0]:
            found.append(candidate)
    return found


def drop_same_images(records: Sequence[Record], held_out: Sequence[Record], dup: Duplicates) -> list[Record]:
    """Records that are not the same photograph as any held-out record (so a test score cannot leak)."""
    banned = {r.key for r in held_out}
    banned |= {k for r in held_out for k in dup.of(r.key)}
    return [r for r in records if r.key not in banned and not (dup.of(r.key) & banned)]


def dedupe(records: Sequence[Record], dup: Duplicates) -> list[Record]:
    """Keep the first record of each set of duplicate photographs (when mixing overlapping sources)."""
    seen: set[str] = set()
    kept = []
    for r in records:
        if r.key in seen:
            continue
        kept.append(r)
        seen.add(r.key)
        seen |= dup.of(r.key)
    return kept


# --- splits ---------------------------------------------------------------------------------------


def split_records(
    records: Sequence[Record], val_fraction: float, seed: int, dup: Duplicates | None = None
) -> tuple[list[Record], list[Record]]:
    """A deterministic train/validation split, grouped by lesion (and duplicates), stratified by label."""
    if not 0 < val_fraction < 1:
        raise ValueError("val_fraction must be between 0 and 1")
    # union-find over lesion groups and duplicate links, so one lesion never sits on both sides
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    key_group = {r.key: r.group for r in records}
    for r in records:
        find(r.group)
        for other in dup.of(r.key) if dup else ():
            if other in key_group:
                parent[find(key_group[other])] = find(r.group)
    clusters: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        clusters[find(r.group)].append(r)
    rng = random.Random(seed)
    train: list[Record] = []
    val: list[Record] = []
    for label in (0, 1):
        names = sorted(c for c, rs in clusters.items() if max(r.label for r in rs) == label)
        rng.shuffle(names)
        n_val_images = val_fraction * sum(len(clusters[c]) for c in names)
        taken = 0
        for c in names:
            if taken < n_val_images:
                val += clusters[c]
                taken += len(clusters[c])
            else:
                train += clusters[c]
    return train, val
