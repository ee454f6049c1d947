"""Dependencies shared by the routers, as Annotated aliases.

They are `async def` on purpose: FastAPI runs a plain `def` dependency in its thread pool, and two
thread hand-offs per request cost more than everything else our LeNet route does. The prediction
routes call `runtime_of` themselves instead: solving the two nested dependencies cost ~30-50 us of
server CPU per request (bench harness, LeNet at c32: 363-392 -> 334-338 us), a tenth of the route."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Path, Request

from app.errors import ApiError
from app.inference.registry import ModelRegistry
from app.runtime import Runtime


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime | None = getattr(request.app.state, "runtime", None)
    if runtime is None:
        raise ApiError(503, "not_ready", "the service is starting")
    return runtime


async def get_runtime(request: Request) -> Runtime:
    return runtime_of(request)


async def get_registry(runtime: Annotated[Runtime, Depends(get_runtime)]) -> ModelRegistry:
    return runtime.registry


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]
# The path parameters' rules, for FastAPI's Path() here and pydantic's Field() in params.py.
# The name is length-bounded; its pattern is checked by the registry lookup (unknown -> 404).
MODEL_NAME_RULES: dict[str, Any] = {"description": "Model name, e.g. mnist-lenet", "max_length": 64,
                                    "examples": ["mnist-lenet"]}
VERSION_RULES: dict[str, Any] = {"description": "Model version number", "ge": 1, "le": 1_000_000_000}
ModelName = Annotated[str, Path(**MODEL_NAME_RULES)]
Version = Annotated[int, Path(**VERSION_RULES)]
