"""A bounded load generator: C concurrent clients, in this one process, POST uploads to a skinscan (or seed) server
on 127.0.0.1 for a fixed time or number of requests, and print a JSON summary on stdout.

Each payload carries the status it must get; any other status, and any transport error, is counted as an error.
Usage: python benchmarks/loadgen.py http://127.0.0.1:PORT/predict --payloads payloads.json --concurrency 16
       --seconds 10 [--warmup 2] [--max-requests N] [--window 10]
(the payload manifest is a JSON list of {"path", "filename", "expect"}, as common.write_payloads writes it)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np

MAX_ERROR_EXAMPLES = 10


BOUNDARY = "skinscan-loadgen-7d1f0c"
MULTIPART = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}


@dataclass
class Payload:
    filename: str
    data: bytes
    expect: int
    body: bytes = b""  # the whole multipart body, encoded once: the clients share the server's two cores

    def __post_init__(self) -> None:
        name = self.filename.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")
        head = (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        )
        self.body = head.encode() + self.data + f"\r\n--{BOUNDARY}--\r\n".encode()


@dataclass
class Tally:
    """What the clients saw while measuring."""

    started: float
    latencies_ms: list[float] = field(default_factory=list)
    finished_at: list[float] = field(default_factory=list)  # seconds since start, per request
    statuses: Counter[str] = field(default_factory=Counter)
    wrong_status: int = 0
    transport_errors: int = 0
    examples: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        if len(self.examples) < MAX_ERROR_EXAMPLES:
            self.examples.append(text)


def load_payloads(manifest: Path) -> list[Payload]:
    items = json.loads(manifest.read_text())
    return [Payload(i["filename"], Path(i["path"]).read_bytes(), int(i["expect"])) for i in items]


async def client_loop(
    client: httpx.AsyncClient,
    url: str,
    payloads: list[Payload],
    counter: list[int],
    deadline: float,
    max_requests: int,
    tally: Tally | None,
) -> None:
    while time.perf_counter() < deadline and counter[0] < max_requests:
        index = counter[0]
        counter[0] += 1
        payload = payloads[index % len(payloads)]
        start = time.perf_counter()
        try:
            response = await client.post(url, content=payload.body, headers=MULTIPART)
            await response.aread()
        except httpx.HTTPError as exc:
            if tally is not None:
                tally.transport_errors += 1
                tally.note(f"{payload.filename}: {type(exc).__name__}: {exc}")
            continue
        end = time.perf_counter()
        if tally is None:
            continue
        tally.latencies_ms.append((end - start) * 1000)
        tally.finished_at.append(end - tally.started)
        tally.statuses[str(response.status_code)] += 1
        if response.status_code != payload.expect:
            tally.wrong_status += 1
            tally.note(
                f"{payload.filename}: expected {payload.expect}, got {response.status_code} {response.text[:200]}"
            )


async def run_load(
    url: str, payloads: list[Payload], concurrency: int, seconds: float, warmup: float, max_requests: int
) -> Tally:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        if warmup > 0:
            end = time.perf_counter() + warmup
            await asyncio.gather(
                *(client_loop(client, url, payloads, [0], end, max_requests, None) for _ in range(concurrency))
            )
        tally = Tally(started=time.perf_counter())
        counter = [0]
        end = tally.started + seconds
        await asyncio.gather(
            *(client_loop(client, url, payloads, counter, end, max_requests, tally) for _ in range(concurrency))
        )
    return tally


def summarise(tally: Tally, elapsed: float, concurrency: int, window: float) -> dict[str, Any]:
    lat = np.asarray(tally.latencies_ms)
    done = np.asarray(tally.finished_at)
    windows = []
    for start in np.arange(0, max(elapsed, window), window):
        inside = (done >= start) & (done < start + window)
        span = min(window, elapsed - start)
        if span <= 0:
            continue
        windows.append(
            {
                "start_s": round(float(start), 1),
                "requests": int(inside.sum()),
                "rps": round(float(inside.sum()) / span, 1),
                "median_ms": round(float(np.median(lat[inside])), 2) if inside.any() else None,
            }
        )
    return {
        "concurrency": concurrency,
        "requests": int(lat.size),
        "seconds": round(elapsed, 2),
        "rps": round(lat.size / elapsed, 1) if elapsed > 0 else 0.0,
        "median_ms": round(float(np.median(lat)), 2) if lat.size else None,
        "p90_ms": round(float(np.percentile(lat, 90)), 2) if lat.size else None,
        "p99_ms": round(float(np.percentile(lat, 99)), 2) if lat.size else None,
        "max_ms": round(float(lat.max()), 2) if lat.size else None,
        "statuses": dict(sorted(tally.statuses.items())),
        "errors": tally.wrong_status + tally.transport_errors,
        "wrong_status": tally.wrong_status,
        "transport_errors": tally.transport_errors,
        "error_examples": tally.examples,
        "windows": windows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", help="the upload endpoint, on 127.0.0.1 only")
    parser.add_argument("--payloads", type=Path, required=True, help="the payload manifest (JSON)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to measure")
    parser.add_argument("--warmup", type=float, default=0.0, help="seconds of unmeasured load first")
    parser.add_argument("--max-requests", type=int, default=1_000_000, help="stop after this many measured requests")
    parser.add_argument("--window", type=float, default=10.0, help="seconds per window of the time series")
    args = parser.parse_args()
    if urlsplit(args.url).hostname != "127.0.0.1":
        sys.exit("loadgen only targets 127.0.0.1")
    if not 1 <= args.concurrency <= 256 or not 0 < args.seconds <= 3600 or not 0 <= args.warmup <= 600:
        sys.exit("concurrency must be 1..256, seconds 0..3600 and warmup 0..600")
    payloads = load_payloads(args.payloads)
    tally = asyncio.run(run_load(args.url, payloads, args.concurrency, args.seconds, args.warmup, args.max_requests))
    elapsed = time.perf_counter() - tally.started
    print(json.dumps(summarise(tally, elapsed, args.concurrency, args.window)))


if __name__ == "__main__":
    main()
