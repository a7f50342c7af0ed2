"""A real uvicorn server on a free loopback port, in a background thread, for end-to-end tests."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from skinscan.api.connections import ConnectionLimits
from skinscan.api.protocol import protocol_factory
from skinscan.api.settings import Settings


@contextmanager
def live_uvicorn(
    app: Any, limits: ConnectionLimits | None = None, port: int = 0
) -> Iterator[tuple[str, uvicorn.Server]]:
    """Serve `app` on 127.0.0.1 (on `port`, or a free one) until the block ends; yields its base URL (no trailing
    slash) and the server.

    The listening socket is bound here with proto 0, as uvicorn binds it for `skinscan serve --workers N`, and the
    server runs the HTTP protocol `skinscan serve` runs, under `limits` (default: the default settings').
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # a stopped server's closed connections linger in TIME_WAIT on its port; a server started in its place binds anyway
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    port = sock.getsockname()[1]
    # log_config=None: leave the test process's logging alone; ws="none": no websockets import
    http = protocol_factory(limits or ConnectionLimits())
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, http=http, ws="none", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}", server
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()


@contextmanager
def live_server(app: Any, limits: ConnectionLimits | None = None) -> Iterator[str]:
    """Serve `app` on 127.0.0.1 until the block ends; yields its base URL (no trailing slash)."""
    with live_uvicorn(app, limits) as (url, _):
        yield url


def plain_settings(**overrides: Any) -> Settings:
    """Settings that ignore whatever SKINSCAN_* variables the test run happens to have."""
    values: dict[str, Any] = {"api_key": None, "cors_origins": [], "max_upload_mb": 10, "model": None,
                              "audit_log": None, "site": None}  # fmt: skip
    return Settings(**{**values, **overrides})
