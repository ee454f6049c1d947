"""Prometheus metrics and structured JSON access logs (one line per request, with its request id)."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

access_log = logging.getLogger("app.access")

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

REQUESTS = Counter("classifier_http_requests_total", "HTTP requests by route, status, model and version",
                   ["route", "method", "status", "model", "version"])
LATENCY = Histogram("classifier_http_request_duration_seconds", "Request latency, first byte in to last byte out",
                    ["route", "method"], buckets=LATENCY_BUCKETS)
QUEUE_WAIT = Histogram("classifier_queue_wait_seconds", "Time a request waited in its model's batch queue",
                       ["model", "version"], buckets=LATENCY_BUCKETS)
INFERENCE = Histogram("classifier_inference_seconds", "Predictor time per batch", ["model", "version"],
                      buckets=LATENCY_BUCKETS)
BATCH_SIZE = Histogram("classifier_batch_size", "Images per predictor run", ["model", "version"],
                       buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
QUEUE_DEPTH = Gauge("classifier_queue_depth_images", "Images waiting in a model's queue", ["model", "version"])
MODEL_READY = Gauge("classifier_model_ready", "1 when the version can serve, else 0", ["model", "version"])
MODEL_BACKEND = Gauge("classifier_model_backend", "1 for the runtime a loaded version runs on",
                      ["model", "version", "backend"])
LOAD_FAILURES = Counter("classifier_model_load_failures_total", "Failed loads and reloads of a model version",
                        ["model", "version"])

QUIET_PREFIXES = ("/static/",)  # counted in the metrics, not written to the access log
MODEL_VERSION_HEADER = "x-model-version"  # set by the predict routes: name/version that answered


def render_metrics() -> tuple[bytes, str]:
    return generate_latest(), CONTENT_TYPE_LATEST


def record_model_load(model: str, version: int, ready: bool, failed: bool, backend: str | None = None) -> None:
    MODEL_READY.labels(model, str(version)).set(1 if ready else 0)
    if backend is not None:
        MODEL_BACKEND.labels(model, str(version), backend).set(1)
    if failed:
        LOAD_FAILURES.labels(model, str(version)).inc()


@dataclass(frozen=True)
class ModelSeries:
    """One model version's queue and batch series, looked up once: a `labels()` lookup per series
    per request costs the server process more than a small model's whole route should."""

    queue_depth: Gauge  # labelled children: no further lookups
    queue_wait: Histogram
    batch_size: Histogram
    inference: Histogram

    @classmethod
    def of(cls, model: str, version: int) -> ModelSeries:
        labels = (model, str(version))
        return cls(QUEUE_DEPTH.labels(*labels), QUEUE_WAIT.labels(*labels), BATCH_SIZE.labels(*labels),
                   INFERENCE.labels(*labels))

    def record_batch(self, size: int, inference_ms: float) -> None:
        self.batch_size.observe(size)
        self.inference.observe(inference_ms / 1000)


class TelemetryMiddleware:
    """Counts, times and logs every request. Labels use the route template, never the raw path,
    so a scan of random URLs cannot blow up the number of series."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status, served_by = 500, ""

        async def capture(message: Message) -> None:
            nonlocal status, served_by
            if message["type"] == "http.response.start":
                status = message["status"]
                for key, value in message.get("headers", []):
                    if key.lower() == MODEL_VERSION_HEADER.encode():
                        served_by = value.decode("latin-1")
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            self._record(scope, status, served_by, time.perf_counter() - started)

    @staticmethod
    def _record(scope: Scope, status: int, served_by: str, seconds: float) -> None:
        route = getattr(scope.get("route"), "path", None) or "unmatched"
        model, _, version = served_by.partition("/")
        REQUESTS.labels(route, scope["method"], str(status), model, version).inc()
        LATENCY.labels(route, scope["method"]).observe(seconds)
        # The page's own files (script, styles, icons) would add a line each per visit.
        if access_log.isEnabledFor(logging.INFO) and not scope["path"].startswith(QUIET_PREFIXES):
            client = scope.get("client") or ("", 0)
            access_log.info(json.dumps({
                "request_id": scope.get("state", {}).get("request_id"),
                "method": scope["method"], "path": scope["path"], "route": route, "status": status,
                "duration_ms": round(seconds * 1000, 3), "model": model or None, "version": version or None,
                "client": client[0],
            }, ensure_ascii=False))
