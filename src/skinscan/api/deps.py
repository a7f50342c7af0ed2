"""What the routes get injected: the settings, the engine once it is loaded, and the API-key check."""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from skinscan.api.monitor import Monitor
from skinscan.api.settings import Settings
from skinscan.runtime.engine import Engine
from skinscan.runtime.published import PublishedModel, publish

API_KEY_HEADER = "X-API-Key"


@dataclass
class EngineSlot:
    """The engine the app serves with, and where its loading stands: "loading", "ready" or "failed"."""

    engine: Engine | None = None
    error: str | None = None
    published: PublishedModel | None = field(default=None, repr=False)  # its files, hashed once (model_files.py)
    _status: str = field(default="loading", repr=False)

    def __post_init__(self) -> None:
        if self.engine is not None:
            self.published = _publish(self.engine)
            self._status = "ready"

    @property
    def status(self) -> str:
        return self._status

    def load(self, settings: Settings) -> None:
        """Load the model named by the settings (blocking: run it off the event loop)."""
        try:
            engine = Engine(
                settings.model, threads=settings.threads, threshold=settings.threshold, spin=False, site=settings.site
            )
        except Exception as exc:  # whatever the cause, the server stays up and /health says why
            self.error, self._status = str(exc) or type(exc).__name__, "failed"
            raise
        self.published = _publish(engine)  # before the engine: a request that finds the engine finds its files
        self.engine, self._status = engine, "ready"


def _publish(engine: Engine) -> PublishedModel | None:
    """The engine's files with their sha256, for GET /model/files; None (and that route answers 503) if unreadable."""
    try:
        return publish(engine.path, engine.spec)
    except OSError:
        return None


# The dependencies are coroutines, though none of them waits for anything: FastAPI runs a plain function dependency
# in its threadpool, a thread hop per dependency per request.


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_slot(request: Request) -> EngineSlot:
    slot: EngineSlot = request.app.state.engine_slot
    return slot


async def get_monitor(request: Request) -> Monitor:
    monitor: Monitor = request.app.state.monitor
    return monitor


async def get_engine(slot: Annotated[EngineSlot, Depends(get_slot)]) -> Engine:
    """The loaded engine, or 503 while it is still loading (or failed to load)."""
    if slot.engine is None:
        detail = "the model is still loading; try again in a moment" if slot.status == "loading" else slot.error
        raise HTTPException(503, detail=detail or "the model is not available")
    return slot.engine


async def require_api_key(request: Request, settings: Annotated[Settings, Depends(get_settings)]) -> None:
    """`check_api_key` as a dependency."""
    check_api_key(request, settings)


def check_api_key(request: Request, settings: Settings) -> None:
    """401 unless the request carries the configured API key (a no-op when none is configured)."""
    if settings.api_key is None:
        return
    # Starlette decodes header bytes as latin-1, so re-encoding gives back the bytes sent; a client sends a
    # non-ASCII key as UTF-8, which is what the setting becomes
    given = request.headers.get(API_KEY_HEADER, "").encode("latin-1")
    expected = settings.api_key.get_secret_value().encode("utf-8")
    if not hmac.compare_digest(given, expected):
        raise HTTPException(401, detail=f"missing or wrong API key: send it in the {API_KEY_HEADER} header")
