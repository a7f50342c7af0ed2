"""`skinscan predict`: judge image files and folders from the command line (no torch)."""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from skinscan import DISCLAIMER
from skinscan.core.errors import SkinscanError
from skinscan.runtime.engine import Engine
from skinscan.runtime.imaging import walk_inputs
from skinscan.runtime.legend import with_legend
from skinscan.runtime.result import CSV_FIELDS, Prediction

HEATMAP_FIELD = "heatmap_path"  # the JSON field and CSV column naming the heatmap file written for an image


def printable(text: str) -> str:
    """`text` with each unprintable character (newline, terminal escape, bidi control, undecodable byte) written
    as its Python escape, so that a file's name can neither forge an output line nor restyle the terminal;
    letters of any script stay as they are."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def format_line(path: Path, result: Prediction, heatmap: Path | None = None) -> str:
    """One image's result as one line of text for a person (control characters escaped)."""
    if result.status != "ok":
        line = f"{path}: {result.display_label}: {result.reason}"
    else:
        line = (
            f"{path}: {result.display_label} · probability of malignancy {result.probability:.3f} ({result.label} "
            f"at threshold {result.threshold:.3f}) · severity {result.severity}/6 {result.severity_name}"
        )
        if result.diagnoses:
            line += f"  most likely: {result.likely_diagnoses}"
    if heatmap is not None:
        line += f"  heatmap: {heatmap}"
    return printable(line)


def heatmap_paths(images: Sequence[Path], out_dir: Path) -> list[Path]:
    """Where each image's heatmap goes: its place below the images' common folder, mirrored under `out_dir`, so
    that a/x.jpg and b/x.jpg do not overwrite each other; a name still taken by another image (x.jpg beside x.png)
    gets a -2, -3, ... suffix. The same file given twice keeps one heatmap."""
    folders = [os.path.abspath(image.parent) for image in images]
    root = os.path.commonpath(folders) if folders else ""
    owner: dict[Path, str] = {}  # heatmap file → the image it belongs to
    targets = []
    for image, folder in zip(images, folders, strict=True):
        source = os.path.abspath(image)
        stem = out_dir / os.path.relpath(folder, root) / f"{image.stem}_heatmap"
        target, n = stem.with_name(f"{stem.name}.png"), 1
        while owner.setdefault(target, source) != source:
            n += 1
            target = stem.with_name(f"{stem.name}-{n}.png")
        targets.append(target)
    return targets


def _judge(engine: Engine, path: Path, *, heatmap: bool) -> Prediction | str:
    """The image's result, or why it has none: a failed file is that file's error, never the end of the run."""
    try:
        return engine.predict(path, heatmap=heatmap)
    except SkinscanError as exc:
        return str(exc)
    except MemoryError:
        # a file under the size limit can still decode into more than this machine has left (the decoder lets
        # MemoryError through on purpose, so that a server does not blame the upload); here it is this file's error
        return "out of memory while reading or decoding this image"


def run_predict(args: argparse.Namespace) -> int:
    # without --max-mb, the decoder's own limit on the bytes of one file (its default is the one place it is set)
    limits: dict[str, Any] = {} if args.max_mb is None else {"max_bytes": int(args.max_mb * 1024 * 1024)}
    engine = Engine(args.model, threshold=args.threshold, check_inputs=not args.no_checks, site=args.site, **limits)
    images = list(walk_inputs(args.inputs))
    heatmap_dir = Path(args.heatmap) if args.heatmap else None
    targets: Sequence[Path | None] = heatmap_paths(images, heatmap_dir) if heatmap_dir else [None] * len(images)
    if heatmap_dir:
        heatmap_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, object]] = []
    failed = 0
    model = {"id": engine.spec.id, "version": engine.spec.version}  # as a server's answer names it
    for path, target in zip(images, targets, strict=True):
        result = _judge(engine, path, heatmap=target is not None)
        if isinstance(result, str):
            failed += 1
            print(printable(f"{path}: error: {result}"), file=sys.stderr, flush=True)
            rows.append({"path": str(path), "status": "error", "reason": result})
            continue
        data: dict[str, object] = {"path": str(path), **result.to_dict(include_heatmap=False), "model": model}
        written = None
        if target is not None and result.overlay_png:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(
                with_legend(result.overlay_png, result.heatmap_legend)
            )  # a file on its own says what its colours mean
            written, data[HEATMAP_FIELD] = target, str(target)
        rows.append(data)
        print(json.dumps(data) if args.json else format_line(path, result, written), flush=True)
    if not rows:
        print("skinscan: error: no image files found", file=sys.stderr)
        return 1
    if args.csv:
        # an undecodable byte in a file name is written as its escape, not refused halfway through the file
        with open(args.csv, "w", newline="", encoding="utf-8", errors="backslashreplace") as f:
            fields = [*CSV_FIELDS, HEATMAP_FIELD] if heatmap_dir else CSV_FIELDS
            writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
    if not args.json:
        print(f"\nmodel {engine.spec.id} {engine.spec.version} ({engine.path})\n{DISCLAIMER}", file=sys.stderr)
    return 1 if failed else 0
