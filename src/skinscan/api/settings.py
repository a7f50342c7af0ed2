"""The service's settings: defaults, overridden by SKINSCAN_* environment variables, overridden by the CLI."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9889


class Settings(BaseSettings):
    """Settings of `skinscan serve`; each field reads SKINSCAN_<NAME> (e.g. SKINSCAN_PORT=9000)."""

    model_config = SettingsConfigDict(env_prefix="SKINSCAN_", extra="ignore")

    host: str = DEFAULT_HOST
    port: int = Field(default=DEFAULT_PORT, ge=0, le=65535)
    model: str | None = None  # model.onnx or its folder; None → the bundled model
    max_upload_mb: float = Field(default=10.0, gt=0)  # the largest image accepted, per file
    max_batch_files: int = Field(default=16, ge=1)  # the most files in one /predict/batch request
    api_key: SecretStr | None = None  # when set, the API wants it in X-API-Key
    # origins allowed to call the API from another site's pages: JSON list or comma-separated; none by default
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    threads: int | None = Field(default=None, ge=1)  # ONNX Runtime threads; None → up to 4
    threshold: float | None = Field(default=None, ge=0, le=1)  # override the model's operating threshold
    workers: int = Field(default=1, ge=1)  # server processes, each with its own copy of the model

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

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"
