"""The API's endpoints: information, health, the model card, single and batch prediction, and the pages."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from skinscan import DISCLAIMER, __version__
from skinscan.api.deps import (
    EngineSlot,
    check_api_key,
    get_engine,
    get_monitor,
    get_settings,
    get_slot,
    require_api_key,
)
from skinscan.api.errors import describe_error
from skinscan.api.monitor import Monitor
from skinscan.api.multipart import Upload, UploadLimits, read_uploads
from skinscan.api.schemas import BatchItem, BatchOut, EndpointOut, ErrorOut, HealthOut, InfoOut, ModelRef, PredictionOut
from skinscan.api.settings import Settings
from skinscan.core.errors import SkinscanError
from skinscan.runtime.engine import Engine
from skinscan.runtime.result import Prediction

STATIC_DIR = Path(__file__).with_name("static")
DESCRIPTION = "Skin-lesion screening: judges a dermoscopic or close-up photo of a skin lesion benign or malignant."

EngineDep = Annotated[Engine, Depends(get_engine)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
SlotDep = Annotated[EngineSlot, Depends(get_slot)]
MonitorDep = Annotated[Monitor, Depends(get_monitor)]
HeatmapQuery = Annotated[bool, Query(description="add the heatmap overlay as a base64 PNG")]

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": text}
    for code, text in {
        400: "not an image, corrupt, or not a multipart/form-data body",
        401: "missing or wrong X-API-Key (only when the server has an API key)",
        413: "the upload is over the size limit",
        415: "a recognisable file of a kind that is not accepted (SVG, PDF, ZIP, text, ...)",
        422: "the form has no file in the expected field",
        503: "the model is still loading",
    }.items()
}


def _upload_body(field: str, *, many: bool) -> dict[str, Any]:
    """The OpenAPI request body of an upload route (the routes read their bodies themselves, see multipart.py)."""
    binary: dict[str, Any] = {"type": "string", "format": "binary"}
    schema = {"type": "array", "items": binary} if many else binary
    body = {"type": "object", "required": [field], "properties": {field: schema}}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": body}}}}


router = APIRouter()
protected = [Depends(require_api_key)]


def prefers_html(accept: str) -> bool:
    """Whether an Accept header ranks text/html above JSON (as a browser's does, and curl's */* does not)."""
    html = as_json = 0.0
    for item in accept.split(","):
        media, _, params = item.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        media = media.strip().lower()
        if media in ("text/html", "application/xhtml+xml", "text/*"):
            html = max(html, quality)
        if media in ("application/json", "application/*"):
            as_json = max(as_json, quality)
        if media == "*/*":
            as_json = max(as_json, quality)  # a wildcard client (curl, httpx, scripts) gets the JSON
    return html > as_json


def _model_ref(engine: Engine) -> ModelRef:
    return ModelRef(id=engine.spec.id, version=engine.spec.version)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _elapsed_ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 1)


@router.get(
    "/",
    response_model=InfoOut,
    summary="API information (a browser gets the web client)",
    responses={200: {"content": {"text/html": {}}}, 401: _ERRORS[401]},
)
async def index(request: Request, settings: SettingsDep, slot: SlotDep) -> Any:
    if prefers_html(request.headers.get("accept", "")):
        return FileResponse(STATIC_DIR / "index.html")  # its CSP: api/middleware.py
    check_api_key(request, settings)
    model = None
    if slot.engine is not None:
        spec = slot.engine.spec
        model = {"id": spec.id, "version": spec.version, "architecture": spec.architecture,
                 "threshold": slot.engine.threshold, "metrics": spec.metrics}  # fmt: skip
    # read back from the OpenAPI document (generated once, then cached by FastAPI) so the list never drifts
    endpoints = [
        EndpointOut(method=method.upper(), path=path, summary=operation.get("summary", ""))
        for path, operations in request.app.openapi()["paths"].items()
        for method, operation in operations.items()
    ]
    endpoints.append(EndpointOut(method="GET", path="/docs", summary="interactive API documentation"))
    return InfoOut(
        name="skinscan",
        version=__version__,
        description=DESCRIPTION,
        model=model,
        endpoints=endpoints,
        docs="/docs",
        disclaimer=DISCLAIMER,
    )


@router.get(
    "/health",
    response_model=HealthOut,
    summary="whether the server is alive and the model loaded",
    responses={503: {"model": HealthOut, "description": "the model is loading or failed to load"}},
)
async def health(slot: SlotDep, monitor: MonitorDep) -> Any:
    engine = slot.engine
    drift = monitor.drift_state() if engine is not None else None
    body = HealthOut(
        drift=drift,
        warnings=list(drift["warnings"]) if drift else [],
        status="ok" if engine is not None else "failed" if slot.status == "failed" else "loading",
        model_loaded=engine is not None,
        model=_model_ref(engine) if engine is not None else None,
        detail=slot.error,
        version=__version__,
    )
    if engine is None:
        return JSONResponse(body.model_dump(), status_code=503)
    return body


@router.get("/model", dependencies=protected, summary="the model card", responses={401: _ERRORS[401]})
async def model_card(engine: EngineDep) -> dict[str, Any]:
    card = dict(engine.info)
    card.pop("path", None)  # where the server keeps its files is none of the client's business
    return card


@router.get(
    "/metrics",
    dependencies=protected,
    summary="Prometheus metrics: requests, predictions, refusals, latency, model and site, drift",
    responses={200: {"content": {"text/plain": {}}}, 401: _ERRORS[401]},
    response_class=Response,
)
async def metrics(monitor: MonitorDep) -> Response:
    return Response(monitor.render(), media_type=CONTENT_TYPE_LATEST)


@router.post(
    "/predict",
    dependencies=protected,
    response_model=PredictionOut,
    summary='judge one image (form field "file")',
    responses=_ERRORS,
    openapi_extra=_upload_body("file", many=False),
)
async def predict(
    request: Request, engine: EngineDep, settings: SettingsDep, monitor: MonitorDep, heatmap: HeatmapQuery = False
) -> Any:
    start = time.perf_counter()
    uploads, others = await read_uploads(request, "file", UploadLimits.for_files(settings.max_upload_bytes, 1))
    if not uploads:
        raise HTTPException(422, detail=_missing_field_text("file", others))
    request_id = getattr(request.state, "request_id", None)
    try:
        result = await anyio.to_thread.run_sync(partial(engine.predict, uploads[0].data, heatmap=heatmap))
    except SkinscanError as exc:
        status, error = describe_error(exc)
        monitor.record(exc, engine, request_id=request_id, route="/predict", latency_ms=_elapsed_ms(start),
                       http_status=status, error=error)  # fmt: skip
        raise
    monitor.record(result, engine, request_id=request_id, route="/predict", latency_ms=_elapsed_ms(start))
    return PredictionOut(**result.to_dict(include_heatmap=heatmap), model=_model_ref(engine), time=_now(),
                         latency_ms=_elapsed_ms(start))  # fmt: skip


@router.post(
    "/predict/batch",
    dependencies=protected,
    response_model=BatchOut,
    summary='judge several images (form field "files"), one result per file in order',
    responses=_ERRORS,
    openapi_extra=_upload_body("files", many=True),
)
async def predict_batch(
    request: Request, engine: EngineDep, settings: SettingsDep, monitor: MonitorDep, heatmap: HeatmapQuery = False
) -> Any:
    start = time.perf_counter()
    limits = UploadLimits.for_files(settings.max_upload_bytes, settings.max_batch_files)
    uploads, others = await read_uploads(request, "files", limits, stop_on_too_large=False)
    if not uploads:
        raise HTTPException(422, detail=_missing_field_text("files", others))
    readable = [u.data for u in uploads if not u.too_large]
    judged = iter(await anyio.to_thread.run_sync(partial(engine.predict_batch, readable, heatmap=heatmap)))
    outcomes = [None if upload.too_large else next(judged) for upload in uploads]
    items = [_batch_item(i, upload, engine, settings, outcomes[i], heatmap) for i, upload in enumerate(uploads)]
    request_id, latency = getattr(request.state, "request_id", None), _elapsed_ms(start)
    for item, outcome in zip(items, outcomes, strict=True):
        monitor.record(outcome if outcome is not None else "too_large", engine, request_id=request_id,
                       route="/predict/batch", latency_ms=latency, index=item.index,
                       http_status=item.http_status or 200, error=item.error)  # fmt: skip
    return BatchOut(count=len(items), results=items, model=_model_ref(engine), time=_now(),
                    latency_ms=_elapsed_ms(start), disclaimer=DISCLAIMER)  # fmt: skip


@router.get("/docs", include_in_schema=False)
async def docs() -> Response:
    return FileResponse(STATIC_DIR / "docs.html")


def _batch_item(
    index: int,
    upload: Upload,
    engine: Engine,
    settings: Settings,
    outcome: Prediction | SkinscanError | None,
    heatmap: bool,
) -> BatchItem:
    if isinstance(outcome, Prediction):
        return BatchItem(index=index, filename=upload.filename, **outcome.to_dict(include_heatmap=heatmap))
    if outcome is None:  # dropped while reading: over the per-file limit
        status, error = 413, "too_large"
        detail = f"file too large: the limit is {settings.max_upload_mb:g} MB"
    else:
        (status, error), detail = describe_error(outcome), str(outcome)
    return BatchItem(index=index, filename=upload.filename, status="error", threshold=round(engine.threshold, 4),
                     disclaimer=DISCLAIMER, error=error, detail=detail, http_status=status)  # fmt: skip


def _missing_field_text(field: str, others: list[str]) -> str:
    seen = f"; the form had {', '.join(repr(o) for o in others)}" if others else ""
    return f"no file in the form field {field!r}{seen}"
