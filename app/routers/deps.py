"""Dependencies shared by the routers, as Annotated aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from app.errors import ApiError
from app.inference.registry import ModelRegistry
from app.runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime | None = getattr(request.app.state, "runtime", None)
    if runtime is None:
        raise ApiError(503, "not_ready", "the service is starting")
    return runtime


def get_registry(runtime: Annotated[Runtime, Depends(get_runtime)]) -> ModelRegistry:
    return runtime.registry


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]
# Length-bounded here; the name pattern is checked by the registry lookup (unknown -> 404).
ModelName = Annotated[str, Path(description="Model name, e.g. mnist-lenet", max_length=64,
                                 examples=["mnist-lenet"])]
