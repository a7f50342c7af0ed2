"""Run every benchmark, one subprocess after another, then collect their tables into benchmarks/results/SUMMARY.md.

`make bench` runs this. A full run takes about half an hour on 2 cores (the soak alone is 10 minutes); --quick runs
each script's seconds-long smoke settings instead (its numbers are noisy: don't commit them). A step that fails is
reported in the summary and makes the exit status non-zero; the others still run.
Usage: python benchmarks/run_all.py [--model PATH] [--quick] [--only engine,server,...] [--soak-minutes 10]"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass

from common import BENCH, RESULTS, bench_parser, machine


@dataclass(frozen=True)
class Step:
    name: str  # its results are RESULTS/NAME.json and NAME.md
    script: str
    takes_model: bool = True


STEPS = (
    Step("engine", "bench_engine.py"),
    Step("baseline", "bench_baseline.py"),
    Step("input_checks", "bench_input_checks.py"),
    Step("server", "bench_server.py"),
    Step("fuzz_decoding", "fuzz_decoding.py"),
    Step("fuzz_api", "fuzz_api.py"),
    Step("profile", "profile_hotspots.py"),
    Step("soak", "soak.py"),
    Step("connections", "bench_connections.py"),
    Step("train", "bench_train.py", takes_model=False),
)
STEP_TIMEOUT_S = 3600


def main() -> None:
    parser = bench_parser(__doc__, "every script's seconds-long smoke run")
    parser.add_argument(
        "--only", default="", help=f"comma-separated steps to run, of: {', '.join(s.name for s in STEPS)}"
    )
    parser.add_argument("--soak-minutes", type=float, default=10.0, help="length of the soak (default 10)")
    args = parser.parse_args()
    chosen = [s for s in STEPS if not args.only or s.name in args.only.split(",")]
    if args.only and len(chosen) != len(args.only.split(",")):
        sys.exit(f"unknown step in --only; choose from: {', '.join(s.name for s in STEPS)}")

    outcomes: list[tuple[Step, int, float]] = []
    for step in chosen:
        command = [sys.executable, str(BENCH / step.script)]
        command += ["--model", args.model] if args.model and step.takes_model else []
        command += ["--quick"] if args.quick else []
        command += ["--minutes", str(args.soak_minutes)] if step.name == "soak" and not args.quick else []
        for suffix in (".json", ".md"):  # no stale table in the summary if the step fails
            (RESULTS / f"{step.name}{suffix}").unlink(missing_ok=True)
        print(f"\n=== {step.script} {' '.join(command[2:])}", flush=True)
        started = time.perf_counter()
        timeout = STEP_TIMEOUT_S + (args.soak_minutes * 60 if step.name == "soak" else 0)
        try:
            code = subprocess.run(command, cwd=BENCH, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            code = -1
        outcomes.append((step, code, time.perf_counter() - started))
    write_summary(outcomes, args.quick)
    failed = [step.name for step, code, _ in outcomes if code != 0]
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


def write_summary(outcomes: list[tuple[Step, int, float]], quick: bool) -> None:
    info = machine()
    lines = [
        "# skinscan benchmarks" + (" (QUICK RUN: smoke settings, noisy numbers)" if quick else ""),
        "",
        f"{time.strftime('%Y-%m-%d %H:%M')}, {info['cpu']}, {info['cores']} cores, Python {info['python']}. "
        "Rerun with `make bench` (or `python benchmarks/run_all.py`); each script's JSON lies beside this file.",
        "",
        "| step | script | result | seconds |",
        "|---|---|---|---|",
        *[
            f"| {step.name} | `{step.script}` | {'ok' if code == 0 else f'FAILED ({code})'} | {seconds:.0f} |"
            for step, code, seconds in outcomes
        ],
    ]
    ran = {step.name for step, _, _ in outcomes}
    # steps left out with --only keep their last results, marked as such
    earlier = [s for s in STEPS if s.name not in ran and (RESULTS / f"{s.name}.md").is_file()]
    lines += [f"| {s.name} | `{s.script}` | earlier run (kept) | |" for s in earlier]
    for step in [s for s in STEPS if s.name in ran or s in earlier]:
        table = RESULTS / f"{step.name}.md"
        if table.is_file():
            # one level down, so the summary keeps a single top heading
            body = [("#" + line) if line.startswith("#") else line for line in table.read_text().splitlines()]
            lines += ["", *body]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "SUMMARY.md").write_text("\n".join(lines) + "\n")
    print(f"\nwrote {RESULTS / 'SUMMARY.md'}")


if __name__ == "__main__":
    main()
