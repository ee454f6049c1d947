"""Prediction: one image, or many in one request (one predictor run for the whole batch)."""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from app.errors import ApiError
from app.inference.batcher import BatchTiming, InferenceError, QueueFullError, QueueTimeoutError
from app.inference.classifier import Classifier, Input, Outcome
from app.inference.postprocess import Prediction as InferencePrediction
from app.inference.preprocess import (
    ImageDecodeError,
    ImageTooLargeError,
    PreprocessError,
    UnsupportedImageError,
    render_input_png,
)
from app.routers.deps import runtime_of
from app.routers.params import PredictParams, VersionPredictParams, parameters_doc, parse_params
from app.routers.uploads import read_many, read_single, request_body_doc
from app.runtime import Admission, Runtime
from app.telemetry import MODEL_VERSION_HEADER
from app.routers.models import NOT_FOUND, NOT_READY, lookup_classifier
from app.schemas import BatchItem, BatchResponse, ErrorResponse, ItemError, Prediction, PredictResponse

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/models", tags=["predict"])
T = TypeVar("T")
R = TypeVar("R")


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


@dataclass
class LocalInput:
    """An upload decoded and preprocessed in this process."""

    array: np.ndarray
    decode_ms: float
    preprocess_ms: float

    def data_url(self) -> str:
        return input_data_url(self.array)


async def prepare_upload(classifier: Classifier, data: bytes, explain: str | None) -> LocalInput | None:
    """None: the encoded bytes are queued as they are, and even the header is read where the
    predictor runs. In process isolation that is the predictor's child, on the core the server
    process is not using, and a hostile header that crashes a parser crashes a child, not the
    server. The child applies the same limits and reports the same errors by name, which the route
    maps to the same 4xx; only the order changes (an unreadable file queues first). Checking the
    header here as well cost the server 20-35 us per LeNet request (in-process harness at c32),
    and the server process is LeNet's bottleneck. With explain=input the client wants the model
    input back, so that one is made here, in a worker thread."""
    if explain != "input":
        return None
    image = client_errors(classifier.preprocessor.open, data)
    return LocalInput(*await run_in_threadpool(client_errors, classifier.preprocessor.timed, image))


def client_errors(function: Callable[[T], R], argument: T) -> R:
    """Map the preprocessing module's errors to client statuses: never a 500 for a client's bytes."""
    try:
        return function(argument)
    except (ImageDecodeError, ImageTooLargeError, PreprocessError) as exc:
        raise input_error(exc) from exc


def input_error(exc: Exception) -> ApiError:
    """What one input's failure means to the client: 4xx for its bytes, 500 for anything else."""
    if isinstance(exc, UnsupportedImageError):
        return ApiError(415, "unsupported_media_type", str(exc))
    if isinstance(exc, ImageDecodeError):
        return ApiError(400, "invalid_image", str(exc))
    if isinstance(exc, ImageTooLargeError):
        return ApiError(413, "image_too_large", str(exc))
    if isinstance(exc, PreprocessError):
        return ApiError(422, "unusable_image", str(exc))
    log.error("preparing an image failed: %s: %s", type(exc).__name__, exc)
    return ApiError(500, "inference_failed", f"preparing the image failed on the server: {type(exc).__name__}")


def overloaded(exc: QueueFullError) -> ApiError:
    return ApiError(503, "overloaded", f"the server is at capacity: {exc}; retry shortly",
                    headers={"Retry-After": "1"})


def admit_or_raise(runtime: Runtime, classifier: Classifier, images: int) -> Admission:
    """Refuse an overload before reading or decoding anything more of the request. The admission
    is a context manager: leaving it releases what the request still holds."""
    try:
        return runtime.admit(classifier, images)
    except QueueFullError as exc:
        raise overloaded(exc) from exc


class BatcherErrors:
    """The batcher's errors as API errors: 503 overloaded, 504 timeout, 500 for a failed batch.
    A class, not @contextmanager: the generator version cost a few us on every prediction."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, trace: object) -> None:
        if isinstance(exc, QueueFullError):
            raise overloaded(exc) from exc
        if isinstance(exc, QueueTimeoutError):
            raise ApiError(504, "timeout", f"inference did not finish in time: {exc}") from exc
        if isinstance(exc, InferenceError):
            raise ApiError(500, "inference_failed", str(exc)) from exc


async def classify_or_raise(runtime: Runtime, classifier: Classifier, inputs: Sequence[Input],
                            admission: Admission) -> tuple[list[Outcome], BatchTiming]:
    with BatcherErrors():
        return await runtime.classify(classifier, inputs, admission)


def server_timing(decode_ms: float, preprocess_ms: float, timing: BatchTiming) -> str:
    """Where the time went, for browsers' dev tools and for curl -v."""
    return (f"decode;dur={decode_ms:.3f}, preprocess;dur={preprocess_ms:.3f}, queue;dur={timing.queue_ms:.3f}, "
            f"inference;dur={timing.inference_ms:.3f};desc=\"batch of {timing.batch_size}\"")


def to_schema(predictions: list[InferencePrediction]) -> list[Prediction]:
    return [Prediction(class_id=p.class_id, label=p.label, score=p.score) for p in predictions]


SINGLE_DOC = "Classify one image: multipart field `file`, a raw image body, or JSON {\"image\": base64}"
BATCH_DOC = ("Classify many images: multipart fields `files` or JSON {\"images\": [base64, ...]}; "
             "a bad image fails only its item")


def json_response(body: PredictResponse | BatchResponse, classifier: Classifier, decode_ms: float,
                  preprocess_ms: float, timing: BatchTiming) -> Response:
    """The body as the route's response_model documents it, serialised once: FastAPI's own path
    (validate the returned model again, dump it, merge a sub-response's headers) cost the LeNet
    route's bottleneck, the server process, ~10 us per request."""
    return Response(body.model_dump_json(), media_type="application/json", headers={
        "Server-Timing": server_timing(decode_ms, preprocess_ms, timing),
        MODEL_VERSION_HEADER: f"{classifier.name}/{classifier.version}"})


def resolve_request(request: Request, params: PredictParams) -> tuple[Runtime, Classifier, int]:
    """The runtime, the model version the request names (404/503 if none serves), and its top_k."""
    runtime = runtime_of(request)
    classifier = lookup_classifier(runtime.registry, params.name, params.model_version)
    return runtime, classifier, resolve_top_k(classifier, params.top_k, runtime.settings.default_top_k)


async def classify_one(request: Request, params: PredictParams) -> Response:
    runtime, classifier, k = resolve_request(request, params)
    with admit_or_raise(runtime, classifier, 1) as admission:  # before the body is read: overload is cheap
        image = await read_single(request, runtime.settings)
        if image.error:
            raise image.error
        local = await prepare_upload(classifier, image.data, params.explain)
        model_input = local.array if local else image.data
        [outcome], timing = await classify_or_raise(runtime, classifier, [model_input], admission)
    if outcome.error is not None:
        raise input_error(outcome.error)
    source = local or outcome
    body = PredictResponse(model=classifier.name, version=classifier.version,
                           predictions=to_schema(classifier.postprocess(outcome.probabilities, k)),
                           input_image=local.data_url() if local else None)
    return json_response(body, classifier, source.decode_ms, source.preprocess_ms, timing)


def item_error(exc: ApiError) -> ItemError:
    return ItemError(status=exc.status_code, code=exc.code, message=exc.message)


async def classify_many(request: Request, params: PredictParams) -> Response:
    runtime, classifier, k = resolve_request(request, params)
    images = await read_many(request, runtime.settings)
    with admit_or_raise(runtime, classifier, len(images)) as admission:
        items = [BatchItem(filename=image.filename) for image in images]
        inputs: list[Input] = []
        positions: list[int] = []
        decode_ms = preprocess_ms = 0.0
        for position, image in enumerate(images):
            try:
                if image.error:
                    raise image.error
                local = await prepare_upload(classifier, image.data, params.explain)
            except ApiError as exc:
                items[position].error = item_error(exc)
                continue
            if local:  # explain=input: made here, and shown to the client
                decode_ms, preprocess_ms = decode_ms + local.decode_ms, preprocess_ms + local.preprocess_ms
                items[position].input_image = local.data_url()
            inputs.append(local.array if local else image.data)
            positions.append(position)
        timing = BatchTiming()
        if inputs:
            outcomes, timing = await classify_or_raise(runtime, classifier, inputs, admission)
            for position, outcome in zip(positions, outcomes):
                decode_ms, preprocess_ms = decode_ms + outcome.decode_ms, preprocess_ms + outcome.preprocess_ms
                if outcome.error is not None:
                    items[position].error = item_error(input_error(outcome.error))
                else:
                    items[position].predictions = to_schema(classifier.postprocess(outcome.probabilities, k))
    body = BatchResponse(model=classifier.name, version=classifier.version, results=items)
    return json_response(body, classifier, decode_ms, preprocess_ms, timing)


RESPONSES = {**INPUT_ERRORS, **NOT_FOUND, **NOT_READY}
SINGLE = {**request_body_doc(batch=False), **parameters_doc(PredictParams)}
BATCH = {**request_body_doc(batch=True), **parameters_doc(PredictParams)}
VERSION_SINGLE = {**request_body_doc(batch=False), **parameters_doc(VersionPredictParams)}
VERSION_BATCH = {**request_body_doc(batch=True), **parameters_doc(VersionPredictParams)}


# The routes declare only the request: their parameters are parsed by parse_params (see params.py)
# and their bodies are returned ready-serialised (json_response); response_model documents them.
@router.post("/{name}/predict", response_model=PredictResponse, responses=RESPONSES, summary=SINGLE_DOC,
             openapi_extra=SINGLE)
async def predict(request: Request) -> Response:
    return await classify_one(request, parse_params(request, PredictParams))


@router.post("/{name}/predict/batch", response_model=BatchResponse, responses=RESPONSES, summary=BATCH_DOC,
             openapi_extra=BATCH)
async def predict_batch(request: Request) -> Response:
    return await classify_many(request, parse_params(request, PredictParams))


@router.post("/{name}/versions/{version}/predict", response_model=PredictResponse, responses=RESPONSES,
             summary=SINGLE_DOC + ", with a given model version", openapi_extra=VERSION_SINGLE)
async def predict_version(request: Request) -> Response:
    return await classify_one(request, parse_params(request, VersionPredictParams))


@router.post("/{name}/versions/{version}/predict/batch", response_model=BatchResponse, responses=RESPONSES,
             summary=BATCH_DOC + ", with a given model version", openapi_extra=VERSION_BATCH)
async def predict_version_batch(request: Request) -> Response:
    return await classify_many(request, parse_params(request, VersionPredictParams))
