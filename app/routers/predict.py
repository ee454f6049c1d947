"""Prediction: one image, or many in one request (one predictor run for the whole batch)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Query, UploadFile
from starlette.concurrency import run_in_threadpool

from app.errors import ApiError
from app.inference.classifier import Classifier
from app.inference.postprocess import Prediction as InferencePrediction
from app.inference.preprocess import ImageDecodeError, ImageTooLargeError, PreprocessError, UnsupportedImageError
from app.routers.deps import ModelName, RegistryDep, RuntimeDep
from app.routers.models import NOT_FOUND, NOT_READY, lookup_classifier
from app.schemas import BatchItem, BatchResponse, ErrorResponse, ItemError, Prediction, PredictResponse

router = APIRouter(prefix="/v1/models", tags=["predict"])

TopK = Annotated[int | None, Query(ge=1, le=10_000, description="How many classes to return, best first "
                                   "(default 5, or all classes if fewer; at most the number of classes)")]

INPUT_ERRORS = {
    400: {"model": ErrorResponse, "description": "Empty, truncated or corrupt image"},
    413: {"model": ErrorResponse, "description": "File, body or pixel count over the limit"},
    415: {"model": ErrorResponse, "description": "Not an image format we accept"},
    422: {"model": ErrorResponse, "description": "Bad parameter (e.g. top_k), missing field, or unusable image"},
}


def resolve_top_k(classifier: Classifier, requested: int | None, default: int) -> int:
    count = len(classifier.labels)
    if requested is None:
        return min(default, count)
    if requested > count:
        raise ApiError(422, "invalid_top_k", f"top_k is {requested}; model {classifier.name} has {count} classes")
    return requested


async def read_upload(upload: UploadFile, limit: int) -> bytes:
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise ApiError(413, "file_too_large", f"{upload.filename or 'file'} is larger than {limit} bytes")
    return data


def preprocess_or_raise(classifier: Classifier, data: bytes):  # noqa: ANN201 - numpy array
    """Map the preprocessing module's errors to client statuses: never a 500 for a client's bytes."""
    try:
        return classifier.preprocess(data)
    except UnsupportedImageError as exc:
        raise ApiError(415, "unsupported_media_type", str(exc)) from exc
    except ImageDecodeError as exc:
        raise ApiError(400, "invalid_image", str(exc)) from exc
    except ImageTooLargeError as exc:
        raise ApiError(413, "image_too_large", str(exc)) from exc
    except PreprocessError as exc:
        raise ApiError(422, "unusable_image", str(exc)) from exc


def to_schema(predictions: list[InferencePrediction]) -> list[Prediction]:
    return [Prediction(class_id=p.class_id, label=p.label, score=p.score) for p in predictions]


@router.post("/{name}/predict", response_model=PredictResponse, responses={**INPUT_ERRORS, **NOT_FOUND, **NOT_READY},
             summary="Classify one image (multipart field `file`)")
async def predict(
    name: ModelName,
    file: Annotated[UploadFile, File(description="An image: PNG, JPEG, GIF, BMP, TIFF, WebP or PPM")],
    registry: RegistryDep,
    runtime: RuntimeDep,
    top_k: TopK = None,
) -> PredictResponse:
    classifier = lookup_classifier(registry, name)
    k = resolve_top_k(classifier, top_k, runtime.settings.default_top_k)
    data = await read_upload(file, runtime.settings.max_upload_bytes)
    array = await run_in_threadpool(preprocess_or_raise, classifier, data)
    [predictions] = await runtime.classify(classifier, [array], k)
    return PredictResponse(model=classifier.name, version=classifier.version, predictions=to_schema(predictions))


@router.post("/{name}/predict/batch", response_model=BatchResponse,
             responses={**INPUT_ERRORS, **NOT_FOUND, **NOT_READY},
             summary="Classify many images (multipart field `files`, repeated); a bad file fails only its item")
async def predict_batch(
    name: ModelName,
    files: Annotated[list[UploadFile], File(description="1 to APP_MAX_BATCH_FILES images")],
    registry: RegistryDep,
    runtime: RuntimeDep,
    top_k: TopK = None,
) -> BatchResponse:
    classifier = lookup_classifier(registry, name)
    k = resolve_top_k(classifier, top_k, runtime.settings.default_top_k)
    limit = runtime.settings.max_batch_files
    if len(files) > limit:
        raise ApiError(413, "too_many_files", f"{len(files)} files sent; the limit is {limit} per request")
    items = [BatchItem(filename=f.filename) for f in files]
    inputs, positions = [], []
    for position, upload in enumerate(files):
        try:
            data = await read_upload(upload, runtime.settings.max_upload_bytes)
            inputs.append(await run_in_threadpool(preprocess_or_raise, classifier, data))
            positions.append(position)
        except ApiError as exc:
            items[position].error = ItemError(status=exc.status_code, code=exc.code, message=exc.message)
    if inputs:
        for position, predictions in zip(positions, await runtime.classify(classifier, inputs, k)):
            items[position].predictions = to_schema(predictions)
    return BatchResponse(model=classifier.name, version=classifier.version, results=items)
