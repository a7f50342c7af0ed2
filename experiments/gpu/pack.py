"""Pack the training and validation images for a GPU machine that cannot see ../shared/data.

The device lease carries at most 64 MiB, so the images go already preprocessed (centre crop, resize,
Shades-of-Gray — exactly what `skinscan.training.dataset.prepare` caches) and WebP-encoded, with the split made here
by the same `gather_records` that `skinscan train` uses. The ImageNet weights go as float16.

    python experiments/gpu/pack.py --out .pack [--quality 85]
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from skinscan.training.config import config_from
from skinscan.training.dataset import gather_records, prepare
from skinscan.training.models import create_model
from skinscan.training.train import preprocess_for


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=".pack")
    parser.add_argument("--config", help="a TOML TrainConfig (its data, holdout and split settings are used)")
    parser.add_argument("--quality", type=int, default=85)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = config_from(args.config)
    model = create_model(cfg.model, pretrained=True)
    spec = preprocess_for(cfg)  # the config's input size and crop, as `skinscan train` caches them
    train_records, val_records, summary = gather_records(cfg)
    blobs: list[bytes] = []
    keys, labels, is_val, diagnoses = [], [], [], []
    for records, val in ((train_records, False), (val_records, True)):
        prepared = prepare(records, spec, cfg.skip_bad, "val" if val else "train")
        for record, pixels in zip(prepared.records, prepared.pixels, strict=True):
            buffer = io.BytesIO()
            Image.fromarray(pixels).save(buffer, "WEBP", quality=args.quality, method=6)
            blobs.append(buffer.getvalue())
            keys.append(record.key)
            labels.append(record.label)
            is_val.append(val)
            diagnoses.append(record.meta.get("dx", ""))  # for the auxiliary diagnosis loss
    offsets = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
    np.savez(
        out / "images.npz",
        blob=np.frombuffer(b"".join(blobs), dtype=np.uint8),
        offsets=offsets,
        keys=np.array(keys),
        labels=np.array(labels, dtype=np.int64),
        is_val=np.array(is_val),
        dx=np.array(diagnoses),
    )
    state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    torch.save(state, out / "imagenet-fp16.pth")
    summary["packed_as"] = f"WebP quality {args.quality} of the preprocessed {spec.input_size}px images"
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    total = sum(f.stat().st_size for f in out.iterdir())
    print(f"{len(blobs)} images ({sum(is_val)} validation) → {out}: {total / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
