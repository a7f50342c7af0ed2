"""Server throughput and latency under concurrent clients: skinscan (`skinscan serve`, 1 and 2 uvicorn workers)
against the seed's design (benchmarks/seed_server.py), on the same real 224×224 JPEGs.

Each server runs in its own subprocess on 127.0.0.1; the load comes from loadgen.py in another process (async httpx,
1, 4 and 16 concurrent clients, a fixed time each after a warm-up). Every request must answer 200: any error fails
the run. Target (server issue): >= 150 requests/s at 16 clients on 2 cores.
Usage: python benchmarks/bench_server.py [--model PATH] [--seconds 15] [--quick]"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from common import (
    LOOPBACK,
    ROOT,
    bench_parser,
    free_port,
    run_loadgen,
    running_server,
    seed_command,
    skinscan_command,
    tree_rss_mb,
    upload_images,
    write_payloads,
    write_results,
)

TARGET_RPS = 150
CONCURRENCY = (1, 4, 16)


def measure(name: str, command_of: Any, manifest: Path, seconds: float, warmup: float, ready: str) -> dict[str, Any]:
    port = free_port()
    out: dict[str, Any] = {}
    with running_server(command_of(port), port, ready_path=ready) as process:
        for clients in CONCURRENCY:
            url = f"http://{LOOPBACK}:{port}/predict"
            summary = run_loadgen(url, manifest, concurrency=clients, seconds=seconds, warmup=warmup)
            summary["server_rss_mb"] = round(tree_rss_mb(process.pid), 1)
            out[str(clients)] = summary
            print(
                f"{name} c={clients}: {summary['rps']} req/s, median {summary['median_ms']} ms, "
                f"errors {summary['errors']}",
                flush=True,
            )
    return out


INT8_MODEL = ROOT / "models" / "int8"
INT8_NAME = "skinscan int8 model (models/int8), 2 workers"


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--seconds", type=float, default=15.0, help="measured seconds per concurrency level")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds before each level")
    parser.add_argument(
        "--int8", default=str(INT8_MODEL), help="the 8-bit variant, served with 2 workers too ('' leaves it out)"
    )
    args = parser.parse_args()
    seconds, warmup = (2.0, 0.5) if args.quick else (args.seconds, args.warmup)

    images = upload_images(8)
    with tempfile.TemporaryDirectory(prefix="skinscan-bench-") as tmp:
        manifest = write_payloads(Path(tmp), [(f"photo{i}.jpg", data, 200) for i, data in enumerate(images)])
        servers = {
            "skinscan, 1 worker": (lambda port: skinscan_command(port, args.model, 1), "/health"),
            "skinscan, 2 workers": (lambda port: skinscan_command(port, args.model, 2), "/health"),
        }
        if args.int8 and Path(args.int8).exists():
            servers[INT8_NAME] = (lambda port: skinscan_command(port, args.int8, 2), "/health")
        servers["seed (ThreadingHTTPServer, eager PyTorch)"] = (seed_command, "/")
        results = {
            name: measure(name, command, manifest, seconds, warmup, ready) for name, (command, ready) in servers.items()
        }

    seed = results["seed (ThreadingHTTPServer, eager PyTorch)"]
    ours = [name for name in results if name.startswith("skinscan")]
    best = max(ours, key=lambda n: results[n]["16"]["rps"])
    ratios = {
        name: {
            c: {
                "rps_ratio": _ratio(results[name][c]["rps"], seed[c]["rps"]),
                "median_latency_ratio": _ratio(seed[c]["median_ms"], results[name][c]["median_ms"]),
            }
            for c in seed
        }
        for name in ours
    }
    errors = sum(r["errors"] for per in results.values() for r in per.values())
    best_rps = results[best]["16"]["rps"]
    table = [
        "# Server benchmark" + (" (quick run: noisy)" if args.quick else ""),
        "",
        f"Real 224×224 JPEGs POSTed to /predict by {', '.join(map(str, CONCURRENCY))} concurrent clients "
        f"(async httpx in its own process), {seconds:g} s per level after {warmup:g} s warm-up.",
        "",
        "| server | clients | req/s | median ms | p90 ms | p99 ms | errors | server RSS MB |",
        "|---|---|---|---|---|---|---|---|",
        *[
            f"| {name} | {c} | {r['rps']} | {r['median_ms']} | {r['p90_ms']} | {r['p99_ms']} | {r['errors']} | "
            f"{r['server_rss_mb']} |"
            for name, per in results.items()
            for c, r in per.items()
        ],
        "",
        "| skinscan vs seed | clients | req/s ratio | median latency ratio (seed / skinscan) |",
        "|---|---|---|---|",
        *[
            f"| {name} | {c} | {r['rps_ratio']}× | {r['median_latency_ratio']}× |"
            for name, per in ratios.items()
            for c, r in per.items()
        ],
        "",
        f"Target ≥ {TARGET_RPS} req/s at 16 clients: best {best_rps} req/s ({best}) — "
        f"{'met' if best_rps >= TARGET_RPS else 'missed (see profile.md)'}. Errors: {errors}.",
    ]
    write_results(
        "server",
        {
            "quick": args.quick,
            "seconds": seconds,
            "warmup": warmup,
            "results": results,
            "ratios_vs_seed": ratios,
            "target_rps_16": TARGET_RPS,
            "errors": errors,
        },
        table,
    )
    if errors:
        sys.exit(f"{errors} requests failed")


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


if __name__ == "__main__":
    main()
