"""Prediction: one image, or many in one request (one predictor run for the whole batch)."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Annotated, Literal, TypeVar

import numpy as np
from fastapi import APIRouter, Query, Request, Response
from fastapi import Path as FastPath
from starlette.concurrency import run_in_threadpool

from app.errors import ApiError
from app.inference.batcher import BatchTiming, InferenceError, QueueFullError, QueueTimeoutError
from app.inference.classifier import Classifier
from app.inference.postprocess import Prediction as InferencePrediction
from app.inference.preprocess import (
    ImageDecodeError,
    ImageTooLargeError,
    PreprocessError,
    UnsupportedImageError,
    render_input_png,
)
from app.routers.deps import ModelName, RegistryDep, RuntimeDep
from app.routers.uploads import read_many, read_single, request_body_doc
from app.runtime import Admission, Runtime
from app.telemetry import MODEL_VERSION_HEADER
from app.routers.models import NOT_FOUND, NOT_READY, lookup_classifier
from app.schemas import BatchItem, BatchResponse, ErrorResponse, ItemError, Prediction, PredictResponse

router = APIRouter(prefix="/v1/models", tags=["predict"])
T = TypeVar("T")
R = TypeVar("R")

TopK = Annotated[int | None, Query(ge=1, le=10_000, description="How many classes to return, best first "
                                   "(default 5, or all classes if fewer; at most the number of classes)")]

Explain = Annotated[Literal["input"] | None, Query(
    description="`input`: also return the preprocessed model input as a PNG data URL (`input_image`), "
                "to see what the model saw")]


def input_data_url(array: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(render_input_png(array)).decode("ascii")


INPUT_ERRORS = {
    400: {"model": ErrorResponse, "description": "Empty, truncated or corrupt image"},
    413: {"model": ErrorResponse, "description": "File, body or pixel count over the limit"},
    415: {"model": ErrorResponse, "description": "Not an image format we accept"},
    422: {"model": ErrorResponse, "description": "Bad parameter (e.g. top_k), missing field, or unusable image"},
    500: {"model": ErrorResponse, "description": "Inference failed on the server; quote the request id"},
    503: {"model": ErrorResponse, "description": "Overloaded (queue full, see Retry-After) or model not ready"},
    504: {"model": ErrorResponse, "description": "No result within APP_REQUEST_TIMEOUT_MS"},
}


def resolve_top_k(classifier: Classifier, requested: int | None, default: int) -> int:
    count = len(classifier.labels)
    if requested is None:
        return min(default, count)
    if requested > count:
        raise ApiError(422, "invalid_top_k", f"top_k is {requested}; model {classifier.name} has {count} classes")
    return requested


# Below this many pixels decoding and preprocessing take well under a thread hand-off: do them inline.
INLINE_PIXELS = 128 * 128


async def preprocess_upload(classifier: Classifier, data: bytes) -> tuple[np.ndarray, float, float]:
    """Read the header on the event loop (cheap, and it enforces the limits), then decode and
    preprocess small images right there and large ones in a worker thread, beside inference."""
    image = client_errors(classifier.preprocessor.open, data)
    if len(data) <= 64 * 1024 and image.width * image.height <= INLINE_PIXELS:
        return client_errors(classifier.preprocess_timed, image)
    return await run_in_threadpool(client_errors, classifier.preprocess_timed, image)


def client_errors(function: Callable[[T], R], argument: T) -> R:
    """Map the preprocessing module's errors to client statuses: never a 500 for a client's bytes."""
    try:
        return function(argument)
    except UnsupportedImageError as exc:
        raise ApiError(415, "unsupported_media_type", str(exc)) from exc
    except ImageDecodeError as exc:
        raise ApiError(400, "invalid_image", str(exc)) from exc
    except ImageTooLargeError as exc:
        raise ApiError(413, "image_too_large", str(exc)) from exc
    except PreprocessError as exc:
        raise ApiError(422, "unusable_image", str(exc)) from exc


def overloaded(exc: QueueFullError) -> ApiError:
    return ApiError(503, "overloaded", f"the server is at capacity: {exc}; retry shortly",
                    headers={"Retry-After": "1"})


@contextmanager
def admit_or_raise(runtime: Runtime, classifier: Classifier, images: int) -> Iterator[Admission]:
    """Refuse an overload before reading or decoding anything more of the request."""
    with batcher_errors():
        admission = runtime.admit(classifier, images)
    try:
        yield admission
    finally:
        admission.release()


@contextmanager
def batcher_errors() -> Iterator[None]:
    """The batcher's errors as API errors: 503 overloaded, 504 timeout, 500 for a failed batch."""
    try:
        yield
    except QueueFullError as exc:
        raise overloaded(exc) from exc
    except QueueTimeoutError as exc:
        raise ApiError(504, "timeout", f"inference did not finish in time: {exc}") from exc
    except InferenceError as exc:
        raise ApiError(500, "inference_failed", str(exc)) from exc


async def classify_or_raise(runtime: Runtime, classifier: Classifier, inputs: Sequence[np.ndarray], k: int,
                            admission: Admission) -> tuple[list[list[InferencePrediction]], BatchTiming]:
    with batcher_errors():
        return await runtime.classify(classifier, inputs, k, admission)


def server_timing(decode_ms: float, preprocess_ms: float, timing: BatchTiming) -> str:
    """Where the time went, for browsers' dev tools and for curl -v."""
    return (f"decode;dur={decode_ms:.3f}, preprocess;dur={preprocess_ms:.3f}, queue;dur={timing.queue_ms:.3f}, "
            f"inference;dur={timing.inference_ms:.3f};desc=\"batch of {timing.batch_size}\"")


def to_schema(predictions: list[InferencePrediction]) -> list[Prediction]:
    return [Prediction(class_id=p.class_id, label=p.label, score=p.score) for p in predictions]


Version = Annotated[int, FastPath(ge=1, le=1_000_000_000, description="Model version number")]
SINGLE_DOC = "Classify one image: multipart field `file`, a raw image body, or JSON {\"image\": base64}"
BATCH_DOC = ("Classify many images: multipart fields `files` or JSON {\"images\": [base64, ...]}; "
             "a bad image fails only its item")


def finish(response: Response, classifier: Classifier, decode_ms: float, preprocess_ms: float,
           timing: BatchTiming) -> None:
    response.headers["Server-Timing"] = server_timing(decode_ms, preprocess_ms, timing)
    response.headers[MODEL_VERSION_HEADER] = f"{classifier.name}/{classifier.version}"


async def classify_one(classifier: Classifier, request: Request, runtime: Runtime, response: Response,
                       top_k: int | None, explain: str | None) -> PredictResponse:
    k = resolve_top_k(classifier, top_k, runtime.settings.default_top_k)
    with admit_or_raise(runtime, classifier, 1) as admission:  # before the body is read: overload is cheap
        image = await read_single(request, runtime.settings)
        if image.error:
            raise image.error
        array, decode_ms, preprocess_ms = await preprocess_upload(classifier, image.data)
        [predictions], timing = await classify_or_raise(runtime, classifier, [array], k, admission)
    finish(response, classifier, decode_ms, preprocess_ms, timing)
    return PredictResponse(model=classifier.name, version=classifier.version, predictions=to_schema(predictions),
                           input_image=input_data_url(array) if explain == "input" else None)


async def classify_many(classifier: Classifier, request: Request, runtime: Runtime, response: Response,
                        top_k: int | None, explain: str | None) -> BatchResponse:
    k = resolve_top_k(classifier, top_k, runtime.settings.default_top_k)
    images = await read_many(request, runtime.settings)
    with admit_or_raise(runtime, classifier, len(images)) as admission:
        items = [BatchItem(filename=image.filename) for image in images]
        inputs, positions = [], []
        decode_ms = preprocess_ms = 0.0
        for position, image in enumerate(images):
            try:
                if image.error:
                    raise image.error
                array, decode, preprocess = await preprocess_upload(classifier, image.data)
            except ApiError as exc:
                items[position].error = ItemError(status=exc.status_code, code=exc.code, message=exc.message)
                continue
            inputs.append(array)
            positions.append(position)
            if explain == "input":
                items[position].input_image = input_data_url(array)
            decode_ms, preprocess_ms = decode_ms + decode, preprocess_ms + preprocess
        timing = BatchTiming()
        if inputs:
            results, timing = await classify_or_raise(runtime, classifier, inputs, k, admission)
            for position, predictions in zip(positions, results):
                items[position].predictions = to_schema(predictions)
    finish(response, classifier, decode_ms, preprocess_ms, timing)
    return BatchResponse(model=classifier.name, version=classifier.version, results=items)


RESPONSES = {**INPUT_ERRORS, **NOT_FOUND, **NOT_READY}
SINGLE_BODY = request_body_doc(batch=False)
BATCH_BODY = request_body_doc(batch=True)


@router.post("/{name}/predict", response_model=PredictResponse, responses=RESPONSES, summary=SINGLE_DOC,
             openapi_extra=SINGLE_BODY)
async def predict(name: ModelName, request: Request, registry: RegistryDep, runtime: RuntimeDep,
                  response: Response, top_k: TopK = None, explain: Explain = None) -> PredictResponse:
    return await classify_one(lookup_classifier(registry, name), request, runtime, response, top_k, explain)


@router.post("/{name}/predict/batch", response_model=BatchResponse, responses=RESPONSES, summary=BATCH_DOC,
             openapi_extra=BATCH_BODY)
async def predict_batch(name: ModelName, request: Request, registry: RegistryDep, runtime: RuntimeDep,
                        response: Response, top_k: TopK = None, explain: Explain = None) -> BatchResponse:
    return await classify_many(lookup_classifier(registry, name), request, runtime, response, top_k, explain)


@router.post("/{name}/versions/{version}/predict", response_model=PredictResponse, responses=RESPONSES,
             summary=SINGLE_DOC + ", with a given model version", openapi_extra=SINGLE_BODY)
async def predict_version(name: ModelName, version: Version, request: Request, registry: RegistryDep,
                          runtime: RuntimeDep, response: Response, top_k: TopK = None,
                          explain: Explain = None) -> PredictResponse:
    return await classify_one(lookup_classifier(registry, name, version), request, runtime, response, top_k,
                              explain)


@router.post("/{name}/versions/{version}/predict/batch", response_model=BatchResponse, responses=RESPONSES,
             summary=BATCH_DOC + ", with a given model version", openapi_extra=BATCH_BODY)
async def predict_version_batch(name: ModelName, version: Version, request: Request, registry: RegistryDep,
                                runtime: RuntimeDep, response: Response, top_k: TopK = None,
                                explain: Explain = None) -> BatchResponse:
    return await classify_many(lookup_classifier(registry, name, version), request, runtime, response, top_k,
                               explain)
