"""The ASGI app: wiring only. Run with `uvicorn app.main:app`."""

from __future__ import annotations

import logging

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles
from starlette.formparsers import MultiPartParser

from app.config import Settings, get_settings
from app.errors import BodyBudget, RequestContextMiddleware, install_error_handlers
from app.lifespan import lifespan
from app.routers import admin, health, models, predict, ui, v2
from app.telemetry import TelemetryMiddleware


def configure_access_log() -> None:
    """Access lines are bare JSON objects, one per line, for log shippers to parse as they are."""
    access = logging.getLogger("app.access")
    if not access.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        access.addHandler(handler)
        access.propagate = False


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    configure_access_log()
    # Uploads stay in memory (never spooled to disk); the body-size cap below bounds what that costs.
    MultiPartParser.spool_max_size = settings.max_request_bytes
    app = FastAPI(
        title="Paddle image classifier service",
        version="0.1.0",
        description="Classify images with Paddle Inference models exported by `training/`. "
                    "Errors share one shape: `{\"error\": {\"code\", \"message\", \"request_id\"}}`.",
        lifespan=lifespan,
        docs_url=None,  # served by routers/ui.py from our own copy of Swagger UI: works offline
        redoc_url=None,
    )
    app.state.settings = settings
    if settings.cors_origins:  # closed by default: only listed origins may call the API from a browser
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["*"], expose_headers=["X-Request-ID", "Server-Timing"])
    app.add_middleware(TelemetryMiddleware)  # inside the request-id middleware: it logs the id
    app.add_middleware(RequestContextMiddleware, max_body_bytes=settings.max_request_bytes,
                       body_budget=BodyBudget(settings.max_body_bytes_in_flight),
                       body_timeout=settings.body_timeout_seconds,
                       is_draining=lambda: bool(getattr(getattr(app.state, "service", None), "draining", False)))
    install_error_handlers(app)
    for module in (health, models, predict, admin, v2, ui):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=ui.STATIC_DIR), name="static")
    return app


app = create_app()
