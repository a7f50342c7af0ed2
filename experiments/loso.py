"""Leave-one-source-out: for each collection, train without it and score its test split — the estimate of how
a recipe does in a clinic it has never seen. Choose recipes by this table, not by pooled validation AUC.

    python experiments/loso.py --config experiments/loso-cheap.toml --name standard
    python experiments/loso.py --config experiments/loso-cheap.toml --name clinic --set augmentation=clinic

Every run holds out every test split of every collection (and every photograph that duplicates one). The
table goes to runs/loso/NAME/loso.{json,md} and, with --record, to experiments/results/loso-NAME.md.
ISIC 2020's score is also given on its `vatssavvya` benign images alone (its other benign copy looks
different; see ../shared/data/README.md). The isic-mvb fold is not an unseen clinic: most of its photographs
are HAM10000 and ISIC 2017 ones, so its held-out score measures a re-encoded copy of home ground.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from skinscan.evaluation.evaluate import evaluate
from skinscan.training.config import config_from
from skinscan.training.records import load_records
from skinscan.training.train import train

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
COLLECTIONS = ("ham10000", "isic-mvb", "isic2017", "isic2020")


def parse_value(text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def vatssavvya_auc(data: Path, predictions: Path) -> float | None:
    """AUC on ISIC 2020's test split with only the benign images of the copy that holds its melanomas."""
    sub = {r.key: r.meta.get("subsource") for r in load_records(data, "test")}
    with predictions.open() as f:
        rows = [r for r in csv.DictReader(f) if sub.get(r["key"]) == "vatssavvya"]
    y = np.array([r["label"] == "malignant" for r in rows])
    return float(roc_auc_score(y, [float(r["probability"]) for r in rows])) if 0 < y.sum() < len(y) else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--set", action="append", default=[], help="KEY=VALUE overrides (JSON values)")
    parser.add_argument("--only", nargs="*", default=list(COLLECTIONS), help="the collections to leave out")
    parser.add_argument("--record", action="store_true", help="also write experiments/results/loso-NAME.md")
    args = parser.parse_args()
    overrides = {k: parse_value(v) for k, v in (item.split("=", 1) for item in args.set)}
    out = ROOT / "runs" / "loso" / args.name
    everything = [str(DATA / c) for c in COLLECTIONS]
    rows = []
    for left_out in args.only:
        start = time.perf_counter()
        cfg = config_from(args.config, **{**overrides, "data": [p for p in everything if not p.endswith(left_out)],
                                          "holdout": everything, "holdout_split": "test",
                                          "out": str(out / f"without-{left_out}")})  # fmt: skip
        best = train(cfg)
        report = out / f"without-{left_out}" / "eval"
        metrics = evaluate(DATA / left_out, split="test", model=str(best), out=report, n_boot=500)
        row = {
            "left_out": left_out, "n": metrics["n"], "auc": metrics["auc"], "auc_ci": metrics["auc_ci"],
            "sensitivity": metrics["sensitivity"], "specificity": metrics["specificity"], "ece": metrics["ece"],
            "refused": metrics["rejected_fraction"], "minutes": round((time.perf_counter() - start) / 60, 1),
        }  # fmt: skip
        if left_out == "isic2020":
            row["auc_vatssavvya_benign"] = vatssavvya_auc(DATA / left_out, report / "predictions.csv")
        rows.append(row)
        print(json.dumps(row), flush=True)
    mean = float(np.mean([r["auc"] for r in rows]))
    table = [
        f"## Leave-one-source-out: {args.name}",
        "",
        f"Recipe: `{args.config}`" + (f" with {', '.join(args.set)}" if args.set else "") + ". Each row: trained "
        "without that collection, scored on its test split (95 % bootstrap intervals; threshold from validation).",
        "",
        "| left out | n | AUC (95 % CI) | sensitivity | specificity | ECE | refused | minutes |",
        "|---|---|---|---|---|---|---|---|",
        *[f"| {r['left_out']} | {r['n']} | {r['auc']:.3f} ({r['auc_ci'][0]:.3f}–{r['auc_ci'][1]:.3f}) | "
          f"{r['sensitivity']:.3f} | {r['specificity']:.3f} | {r['ece']:.3f} | {r['refused']:.1%} | {r['minutes']} |"
          for r in rows],
        "",
        f"Mean AUC over the held-out collections: {mean:.3f}.",
    ]  # fmt: skip
    vats = [r["auc_vatssavvya_benign"] for r in rows if r.get("auc_vatssavvya_benign") is not None]
    if vats:
        table.append(f"ISIC 2020 with only the `vatssavvya` benign images: AUC {vats[0]:.3f}.")
    out.mkdir(parents=True, exist_ok=True)
    (out / "loso.json").write_text(json.dumps({"config": args.config, "set": args.set, "rows": rows}, indent=2))
    (out / "loso.md").write_text("\n".join(table) + "\n")
    if args.record:
        (ROOT / "experiments" / "results" / f"loso-{args.name}.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))


if __name__ == "__main__":
    main()
