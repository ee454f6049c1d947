"""Prediction: one image, or many in one request (one predictor run for the whole batch)."""

from __future__ import annotations

import base64
import logging
from collections.abc import Sequence

import numpy as np
from fastapi import APIRouter, Request, Response

from app.errors import ApiError
from app.inference.batcher import BatchTiming, InferenceError, QueueFullError, QueueTimeoutError
from app.inference.classifier import Classifier, Input, Outcome
from app.inference.postprocess import Prediction as InferencePrediction
from app.inference.preprocess import (
    ExplainedImage,
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


def input_data_url(array: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(render_input_png(array)).decode("ascii")


INPUT_ERRORS = {
    400: {"model": ErrorResponse, "description": "Empty, truncated or corrupt image"},
    408: {"model": ErrorResponse, "description": "The body did not arrive within APP_BODY_TIMEOUT_SECONDS"},
    413: {"model": ErrorResponse, "description": "File, body, pixel count (per image or per request) over the limit"},
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
    """Reserve queue room for a request's images, once they are read. The admission is a context
    manager: leaving it releases what the request still holds."""
    try:
        return runtime.admit(classifier, images)
    except QueueFullError as exc:
        raise overloaded(exc) from exc


def check_room_or_raise(runtime: Runtime, classifier: Classifier, images: int = 1) -> None:
    """Refuse an overload before reading the body; nothing is held while the client sends it."""
    try:
        runtime.check_room(classifier, images)
    except QueueFullError as exc:
        raise overloaded(exc) from exc


def check_request_pixels(classifier: Classifier, images: Sequence[bytes], limit: int) -> None:
    """Bound the decoding one request may ask for: the pixels its images declare, summed (read
    from their headers only). A single image is bounded by the per-image limit where it is
    decoded; this is for requests of several."""
    if len(images) < 2:
        return
    total = 0
    for data in images:
        try:
            width, height = classifier.preprocessor.open(data).size
        except (ImageDecodeError, ImageTooLargeError):
            continue  # that image fails on its own, where it is decoded
        total += width * height
    if total > limit:
        raise ApiError(413, "request_too_large", f"the images add up to {total} pixels; the limit is {limit} "
                                                 f"per request: send them in smaller requests")


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


async def classify_or_raise(runtime: Runtime, inputs: Sequence[Input],
                            admission: Admission) -> tuple[list[Outcome], BatchTiming]:
    with BatcherErrors():
        return await runtime.classify(admission, inputs)


def as_input(data: bytes, explain: str | None) -> Input:
    """The encoded image as queued: with explain=input, marked so that its model input (made where
    the predictor decodes it, never in this process) comes back with the answer."""
    return ExplainedImage(data) if explain == "input" else data


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
    """The body as the route's response_model documents it (fields with nothing to say, such as
    input_image without explain=input, left out), serialised once: FastAPI's own path
    (validate the returned model again, dump it, merge a sub-response's headers) cost the LeNet
    route's bottleneck, the server process, ~10 us per request."""
    return Response(body.model_dump_json(exclude_none=True), media_type="application/json", headers={
        "Server-Timing": server_timing(decode_ms, preprocess_ms, timing),
        MODEL_VERSION_HEADER: f"{classifier.name}/{classifier.version}"})


def resolve_request(request: Request, params: PredictParams) -> tuple[Runtime, Classifier, int]:
    """The runtime, the model version the request names (404/503 if none serves), and its top_k."""
    runtime = runtime_of(request)
    classifier = lookup_classifier(runtime.registry, params.name, params.model_version)
    return runtime, classifier, resolve_top_k(classifier, params.top_k, runtime.settings.default_top_k)


async def classify_one(request: Request, params: PredictParams) -> Response:
    runtime, classifier, k = resolve_request(request, params)
    check_room_or_raise(runtime, classifier)  # before the body is read: an overload is refused cheaply
    image = await read_single(request, runtime.settings, runtime.json_parser)
    if image.error:
        raise image.error
    with admit_or_raise(runtime, classifier, 1) as admission:
        [outcome], timing = await classify_or_raise(runtime, [as_input(image.data, params.explain)], admission)
    if outcome.error is not None:
        raise input_error(outcome.error)
    body = PredictResponse(model=classifier.name, version=classifier.version,
                           predictions=to_schema(classifier.postprocess(outcome.probabilities, k)),
                           input_image=input_data_url(outcome.model_input) if outcome.model_input is not None else None)
    return json_response(body, classifier, outcome.decode_ms, outcome.preprocess_ms, timing)


def item_error(exc: ApiError) -> ItemError:
    return ItemError(status=exc.status_code, code=exc.code, message=exc.message)


async def classify_many(request: Request, params: PredictParams) -> Response:
    runtime, classifier, k = resolve_request(request, params)
    check_room_or_raise(runtime, classifier)
    images = await read_many(request, runtime.settings, runtime.json_parser)
    items = [BatchItem(filename=image.filename) for image in images]
    inputs: list[Input] = []
    positions: list[int] = []
    for position, image in enumerate(images):
        if image.error:
            items[position].error = item_error(image.error)
            continue
        inputs.append(as_input(image.data, params.explain))
        positions.append(position)
    check_request_pixels(classifier, inputs, runtime.settings.max_request_pixels)
    timing = BatchTiming()
    decode_ms = preprocess_ms = 0.0
    if inputs:
        with admit_or_raise(runtime, classifier, len(inputs)) as admission:
            outcomes, timing = await classify_or_raise(runtime, inputs, admission)
        for position, outcome in zip(positions, outcomes):
            decode_ms, preprocess_ms = decode_ms + outcome.decode_ms, preprocess_ms + outcome.preprocess_ms
            if outcome.error is not None:
                items[position].error = item_error(input_error(outcome.error))
                continue
            items[position].predictions = to_schema(classifier.postprocess(outcome.probabilities, k))
            if outcome.model_input is not None:
                items[position].input_image = input_data_url(outcome.model_input)
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
