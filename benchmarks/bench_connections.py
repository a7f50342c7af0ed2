"""Idle and slow connections against `skinscan serve` (issue 14): how long the server keeps them, and what they cost
everyone else.

The server runs in a subprocess on 127.0.0.1 under a 1,024 file-descriptor limit (soft and hard, as `ulimit -n 1024`
sets it), one process, the bundled model; the load part once more with a hard limit of 4,096 above that soft limit,
which `skinscan serve` raises. Two measurements, each on a fresh server:
1. Slowloris, default settings: 20 connections each that send nothing; half a request's headers, then nothing; a
   header byte a second; complete headers and part of the body, then nothing; the body a byte a second. For each
   group, how long until the server closes them (watched up to --watch seconds) and what it answers.
2. Load: GET /health and a 224×224 JPEG POSTed to /predict, a new connection per request, with 0, 1,000 and 1,100
   idle connections open; the server's log growth meanwhile. The read timeouts are set to 10 minutes for this
   part, so that the idle connections stay idle for as long as the measurement takes and only the connection
   cap acts on them.
Target (issue 14): with 1,000 idle connections open, /health answers within 100 ms (each of its requests), and a
normal /predict within twice its usual time (median against the median with none open).
--before REV also measures the server of git revision REV (a temporary worktree, on PYTHONPATH) for a before/after.
Usage: python benchmarks/bench_connections.py [--before REV] [--watch 150] [--model PATH] [--quick]"""

from __future__ import annotations

import http.client
import os
import resource
import selectors
import socket
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from common import (
    LOOPBACK,
    ROOT,
    bench_parser,
    free_port,
    percentiles,
    running_server,
    skinscan_command,
    upload_images,
    write_results,
)

FD_LIMIT = 1024  # the limit of the report
RAISED_HARD_LIMIT = 4096  # a variant with room above the soft limit, which `skinscan serve` raises itself
GROUP = 20  # connections per slowloris group
IDLE_COUNTS = (0, 1000, 1100)
HEALTH_REQUESTS, PREDICT_REQUESTS, ROUNDS = 30, 30, 3  # requests per idle count, over the rounds
AB_REQUESTS = 60  # requests of each kind to each server, alternating between before and after
REQUEST_TIMEOUT_S = 3.0
GIVE_UP_AFTER = 3  # failures in a row that end a series (a locked-out server would take minutes otherwise)
TARGET_HEALTH_MS, TARGET_PREDICT_RATIO = 100.0, 2.0
LONG_TIMEOUTS = {"SKINSCAN_HEADER_TIMEOUT_S": "600", "SKINSCAN_BODY_TIMEOUT_S": "600", "SKINSCAN_READ_TIMEOUT_S": "600"}
BOUNDARY = "bench"

# --- slowloris -----------------------------------------------------------------------------------------------

HALF_HEADERS = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
BODY_HEADERS = (
    f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
    "Content-Length: 100000\r\n\r\n"
    f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="photo.jpg"\r\n\r\n'
).encode()  # and the start of a well-formed form, so that the server goes on reading
# name: (sent on connecting, dripped a byte a second afterwards)
SLOW_GROUPS: dict[str, tuple[bytes, bool]] = {
    "idle (nothing sent)": (b"", False),
    "half-sent headers": (HALF_HEADERS, False),
    "headers a byte a second": (HALF_HEADERS, True),
    "half-sent body": (BODY_HEADERS + b"x" * 1000, False),
    "body a byte a second": (BODY_HEADERS, True),
}


def slowloris(port: int, watch_s: float) -> dict[str, Any]:
    """Open every group at once and watch until the server has closed them all or `watch_s` has passed."""
    selector = selectors.DefaultSelector()
    start = time.monotonic()
    conns: list[dict[str, Any]] = []
    for group, (first, drip) in SLOW_GROUPS.items():
        for _ in range(GROUP):
            sock = socket.create_connection((LOOPBACK, port), timeout=5)
            sock.sendall(first)
            sock.setblocking(False)
            conn = {"group": group, "sock": sock, "drip": drip, "closed_s": None, "answer": b""}
            selector.register(sock, selectors.EVENT_READ, conn)
            conns.append(conn)
    next_drip = start + 1
    while any(c["closed_s"] is None for c in conns) and time.monotonic() - start < watch_s:
        for key, _ in selector.select(timeout=max(0.0, next_drip - time.monotonic())):
            conn = key.data
            try:
                data = conn["sock"].recv(4096)
            except OSError:
                data = b""
            if data:
                conn["answer"] += data
            else:
                _close(conn, selector, time.monotonic() - start)
        if time.monotonic() >= next_drip:
            next_drip += 1
            for conn in conns:
                if conn["drip"] and conn["closed_s"] is None:
                    try:
                        conn["sock"].send(b"a")
                    except OSError:
                        _close(conn, selector, time.monotonic() - start)
    for conn in conns:
        if conn["closed_s"] is None:
            selector.unregister(conn["sock"])
            conn["sock"].close()
    selector.close()
    out: dict[str, Any] = {}
    for group in SLOW_GROUPS:
        members = [c for c in conns if c["group"] == group]
        closed = sorted(c["closed_s"] for c in members if c["closed_s"] is not None)
        answers = Counter(_status_of(c["answer"]) for c in members)
        out[group] = {
            "connections": len(members),
            "closed_by_server": len(closed),
            "median_s_open": round(closed[len(closed) // 2], 1) if len(closed) == len(members) else None,
            "longest_s_open": round(closed[-1], 1) if len(closed) == len(members) else None,
            "answers": dict(answers),
        }
    return {"watch_s": watch_s, "groups": out}


def _close(conn: dict[str, Any], selector: selectors.BaseSelector, at: float) -> None:
    if conn["closed_s"] is None:
        conn["closed_s"] = at
        selector.unregister(conn["sock"])
        conn["sock"].close()


def _status_of(answer: bytes) -> str:
    if not answer:
        return "none"
    parts = answer.split(b" ", 2)
    return parts[1].decode("latin-1") if len(parts) > 1 else "garbled"


# --- load under idle connections -----------------------------------------------------------------------------


@contextmanager
def idle_connections(port: int, count: int) -> Iterator[list[socket.socket]]:
    """`count` connections opened one after another as fast as they go (each waits for its handshake: a SYN the
    server's full accept queue drops is sent again after 1 s, which shows in the time to open them all)."""
    socks = []
    try:
        for _ in range(count):
            socks.append(socket.create_connection((LOOPBACK, port), timeout=30))
        yield socks
    finally:
        for sock in socks:
            sock.close()


def still_open(socks: list[socket.socket]) -> int:
    """How many of these connections the server has not closed (nothing to read, no EOF)."""
    count = 0
    for sock in socks:
        sock.setblocking(False)
        try:
            count += sock.recv(1, socket.MSG_PEEK) != b""  # data: a 408 or 503 on its way to EOF; still counted
        except BlockingIOError:
            count += 1
        except OSError:
            pass
    return count


def timed_request(port: int, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> Any:
    """(milliseconds, status), a new connection each; status None when it failed or timed out."""
    start = time.perf_counter()
    connection = http.client.HTTPConnection(LOOPBACK, port, timeout=REQUEST_TIMEOUT_S)
    try:
        connection.request(method, path, body=body or None, headers=headers or {})
        response = connection.getresponse()
        response.read()
        status: int | None = response.status
    except (OSError, http.client.HTTPException):
        status = None
    finally:
        connection.close()
    return (time.perf_counter() - start) * 1000, status


def series(port: int, count: int, method: str, path: str, body: bytes = b"", headers: Any = None) -> Any:
    """(milliseconds of the requests answered 200, how many were not)."""
    times: list[float] = []
    failed = in_a_row = 0
    for _ in range(count):
        ms, status = timed_request(port, method, path, body, headers)
        if status == 200:
            times.append(ms)
            in_a_row = 0
        else:
            failed += 1
            in_a_row += 1
            if in_a_row >= GIVE_UP_AFTER:
                failed += count - len(times) - failed
                break
    return times, failed


def summary(times: list[float], failed: int) -> dict[str, Any]:
    return {**percentiles(times), "max_ms": round(max(times), 2) if times else None, "failed": failed}


def form_body(photo: bytes) -> bytes:
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="photo.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    )
    return head.encode() + photo + f"\r\n--{BOUNDARY}--\r\n".encode()


def request_counts(quick: bool) -> tuple[int, int, int]:
    """Rounds, and /health and /predict requests per idle count per round."""
    return (1, 10, 5) if quick else (ROUNDS, HEALTH_REQUESTS // ROUNDS, PREDICT_REQUESTS // ROUNDS)


def load(port: int, log: Path, photo: bytes, quick: bool) -> dict[str, Any]:
    """Each idle count in turn, ROUNDS times over, so that a drift in the machine's load (other jobs share its
    cores) falls on every count alike."""
    body = form_body(photo)
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    rounds, health_n, predict_n = request_counts(quick)
    series(port, 5, "POST", "/predict", body, headers)  # warm-up
    seen: dict[int, dict[str, Any]] = {
        count: {"health": ([], 0), "predict": ([], 0), "held": [], "open_s": [], "log_bytes": 0, "tracebacks": 0}
        for count in IDLE_COUNTS
    }
    for _ in range(rounds):
        for count in IDLE_COUNTS:
            log_before = log.stat().st_size
            opening = time.perf_counter()
            with idle_connections(port, count) as socks:
                seen[count]["open_s"].append(time.perf_counter() - opening)
                time.sleep(1.0)  # let the server accept what it will
                for name, args in (("health", ("GET", "/health")), ("predict", ("POST", "/predict", body, headers))):
                    times, failed = series(port, health_n if name == "health" else predict_n, *args)
                    earlier = seen[count][name]
                    seen[count][name] = (earlier[0] + times, earlier[1] + failed)
                seen[count]["held"].append(still_open(socks))
            time.sleep(1.5)  # the server sees them close before the next count opens its own
            grown = log.read_bytes()[log_before:]
            seen[count]["log_bytes"] += len(grown)
            seen[count]["tracebacks"] += grown.count(b"Traceback")
    out: dict[str, Any] = {}
    for count, r in seen.items():
        out[str(count)] = {
            "health": summary(*r["health"]),
            "predict": summary(*r["predict"]),
            "idle_still_open": max(r["held"]),
            "seconds_to_open": round(max(r["open_s"]), 2),
            "log_bytes": r["log_bytes"],
            "log_tracebacks": r["tracebacks"],
        }
        print(f"  {count} idle: {out[str(count)]}", flush=True)
    return out


def interleaved(model: str, pythonpath: str, photo: bytes, quick: bool) -> dict[str, Any]:
    """/health and /predict on both servers at once, no idle connections, alternating request by request: the
    before/after difference with the machine's drifting load taken out."""
    body = form_body(photo)
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    n = 10 if quick else AB_REQUESTS  # as main's table says
    with tempfile.TemporaryDirectory(prefix="skinscan-bench-") as tmp, ExitStack() as stack:
        ports = {}
        for name, env in (("after", {}), ("before", {"PYTHONPATH": pythonpath})):
            port = free_port()
            command = skinscan_command(port, model)
            stack.enter_context(
                running_server(command, port, log=Path(tmp) / f"{name}.log", env=env, fd_limit=FD_LIMIT)
            )
            ports[name] = port
        times: dict[str, dict[str, list[float]]] = {name: {"health": [], "predict": []} for name in ports}
        for port in ports.values():
            series(port, 5, "POST", "/predict", body, headers)  # warm-up
        for i in range(n):
            for name in sorted(ports, reverse=i % 2 == 1):  # each goes first half the time
                times[name]["health"] += series(ports[name], 1, "GET", "/health")[0]
                times[name]["predict"] += series(ports[name], 1, "POST", "/predict", body, headers)[0]
    out = {name: {kind: percentiles(t) for kind, t in per.items()} for name, per in times.items()}
    print(f"  interleaved: {out}", flush=True)
    return out


# --- one server ----------------------------------------------------------------------------------------------


def measure(
    label: str, model: str, watch_s: float, photo: bytes, quick: bool, pythonpath: str | None, *,
    hard_limit: int = FD_LIMIT, with_slowloris: bool = True,
) -> Any:  # fmt: skip
    """Both measurements on `skinscan serve` (from `pythonpath`, else this tree), with a soft limit of FD_LIMIT."""
    base_env = {"PYTHONPATH": pythonpath} if pythonpath else {}
    limits = (FD_LIMIT, hard_limit)
    result: dict[str, Any] = {"fd_limit": {"soft": FD_LIMIT, "hard": hard_limit}}
    with tempfile.TemporaryDirectory(prefix="skinscan-bench-") as tmp:
        if with_slowloris:
            port, log = free_port(), Path(tmp) / "slowloris.log"
            with running_server(skinscan_command(port, model), port, log=log, env=base_env, fd_limit=limits):
                print(f"{label}: slowloris, up to {watch_s:g} s", flush=True)
                result["slowloris"] = slowloris(port, watch_s)
        port, log = free_port(), Path(tmp) / "load.log"
        env = {**base_env, **LONG_TIMEOUTS}
        with running_server(skinscan_command(port, model), port, log=log, env=env, fd_limit=limits):
            print(f"{label}: load under idle connections", flush=True)
            result["load"] = load(port, log, photo, quick)
            result["startup_log"] = [line for line in log.read_text("utf-8", "replace").splitlines()[:6]]
    return result


@contextmanager
def worktree(rev: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="skinscan-before-") as tmp:
        path = Path(tmp) / "tree"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), rev], check=True)
        try:
            yield path
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)], check=True)


def verdict(load_result: dict[str, Any]) -> dict[str, Any]:
    base, busy = load_result["0"], load_result["1000"]
    health_ok = busy["health"]["failed"] == 0 and (busy["health"]["max_ms"] or 1e9) <= TARGET_HEALTH_MS
    ratio = (
        round(busy["predict"]["median_ms"] / base["predict"]["median_ms"], 2)
        if busy["predict"]["n"] and base["predict"]["n"]
        else None
    )
    predict_ok = busy["predict"]["failed"] == 0 and ratio is not None and ratio <= TARGET_PREDICT_RATIO
    return {"health_met": health_ok, "predict_ratio": ratio, "predict_met": predict_ok}


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--before", default="", help="a git revision to measure too (e.g. the last commit)")
    parser.add_argument("--watch", type=float, default=150.0, help="seconds to watch the slow connections")
    args = parser.parse_args()
    watch_s = 20.0 if args.quick else args.watch
    model = args.model or str(ROOT / "models")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4096:  # this process holds every idle connection's other end
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    photo = upload_images(1)[0]
    load_start = [round(x, 2) for x in os.getloadavg()]  # other jobs on the machine show in every timing

    variants: dict[str, Any] = {}
    head = _short_rev("HEAD")
    before = _short_rev(args.before) if args.before else ""
    variants[f"after (this tree, on {head})"] = measure("after", model, watch_s, photo, args.quick, None)
    variants[f"after, hard limit {RAISED_HARD_LIMIT}"] = measure(
        f"after, hard limit {RAISED_HARD_LIMIT}", model, watch_s, photo, args.quick, None,
        hard_limit=RAISED_HARD_LIMIT, with_slowloris=False,
    )  # fmt: skip
    ab: dict[str, Any] = {}
    if before:
        with worktree(before) as tree:
            variants[f"before ({before})"] = measure("before", model, watch_s, photo, args.quick, str(tree / "src"))
            print("before and after, interleaved", flush=True)
            ab = interleaved(model, str(tree / "src"), photo, args.quick)
    for result in variants.values():
        result["verdict"] = verdict(result["load"])

    rounds, health_n, predict_n = request_counts(args.quick)
    ab_n = 10 if args.quick else AB_REQUESTS
    table = [
        "# Connections benchmark" + (" (quick run: noisy)" if args.quick else ""),
        "",
        f"`skinscan serve` (1 process) under a {FD_LIMIT} file-descriptor limit (soft and hard; one variant with a "
        f"hard limit of {RAISED_HARD_LIMIT}), on 127.0.0.1. Before: the commit without these changes, from a git "
        "worktree.",
        "",
        f"Slowloris, default settings: {GROUP} connections per group, watched up to {watch_s:g} s "
        "(— : some still open at the end).",
        "",
        "| server | group | closed by the server | median s open | longest s open | answers |",
        "|---|---|---|---|---|---|",
        *[
            f"| {name} | {group} | {g['closed_by_server']}/{g['connections']} | {_dash(g['median_s_open'])} | "
            f"{_dash(g['longest_s_open'])} | {', '.join(f'{k}: {v}' for k, v in sorted(g['answers'].items()))} |"
            for name, result in variants.items()
            for group, g in result.get("slowloris", {"groups": {}})["groups"].items()
        ],
        "",
        "Load: a new connection per request, with idle connections open (read timeouts raised to 10 min for this); "
        f"{rounds * health_n} /health and {rounds * predict_n} /predict per idle count, in {rounds} round(s) over "
        f"the counts; {REQUEST_TIMEOUT_S:g} s request timeout, a series stops after {GIVE_UP_AFTER} failures in a row. "
        f"Load average {load_start[0]:g} at the start, {os.getloadavg()[0]:.2f} at the end (2 cores shared with "
        "other jobs: the /predict times are noisy). The idle connections are opened one after another as fast as "
        "they go; the fixed server's listen backlog is sized to its descriptor limit (32 at 1,024, 128 at 4,096) "
        "so that a burst of accepts cannot run out of descriptors, and a connect past a full queue waits for the "
        "SYN's resend, 1 s.",
        "",
        "| server | idle open | /health median ms | /health max ms | /health failed | /predict median ms | "
        "/predict p90 ms | /predict failed | s to open them (slowest round) | idle still open at the end | "
        "log growth | tracebacks logged |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        *[
            f"| {name} | {count} | {_dash(r['health']['median_ms'])} | {_dash(r['health']['max_ms'])} | "
            f"{r['health']['failed']} | {_dash(r['predict']['median_ms'])} | {_dash(r['predict']['p90_ms'])} | "
            f"{r['predict']['failed']} | {r['seconds_to_open']} | {r['idle_still_open']} | {_size(r['log_bytes'])} | "
            f"{r['log_tracebacks']} |"
            for name, result in variants.items()
            for count, r in result["load"].items()
        ],
        *(
            [
                "",
                f"Before and after side by side, no idle connections: both servers up at once, {ab_n} requests "
                "of each kind to each, alternating (the machine's drifting load falls on both alike).",
                "",
                "| server | /health median ms | /health p90 ms | /predict median ms | /predict p90 ms |",
                "|---|---|---|---|---|",
                *[
                    f"| {name} | {r['health']['median_ms']} | {r['health']['p90_ms']} | {r['predict']['median_ms']} | "
                    f"{r['predict']['p90_ms']} |"
                    for name, r in ab.items()
                ],
            ]
            if ab
            else []
        ),
        "",
        *[
            f"Target, {name}: with 1,000 idle connections /health within {TARGET_HEALTH_MS:g} ms — "
            f"{'met' if v['health_met'] else 'missed'}; /predict median {_dash(v['predict_ratio'])}× its usual "
            f"(≤ {TARGET_PREDICT_RATIO:g}×) — {'met' if v['predict_met'] else 'missed'}."
            for name, result in variants.items()
            for v in [result["verdict"]]
        ],
    ]
    write_results(
        "connections",
        {
            "quick": args.quick,
            "fd_limit": FD_LIMIT,
            "watch_s": watch_s,
            "before": args.before,
            "load_average": {"start": load_start, "end": [round(x, 2) for x in os.getloadavg()]},
            "variants": variants,
            "interleaved": ab,
        },
        table,
    )


def _short_rev(rev: str) -> str:
    done = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", rev], capture_output=True, text=True)
    return done.stdout.strip() or rev


def _dash(value: Any) -> str:
    return "—" if value is None or value != value else str(value)


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB" if n >= 1e3 else f"{n} B"


if __name__ == "__main__":
    main()
