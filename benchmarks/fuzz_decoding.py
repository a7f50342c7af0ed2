"""Fuzzing the engine's image decoding at length: the strategies of tests/test_fuzz_decoding.py (mutated real images,
random bytes, random bytes behind known magic numbers) with many more examples and a fresh random seed.

Every input must end in a prediction or one of skinscan's InvalidImageError family within 10 s; anything else (another
exception, a crash, a hang) fails the run, and hypothesis prints the shrunk input that does it.
Usage: python benchmarks/fuzz_decoding.py [--model PATH] [--examples 20000] [--seed N] [--quick]"""

from __future__ import annotations

import random
import sys
import time
import traceback
from collections import Counter

from hypothesis import HealthCheck, given, seed, settings

from common import bench_parser, percentiles, write_results
from test_fuzz_decoding import fuzz_inputs, judge


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--examples", type=int, default=20_000, help="inputs to try")
    parser.add_argument("--seed", type=int, default=None, help="hypothesis's seed (default: a fresh one, reported)")
    args = parser.parse_args()
    examples = 60 if args.quick else args.examples
    run_seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)

    from skinscan.runtime.engine import Engine

    engine = Engine(args.model)
    outcomes: Counter[str] = Counter()
    times_ms: list[float] = []

    @seed(run_seed)
    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(data=fuzz_inputs())
    def property_holds(data: bytes) -> None:
        start = time.perf_counter()
        outcome = judge(engine, data, heatmap=True)
        times_ms.append((time.perf_counter() - start) * 1000)
        outcomes[outcome] += 1

    started = time.perf_counter()
    failure = None
    try:
        property_holds()
    except Exception:
        failure = traceback.format_exc(limit=8)
    elapsed = time.perf_counter() - started
    timing = percentiles(times_ms)
    table = [
        "# Decoding fuzz (hypothesis)" + (" (quick run)" if args.quick else ""),
        "",
        f"{sum(outcomes.values())} inputs (mutated real images, random bytes, random bytes behind magic numbers) "
        f"through `Engine.predict(..., heatmap=True)`, seed {run_seed}, {elapsed:.0f} s.",
        "",
        "| outcome | count |",
        "|---|---|",
        *[f"| {name} | {n} |" for name, n in outcomes.most_common()],
        "",
        f"Time per input: median {timing['median_ms']} ms, p99 {timing['p99_ms']} ms, slowest "
        f"{max(times_ms, default=0):.0f} ms. Result: {'PASS' if failure is None else 'FAIL'}.",
    ]
    if failure:
        table += ["", "```", failure.strip(), "```"]
    write_results(
        "fuzz_decoding",
        {
            "quick": args.quick,
            "examples": examples,
            "seed": run_seed,
            "outcomes": dict(outcomes),
            "time_per_input": timing,
            "slowest_ms": round(max(times_ms, default=0), 1),
            "seconds": round(elapsed, 1),
            "passed": failure is None,
            "failure": failure,
        },
        table,
    )
    if failure:
        sys.exit("decoding fuzz found an input that breaks the engine")


if __name__ == "__main__":
    main()
