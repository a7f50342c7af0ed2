"""Train from a pack made by pack.py (on a machine without ../shared/data): the same Trainer, finalize and
checkpoint as `skinscan train`.

    SKINSCAN_IMAGENET_WEIGHTS=.pack/imagenet-fp16.pth python experiments/gpu/train_pack.py .pack \
        --config experiments/bundled.toml --set lr=5e-4 --out runs/x
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from skinscan.training.config import config_from
from skinscan.training.dataset import Prepared
from skinscan.training.records import Record
from skinscan.training.train import train_prepared


def load_pack(pack: Path) -> tuple[Prepared, Prepared, dict[str, object]]:
    data = np.load(pack / "images.npz")
    blob, offsets = data["blob"], data["offsets"]
    pixels = np.stack(
        [
            np.asarray(Image.open(io.BytesIO(blob[offsets[i] : offsets[i + 1]].tobytes())).convert("RGB"))
            for i in range(len(offsets) - 1)
        ]
    )
    keys, labels, is_val = data["keys"], data["labels"], data["is_val"]
    diagnoses = data["dx"] if "dx" in data else np.full(len(keys), "")  # packs before the diagnosis loss lack it
    records = [
        Record(Path(str(k)), int(y), str(k), str(k), meta={"dx": str(dx)} if dx else {})
        for k, y, dx in zip(keys, labels, diagnoses, strict=True)
    ]

    def subset(mask: np.ndarray) -> Prepared:
        idx = np.flatnonzero(mask)
        return Prepared([records[i] for i in idx], pixels[idx], labels[idx])

    summary = json.loads((pack / "summary.json").read_text())
    return subset(~is_val), subset(is_val), summary


def parse_value(text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pack", type=Path)
    parser.add_argument("--config")
    parser.add_argument("--set", action="append", default=[], help="KEY=VALUE overrides (JSON values)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    overrides = dict(item.split("=", 1) for item in args.set)
    cfg = config_from(args.config, out=args.out, **{k: parse_value(v) for k, v in overrides.items()})
    train_set, val_set, summary = load_pack(args.pack)
    print(f"{len(train_set.labels)} training, {len(val_set.labels)} validation images from {args.pack}", flush=True)
    train_prepared(cfg, train_set, val_set, summary)


if __name__ == "__main__":
    main()
