"""Engine speed and memory: latency per input kind (with and without heatmap), batch throughput, peak RSS,
cold start, and the model's FLOP bound on this CPU (its multiply-accumulates against the float32 matrix-multiply
rate numpy's BLAS reaches here). Targets (engine issue): <= 10 ms for a 224×224 JPEG, <= 60 ms for 12 MP.
Usage: python benchmarks/bench_engine.py [--model PATH] [--repeat N] [--quick]"""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from common import ROOT, bench_parser, percentiles, sample_inputs, time_calls, write_results

TARGET_MS = {"jpeg_224": 10.0, "jpeg_12mp": 60.0}


def matmul_gflops(threads: int, seconds: float = 1.0) -> float:
    """The float32 matrix-multiply rate this CPU reaches with numpy's BLAS: a practical peak for conv-heavy models."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # scikit-learn brings it; without it BLAS uses its own thread count
        threadpool_limits = None
    a = np.random.default_rng(0).random((1024, 1024), dtype=np.float32)
    b = np.random.default_rng(1).random((1024, 1024), dtype=np.float32)
    limit = threadpool_limits(threads) if threadpool_limits else None
    try:
        a @ b  # warm up
        runs, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            a @ b
            runs += 1
        elapsed = time.perf_counter() - start
    finally:
        if limit is not None:
            limit.unregister()
    return runs * 2 * 1024**3 / elapsed / 1e9


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--repeat", type=int, default=60, help="timed calls per input (a third of it for 12 MP)")
    parser.add_argument("--int8", default=str(ROOT / "models" / "int8"), help="the 8-bit variant ('' leaves it out)")
    args = parser.parse_args()
    if args.quick:
        args.repeat = 6

    from skinscan.runtime.engine import Engine

    start = time.perf_counter()
    engine = Engine(args.model)
    load_ms = (time.perf_counter() - start) * 1000
    inputs = sample_inputs()

    def repeats(name: str) -> int:
        """Timed calls for an input: a third as many for the 12-megapixel photo."""
        return args.repeat if "12mp" not in name else max(3 if args.quick else 10, args.repeat // 3)

    latency: dict[str, dict[str, float]] = {}
    for name, data in inputs.items():
        for heat in (False, True):
            samples = time_calls(lambda d=data, h=heat: engine.predict(d, heatmap=h), repeats(name))
            latency[f"{name}{' +heatmap' if heat else ''}"] = percentiles(samples)
    int8: dict[str, Any] = {}
    if args.int8 and Path(args.int8).exists():
        fast = Engine(args.int8)
        int8["model"] = fast.spec.id
        for name in ("jpeg_224", "jpeg_12mp"):
            for heat in (False, True):
                samples = time_calls(lambda d=inputs[name], h=heat: fast.predict(d, heatmap=h), repeats(name))
                int8[f"{name}{' +heatmap' if heat else ''}"] = percentiles(samples)
    size = engine.spec.input_size
    throughput = {}
    for batch in (1, 8, 32):
        x = np.random.default_rng(0).normal(size=(batch, 3, size, size)).astype(np.float32)
        samples = time_calls(lambda x=x: engine.run(x), max(3 if args.quick else 5, args.repeat // batch))
        throughput[f"batch_{batch}"] = round(batch / (np.median(samples) / 1000), 1)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    code = (
        "import time; t=time.perf_counter(); from skinscan.runtime.engine import Engine; import sys; "
        f"e=Engine({args.model!r}); e.predict(open(sys.argv[1],'rb').read()); print((time.perf_counter()-t)*1000)"
    )
    with tempfile.NamedTemporaryFile(suffix=".jpg") as f:
        f.write(inputs["jpeg_224"])
        f.flush()
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", code, f.name], capture_output=True, text=True, check=True)
        cold_process_ms = (time.perf_counter() - t0) * 1000
    cold = {"process_start_to_first_result_ms": round(cold_process_ms, 1),
            "import_load_predict_in_process_ms": round(float(out.stdout.strip()), 1),
            "model_load_ms": round(load_ms, 1)}  # fmt: skip
    # FLOP bound: multiply-accumulates of one forward pass against the matrix-multiply rate of this CPU
    macs = count_macs(engine.spec.architecture, size)
    threads = engine.session.get_session_options().intra_op_num_threads
    peak = matmul_gflops(threads, 0.3 if args.quick else 1.0)
    bound_ms = macs * 2 / (peak * 1e9) * 1000
    forward_ms = 1000 / throughput["batch_1"]
    flop_bound = {"matmul_gflops": round(peak, 1), "threads": threads, "bound_ms": round(bound_ms, 2),
                  "forward_ms_batch_1": round(forward_ms, 2),
                  "achieved_gflops_batch_32": round(throughput["batch_32"] * macs * 2 / 1e9, 1)}  # fmt: skip
    targets = {name: {"target_ms": target, "median_ms": latency[name]["median_ms"],
                      "met": latency[name]["median_ms"] <= target} for name, target in TARGET_MS.items()}  # fmt: skip
    table = [
        f"# Engine benchmark ({engine.spec.id}, {engine.spec.architecture})",
        "",
        "| input | median ms | p90 ms | p99 ms |",
        "|---|---|---|---|",
        *[f"| {k} | {v['median_ms']} | {v['p90_ms']} | {v['p99_ms']} |" for k, v in latency.items()],
        "",
        "| batch | images/s |",
        "|---|---|",
        *[f"| {k.split('_')[1]} | {v} |" for k, v in throughput.items()],
        "",
        f"Model forward: {macs / 1e6:.0f} M multiply-accumulates per image. This CPU multiplies float32 matrices "
        f"at {peak:.0f} GFLOP/s on {threads} thread(s), so the FLOP bound of one image is {bound_ms:.1f} ms; the "
        f"forward pass takes {forward_ms:.1f} ms at batch 1 ({bound_ms / forward_ms:.0%} of the bound) and reaches "
        f"{flop_bound['achieved_gflops_batch_32']} GFLOP/s at batch 32.",
        f"Peak RSS {peak_rss_mb:.0f} MB; cold start (new process → first result) "
        f"{cold['process_start_to_first_result_ms']} ms (model load in a warm process {cold['model_load_ms']} ms).",
        "Targets: " + "; ".join(f"{name} ≤ {t['target_ms']:g} ms: {t['median_ms']} ms, "
                                f"{'met' if t['met'] else 'missed (see profile.md)'}"
                                for name, t in targets.items()) + ".",
    ]  # fmt: skip
    if int8:
        table += [
            "",
            f"8-bit variant ({int8['model']}, same inputs, same process):",
            "",
            "| input | median ms | p90 ms | p99 ms | float median / int8 median |",
            "|---|---|---|---|---|",
            *[f"| {k} | {v['median_ms']} | {v['p90_ms']} | {v['p99_ms']} | "
              f"{latency[k]['median_ms'] / v['median_ms']:.2f}× |" for k, v in int8.items() if k != "model"],
        ]  # fmt: skip
    if args.quick:
        table[0] += " (quick run: noisy)"
    write_results("engine", {"quick": args.quick, "model": engine.spec.id, "latency": latency,
                             "throughput_images_per_s": throughput, "peak_rss_mb": round(peak_rss_mb, 1),
                             "cold_start": cold, "macs_per_image": macs, "flop_bound": flop_bound,
                             "targets": targets, "int8": int8}, table)  # fmt: skip


def count_macs(architecture: str, size: int) -> int:
    """Multiply-accumulates of one forward pass, counted with hooks on the PyTorch twin of the network."""
    import torch

    from skinscan.training.models import create_model

    model = create_model(architecture, pretrained=False).eval()
    total = 0

    def hook(module: torch.nn.Module, _inputs: object, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, torch.nn.Conv2d):
            kh, kw = module.kernel_size
            total += output.numel() * (module.in_channels // module.groups) * kh * kw
        elif isinstance(module, torch.nn.Linear):
            total += module.in_features * module.out_features

    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d | torch.nn.Linear):
            m.register_forward_hook(hook)
    with torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    return total


if __name__ == "__main__":
    main()
