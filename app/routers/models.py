"""/v1 model list and model information."""

from __future__ import annotations

from fastapi import APIRouter

from app.inference.model_version import ModelVersion
from app.routers.deps import ModelName, ServiceDep, Version
from app.schemas import NOT_FOUND, NOT_READY, ModelInfo, ModelList, ModelSummary, VersionSummary
from app.service import ModelService

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.get("", response_model=ModelList, summary="Every model with its versions and status")
async def list_models(service: ServiceDep) -> ModelList:
    return ModelList(models=[
        ModelSummary(
            name=entry.name,
            default_version=entry.default_version,
            status=entry.state,
            versions=[VersionSummary(version=s.version, status=s.state, error=s.error)
                      for s in sorted(entry.versions.values(), key=lambda s: s.version)],
        )
        for entry in service.registry.models()
    ])


@router.get("/{name}", response_model=ModelInfo, responses={**NOT_FOUND, **NOT_READY},
            summary="Model information: manifest (labels, input, preprocessing, metrics, provenance) and runtime")
async def get_model(name: ModelName, service: ServiceDep) -> ModelInfo:
    return describe(service, service.lookup(name))


@router.get("/{name}/versions/{version}", response_model=ModelInfo, responses={**NOT_FOUND, **NOT_READY},
            summary="Information on one version of a model")
async def get_model_version(name: ModelName, version: Version, service: ServiceDep) -> ModelInfo:
    return describe(service, service.lookup(name, version))


def describe(service: ModelService, model: ModelVersion) -> ModelInfo:
    return ModelInfo(name=model.name, version=model.version, versions=service.versions_of(model.name),
                     manifest=model.manifest.model_dump(mode="json"), runtime=model.describe())
