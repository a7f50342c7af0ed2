"""`skinscan predict`: judge image files and folders from the command line (no torch)."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from skinscan import DISCLAIMER
from skinscan.core.errors import SkinscanError
from skinscan.runtime.engine import Engine
from skinscan.runtime.imaging import walk_inputs
from skinscan.runtime.result import CSV_FIELDS, Prediction


def format_line(path: Path, result: Prediction) -> str:
    if result.status != "ok":
        return f"{path}: rejected: {result.reason}"
    line = (
        f"{path}: {result.label:<9} probability {result.probability:.3f} "
        f"(threshold {result.threshold:.3f})  severity {result.severity}/6 {result.severity_name}"
    )
    if result.diagnoses:
        line += f"  most likely: {result.likely_diagnoses}"
    return line


def run_predict(args: argparse.Namespace) -> int:
    engine = Engine(args.model, threshold=args.threshold, check_inputs=not args.no_checks)
    heatmap_dir = Path(args.heatmap) if args.heatmap else None
    if heatmap_dir:
        heatmap_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, object]] = []
    failed = 0
    for path in walk_inputs(args.inputs):
        try:
            result = engine.predict(path, heatmap=heatmap_dir is not None)
        except SkinscanError as exc:
            failed += 1
            print(f"{path}: error: {exc}", file=sys.stderr)
            rows.append({"path": str(path), "status": "error", "reason": str(exc)})
            continue
        if heatmap_dir and result.overlay_png:
            (heatmap_dir / f"{path.stem}_heatmap.png").write_bytes(result.overlay_png)
        data = {"path": str(path), **result.to_dict(include_heatmap=False)}
        rows.append(data)
        print(json.dumps(data) if args.json else format_line(path, result), flush=True)
    if not rows:
        print("skinscan: error: no image files found", file=sys.stderr)
        return 1
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
    if not args.json:
        print(f"\n{DISCLAIMER}", file=sys.stderr)
    return 1 if failed else 0
