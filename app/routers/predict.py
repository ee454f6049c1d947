"""/v1 prediction: one image, or many in one request (one predictor run for the whole batch).

Each route reads top to bottom as the service's steps: lookup -> admit -> read -> classify ->
results."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
from fastapi import APIRouter, Request, Response

from app.errors import ApiError
from app.inference.batcher import BatchTiming
from app.inference.model_version import ModelVersion
from app.inference.postprocess import Prediction as ClassPrediction
from app.inference.preprocess import ExplainedImage, render_input_png
from app.routers.deps import service_of
from app.routers.params import PredictParams, VersionPredictParams, parameters_doc, parse_params
from app.routers.uploads import read_many, read_single, request_body_doc
from app.schemas import (
    NOT_FOUND,
    NOT_READY,
    BatchItem,
    BatchResponse,
    ErrorResponse,
    ItemError,
    Prediction,
    PredictResponse,
)
from app.service import ModelService
from app.telemetry import MODEL_VERSION_HEADER

router = APIRouter(prefix="/v1/models", tags=["predict"])

INPUT_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Empty, truncated or corrupt image"},
    408: {"model": ErrorResponse, "description": "The body did not arrive within APP_BODY_TIMEOUT_SECONDS"},
    413: {"model": ErrorResponse, "description": "File, body, pixel count (per image or per request) over the limit"},
    415: {"model": ErrorResponse, "description": "Not an image format we accept"},
    422: {"model": ErrorResponse, "description": "Bad parameter (e.g. top_k), missing field, or unusable image"},
    500: {"model": ErrorResponse, "description": "Inference failed on the server; quote the request id"},
    503: {"model": ErrorResponse, "description": "Overloaded (queue full, see Retry-After) or model not ready"},
    504: {"model": ErrorResponse, "description": "No result within APP_REQUEST_TIMEOUT_MS"},
}


def input_data_url(array: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(render_input_png(array)).decode("ascii")


def as_input(data: bytes, explain: str | None) -> bytes:
    """The encoded image as queued: with explain=input, marked so that its model input (made where
    the predictor decodes it, never in this process) comes back with the answer."""
    return ExplainedImage(data) if explain == "input" else data


def server_timing(decode_ms: float, preprocess_ms: float, timing: BatchTiming) -> str:
    """Where the time went, for browsers' dev tools and for curl -v."""
    return (f"decode;dur={decode_ms:.3f}, preprocess;dur={preprocess_ms:.3f}, queue;dur={timing.queue_ms:.3f}, "
            f"inference;dur={timing.inference_ms:.3f};desc=\"batch of {timing.batch_size}\"")


def to_schema(predictions: list[ClassPrediction]) -> list[Prediction]:
    return [Prediction(class_id=p.class_id, label=p.label, score=p.score) for p in predictions]


SINGLE_DOC = "Classify one image: multipart field `file`, a raw image body, or JSON {\"image\": base64}"
BATCH_DOC = ("Classify many images: multipart fields `files` or JSON {\"images\": [base64, ...]}; "
             "a bad image fails only its item")


def json_response(body: PredictResponse | BatchResponse, model: ModelVersion, decode_ms: float,
                  preprocess_ms: float, timing: BatchTiming) -> Response:
    """The body as the route's response_model documents it (fields with nothing to say, such as
    input_image without explain=input, left out), serialised once: FastAPI's own path validates
    the returned model again, dumps it and merges a sub-response's headers, in the server process
    that is a small model's bottleneck."""
    return Response(body.model_dump_json(exclude_none=True), media_type="application/json", headers={
        "Server-Timing": server_timing(decode_ms, preprocess_ms, timing),
        MODEL_VERSION_HEADER: f"{model.name}/{model.version}"})


def resolve_request(request: Request, params: PredictParams) -> tuple[ModelService, ModelVersion, int]:
    """The service, the model version the request names (404/503 if none serves), and its top_k."""
    service = service_of(request)
    model = service.lookup(params.name, params.model_version)
    return service, model, service.resolve_top_k(model, params.top_k)


async def classify_one(request: Request, params: PredictParams) -> Response:
    service, model, k = resolve_request(request, params)
    service.check_room(model)  # before the body is read: an overload is refused cheaply
    image = await read_single(request, service.settings, service.json_parser)
    if image.error:
        raise image.error
    with service.admit(model, 1) as admission:
        [outcome], timing = await service.classify(admission, [as_input(image.data, params.explain)])
    predictions = service.predictions(model, outcome, k)
    body = PredictResponse(model=model.name, version=model.version, predictions=to_schema(predictions),
                           input_image=input_data_url(outcome.model_input) if outcome.model_input is not None else None)
    return json_response(body, model, outcome.decode_ms, outcome.preprocess_ms, timing)


def item_error(exc: ApiError) -> ItemError:
    return ItemError(status=exc.status_code, code=exc.code, message=exc.message)


async def classify_many(request: Request, params: PredictParams) -> Response:
    service, model, k = resolve_request(request, params)
    service.check_room(model)
    images = await read_many(request, service.settings, service.json_parser)
    items = [BatchItem(filename=image.filename) for image in images]
    inputs: list[bytes] = []
    positions: list[int] = []
    for position, image in enumerate(images):
        if image.error:
            items[position].error = item_error(image.error)
            continue
        inputs.append(as_input(image.data, params.explain))
        positions.append(position)
    service.check_request_pixels(model, inputs)
    timing = BatchTiming()
    decode_ms = preprocess_ms = 0.0
    if inputs:
        with service.admit(model, len(inputs)) as admission:
            outcomes, timing = await service.classify(admission, inputs)
        for position, outcome in zip(positions, outcomes):
            decode_ms, preprocess_ms = decode_ms + outcome.decode_ms, preprocess_ms + outcome.preprocess_ms
            try:
                items[position].predictions = to_schema(service.predictions(model, outcome, k))
            except ApiError as exc:
                items[position].error = item_error(exc)
                continue
            if outcome.model_input is not None:
                items[position].input_image = input_data_url(outcome.model_input)
    body = BatchResponse(model=model.name, version=model.version, results=items)
    return json_response(body, model, decode_ms, preprocess_ms, timing)


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
