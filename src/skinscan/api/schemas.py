"""The JSON shapes the API answers with, as pydantic models (they also write the OpenAPI document)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class ErrorOut(BaseModel):
    error: str = Field(description="a short machine-readable name, e.g. invalid_image, unsupported_format")
    detail: str = Field(description="what went wrong, in words a user can act on")


class ModelRef(BaseModel):
    id: str
    version: str


class Verdict(BaseModel):
    """One image's result; `status` "rejected" carries a `reason` and no verdict."""

    status: str = Field(description='"ok", or "rejected" when the input checks refuse the image')
    probability: float | None = Field(default=None, description="calibrated probability of malignancy")
    label: str | None = None
    severity: int | None = Field(default=None, description="1 (no concern) to 6")
    severity_name: str | None = None
    description: str | None = None
    recommendation: str | None = None
    colour: str | None = Field(default=None, description="the severity's colour, #rrggbb")
    threshold: float = Field(description="the probability at and above which the label is malignant")
    reason: str | None = Field(default=None, description="why a rejected image could not be judged")
    image_size: list[int] = Field(default_factory=list, description="width and height as decoded")
    heatmap_png: str | None = Field(default=None, description="with ?heatmap=true: the overlay as a base64 PNG")
    disclaimer: str


class PredictionOut(Verdict):
    model: ModelRef
    time: str = Field(description="when the answer was made, ISO 8601 UTC")
    latency_ms: float = Field(description="time spent on the request in the server")


class BatchItem(Verdict):
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
