"""Running the app on uvicorn: `skinscan serve`."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from skinscan import __version__
from skinscan.api.settings import Settings
from skinscan.engine import resolve_model_path

_PASSED_TO_WORKERS = ("model", "max_upload_mb", "max_batch_files", "api_key", "cors_origins", "threads", "threshold")


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
        The exit status: 0 after a clean shutdown.
    """
    import uvicorn

    from skinscan.api.protocol import NoDelayProtocol

    settings = settings.model_copy(update={"model": str(resolve_model_path(settings.model))})
    print(f"skinscan {__version__}: serving {settings.model} at {settings.base_url}/ (Ctrl+C stops)", file=sys.stderr)
    if settings.workers > 1:
        if settings.threads is None:  # share the cores between the workers' model runs instead of oversubscribing
            settings = settings.model_copy(update={"threads": max(1, (os.cpu_count() or 1) // settings.workers)})
        # each worker process builds its own app (and engine) from the environment
        os.environ.update(settings_env(settings))
        app: Any = "skinscan.api.app:app_from_env"
    else:
        from skinscan.api.app import create_app

        app = create_app(settings=settings)
    uvicorn.run(
        app, host=settings.host, port=settings.port, factory=settings.workers > 1,
        workers=settings.workers if settings.workers > 1 else None, http=NoDelayProtocol, ws="none", lifespan="on",
        server_header=False,
    )  # fmt: skip
    return 0
