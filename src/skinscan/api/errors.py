"""The API's one translation of errors into JSON responses: {"error": short name, "detail": message}."""

from __future__ import annotations

from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from skinscan.core.errors import (
    BusyError,
    ImageTooLargeError,
    ImageTooSmallError,
    InvalidImageError,
    ModelFormatError,
    ModelNotFoundError,
    SkinscanError,
    UnsupportedFormatError,
)

# Most specific first: the first class an error is an instance of decides.
_STATUS_OF: tuple[tuple[type[SkinscanError], int, str], ...] = (
    (UnsupportedFormatError, 415, "unsupported_format"),
    (ImageTooLargeError, 413, "too_large"),
    (ImageTooSmallError, 400, "image_too_small"),
    (InvalidImageError, 400, "invalid_image"),
    (BusyError, 503, "busy"),
    (ModelNotFoundError, 503, "model_unavailable"),
    (ModelFormatError, 503, "model_unavailable"),
)

_NAME_OF_STATUS = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_format",
    422: "missing_field",
    503: "unavailable",
}


def describe_error(exc: SkinscanError) -> tuple[int, str]:
    """The HTTP status and short error name for a domain error."""
    for kind, status, name in _STATUS_OF:
        if isinstance(exc, kind):
            return status, name
    return 500, "internal_error"


def error_body(status: int, detail: str, error: str | None = None) -> dict[str, str]:
    name = error or _NAME_OF_STATUS.get(status) or HTTPStatus(status).phrase.lower().replace(" ", "_")
    return {"error": name, "detail": detail}


async def _skinscan_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, SkinscanError)
    status, name = describe_error(exc)
    headers = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, BusyError) else None
    return JSONResponse(error_body(status, str(exc), name), status_code=status, headers=headers)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    return JSONResponse(error_body(exc.status_code, detail), status_code=exc.status_code, headers=exc.headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = "; ".join(
        f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg', 'invalid')}" for err in exc.errors()
    )
    return JSONResponse(error_body(422, problems or "invalid request", "invalid_request"), status_code=422)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    # A bug, not a bad upload: answer without details. Starlette re-raises it afterwards, so uvicorn logs the traceback
    # for the operator (the request's body is never part of it).
    return JSONResponse(error_body(500, "internal server error", "internal_error"), status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(SkinscanError, _skinscan_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)
