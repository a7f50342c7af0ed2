"""Several server processes on one port, each accepting on a listening socket of its own (SO_REUSEPORT).

uvicorn's own --workers hands one listening socket to every process, and the process woken first accepts every
connection waiting: clients that connect together all land on one process while the others idle (16 clients
connecting at once: all 16 on one of 2 workers). With a socket per process the kernel spreads new connections
across the processes.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import sys
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from typing import Any

log = logging.getLogger("uvicorn.error")

APP_FACTORY = "skinscan.api.app:app_from_env"  # each process builds its own app (and engine) from SKINSCAN_*


def can_share_port() -> bool:
    """Whether this platform spreads connections over sockets bound to one port (Linux, not Windows or macOS)."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def listening_socket(host: str, port: int, *, share: bool = True) -> socket.socket:
    """A TCP socket bound to host:port (not yet listening); `share`: with SO_REUSEPORT, so others may bind it too.

    Raises:
        OSError: the address is taken, or not this machine's.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP: asyncio turns Nagle's algorithm off only on connections accepted from such a socket
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if share:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def reserve_port(host: str, port: int) -> socket.socket:
    """A socket bound to host:port with SO_REUSEPORT, never listening, held so that every worker process binds the
    same port (also when it was 0: its port is the one chosen).

    Raises:
        OSError: the address is taken (by anyone: a plain bind is tried first, so that a port in use is not shared
            with its owner), or not this machine's.
    """
    listening_socket(host, port, share=False).close()
    return listening_socket(host, port)


def run_workers(
    count: int, host: str, port: int, uvicorn_options: dict[str, Any], reserved: socket.socket | None = None
) -> int:
    """Run `count` uvicorn processes on host:port until SIGINT or SIGTERM; a process that dies is started again.

    Args:
        count: how many processes.
        host, port: where to listen (port 0: a free port, the same for all).
        uvicorn_options: further uvicorn.Config arguments.
        reserved: the port already reserved with `reserve_port` (closed here when the processes end).

    Returns:
        The exit status: 0 after a clean shutdown, 1 when the address cannot be bound.
    """
    if reserved is None:
        try:
            reserved = reserve_port(host, port)
        except OSError as exc:
            log.error("cannot listen on %s port %d: %s", host, port, exc)
            return 1
    port = reserved.getsockname()[1]
    context = multiprocessing.get_context("spawn")
    stopping = False

    def start() -> BaseProcess:
        process = context.Process(target=_serve_one, args=(host, port, uvicorn_options), daemon=False)
        process.start()
        return process

    def stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    processes = [start() for _ in range(count)]
    try:
        while not stopping:
            wait([p.sentinel for p in processes], timeout=0.5)
            for i, process in enumerate(processes):
                if not stopping and not process.is_alive():
                    log.warning("server process %s ended (exit code %s); starting another", process.pid,
                                process.exitcode)  # fmt: skip
                    if process.pid is not None:
                        from skinscan.api.monitor import process_ended

                        process_ended(process.pid)
                    processes[i] = start()
    finally:
        for process in processes:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)  # uvicorn finishes the requests in flight, then exits
        for process in processes:
            process.join()
        for s, handler in previous.items():
            signal.signal(s, handler)
        reserved.close()
    return 0


def _serve_one(host: str, port: int, uvicorn_options: dict[str, Any]) -> None:
    import uvicorn

    from skinscan.api.connections import install_accept_error_filter

    install_accept_error_filter()  # a spawned process starts without the parent's logging setup
    sock = listening_socket(host, port)
    config = uvicorn.Config(APP_FACTORY, factory=True, host=host, port=port, **uvicorn_options)
    uvicorn.Server(config).run(sockets=[sock])
