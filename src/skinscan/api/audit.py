"""The opt-in audit log (SKINSCAN_AUDIT_LOG=path): one JSON line per prediction, rotated by size.

A line says what was decided, by which model and site profile, when and how fast — never what it was decided on:
no image bytes, no file name, no form field, no header, nothing the client sent in words (AUDIT_FIELDS is the
whole list, and `AuditLog.write` drops anything else). The file and its rotated copies are readable by the
server's user only.

Several server processes may write one log: each line is appended with one write(2) on an O_APPEND descriptor,
and the size check and rotation happen under an exclusive lock on `<path>.lock`, so lines never interleave and a
file is never rotated twice.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any

from skinscan.core.errors import ConfigError

AUDIT_FIELDS = (
    "time", "request_id", "route", "index", "model_id", "model_version", "site", "status", "verdict", "label",
    "probability", "severity", "refusal", "error", "http_status", "latency_ms",
)  # fmt: skip


class AuditLog:
    """Appends audit lines to `path`; past `max_bytes` the file becomes `path.1` (and `path.1` becomes `path.2`...,
    the oldest beyond `backups` deleted)."""

    def __init__(self, path: str | os.PathLike[str], *, max_bytes: int = 50 * 2**20, backups: int = 5) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self._lock_path = self.path.with_name(self.path.name + ".lock")

    def check(self) -> None:
        """Create the log (and its folder) if needed, so that an unwritable path fails at start, not per request.

        Raises:
            ConfigError: the path cannot be written.
        """
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600))
            os.close(os.open(self._lock_path, os.O_WRONLY | os.O_CREAT, 0o600))
        except OSError as exc:
            raise ConfigError(f"cannot write the audit log {self.path}: {exc.strerror or exc}") from None

    def write(self, record: dict[str, Any]) -> None:
        """Append one line holding the AUDIT_FIELDS of `record` (others are dropped, never written).

        Raises:
            OSError: the log cannot be written (the caller decides what that costs).
        """
        line = (json.dumps({k: record.get(k) for k in AUDIT_FIELDS}, separators=(",", ":")) + "\n").encode()
        lock = os.open(self._lock_path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                size = self.path.stat().st_size
            except FileNotFoundError:
                size = 0
            if size and size + len(line) > self.max_bytes:
                self._rotate()
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
        finally:
            os.close(lock)  # closing releases the lock

    def _rotate(self) -> None:
        if self.backups <= 0:
            self.path.unlink(missing_ok=True)
            return
        self.path.with_name(f"{self.path.name}.{self.backups}").unlink(missing_ok=True)
        for k in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{k}")
            if older.exists():
                older.rename(self.path.with_name(f"{self.path.name}.{k + 1}"))
        self.path.rename(self.path.with_name(f"{self.path.name}.1"))
