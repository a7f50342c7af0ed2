"""Engine speed and memory: latency per input kind (with and without heatmap), batch throughput, peak RSS,
cold start. Usage: python benchmarks/bench_engine.py [--model PATH] [--repeat N]"""

from __future__ import annotations

import argparse
import io
import resource
import subprocess
import sys
import time

import numpy as np
from PIL import Image

from common import percentiles, real_images, time_calls, write_results


def sample_inputs() -> dict[str, bytes]:
    paths = real_images(1)
    base = Image.open(paths[0]).convert("RGB") if paths else Image.new("RGB", (224, 224), (200, 150, 130))

    def encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
        buf = io.BytesIO()
        img.save(buf, format=fmt, **kw)
        return buf.getvalue()

    big = base.resize((4000, 3000), Image.Resampling.BICUBIC)  # a 12-megapixel phone photo
    return {
        "jpeg_224": encode(base.resize((224, 224)), "JPEG", quality=95),
        "jpeg_12mp": encode(big, "JPEG", quality=90),
        "png_600x450": encode(base.resize((600, 450)), "PNG"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=None)
    parser.add_argument("--repeat", type=int, default=60)
    args = parser.parse_args()

    from skinscan.engine import Engine

    start = time.perf_counter()
    engine = Engine(args.model)
    load_ms = (time.perf_counter() - start) * 1000
    inputs = sample_inputs()
    latency: dict[str, dict[str, float]] = {}
    for name, data in inputs.items():
        repeat = args.repeat if "12mp" not in name else max(10, args.repeat // 3)
        for heat in (False, True):
            samples = time_calls(lambda d=data, h=heat: engine.predict(d, heatmap=h), repeat)
            latency[f"{name}{' +heatmap' if heat else ''}"] = percentiles(samples)
    size = engine.spec.input_size
    throughput = {}
    for batch in (1, 8, 32):
        x = np.random.default_rng(0).normal(size=(batch, 3, size, size)).astype(np.float32)
        samples = time_calls(lambda x=x: engine.run(x), max(5, args.repeat // batch))
        throughput[f"batch_{batch}"] = round(batch / (np.median(samples) / 1000), 1)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    code = (
        "import time; t=time.perf_counter(); from skinscan.engine import Engine; import sys; "
        f"e=Engine({args.model!r}); e.predict(open(sys.argv[1],'rb').read()); print((time.perf_counter()-t)*1000)"
    )
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".jpg") as f:
        f.write(inputs["jpeg_224"])
        f.flush()
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", code, f.name], capture_output=True, text=True, check=True)
        cold_process_ms = (time.perf_counter() - t0) * 1000
    cold = {"process_start_to_first_result_ms": round(cold_process_ms, 1),
            "import_load_predict_in_process_ms": round(float(out.stdout.strip()), 1),
            "model_load_ms": round(load_ms, 1)}  # fmt: skip
    # FLOP bound: multiply-accumulates of one forward pass, counted from the graph's conv and matmul shapes
    macs = count_macs(str(engine.path), size)
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
        f"Model forward: {macs / 1e6:.0f} M multiply-accumulates per image; at batch 32 that is "
        f"{throughput['batch_32'] * macs * 2 / 1e9:.1f} GFLOP/s achieved.",
        f"Peak RSS {peak_rss_mb:.0f} MB; cold start (new process → first result) "
        f"{cold['process_start_to_first_result_ms']} ms.",
    ]
    write_results("engine", {"model": engine.spec.id, "latency": latency, "throughput_images_per_s": throughput,
                             "peak_rss_mb": round(peak_rss_mb, 1), "cold_start": cold, "macs_per_image": macs},
                  table)  # fmt: skip


def count_macs(path: str, size: int) -> int:
    """Multiply-accumulates of Conv and Gemm/MatMul nodes, from shapes inferred by ONNX."""
    import onnx
    from onnx import shape_inference

    model = shape_inference.infer_shapes(onnx.load(path))
    shapes = {}
    for v in [*model.graph.value_info, *model.graph.output, *model.graph.input]:
        dims = [d.dim_value if d.dim_value else 1 for d in v.type.tensor_type.shape.dim]
        shapes[v.name] = dims
    inits = {i.name: list(i.dims) for i in model.graph.initializer}
    total = 0
    for node in model.graph.node:
        if node.op_type == "Conv" and node.output[0] in shapes:
            w = inits.get(node.input[1])
            out = shapes[node.output[0]]
            if w:
                total += int(np.prod(out[1:]) * np.prod(w[1:]))
        elif node.op_type in ("Gemm", "MatMul"):
            w = inits.get(node.input[1])
            if w and len(w) == 2:
                total += w[0] * w[1]
    return total


if __name__ == "__main__":
    main()
