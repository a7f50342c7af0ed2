"""Running the app on uvicorn: `skinscan serve`."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from skinscan import __version__
from skinscan.api.settings import Settings
from skinscan.runtime.engine import resolve_model_path

_PASSED_TO_WORKERS = (
    "model", "site", "max_upload_mb", "max_batch_files", "api_key", "cors_origins", "threads", "threshold",
    "header_timeout_s", "body_timeout_s", "read_timeout_s", "max_connections", "audit_log", "audit_log_max_mb",
    "audit_log_backups", "drift_window", "drift_min_count",
)  # fmt: skip


def settings_env(settings: Settings) -> dict[str, str]:
    """The SKINSCAN_* variables that give worker processes these settings."""
    env: dict[str, str] = {}
    for name in _PASSED_TO_WORKERS:
        value = getattr(settings, name)
        if value is None:
            continue
        if name == "api_key":
            value = value.get_secret_value()
        env[f"SKINSCAN_{name.upper()}"] = json.dumps(value) if isinstance(value, list) else str(value)
    return env


def serve(settings: Settings) -> int:
    """Serve until interrupted. A missing model fails here, before the server starts.

    Returns:
        The exit status: 0 after a clean shutdown, 1 when several workers cannot bind the address.
    """
    import uvicorn

    from skinscan.api.connections import (
        ConnectionLimits,
        accept_backlog,
        connection_cap,
        install_accept_error_filter,
        raise_fd_limit,
    )
    from skinscan.api.protocol import protocol_factory
    from skinscan.api.workers import APP_FACTORY, can_share_port, run_workers

    settings = settings.model_copy(update={"model": str(resolve_model_path(settings.model))})
    if settings.site is not None:
        from skinscan.runtime.site import load_site

        site = load_site(settings.site)  # a profile that cannot be read fails here, in one line, before serving
        settings = settings.model_copy(update={"site": str(Path(settings.site).resolve())})
        print(f"skinscan: site profile {site.name!r} ({site.active}, {site.images} images, fitted {site.created})",
              file=sys.stderr)  # fmt: skip
    if settings.audit_log is not None:
        from skinscan.api.monitor import audit_log_for

        audit_log_for(settings).check()  # an unwritable path fails here, in one line, before serving
        settings = settings.model_copy(update={"audit_log": str(Path(settings.audit_log).resolve())})
        print(f"skinscan: audit log: {settings.audit_log} (one line per image judged; no images, no names)",
              file=sys.stderr)  # fmt: skip
    sock = None
    if settings.workers == 1:
        # bound here, before anything says "serving": a port in use is one line and exit status 1, not uvicorn's
        # error after the banner
        from skinscan.api.workers import listening_socket

        try:
            sock = listening_socket(settings.host, settings.port, share=False)
        except OSError as exc:
            print(f"skinscan: error: cannot listen on {settings.host} port {settings.port}: {exc.strerror or exc} "
                  "(is another server running there? choose another with --port or SKINSCAN_PORT)",
                  file=sys.stderr)  # fmt: skip
            return 1
        settings = settings.model_copy(update={"port": sock.getsockname()[1]})
    print(f"skinscan {__version__}: serving {settings.model} at {settings.base_url}/ (Ctrl+C stops)", file=sys.stderr)
    fds = raise_fd_limit()  # before the workers start: they inherit it
    backlog = accept_backlog(fds)
    cap = connection_cap(settings.max_connections, fds, backlog)
    if cap < settings.max_connections:
        print(f"skinscan: at most {cap} connections per process, not {settings.max_connections}: the "
              f"file-descriptor limit is {fds} (raise it with ulimit -n)", file=sys.stderr)  # fmt: skip
    install_accept_error_filter()
    options: dict[str, Any] = {
        "http": protocol_factory(ConnectionLimits.from_settings(settings)), "backlog": backlog,
        "ws": "none", "lifespan": "on", "server_header": False,
    }  # fmt: skip
    if settings.workers > 1:
        if settings.threads is None:  # share the cores between the workers' model runs instead of oversubscribing
            settings = settings.model_copy(update={"threads": max(1, (os.cpu_count() or 1) // settings.workers)})
        # each worker process builds its own app (and engine) from the environment
        os.environ.update(settings_env(settings))
        from skinscan.api.monitor import shared_metrics

        with shared_metrics():  # /metrics, answered by any one process, counts all of them
            if can_share_port():
                return run_workers(settings.workers, settings.host, settings.port, options)
            uvicorn.run(APP_FACTORY, host=settings.host, port=settings.port, factory=True, workers=settings.workers,
                        **options)  # fmt: skip
        return 0
    from skinscan.api.app import create_app

    assert sock is not None
    config = uvicorn.Config(create_app(settings=settings), host=settings.host, port=settings.port, **options)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
    return 0
