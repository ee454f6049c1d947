"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Response

from app.errors import ApiError
from app.routers.deps import ServiceDep
from app.schemas import ErrorResponse, Health, Readiness
from app.telemetry import render_metrics

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="Liveness: 200 while the process runs")
async def healthz() -> Health:
    return Health(status="ok")


@router.get("/readyz", response_model=Readiness, summary="Readiness: 200 once every model is loaded and warmed",
            responses={503: {"model": ErrorResponse, "description": "Still loading, or a model failed to load"}})
async def readyz(service: ServiceDep) -> Readiness:
    registry = service.registry
    if service.draining:
        raise ApiError(503, "shutting_down", "the server is shutting down", headers={"Retry-After": "5"})
    ready, problems = registry.readiness()
    if not ready:
        raise ApiError(503, "not_ready", "; ".join(problems), headers={"Retry-After": "1"})
    return Readiness(status="ready", models={entry.name: entry.state for entry in registry.models()})


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}})
async def metrics() -> Response:
    body, content_type = render_metrics()
    return Response(body, media_type=content_type)
