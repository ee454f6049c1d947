"""Model list and model information."""

from __future__ import annotations

from fastapi import APIRouter

from app.errors import ApiError
from app.inference.classifier import Classifier
from app.inference.registry import ModelNotFoundError, ModelNotReadyError, ModelRegistry
from app.routers.deps import ModelName, RegistryDep, Version
from app.schemas import ErrorResponse, ModelInfo, ModelList, ModelSummary, VersionSummary

router = APIRouter(prefix="/v1/models", tags=["models"])

NOT_FOUND = {404: {"model": ErrorResponse, "description": "No such model"}}
NOT_READY = {503: {"model": ErrorResponse, "description": "The model is loading or failed to load"}}


@router.get("", response_model=ModelList, summary="Every model with its versions and status")
async def list_models(registry: RegistryDep) -> ModelList:
    return ModelList(models=[
        ModelSummary(
            name=entry.name,
            default_version=entry.default_version,
            status=entry.state,
            versions=[VersionSummary(version=s.version, status=s.state, error=s.error)
                      for s in sorted(entry.versions.values(), key=lambda s: s.version)],
        )
        for entry in registry.models()
    ])


@router.get("/{name}", response_model=ModelInfo, responses={**NOT_FOUND, **NOT_READY},
            summary="Model information: manifest (labels, input, preprocessing, metrics, provenance) and runtime")
async def get_model(name: ModelName, registry: RegistryDep) -> ModelInfo:
    return describe(registry, lookup_classifier(registry, name))


@router.get("/{name}/versions/{version}", response_model=ModelInfo, responses={**NOT_FOUND, **NOT_READY},
            summary="Information on one version of a model")
async def get_model_version(name: ModelName, version: Version,
                            registry: RegistryDep) -> ModelInfo:
    return describe(registry, lookup_classifier(registry, name, version))


def describe(registry: ModelRegistry, classifier: Classifier) -> ModelInfo:
    versions = next((sorted(e.versions) for e in registry.models() if e.name == classifier.name), [])
    return ModelInfo(name=classifier.name, version=classifier.version, versions=versions,
                     manifest=classifier.manifest.model_dump(mode="json"), runtime=classifier.runtime_info())


def lookup_classifier(registry: ModelRegistry, name: str, version: int | None = None) -> Classifier:
    try:
        return registry.get(name, version)
    except ModelNotFoundError as exc:
        raise ApiError(404, "model_not_found", str(exc)) from exc
    except ModelNotReadyError as exc:
        raise ApiError(503, "model_not_ready", str(exc), headers={"Retry-After": "1"}) from exc
