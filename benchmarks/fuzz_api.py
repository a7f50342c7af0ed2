"""Fuzzing the REST API with schemathesis: a real `skinscan serve` on 127.0.0.1, tested from its own /openapi.json.

Checks: no 500 anywhere (not_a_server_error), every status documented (status_code_conformance), every content type
and body matching the schema (content_type_conformance, response_schema_conformance); the server log must hold no
traceback and /health must still answer 200 afterwards. File fields get real photos and hostile files besides random
bytes (schemathesis_hooks.py). negative_data_rejection is left out on purpose: a multipart form cannot tell a list
of one file from a single file, so schemathesis's "not an array" /predict/batch bodies are valid uploads.
Usage: python benchmarks/fuzz_api.py [--model PATH] [--examples 200] [--seed 0] [--quick]"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

import httpx

from common import BENCH, LOOPBACK, bench_parser, clean_env, free_port, running_server, skinscan_command, write_results

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
SERVER_FAILURE = re.compile(r"Traceback|Exception in ASGI application|Internal Server Error")


def statuses_seen(report_dir: Path) -> dict[str, dict[str, int]]:
    """Response statuses per operation, from schemathesis's NDJSON event stream."""
    seen: dict[str, Counter[str]] = defaultdict(Counter)
    for path in report_dir.glob("*.ndjson"):
        for line in path.read_text().splitlines():
            event = json.loads(line)
            recorder = event.get("ScenarioFinished", {}).get("recorder", {})
            for interaction in recorder.get("interactions", {}).values():
                response = interaction.get("response") or {}
                seen[recorder["label"]][str(response.get("status_code", "no response"))] += 1
    return {op: dict(sorted(c.items())) for op, c in sorted(seen.items())}


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--examples", type=int, default=200, help="most test cases per operation and phase")
    parser.add_argument("--seed", type=int, default=0, help="schemathesis's random seed")
    parser.add_argument(
        "--minutes",
        type=float,
        default=3.0,
        help="fuzz for this long (schemathesis repeats its fuzzing phase until the time is spent)",
    )
    args = parser.parse_args()
    examples, budget = (5, None) if args.quick else (args.examples, max(1, round(args.minutes * 60)))

    port = free_port()
    with tempfile.TemporaryDirectory(prefix="skinscan-fuzz-api-") as tmp:
        log, reports = Path(tmp) / "server.log", Path(tmp) / "reports"
        with running_server(skinscan_command(port, args.model), port, log=log):
            command = [
                sys.executable,
                "-c",
                "import sys; from schemathesis.cli import schemathesis; sys.exit(schemathesis())",
                "run",
                f"http://{LOOPBACK}:{port}/openapi.json",
                "--checks",
                CHECKS,
                "--max-examples",
                str(examples),
                "--seed",
                str(args.seed),
                "--workers",
                "1",
                "--request-timeout",
                "60",
                "--generation-database",
                "none",
                "--report",
                "ndjson",
                "--report-dir",
                str(reports),
                "--no-color",
            ]
            command += ["--max-time", str(budget)] if budget else []
            env = clean_env(
                SCHEMATHESIS_HOOKS="schemathesis_hooks",
                PYTHONPATH=os.pathsep.join(filter(None, [str(BENCH), os.environ.get("PYTHONPATH")])),
            )
            # run in the temporary folder: schemathesis keeps a crash cache in .schemathesis/ of its working directory
            run = subprocess.run(
                command, capture_output=True, text=True, env=env, cwd=tmp, timeout=(budget or 300) + 300
            )
            with httpx.Client(base_url=f"http://{LOOPBACK}:{port}", timeout=10) as client:
                healthy_after = client.get("/health").status_code == 200
        server_log = log.read_text(errors="replace")
        statuses = statuses_seen(reports)

    output = run.stdout + run.stderr
    generated = re.search(r"(\d+) generated", output)
    summary_line = next((line.strip("= ") for line in reversed(output.splitlines()) if " in " in line), "")
    server_errors = [line for line in server_log.splitlines() if SERVER_FAILURE.search(line)]
    server_500 = sum(per.get("500", 0) for per in statuses.values())
    passed = run.returncode == 0 and not server_errors and healthy_after and server_500 == 0
    failures = re.findall(r"^_+ (.+?) _+$", output, flags=re.MULTILINE)
    extent = f"{budget} s of fuzzing" if budget else f"up to {examples} per operation and phase"
    table = [
        "# API fuzzing (schemathesis)" + (" (quick run)" if args.quick else ""),
        "",
        f"`schemathesis run /openapi.json` on a real server: {generated.group(1) if generated else '?'} test cases, "
        f"{extent}, seed {args.seed}; checks {CHECKS.replace(',', ', ')}.",
        "",
        "| operation | responses seen (status: count) |",
        "|---|---|",
        *[f"| {op} | {', '.join(f'{s}: {n}' for s, n in per.items())} |" for op, per in statuses.items()],
        "",
        f"schemathesis: {summary_line or 'no summary'} (exit {run.returncode}); operations failing: "
        f"{', '.join(failures) if failures else 'none'}; 500s: {server_500}; tracebacks in the server log: "
        f"{len(server_errors)}; /health afterwards: {'200' if healthy_after else 'FAILED'}. "
        f"Result: {'PASS' if passed else 'FAIL'}.",
    ]
    write_results(
        "fuzz_api",
        {
            "quick": args.quick,
            "examples": examples,
            "seed": args.seed,
            "seconds": budget,
            "checks": CHECKS.split(","),
            "test_cases": int(generated.group(1)) if generated else None,
            "statuses": statuses,
            "schemathesis_exit": run.returncode,
            "failing_operations": failures,
            "server_errors": server_errors[:20],
            "healthy_after": healthy_after,
            "passed": passed,
            "schemathesis_output_tail": output[-4000:] if not passed else "",
        },
        table,
    )
    if not passed:
        print(output[-6000:], file=sys.stderr)
        sys.exit("API fuzzing found problems")


if __name__ == "__main__":
    main()
