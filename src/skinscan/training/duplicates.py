"""Which records may go where: the same photograph in several places (`same_image_as` lists), dropping
copies of held-out images, deduplicating overlapping sources, and the grouped, seeded train/validation split."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

from skinscan.core.errors import ConfigError, DataError
from skinscan.training.records import (
    HAM_SOURCE,
    IMAGE_COLUMNS,
    MANIFEST_NAMES,
    Record,
    csv_columns,
    ham_csvs,
    read_csv,
    source_of,
)


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
        """Read a list with `same_image_as` ("<source>:<id>" keys separated by ';') beside `path` or `image_id`.

        The row's own key is "<folder>:<path>" or "<folder>:<image_id>", as the loaders key the images: beside
        the official HAM10000 files that is "ham10000:<image_id>" whatever the folder is called.
        """
        columns, rows = read_csv(manifest)
        id_col = next((c for c in (*IMAGE_COLUMNS, "image_id") if c in columns), None)
        if "same_image_as" not in columns or id_col is None:
            raise DataError(f"{manifest}: a duplicates list needs a same_image_as column and a path or image_id column")
        folder = manifest.absolute().parent
        source = HAM_SOURCE if ham_csvs(folder) else folder.name
        for row in rows:
            key = f"{source}:{(row[id_col] or '').strip()}"
            for other in (row.get("same_image_as") or "").split(";"):
                if other.strip():
                    self.add(key, other.strip())


def find_manifests(paths: Iterable[str | Path]) -> list[Path]:
    """Duplicate lists beside datasets: manifest.csv, labels.csv, same_image_as.csv (or the CSV given itself)
    wherever they have a same_image_as column."""
    found: list[Path] = []
    for p in paths:
        root = Path(p)
        folder = root if root.is_dir() else root.parent
        candidates = [folder / name for name in MANIFEST_NAMES] + ([root] if root.is_file() else [])
        for candidate in candidates:
            if candidate.is_file() and candidate not in found and "same_image_as" in csv_columns(candidate):
                found.append(candidate)
    return found


def drop_same_images(records: Sequence[Record], held_out: Sequence[Record], dup: Duplicates) -> list[Record]:
    """Records that are not the same photograph as any held-out record (so a test score cannot leak)."""
    banned = {r.key for r in held_out}
    banned |= {k for r in held_out for k in dup.of(r.key)}
    return [r for r in records if r.key not in banned and not (dup.of(r.key) & banned)]


def dedupe(records: Sequence[Record], dup: Duplicates) -> list[Record]:
    """Keep the first record of each set of duplicate photographs (when mixing overlapping sources).

    Re-shots of one lesion (the same group: HAM10000 lists many as the same photograph) are all kept: they
    are different photographs, and the split keeps a group on one side anyway.
    """
    seen: dict[str, str] = {}  # key of a kept record or of its copies → what may share it (see _reshot_group)
    kept = []
    for r in records:
        if r.key in seen and (seen[r.key] != _reshot_group(r) or not seen[r.key]):
            continue
        kept.append(r)
        for key in (r.key, *dup.of(r.key)):
            seen.setdefault(key, _reshot_group(r))
    return kept


def _reshot_group(record: Record) -> str:
    """The lesion of one collection whose photographs are all kept ("" where the record has none: a patient
    group is not a lesion, and another collection's copy of a lesion is a copy)."""
    return f"{source_of(record)}|{record.group}" if record.group.startswith("lesion:") else ""


def split_records(
    records: Sequence[Record], val_fraction: float, seed: int, dup: Duplicates | None = None
) -> tuple[list[Record], list[Record]]:
    """A deterministic train/validation split, grouped by lesion (and duplicates), stratified by label."""
    if not 0 < val_fraction < 1:
        raise ConfigError(f"val_fraction must be between 0 and 1, not {val_fraction}")
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
