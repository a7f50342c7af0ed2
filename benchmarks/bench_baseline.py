"""The seed's inference against skinscan's engine, in one process, on the same images: the seed-cnn network run
eagerly in PyTorch per image after Pillow decoding, a 224×224 resize and a tensor /255 (seed_server.predict_seed,
exactly what the seed server does per request), against `Engine.predict` with skinscan's model.

Reported: median, p90 and p99 per input, the ratios seed / skinscan, and the two networks alone (a prepared input
through `model(x)` against `Engine.run`) with their multiply-accumulates, to tell the design from the model.
Usage: python benchmarks/bench_baseline.py [--model PATH] [--repeat 40] [--quick]"""

from __future__ import annotations

import numpy as np

from bench_engine import count_macs
from common import bench_parser, percentiles, sample_inputs, time_calls, write_results


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--repeat", type=int, default=40, help="timed calls per input (a third of it for 12 MP)")
    args = parser.parse_args()
    repeat, warmup = (5, 1) if args.quick else (args.repeat, 3)

    import torch

    from seed_server import predict_seed
    from skinscan.runtime.engine import Engine
    from skinscan.training.models import create_model

    torch.manual_seed(0)
    seed_model = create_model("seed-cnn", pretrained=False).eval()
    engine = Engine(args.model)
    inputs = sample_inputs()
    rows: dict[str, dict[str, dict[str, float]]] = {}
    for name, data in inputs.items():
        n = repeat if "12mp" not in name else max(3, repeat // 3)
        rows[name] = {
            "seed": percentiles(time_calls(lambda d=data: predict_seed(seed_model, d), n, warmup)),
            "skinscan": percentiles(time_calls(lambda d=data: engine.predict(d), n, warmup)),
        }
    size = engine.spec.input_size
    x = np.random.default_rng(0).random((1, 3, size, size), dtype=np.float32)
    tensor = torch.from_numpy(x)

    def seed_forward() -> None:
        with torch.no_grad():
            seed_model(tensor)

    rows["network only (prepared 224×224 input)"] = {
        "seed": percentiles(time_calls(seed_forward, repeat, warmup)),
        "skinscan": percentiles(time_calls(lambda: engine.run(x), repeat, warmup)),
    }
    for row in rows.values():
        row["ratio"] = {"median": round(row["seed"]["median_ms"] / row["skinscan"]["median_ms"], 2)}
    macs = {
        "seed-cnn": count_macs("seed-cnn", 224),
        engine.spec.architecture: count_macs(engine.spec.architecture, size),
    }
    table = [
        "# Baseline: the seed's eager PyTorch inference against skinscan's engine"
        + (" (quick run: noisy)" if args.quick else ""),
        "",
        f"seed: seed-cnn in eager PyTorch ({torch.get_num_threads()} threads), Pillow decode, 224×224 resize, /255. "
        f"skinscan: `Engine.predict` with {engine.spec.id} ({engine.spec.architecture}) on ONNX Runtime.",
        "",
        "| input | seed median ms | seed p90 | seed p99 | skinscan median ms | skinscan p90 | skinscan p99 | "
        "seed / skinscan |",
        "|---|---|---|---|---|---|---|---|",
        *[
            f"| {name} | {r['seed']['median_ms']} | {r['seed']['p90_ms']} | {r['seed']['p99_ms']} | "
            f"{r['skinscan']['median_ms']} | {r['skinscan']['p90_ms']} | {r['skinscan']['p99_ms']} | "
            f"{r['ratio']['median']}× |"
            for name, r in rows.items()
        ],
        "",
        "Multiply-accumulates per image: " + ", ".join(f"{k} {v / 1e6:.0f} M" for k, v in macs.items()) + ".",
    ]
    write_results(
        "baseline",
        {
            "quick": args.quick,
            "torch_threads": torch.get_num_threads(),
            "rows": rows,
            "macs_per_image": macs,
            "model": engine.spec.id,
        },
        table,
    )


if __name__ == "__main__":
    main()
