"""How many connections a server process may hold and how long a client may take to send a request: the limits
`skinscan serve` gives its HTTP protocol (api/protocol.py), and the file-descriptor budget they must fit in."""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass

try:
    import resource
except ImportError:  # Windows: no RLIMIT_NOFILE to fit in
    resource = None  # type: ignore[assignment]

from skinscan.api.settings import Settings

log = logging.getLogger("uvicorn.error")

# File descriptors a server process needs besides its connections: the event loop, logs, the model's files,
# static files being sent, ONNX Runtime's threads.
FD_RESERVE = 64
# Connections accepted before the protocol can close any (asyncio accepts up to `backlog` connections per loop
# iteration, and a connection closed for a newcomer frees its descriptor a few iterations later): this many
# backlogs' worth is kept free as well, so that accept() never fails with EMFILE.
ACCEPT_BURSTS = 4
MAX_BACKLOG = 2048  # uvicorn's default
UNLIMITED_FDS = 1 << 20  # what "no limit" is taken to mean


@dataclass(frozen=True)
class ConnectionLimits:
    """Per-process limits on connections; the defaults are Settings' defaults."""

    header_timeout_s: float = 10.0  # from the connection opening, or its previous response, to the headers' end
    body_timeout_s: float = 15.0  # the longest pause while the body arrives (not counting our own flow control)
    read_timeout_s: float = 120.0  # from the connection opening, or its previous response, to the body's end
    max_connections: int = 1000  # open connections; lowered to fit the file-descriptor limit (`connection_cap`)

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectionLimits:
        return cls(settings.header_timeout_s, settings.body_timeout_s, settings.read_timeout_s,
                   settings.max_connections)  # fmt: skip


def fd_limit() -> int:
    """This process's soft limit on open file descriptors."""
    if resource is None:
        return UNLIMITED_FDS
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return UNLIMITED_FDS if soft == resource.RLIM_INFINITY else soft


def raise_fd_limit() -> int:
    """Raise the soft file-descriptor limit to the hard one (as Go programs and the JVM do at start).

    The soft limit is often 1,024 for compatibility with select(); asyncio uses epoll, and a limit that low caps the
    server at a few hundred connections. Returns the soft limit now in force.
    """
    if resource is None:
        return UNLIMITED_FDS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = UNLIMITED_FDS if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        # macOS refuses more than its kernel's own maximum: then keep what we had
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return fd_limit()


def accept_backlog(fds: int) -> int:
    """The listen backlog for a process with this many descriptors: small enough that the connections accepted in
    a burst still fit under the limit."""
    return max(16, min(MAX_BACKLOG, fds // 32))


def connection_cap(wanted: int, fds: int, backlog: int) -> int:
    """The most connections a process may hold: `wanted`, lowered so that they, the bursts of accepts the process
    cannot refuse in time, and everything else it has open stay under its `fds` limit."""
    return max(1, min(wanted, fds - FD_RESERVE - ACCEPT_BURSTS * backlog))


class RateLimitedWarning:
    """A warning logged at most once per `interval_s`, saying how many times it happened meanwhile: an attack that
    triggers it thousands of times a second must not fill the disk with the log."""

    def __init__(self, message: str, interval_s: float = 60.0) -> None:
        self.message, self.interval_s = message, interval_s
        self._last = -float("inf")
        self._count = 0

    def __call__(self) -> None:
        self._count += 1
        now = time.monotonic()
        if now - self._last >= self.interval_s:
            more = f" ({self._count} times since the last warning)" if self._count > 1 else ""
            log.warning("%s%s", self.message, more)
            self._last, self._count = now, 0


class AcceptErrorFilter(logging.Filter):
    """Turns asyncio's "socket.accept() out of system resource" errors, each with a traceback and logged once per
    connection waiting (thousands a second once the descriptors run out), into a rate-limited one-line warning.

    A last resort: the connection cap is meant to keep accept() from ever running out of descriptors.
    """

    def __init__(self) -> None:
        super().__init__()
        self._warn = RateLimitedWarning("out of file descriptors: new connections wait (the connection cap is too "
                                        "high for the process's file-descriptor limit)")  # fmt: skip

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage().startswith("socket.accept() out of system resource"):
            self._warn()
            return False
        return True


def install_accept_error_filter() -> None:
    """Install `AcceptErrorFilter` on asyncio's logger, once per process."""
    logger = logging.getLogger("asyncio")
    if not any(isinstance(f, AcceptErrorFilter) for f in logger.filters):
        logger.addFilter(AcceptErrorFilter())
