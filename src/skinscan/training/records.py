"""Labelled records from real dermoscopy layouts (no torch); duplicates and splits: `training.duplicates`.

Layouts `load_records` understands:
1. a folder per class: ROOT/[SPLIT/]{benign,malignant}/* (the Kaggle layout);
2. the official HAM10000 files: HAM10000_metadata.csv (split "train") and the ISIC 2018 Task 3
   ground-truth CSV (split "test"), images searched below ROOT by image id;
3. a CSV with an image column (path, file or image) and a label column (benign/malignant or 0/1); optional
   columns: split, lesion_id or else patient_id (images of one lesion or patient never straddle a split),
   dx or diagnosis (codes or ISIC 2020 words, see DX_ALIASES), source (kept as meta "subsource");
4. a folder holding such a CSV: its labels.csv, or the one CSV there with an image and a label column
   (isic2017/ and isic2020/ of ../shared/data), read exactly as that CSV.
Keys are "<folder>:<id>" (the id as the layout names the image; "ham10000:<image_id>" for the official files),
the form `same_image_as` lists use. Those lists (`find_manifests`) are a manifest.csv, labels.csv or
same_image_as.csv beside a dataset, with a same_image_as column and a path or image_id column.
"""

from __future__ import annotations

import csv
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from skinscan.core.diagnosis import DIAGNOSES, MALIGNANT
from skinscan.core.errors import DataError
from skinscan.runtime.imaging import IMAGE_SUFFIXES

CLASS_NAMES = ("benign", "malignant")
# HAM10000 diagnosis → binary. akiec (actinic keratosis / Bowen's) is pre-cancerous: "needs a doctor".
HAM_MALIGNANT = set(MALIGNANT)
HAM_BENIGN = set(DIAGNOSES) - HAM_MALIGNANT
HAM_METADATA = "HAM10000_metadata.csv"
HAM_SOURCE = "ham10000"
_ISIC_CLASSES = ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC")
_LABEL_WORDS = {"benign": 0, "0": 0, "malignant": 1, "1": 1}
IMAGE_COLUMNS = ("path", "file", "image")
# a first run has no data: the README (also the description of the wheel) says where each collection comes from
WHERE_TO_GET_DATA = 'the README\'s section "Data" says where to get the public datasets and how to lay them out'
# Diagnosis words (lower-cased; the ISIC 2020 `diagnosis` column) → DIAGNOSES, by HAM10000's own grouping:
# its bkl holds seborrheic keratoses, solar lentigines and lichenoid keratoses. "" = no diagnosis.
DX_ALIASES = {
    "melanoma": "mel", "nevus": "nv", "seborrheic keratosis": "bkl", "lentigo nos": "bkl", "solar lentigo": "bkl",
    "lichenoid keratosis": "bkl", "basal cell carcinoma": "bcc", "actinic keratosis": "akiec",
    "dermatofibroma": "df", "vascular lesion": "vasc", "unknown": "",
}  # fmt: skip
# Manifests that may carry a `same_image_as` column beside a dataset.
MANIFEST_NAMES = ("manifest.csv", "labels.csv", "same_image_as.csv")


@dataclass(frozen=True)
class Record:
    """One labelled image."""

    path: Path
    label: int  # 0 benign, 1 malignant
    key: str  # "<source>:<id>", stable across machines; used for duplicates and reports
    group: str  # images sharing a group (same lesion or patient) never straddle a split
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


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            return [c.strip() for c in reader.fieldnames or []], rows
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read CSV {path}: {exc}") from exc


def csv_columns(path: Path) -> list[str]:
    """The header alone: deciding what a CSV is must not read a 10,000-row file."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            return [c.strip() for c in next(csv.reader(f), [])]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read CSV {path}: {exc}") from exc


def _is_labels_csv(columns: Sequence[str]) -> bool:
    return "label" in columns and any(c in columns for c in IMAGE_COLUMNS)


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
    _, rows = read_csv(csv_path)
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
    _, rows = read_csv(csv_path)
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


def _normalise_dx(text: str) -> str:
    """A DIAGNOSES code where the words name one; other words are kept as written (lower-cased)."""
    dx = text.strip().lower()
    return DX_ALIASES.get(dx, dx)


def _group_of(row: dict[str, str], key: str) -> str:
    # ISIC lesion and patient ids are archive-wide, so the same id in two collections stays one group
    if lesion := (row.get("lesion_id") or "").strip():
        return f"lesion:{lesion}"
    if patient := (row.get("patient_id") or "").strip():
        return f"patient:{patient}"
    return key


def _meta_of(row: dict[str, str]) -> dict[str, str]:
    meta = {
        "dx": _normalise_dx(row.get("dx") or row.get("diagnosis") or ""),
        # "source" would read as the collection, which is the key's prefix (`source_of`)
        "subsource": (row.get("source") or "").strip(),
        "patient_id": (row.get("patient_id") or "").strip(),
    }
    return {k: v for k, v in meta.items() if v}


def _split_names(rows: Iterable[dict[str, str]]) -> list[str]:
    return sorted({(row.get("split") or "").strip() for row in rows} - {""})


def _check_split(csv_path: Path, columns: Sequence[str], rows: list[dict[str, str]], split: str | None) -> None:
    """A split the CSV does not have is an error: silently reading none or all of it trains on the wrong images."""
    if not split:
        return
    if "split" not in columns:
        raise DataError(f"{csv_path} has no split column, so no split {split!r}; give no split to read all of it")
    names = _split_names(rows)
    if split not in names:
        raise DataError(f"{csv_path} has no split {split!r}; it has: {', '.join(names)}")


def _load_generic_csv(csv_path: Path, split: str | None, skip_bad: bool, skipped: list[str]) -> list[Record]:
    columns, rows = read_csv(csv_path)
    image_col = next((c for c in IMAGE_COLUMNS if c in columns), None)
    if image_col is None or "label" not in columns:
        raise DataError(f"{csv_path}: a CSV needs an image column (path, file or image) and a label column")
    _check_split(csv_path, columns, rows, split)
    source = csv_path.absolute().parent.name  # absolute: "labels.csv" in the working folder has a parent name too
    records = []
    for row in rows:
        row_split = (row.get("split") or "").strip()
        if split and row_split != split:
            continue
        rel, label = row[image_col].strip(), _parse_label(row["label"])
        path = (csv_path.parent / rel).resolve()
        if label is None:
            _problem(f"{csv_path}: {rel!r} has unknown label {row['label']!r}", skip_bad, skipped)
        elif not path.is_file():
            _problem(f"{csv_path}: image {path} does not exist", skip_bad, skipped)
        else:
            key = f"{source}:{rel}"
            records.append(Record(path, label, key, _group_of(row, key), row_split or split or "", _meta_of(row)))
    return records


def ham_csvs(root: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for p in sorted(root.glob("*.csv")):
        columns = csv_columns(p)
        if {"lesion_id", "image_id", "dx"} <= set(columns):
            found.setdefault("train", p)
        elif _is_isic_truth(columns):
            found.setdefault("test" if "test" in p.name.lower() else "train", p)
    return found


def _labels_csv(root: Path) -> Path | None:
    """The labels CSV of a folder: labels.csv, else the only CSV there with an image and a label column."""
    if (root / "labels.csv").is_file():
        return root / "labels.csv"
    found = [p for p in sorted(root.glob("*.csv")) if _is_labels_csv(csv_columns(p))]
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise DataError(f"{root} holds several labels CSVs ({names}); give the one to read, or name it labels.csv")
    return found[0] if found else None


def _split_folders(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir() and any((p / c).is_dir() for c in CLASS_NAMES))


def describe_layout(root: Path) -> str:
    return (
        f"{root} is not a dataset skinscan can read. Give a folder with benign/ and malignant/ subfolders "
        "(optionally below train/, test/ ...), a folder with HAM10000_metadata.csv or the ISIC 2018 Task 3 "
        "ground-truth CSV, or a CSV (or a folder with a labels.csv) with an image column (path, file or image) "
        "and a label column."
    )


def list_splits(root: Path) -> list[str]:
    """The split names a folder (or a labels CSV) offers, in the order `load_records` checks layouts (empty: none)."""
    root = Path(root)
    if root.is_file():
        return _csv_splits(root) if _is_labels_csv(csv_columns(root)) else []
    if not root.is_dir():
        return []
    if ham := ham_csvs(root):
        return sorted(ham)
    if any((root / c).is_dir() for c in CLASS_NAMES):
        return []
    if splits := _split_folders(root):
        return splits
    labels = _labels_csv(root)
    return _csv_splits(labels) if labels else []


def _csv_splits(csv_path: Path) -> list[str]:
    return _split_names(read_csv(csv_path)[1])


def _load_csv_file(csv_path: Path, split: str | None, skip_bad: bool, skipped: list[str]) -> list[Record]:
    columns = csv_columns(csv_path)
    if {"lesion_id", "image_id", "dx"} <= set(columns):
        loader, own_split = _load_ham_metadata, "train"
    elif _is_isic_truth(columns):
        loader, own_split = _load_isic_truth, "test"
    else:
        return _load_generic_csv(csv_path, split, skip_bad, skipped)
    # an official file is one split; asking it for another would silently hand back the wrong images
    if split and split != own_split:
        raise DataError(f"{csv_path} has no split {split!r}; it has: {own_split}")
    return loader(csv_path, _image_index(csv_path.parent), skip_bad, skipped)


def _load_ham_folder(
    root: Path, ham: dict[str, Path], split: str | None, skip_bad: bool, skipped: list[str]
) -> list[Record]:
    if split is not None and split not in ham:
        raise DataError(f"{root} has no split {split!r}; it has: {', '.join(sorted(ham))}")
    index = _image_index(root)
    records = []
    for name, csv_path in sorted(ham.items()):
        if split is None or split == name:
            loader = _load_isic_truth if _is_isic_truth(csv_columns(csv_path)) else _load_ham_metadata
            records += [
                r if r.split == name else Record(r.path, r.label, r.key, r.group, name, r.meta)
                for r in loader(csv_path, index, skip_bad, skipped)
            ]
    return records


def _load_split_folders(
    root: Path, splits: list[str], split: str | None, skip_bad: bool, skipped: list[str]
) -> list[Record]:
    if split is not None and split not in splits:
        raise DataError(f"{root} has no split {split!r}; it has: {', '.join(splits)}")
    return [
        r
        for name in (splits if split is None else [split])
        for r in _load_class_folders(root / name, name, skip_bad, skipped)
    ]


def _load_folder(root: Path, split: str | None, skip_bad: bool, skipped: list[str]) -> list[Record]:
    # the folder layouts come first, so a Kaggle copy with a manifest.csv beside its folders reads as before
    if ham := ham_csvs(root):
        return _load_ham_folder(root, ham, split, skip_bad, skipped)
    if any((root / c).is_dir() for c in CLASS_NAMES):
        if split is not None and (root / split).is_dir():
            return _load_class_folders(root / split, split, skip_bad, skipped)
        return _load_class_folders(root, "", skip_bad, skipped)
    if splits := _split_folders(root):
        return _load_split_folders(root, splits, split, skip_bad, skipped)
    if labels := _labels_csv(root):
        return _load_generic_csv(labels, split, skip_bad, skipped)
    raise DataError(describe_layout(root))


def load_records(path: str | Path, split: str | None = None, *, skip_bad: bool = False) -> list[Record]:
    """Read labelled records from any supported layout.

    Args:
        path: a dataset folder or CSV file.
        split: "train", "test", ... where the layout has splits; None takes every split.
        skip_bad: leave out missing images and unknown labels with a warning instead of an error.

    Raises:
        DataError: unknown layout, unknown split (or a split asked of a CSV without a split column), missing
            image or unknown label (without skip_bad).
    """
    root = Path(path)
    skipped: list[str] = []
    if not root.exists():
        raise DataError(f"{root} does not exist; {WHERE_TO_GET_DATA}")
    if root.is_file():
        records = _load_csv_file(root, split, skip_bad, skipped)
    else:
        records = _load_folder(root, split, skip_bad, skipped)
    _report_skipped(skipped)
    if not records:
        raise DataError(f"{root}{f' (split {split})' if split else ''} holds no labelled images")
    return records
