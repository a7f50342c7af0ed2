"""Write a training recipe's validation images as a CSV (path, label, split=val), e.g. for `skinscan drift-reference`.

    python experiments/validation_csv.py --config experiments/bundled-2.toml --out runs/v2-val.csv

The split is the one training made (training/dataset.py gather_records: the same data, hold-outs, duplicates,
fraction and seed), so the images are those the recipe chose its epoch and threshold on.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from skinscan.training.config import config_from
from skinscan.training.dataset import gather_records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="the recipe (a TOML file of TrainConfig settings)")
    parser.add_argument("--out", required=True, help="the CSV to write")
    args = parser.parse_args()
    _, val, summary = gather_records(config_from(args.config))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "split"])
        for record in val:
            writer.writerow([str(Path(record.path).resolve()), record.label, "val"])
    print(f"wrote {len(val)} validation images ({summary['val_malignant']} malignant) to {out}")


if __name__ == "__main__":
    main()
