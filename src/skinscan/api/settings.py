"""The service's settings: defaults, overridden by SKINSCAN_* environment variables, overridden by the CLI."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from skinscan.core.errors import ConfigError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9889
MAX_UPLOAD_MB_LIMIT = 256  # the engine reads no file larger than this anyway (imaging.DEFAULT_MAX_BYTES)


class Settings(BaseSettings):
    """Settings of `skinscan serve`; each field reads SKINSCAN_<NAME> (e.g. SKINSCAN_PORT=9000)."""

    model_config = SettingsConfigDict(env_prefix="SKINSCAN_", extra="ignore")

    host: str = DEFAULT_HOST
    port: int = Field(default=DEFAULT_PORT, ge=0, le=65535)
    model: str | None = None  # model.onnx or its folder; None → the bundled model
    # the largest image accepted, per file; finite: inf would pass every comparison and break every upload
    max_upload_mb: float = Field(default=10.0, gt=0, le=MAX_UPLOAD_MB_LIMIT, allow_inf_nan=False)
    max_batch_files: int = Field(default=16, ge=1, le=1000)  # the most files in one /predict/batch request
    api_key: SecretStr | None = None  # when set, the API wants it in X-API-Key
    # origins allowed to call the API from another site's pages: JSON list or comma-separated; none by default
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    threads: int | None = Field(default=None, ge=1)  # ONNX Runtime threads; None → up to 4
    threshold: float | None = Field(default=None, ge=0, le=1, allow_inf_nan=False)  # override the model's threshold
    site: str | None = None  # a site profile (calibrate-site) to serve with: the clinic's operating point
    # server processes, each with its own copy of the model; None → one per core this process may use
    workers: int | None = Field(default=None, ge=1, le=256)
    # Slow and idle clients (see api/protocol.py). A connection must send a request's headers within
    # header_timeout_s of opening (or of its previous response), may pause no longer than body_timeout_s while
    # sending the body, and must have sent all of the request within read_timeout_s; else 408 and it is closed.
    header_timeout_s: float = Field(default=10.0, gt=0, le=3600, allow_inf_nan=False)
    body_timeout_s: float = Field(default=15.0, gt=0, le=3600, allow_inf_nan=False)
    read_timeout_s: float = Field(default=120.0, gt=0, le=86400, allow_inf_nan=False)
    # open connections per server process; at the cap the oldest idle one is closed for a new one, and when none
    # is idle the new one gets a 503. Lowered further to fit the process's file-descriptor limit.
    max_connections: int = Field(default=1000, ge=1, le=1_000_000)
    # Monitoring (api/monitor.py): an opt-in audit log, one JSON line per image judged, rotated past
    # audit_log_max_mb into audit_log_backups older files; drift over the last drift_window images, judged once
    # drift_min_count of them are in.
    audit_log: str | None = None
    audit_log_max_mb: float = Field(default=50.0, gt=0, le=100_000, allow_inf_nan=False)
    audit_log_backups: int = Field(default=5, ge=0, le=1000)
    drift_window: int = Field(default=500, ge=10, le=1_000_000)
    drift_min_count: int = Field(default=100, ge=10, le=1_000_000)

    def __init__(self, **values: Any) -> None:
        # a bad value is the user's setting, not a bug: a ConfigError, which `skinscan serve` reports in one line
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ConfigError(_describe(exc)) from None

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                import json

                return json.loads(text)
            return [origin.strip() for origin in text.split(",") if origin.strip()]
        return value

    @field_validator("api_key", mode="before")
    @classmethod
    def _empty_key_is_none(cls, value: Any) -> Any:
        # SKINSCAN_API_KEY= (set but empty) must not lock the API behind an empty key
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("audit_log", mode="before")
    @classmethod
    def _empty_path_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        name = ".".join(str(part) for part in error.get("loc", ())) or "settings"
        given = "" if name == "api_key" else f", not {error.get('input')!r}"  # never echo the key
        problems.append(f"{name} (SKINSCAN_{name.upper()}): {error.get('msg', 'invalid')}{given}")
    return "invalid setting: " + "; ".join(problems)
