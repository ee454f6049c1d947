"""The ASGI app: wiring only. Run with `uvicorn app.main:app`."""

from __future__ import annotations

import logging

from fastapi import FastAPI
from starlette.formparsers import MultiPartParser

from app.config import Settings, get_settings
from app.errors import RequestContextMiddleware, install_error_handlers
from app.lifespan import lifespan
from app.routers import health, models, predict


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Uploads stay in memory (never spooled to disk); the body-size cap below bounds what that costs.
    MultiPartParser.spool_max_size = settings.max_request_bytes
    app = FastAPI(
        title="Paddle image classifier service",
        version="0.1.0",
        description="Classify images with Paddle Inference models exported by `training/`. "
                    "Errors share one shape: `{\"error\": {\"code\", \"message\", \"request_id\"}}`.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.add_middleware(RequestContextMiddleware, max_body_bytes=settings.max_request_bytes)
    install_error_handlers(app)
    for module in (health, models, predict):
        app.include_router(module.router)
    return app


app = create_app()
