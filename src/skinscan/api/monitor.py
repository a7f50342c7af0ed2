"""What the server tells whoever runs it: Prometheus metrics (GET /metrics), drift (in /metrics and /health) and
the audit log, all fed from one place, `Monitor.record`, which the prediction routes call once per image.

Metrics (prometheus-client; each app has a registry of its own):
- skinscan_requests_total{route, method, status}, skinscan_request_duration_seconds{route}: every request, by
  route template (never the raw path: a client cannot add label values);
- skinscan_predictions_total{label, severity, verdict}, skinscan_refusals_total{reason},
  skinscan_prediction_errors_total{error}: each image's outcome;
- skinscan_probability, skinscan_input_check_distance, skinscan_inference_seconds: histograms;
- skinscan_model_info{id, version, architecture}, skinscan_site_info{name, active, created}: 1 while in use;
- skinscan_drift_psi{measure}, skinscan_drift_share_above_p99{measure}, skinscan_drift_warning (core/drift.py).

With several server processes (PROMETHEUS_MULTIPROC_DIR set by `skinscan serve` before it starts them) each
process writes its values to that folder and /metrics, whichever process answers, adds them up; the drift gauges
are then the worst of the live processes, each judging its own recent images.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from skinscan.api.audit import AuditLog
from skinscan.api.settings import Settings
from skinscan.core.drift import MEASURES, DriftMonitor
from skinscan.core.errors import SkinscanError
from skinscan.runtime.checks import reason_code
from skinscan.runtime.engine import Engine
from skinscan.runtime.result import Prediction

log = logging.getLogger("skinscan.api")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
REQUEST_ID_HEADER = "X-Request-ID"
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_PROBABILITY_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
# the distance is scaled so that the bundled model's refusal limit is about 1
_DISTANCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0)


def multiprocess_dir() -> str | None:
    """The folder the server's processes share their metrics through, when there are several."""
    return os.environ.get(MULTIPROC_ENV) or None


@contextmanager
def shared_metrics() -> Iterator[str]:
    """A fresh folder for the server processes about to start to share their metrics through (removed after);
    one the user set in PROMETHEUS_MULTIPROC_DIR is used as it is, and kept."""
    given = multiprocess_dir()
    if given is not None:
        yield given
        return
    folder = tempfile.mkdtemp(prefix="skinscan-metrics-")
    os.environ[MULTIPROC_ENV] = folder  # before the processes start: prometheus-client reads it at import
    try:
        yield folder
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(folder, ignore_errors=True)


def process_ended(pid: int) -> None:
    """Forget a server process that ended, so that its drift gauges leave the live ones' maximum."""
    if multiprocess_dir() is not None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


def audit_log_for(settings: Settings) -> AuditLog:
    assert settings.audit_log is not None
    return AuditLog(settings.audit_log, max_bytes=int(settings.audit_log_max_mb * 2**20),
                    backups=settings.audit_log_backups)  # fmt: skip


def monitor_for(settings: Settings) -> Monitor:
    """The app's monitor, as the settings ask."""
    audit = audit_log_for(settings) if settings.audit_log is not None else None
    if audit is not None:
        audit.check()  # each process: its folder may not exist yet, and an unwritable path says so once, at start
    return Monitor(audit=audit, drift_window=settings.drift_window, drift_min=settings.drift_min_count)


class Monitor:
    """The metrics, drift monitor and (optional) audit log of one app."""

    def __init__(self, *, audit: AuditLog | None = None, drift_window: int = 500, drift_min: int = 100) -> None:
        self.audit = audit
        self.drift_window, self.drift_min = drift_window, drift_min
        self.drift: DriftMonitor | None = None
        self.shared = multiprocess_dir() is not None
        # shared: the values live in the folder and are read back at each scrape; else in this registry
        self.registry = CollectorRegistry()
        into = None if self.shared else self.registry
        self.requests = Counter("skinscan_requests", "HTTP requests answered", ["route", "method", "status"],
                                registry=into)  # fmt: skip
        self.duration = Histogram("skinscan_request_duration_seconds", "time from request to response, by route",
                                  ["route"], buckets=_LATENCY_BUCKETS, registry=into)  # fmt: skip
        self.predictions = Counter("skinscan_predictions", "images judged", ["label", "severity", "verdict"],
                                   registry=into)  # fmt: skip
        self.refusals = Counter("skinscan_refusals", "images the input checks refused to judge", ["reason"],
                                registry=into)  # fmt: skip
        self.errors = Counter("skinscan_prediction_errors", "uploads that could not be read as an image", ["error"],
                              registry=into)  # fmt: skip
        self.probability = Histogram("skinscan_probability", "calibrated probability of the images judged",
                                     buckets=_PROBABILITY_BUCKETS, registry=into)  # fmt: skip
        self.distance = Histogram("skinscan_input_check_distance", "the input checks' feature distance per image",
                                  buckets=_DISTANCE_BUCKETS, registry=into)  # fmt: skip
        self.inference = Histogram("skinscan_inference_seconds", "engine time per image (decode, checks, model)",
                                   buckets=_LATENCY_BUCKETS, registry=into)  # fmt: skip
        self.model_info = Gauge("skinscan_model_info", "the model in use (value 1)", ["id", "version", "architecture"],
                                registry=into, multiprocess_mode="max")  # fmt: skip
        self.site_info = Gauge("skinscan_site_info", "the site profile in use, if any (value 1)",
                               ["name", "active", "created"], registry=into, multiprocess_mode="max")  # fmt: skip
        self.psi = Gauge("skinscan_drift_psi", "population stability index of recent values against the reference",
                         ["measure"], registry=into, multiprocess_mode="livemax")  # fmt: skip
        self.tail = Gauge("skinscan_drift_share_above_p99", "share of recent values above the reference's 99th "
                          "percentile (0.01 expected)", ["measure"], registry=into,
                          multiprocess_mode="livemax")  # fmt: skip
        self.drift_warning = Gauge("skinscan_drift_warning", "1 when recent images drift from the reference",
                                   registry=into, multiprocess_mode="livemax")  # fmt: skip

    def attach(self, engine: Engine) -> None:
        """Start monitoring `engine`: its info gauges, and a drift monitor on its reference.

        Raises:
            ModelFormatError: the model's or site's drift reference is malformed.
        """
        spec = engine.spec
        self.model_info.labels(spec.id, spec.version, spec.architecture).set(1)
        if engine.site is not None:
            self.site_info.labels(engine.site.name, engine.site.active, engine.site.created).set(1)
        self.drift = DriftMonitor(None, window=self.drift_window, min_count=self.drift_min)  # if the next line fails
        self.drift = DriftMonitor(engine.drift_reference(), window=self.drift_window, min_count=self.drift_min)

    def drift_state(self) -> dict[str, Any] | None:
        return self.drift.state() if self.drift is not None else None

    def record(
        self,
        outcome: Prediction | SkinscanError | str,
        engine: Engine,
        *,
        request_id: str | None,
        route: str,
        latency_ms: float,
        index: int | None = None,
        http_status: int = 200,
        error: str | None = None,
    ) -> None:
        """Count one image's outcome, feed the drift monitor and write the audit line. `outcome` is the engine's
        result, its error (with `error`, the error's short name, and `http_status`), or "too_large"."""
        line: dict[str, Any] = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "request_id": request_id, "route": route, "index": index, "model_id": engine.spec.id,
            "model_version": engine.spec.version, "site": engine.site.name if engine.site is not None else None,
            "latency_ms": latency_ms, "http_status": http_status,
        }  # fmt: skip
        if isinstance(outcome, Prediction):
            if outcome.timing_ms:
                self.inference.observe(outcome.timing_ms / 1000)
            if outcome.ood_distance is not None:
                self.distance.observe(outcome.ood_distance)
            line.update(status=outcome.status, verdict=outcome.verdict_code)
            if outcome.ok and outcome.probability is not None:
                self.predictions.labels(outcome.label, str(outcome.severity), outcome.verdict_code).inc()
                self.probability.observe(outcome.probability)
                line.update(label=outcome.label, probability=round(outcome.probability, 6), severity=outcome.severity)
            else:
                code = reason_code(outcome.reason)
                self.refusals.labels(code).inc()
                line.update(refusal=code)
            if self.drift is not None:
                self.drift.add(outcome.probability if outcome.ok else None, outcome.ood_distance)
                self._update_drift_gauges()
        else:
            name = error or "too_large"
            self.errors.labels(name).inc()
            line.update(status="error", error=name)
        if self.audit is not None:
            try:
                self.audit.write(line)
            except OSError as exc:  # the answer still goes out; whoever runs the server sees why the log stopped
                log.error("cannot write the audit log %s: %s", self.audit.path, exc.strerror or exc)

    def _update_drift_gauges(self) -> None:
        assert self.drift is not None
        state = self.drift.state()
        for name in MEASURES:
            entry = state["measures"].get(name, {})
            if "psi" in entry:
                self.psi.labels(name).set(entry["psi"])
                self.tail.labels(name).set(entry["share_above_p99"])
        self.drift_warning.set(1 if state["status"] == "warning" else 0)

    def render(self) -> bytes:
        """The metrics in Prometheus' text format: this process's, or all processes' when they share a folder."""
        if not self.shared:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry)


class RequestMetricsMiddleware:
    """Counts and times every request by route template, and gives each a request id (the X-Request-ID response
    header, the audit log's request_id; made here, never taken from the client)."""

    def __init__(self, app: ASGIApp, monitor: Monitor) -> None:
        self.app = app
        self.monitor = monitor

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        start = time.perf_counter()
        status = 0  # no answer began: the client went away, or the app failed before one

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.monitor.requests.labels(route, scope["method"], str(status) if status else "aborted").inc()
            self.monitor.duration.labels(route).observe(time.perf_counter() - start)
