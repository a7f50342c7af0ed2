"""Running the app on uvicorn: `skinscan serve`."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from skinscan import __version__
from skinscan.api.settings import Settings
from skinscan.core.errors import SkinscanError
from skinscan.runtime.defaults import default_workers, threads_per_worker, usable_cores
from skinscan.runtime.engine import bundled_model_choice, resolve_model_path

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
    """Serve until interrupted. A missing model or a port in use fails here, in one line, before the banner.

    With no `workers` set, one server process per usable core (runtime/defaults.py), each running its model on
    cores // workers ONNX Runtime threads, so that the processes' model runs never fight over a core.

    Returns:
        The exit status: 0 after a clean shutdown, 1 when the address cannot be bound.
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
    from skinscan.api.workers import APP_FACTORY, can_share_port, listening_socket, reserve_port, run_workers

    named = settings.model is not None
    model = resolve_model_path(settings.model)
    settings = settings.model_copy(update={"model": str(model)})
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
    # one process per core where the kernel spreads connections over them (workers.py); elsewhere uvicorn's own
    # workers would take every connection in one process, so one process serves
    workers = settings.workers or (default_workers() if can_share_port() else 1)
    if settings.threads is None:  # share the cores between the workers' model runs instead of oversubscribing
        settings = settings.model_copy(update={"threads": threads_per_worker(workers)})
    # bound here, before anything says "serving": a port in use is one line and exit status 1, not uvicorn's error
    # after the banner; and the banner names the port really chosen when it was 0
    sock = None
    shared = workers > 1 and can_share_port()
    try:
        if shared:
            sock = reserve_port(settings.host, settings.port)
        elif workers == 1:
            sock = listening_socket(settings.host, settings.port, share=False)
    except OSError as exc:
        print(f"skinscan: error: cannot listen on {settings.host} port {settings.port}: {exc.strerror or exc} "
              "(is another server running there? choose another with --port or SKINSCAN_PORT)",
              file=sys.stderr)  # fmt: skip
        return 1
    if sock is not None:
        settings = settings.model_copy(update={"port": sock.getsockname()[1]})
    print(f"skinscan {__version__}: serving {settings.model} at {settings.base_url}/ (Ctrl+C stops)", file=sys.stderr)
    print(f"skinscan: model: {model_reason(model, named=named)}", file=sys.stderr)
    print(f"skinscan: {workers} server process{'es' if workers > 1 else ''} ({usable_cores()} usable cores), "
          f"{settings.threads} model thread{'s' if settings.threads != 1 else ''} each", file=sys.stderr)  # fmt: skip
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
    if workers > 1:
        # each worker process builds its own app (and engine) from the environment
        os.environ.update(settings_env(settings))
        from skinscan.api.monitor import shared_metrics

        with shared_metrics():  # /metrics, answered by any one process, counts all of them
            if shared:
                return run_workers(workers, settings.host, settings.port, options, reserved=sock)
            uvicorn.run(APP_FACTORY, host=settings.host, port=settings.port, factory=True, workers=workers,
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


def model_reason(model: Path, *, named: bool) -> str:
    """Why this model serves: the user named it, or it is the default chosen for this machine (runtime/defaults.py)."""
    if named:
        return "the one named with --model or SKINSCAN_MODEL"
    try:
        choice = bundled_model_choice()
    except SkinscanError:
        choice = None
    if choice is not None and model == choice.path:
        return choice.reason
    return "the active model of the model store (`skinscan models use`)"
