"""Training speed on this machine: images per second of the real training step (augmentation, forward, loss,
backward, AdamW, weight average) by memory format, precision and thread count, and of its parts (the data
pipeline alone, validation), for EfficientNet-Lite0 at 224 px, batch 32.

`skinscan train` picks its memory format and precision ("auto") from these numbers; rerun this after a change
to the network or the trainer. Timings are medians over repeated steps after warm-up steps.
Usage: python benchmarks/bench_train.py [--quick] [--size 224] [--batch 32]"""

from __future__ import annotations

import statistics
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from common import bench_parser, time_calls, write_results
from skinscan.training.augment import AugmentConfig, augment_batch, normalise
from skinscan.training.config import TrainConfig
from skinscan.training.dataset import Prepared
from skinscan.training.records import Record
from skinscan.training.scoring import predict_logits
from skinscan.training.train import build_trainer, seed_everything


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AMX or AVX512-BF16): only then is bf16 faster."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def synthetic_set(n: int, size: int) -> Prepared:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    records = [Record(Path(f"s:{i}"), i % 2, f"s:{i}", f"s:{i}") for i in range(n)]
    return Prepared(records, pixels, np.array([r.label for r in records], dtype=np.int64))


def time_steps(cfg: TrainConfig, data: Prepared, warmup: int, repeat: int) -> float:
    """Median seconds of one training step (a one-step epoch of the real trainer, validation excluded)."""
    seed_everything(0)
    torch.set_num_threads(cfg.threads)
    trainer = build_trainer(cfg, data, data, torch.device("cpu"))
    return statistics.median(time_calls(trainer.train_epoch, repeat, warmup)) / 1000


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    warmup, repeat = (1, 2) if args.quick else (2, 6)
    data = synthetic_set(args.batch * 2, args.size)
    base = TrainConfig(data=[], holdout=[], model="efficientnet-lite0", pretrained=False, freeze_blocks=0,
                       batch_size=args.batch, max_steps=1, ema=0.995, threads=2, out="/tmp/bench-train")  # fmt: skip
    variants = [
        ("contiguous", "fp32", 2), ("channels_last", "fp32", 2), ("contiguous", "bf16", 2),
        ("channels_last", "bf16", 2), ("channels_last", "bf16", 1),
    ]  # fmt: skip
    if args.quick:
        variants = variants[:2]
    rows = []
    for memory_format, precision, threads in variants:
        cfg = replace(base, memory_format=memory_format, precision=precision, threads=threads)
        seconds = time_steps(cfg, data, warmup, repeat)
        rows.append({"memory_format": memory_format, "precision": precision, "threads": threads,
                     "step_s": round(seconds, 3), "images_per_s": round(args.batch / seconds, 1)})  # fmt: skip
        print(rows[-1], flush=True)

    torch.set_num_threads(2)
    gen = torch.Generator().manual_seed(0)
    pixels = torch.from_numpy(data.pixels[: args.batch])
    pipeline = statistics.median(time_calls(
        lambda: normalise(augment_batch(pixels, AugmentConfig(), gen), (0.5,) * 3, (0.5,) * 3), repeat, warmup
    )) / 1000  # fmt: skip
    model = build_trainer(base, data, data, torch.device("cpu")).model
    val = statistics.median(time_calls(
        lambda: predict_logits(model, data.pixels, model.info.preprocess, torch.device("cpu")), max(2, repeat // 2), 1
    )) / 1000  # fmt: skip
    fastest = max(rows, key=lambda r: r["images_per_s"])
    slowest = rows[0]
    result = {
        "size": args.size, "batch": args.batch, "fast_bf16_cpu": cpu_has_fast_bf16(), "steps": rows,
        "augment_batch_s": round(pipeline, 3), "validation_images_per_s": round(len(data.labels) / val, 1),
    }  # fmt: skip
    table = [
        f"## Training speed (EfficientNet-Lite0, {args.size} px, batch {args.batch}, CPU)",
        "",
        f"CPU with hardware bf16 (AMX or AVX512-BF16): {'yes' if cpu_has_fast_bf16() else 'no'}.",
        "",
        "| memory format | precision | threads | s per step | images/s |",
        "|---|---|---|---|---|",
        *[f"| {r['memory_format']} | {r['precision']} | {r['threads']} | {r['step_s']:.2f} | {r['images_per_s']:.1f} |"
          for r in rows],
        "",
        f"Fastest: {fastest['memory_format']}, {fastest['precision']}, {fastest['threads']} threads: "
        f"{fastest['images_per_s'] / slowest['images_per_s']:.1f}x the contiguous fp32 step.",
        f"The data pipeline alone (augmentation of a batch): {pipeline:.3f} s; validation: "
        f"{result['validation_images_per_s']:.0f} images/s.",
    ]  # fmt: skip
    if not args.quick:
        write_results("train", result, table)
    else:
        print("\n".join(table))


if __name__ == "__main__":
    main()
