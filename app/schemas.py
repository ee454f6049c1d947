"""Response bodies, as published in the OpenAPI schema."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class ErrorDetail(BaseModel):
    code: str = Field(examples=["invalid_image"])
    message: str = Field(examples=["the image data is truncated or corrupt"])
    request_id: str = Field(examples=["3f2a9c0d5e6b4a1f8c7d6e5f4a3b2c1d"])


class ErrorResponse(BaseModel):
    error: ErrorDetail


# The lookup's answers, for the routes' OpenAPI `responses`.
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorResponse, "description": "No such model"}}
NOT_READY: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorResponse, "description": "The model is loading or failed to load"}}


class Prediction(BaseModel):
    class_id: int = Field(examples=[7])
    label: str = Field(examples=["7"])
    score: float = Field(ge=0, le=1, description="Softmax probability", examples=[0.998])


INPUT_IMAGE_DOC = ("With explain=input: the model's input after preprocessing, as a PNG data URL "
                   "(e.g. the 28x28 digit the network saw)")


class PredictResponse(BaseModel):
    model: str = Field(examples=["mnist-lenet"])
    version: int = Field(examples=[1])
    predictions: list[Prediction]
    input_image: str | None = Field(None, description=INPUT_IMAGE_DOC, examples=["data:image/png;base64,iVBORw0..."])


class ItemError(BaseModel):
    status: int = Field(examples=[400])
    code: str = Field(examples=["invalid_image"])
    message: str


class BatchItem(BaseModel):
    filename: str | None
    predictions: list[Prediction] | None = None
    error: ItemError | None = None
    input_image: str | None = Field(None, description=INPUT_IMAGE_DOC)


class BatchResponse(BaseModel):
    model: str
    version: int
    results: list[BatchItem] = Field(description="One item per uploaded file, in upload order")


class VersionSummary(BaseModel):
    version: int
    status: Literal["loading", "ready", "failed"]
    error: str | None = None


class ModelSummary(BaseModel):
    name: str
    default_version: int | None
    status: Literal["loading", "ready", "failed"]
    versions: list[VersionSummary]


class ModelList(BaseModel):
    models: list[ModelSummary]


class ModelInfo(BaseModel):
    name: str
    version: int
    versions: list[int]
    manifest: dict[str, Any] = Field(description="The exported manifest: labels, input, preprocessing, metrics, "
                                                 "dataset provenance, file hashes")
    runtime: dict[str, Any] = Field(description="How this server runs the model: device, threads, backend")


class Health(BaseModel):
    status: str = Field(examples=["ok"])


class Readiness(BaseModel):
    status: str = Field(examples=["ready"])
    models: dict[str, str] = Field(description="model name -> state of its default version")


class ReloadResponse(BaseModel):
    loaded: list[str] = Field(description="name/version newly loaded or reloaded", examples=[["mnist-lenet/2"]])
    unchanged: list[str]
    removed: list[str]
    failed: dict[str, str] = Field(description="name/version -> reason; the old classifier, if any, still serves")
