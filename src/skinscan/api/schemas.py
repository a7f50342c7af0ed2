"""The JSON shapes the API answers with, as pydantic models (they also write the OpenAPI document)."""

from __future__ import annotations

from typing import Any, Literal, get_origin

from pydantic import BaseModel, Field, create_model

from skinscan.runtime.result import json_fields


class ErrorOut(BaseModel):
    error: str = Field(description="a short machine-readable name, e.g. invalid_image, unsupported_format")
    detail: str = Field(description="what went wrong, in words a user can act on")


class ModelRef(BaseModel):
    id: str
    version: str


def verdict_model() -> type[BaseModel]:
    """`Verdict`: a model of `Prediction`'s public fields, with their descriptions, so that a field added there is
    answered and documented here. Required are the fields every answer has; the others default to what a batch's
    error item (no verdict) carries: nothing, or an empty list."""
    fields: dict[str, Any] = {}
    for spec in json_fields():
        if spec.required:
            fields[spec.key] = (spec.type, Field(description=spec.description))
        elif get_origin(spec.type) is list:
            fields[spec.key] = (spec.type, Field(default_factory=list, description=spec.description))
        else:
            fields[spec.key] = (spec.type, Field(default=None, description=spec.description))
    doc = 'One image\'s result; `status` "rejected" carries a `reason` and no verdict.'
    return create_model("Verdict", __doc__=doc, **fields)


Verdict = verdict_model()


class PredictionOut(Verdict):  # type: ignore[misc, valid-type]  # Verdict is built at import, from Prediction
    model: ModelRef
    time: str = Field(description="when the answer was made, ISO 8601 UTC")
    latency_ms: float = Field(description="time spent on the request in the server")


class BatchItem(Verdict):  # type: ignore[misc, valid-type]
    """One file's result in a batch: a verdict, or (status "error") that file's own error."""

    index: int = Field(description="the file's position in the request, from 0")
    filename: str | None = None
    error: str | None = None
    detail: str | None = None
    http_status: int | None = Field(default=None, description="the status /predict would have answered for this file")


class BatchOut(BaseModel):
    count: int
    results: list[BatchItem]
    model: ModelRef
    time: str
    latency_ms: float
    disclaimer: str


class HealthOut(BaseModel):
    status: Literal["ok", "loading", "failed"]
    alive: bool = True
    model_loaded: bool
    model: ModelRef | None = None
    detail: str | None = None
    version: str
    warnings: list[str] = Field(default_factory=list, description="what whoever runs the server should look at "
                                "(drift of recent images from the reference); never a reason to refuse")  # fmt: skip
    drift: dict[str, Any] | None = Field(default=None, description="recent images against the model's or site's "
                                         "reference: status ok, warning, collecting or no_reference")  # fmt: skip


class EndpointOut(BaseModel):
    method: str
    path: str
    summary: str


class InfoOut(BaseModel):
    name: str
    version: str
    description: str
    model: dict[str, Any] | None = Field(description="id, version, architecture, threshold and test metrics")
    endpoints: list[EndpointOut]
    docs: str
    disclaimer: str
