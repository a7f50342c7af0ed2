"""The FastAPI application: `create_app` wires settings, engine, routes, error handlers and the web client."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp

from skinscan import DISCLAIMER, __version__
from skinscan.api import device, model_files
from skinscan.api.deps import API_KEY_HEADER, EngineSlot
from skinscan.api.errors import install_error_handlers
from skinscan.api.middleware import HeadAsGetMiddleware, SecurityHeadersMiddleware
from skinscan.api.monitor import Monitor, RequestMetricsMiddleware, monitor_for
from skinscan.api.routes import DESCRIPTION, STATIC_DIR, router
from skinscan.api.settings import Settings
from skinscan.core.errors import SkinscanError
from skinscan.runtime.engine import Engine

log = logging.getLogger("skinscan.api")


class SkinscanAPI(FastAPI):
    """FastAPI with the security headers and HEAD outside everything else, Starlette's error middleware included:
    middleware added the usual way runs inside it, and would miss the 500s it sends."""

    def build_middleware_stack(self) -> ASGIApp:
        # the request metrics inside HEAD's, which hands on a copy of the scope: they read the route matched from it
        counted = RequestMetricsMiddleware(super().build_middleware_stack(), self.state.monitor)
        return SecurityHeadersMiddleware(HeadAsGetMiddleware(counted))


def create_app(engine: Engine | None = None, settings: Settings | None = None) -> FastAPI:
    """The skinscan API with its web client.

    Args:
        engine: the engine to serve with; None → loaded from `settings.model` when the app starts, off the event
            loop, while /health answers 503 "loading".
        settings: the service's settings; None → read from the SKINSCAN_* environment.
    """
    settings = settings if settings is not None else Settings()
    slot = EngineSlot(engine)
    monitor = monitor_for(settings)
    if engine is not None:
        _watch(monitor, engine)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with anyio.create_task_group() as tasks:
            if slot.engine is None:
                tasks.start_soon(_load_engine, slot, settings, monitor)
            yield
            tasks.cancel_scope.cancel()

    app = SkinscanAPI(
        title="skinscan", version=__version__, description=f"{DESCRIPTION}\n\n{DISCLAIMER}", lifespan=lifespan,
        docs_url=None, redoc_url=None,  # the default docs load swagger-ui from a CDN; /docs is served locally
    )  # fmt: skip
    app.state.settings = settings
    app.state.engine_slot = slot
    app.state.monitor = monitor
    install_error_handlers(app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
            allow_headers=[API_KEY_HEADER, "Content-Type"],
        )  # fmt: skip
    app.include_router(router)
    app.include_router(model_files.router)  # GET /model/files: the served model for `skinscan models pull`
    app.include_router(device.router)  # the on-device web app: its model, spec, wasm, service worker, manifest
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


async def _load_engine(slot: EngineSlot, settings: Settings, monitor: Monitor) -> None:
    try:
        await anyio.to_thread.run_sync(slot.load, settings)
    except Exception as exc:  # an error here would end the app's lifespan; /health reports it instead
        log.error("cannot load the model: %s", exc)
        return
    assert slot.engine is not None
    _watch(monitor, slot.engine)
    log.info("model %s %s loaded from %s", slot.engine.spec.id, slot.engine.spec.version, slot.engine.path)


def _watch(monitor: Monitor, engine: Engine) -> None:
    try:
        monitor.attach(engine)
    except SkinscanError as exc:  # the model still serves; drift stays "no_reference" and the log says why
        log.error("no drift monitoring: %s", exc)


def app_from_env() -> FastAPI:
    """The app as configured by SKINSCAN_* variables: the factory uvicorn's worker processes import."""
    return create_app(settings=Settings())
