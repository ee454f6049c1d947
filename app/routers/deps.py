"""Dependencies shared by the routers, as Annotated aliases, and the path parameters' rules.

They are `async def` on purpose: FastAPI runs a plain `def` dependency in its thread pool, and two
thread hand-offs per request cost more than everything else a small model's route does. The
prediction routes call `service_of` themselves (see params.py for why)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Path, Request

from app.errors import ApiError
from app.service import ModelService


def service_of(request: Request) -> ModelService:
    service: ModelService | None = getattr(request.app.state, "service", None)
    if service is None:
        raise ApiError(503, "not_ready", "the service is starting")
    return service


async def get_service(request: Request) -> ModelService:
    return service_of(request)


ServiceDep = Annotated[ModelService, Depends(get_service)]
# The path parameters' rules, for FastAPI's Path() here and pydantic's Field() in params.py.
# The name is length-bounded; its pattern is checked by the registry lookup (unknown -> 404).
MODEL_NAME_RULES: dict[str, Any] = {"description": "Model name, e.g. mnist-lenet", "max_length": 64,
                                    "examples": ["mnist-lenet"]}
VERSION_RULES: dict[str, Any] = {"description": "Model version number", "ge": 1, "le": 1_000_000_000}
ModelName = Annotated[str, Path(**MODEL_NAME_RULES)]
Version = Annotated[int, Path(**VERSION_RULES)]
