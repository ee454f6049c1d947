"""The Open Inference Protocol (KServe v2), as Triton's and KServe's standard clients speak it.

Inputs: an FP32 tensor already preprocessed to the manifest's shape, or a BYTES tensor of encoded
images that we decode and preprocess. Both the JSON form and the binary tensor extension
(`Inference-Header-Content-Length`) are accepted. Output: `probabilities` (softmax over the labels);
the classification extension (`"parameters": {"classification": k}` on the requested output)
returns "probability:index:label" strings, best first.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from app.errors import ApiError
from app.inference.handler import Outcome
from app.inference.model_version import ModelVersion
from app.inference.postprocess import rank
from app.inference.preprocess import Input
from app.parsing import ParseFailure
from app.routers.deps import ModelName, ServiceDep, service_of
from app.routers.uploads import check_count, too_large
from app.service import ModelService, probabilities_of

router = APIRouter(prefix="/v2", tags=["kserve-v2"])

PROBABILITIES = "probabilities"
HEADER_LENGTH = "inference-header-content-length"
SERVER_EXTENSIONS = ["classification", "binary_tensor_data", "model_repository"]


def parse_version(version: str | None) -> int | None:
    if version is None or version == "":
        return None
    if not (version.isascii() and version.isdigit()) or len(version) > 9 or int(version) < 1:
        raise ApiError(400, "invalid_version", f"version must be a positive integer, got {version[:20]!r}")
    return int(version)


@router.get("", summary="Server metadata")
async def server_metadata() -> dict[str, Any]:
    return {"name": "paddle-classifier-serving", "version": "0.1.0", "extensions": SERVER_EXTENSIONS}


@router.get("/health/live", summary="Liveness (v2)")
async def live() -> dict[str, bool]:
    return {"live": True}


@router.get("/health/ready", summary="Readiness (v2)")
async def ready(service: ServiceDep) -> dict[str, bool]:
    is_ready, problems = service.registry.readiness()
    if not is_ready or service.draining:
        raise ApiError(503, "not_ready", "; ".join(problems) or "shutting down")
    return {"ready": True}


def model_metadata(model: ModelVersion, versions: list[int]) -> dict[str, Any]:
    manifest = model.manifest
    classes = len(manifest.labels)
    return {
        "name": model.name,
        "versions": [str(v) for v in versions],
        "platform": "paddle_inference",
        "inputs": [{"name": manifest.input.name, "datatype": "FP32", "shape": manifest.input.shape},
                   {"name": "image_bytes", "datatype": "BYTES", "shape": [-1]}],
        "outputs": [{"name": PROBABILITIES, "datatype": "FP32", "shape": [-1, classes]}],
    }


@router.get("/models/{name}", summary="Model metadata (v2)")
async def metadata(name: ModelName, service: ServiceDep) -> dict[str, Any]:
    return model_metadata(service.lookup(name), service.versions_of(name))


@router.get("/models/{name}/versions/{version}", summary="Model version metadata (v2)")
async def version_metadata(name: ModelName, version: str, service: ServiceDep) -> dict[str, Any]:
    return model_metadata(service.lookup(name, parse_version(version)), service.versions_of(name))


@router.get("/models/{name}/ready", summary="Model readiness (v2)")
async def model_ready(name: ModelName, service: ServiceDep) -> dict[str, Any]:
    service.lookup(name)
    return {"name": name, "ready": True}


@router.get("/models/{name}/versions/{version}/ready", summary="Model version readiness (v2)")
async def model_version_ready(name: ModelName, version: str, service: ServiceDep) -> dict[str, Any]:
    service.lookup(name, parse_version(version))
    return {"name": name, "version": version, "ready": True}


@router.post("/models/{name}/infer", summary="Inference (v2): FP32 tensors or BYTES images")
async def infer(name: ModelName, request: Request) -> Response:
    service = service_of(request)  # not a dependency: see params.py
    return await run_infer(service, service.lookup(name), request)


@router.post("/models/{name}/versions/{version}/infer", summary="Inference with a given version (v2)")
async def infer_version(name: ModelName, version: str, request: Request) -> Response:
    service = service_of(request)
    return await run_infer(service, service.lookup(name, parse_version(version)), request)


async def read_infer_request(request: Request, service: ModelService) -> tuple[dict[str, Any], bytes]:
    body = await request.body()
    header_length = request.headers.get(HEADER_LENGTH)
    if header_length is None:
        json_part, binary = body, b""
    else:
        if not (header_length.isascii() and header_length.isdigit()) or int(header_length) > len(body):
            raise ApiError(400, "invalid_request", f"{HEADER_LENGTH} must be a length within the body")
        json_part, binary = body[: int(header_length)], body[int(header_length):]
    limit = service.settings.max_json_bytes
    if len(json_part) > limit:
        raise ApiError(413, "payload_too_large", f"the JSON part is {len(json_part)} bytes; the limit is {limit}: "
                                                 "send large tensors with the binary tensor data extension")
    payload = await service.json_parser.parse(json_part, "tensors")
    if isinstance(payload, ParseFailure):
        raise ApiError(400, "invalid_request", f"the inference request is not valid JSON: {payload.message}")
    if not isinstance(payload, dict) or not isinstance(payload.get("inputs"), list) or not payload["inputs"]:
        raise ApiError(400, "invalid_request", "the request needs a non-empty 'inputs' list")
    return payload, binary


def tensor_parameters(spec: dict[str, Any]) -> dict[str, Any]:
    parameters = spec.get("parameters")
    if parameters is None:
        return {}
    if not isinstance(parameters, dict):
        raise ApiError(400, "invalid_request", "'parameters' must be an object")
    return parameters


def tensor_data(spec: dict[str, Any], binary: bytes, offset: int) -> tuple[Any, int]:
    """The tensor's data (a numpy array for FP32, a list of bytes for BYTES) and the next offset."""
    size = tensor_parameters(spec).get("binary_data_size")
    datatype = spec.get("datatype")
    if size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 0 or offset + size > len(binary):
            raise ApiError(400, "invalid_request", "binary_data_size runs past the end of the body")
        chunk = binary[offset : offset + size]
        if datatype == "FP32":
            if size % 4:
                raise ApiError(400, "invalid_request", "FP32 binary data must be a multiple of 4 bytes")
            return np.frombuffer(chunk, dtype="<f4"), offset + size
        return split_bytes_tensor(chunk), offset + size
    if "data" not in spec:
        raise ApiError(400, "invalid_request", f"input {str(spec.get('name'))[:64]!r} has no data")
    data = spec["data"]
    if datatype == "FP32":
        if isinstance(data, np.ndarray):
            return data, offset  # parsed as float32 already (parsing.parse_body)
        raise ApiError(400, "invalid_request", "FP32 data must be a (nested) list of numbers")
    if not isinstance(data, list) or not all(isinstance(item, str) for item in data):
        raise ApiError(400, "invalid_request", "BYTES data must be a list of strings (or use binary data)")
    try:
        return [item.encode("latin-1") for item in data], offset
    except UnicodeEncodeError as exc:
        raise ApiError(400, "invalid_request", "BYTES strings must hold bytes (code points up to 255)") from exc


def split_bytes_tensor(chunk: bytes) -> list[bytes]:
    """The binary BYTES encoding: each element is a 4-byte little-endian length, then the bytes."""
    items, position = [], 0
    while position < len(chunk):
        if position + 4 > len(chunk):
            raise ApiError(400, "invalid_request", "truncated BYTES tensor")
        (length,) = struct.unpack_from("<I", chunk, position)
        position += 4
        if position + length > len(chunk):
            raise ApiError(400, "invalid_request", "truncated BYTES tensor element")
        items.append(chunk[position : position + length])
        position += length
    return items


def stack_probabilities(outcomes: list[Outcome]) -> np.ndarray:
    """(N, K) for the response tensor; one bad image fails the whole request (V2 has no per-item errors)."""
    return np.stack([probabilities_of(outcome) for outcome in outcomes])


def build_inputs(service: ModelService, model: ModelVersion, spec: dict[str, Any], data: Any) -> list[Input]:
    expected = list(model.input_shape)
    limits = service.settings
    shape = spec.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**31
                                              for d in shape):
        raise ApiError(400, "invalid_request", "each input needs a 'shape' list of non-negative integers")
    if spec.get("datatype") == "FP32":
        if len(shape) != 4 or shape[1:] != expected or shape[0] < 1:
            raise ApiError(400, "invalid_shape", f"FP32 input shape {shape} does not match the model's "
                                                 f"[-1, {', '.join(map(str, expected))}]")
        check_count(shape[0], limits.max_batch_files)
        if data.size != int(np.prod(shape)):
            raise ApiError(400, "invalid_shape", f"{data.size} values do not fill shape {shape}")
        if not np.isfinite(data).all():
            raise ApiError(400, "invalid_request", "FP32 input holds NaN or infinity")
        return list(data.reshape(shape))
    if spec.get("datatype") == "BYTES":
        if not data or len(data) != int(np.prod(shape)):
            raise ApiError(400, "invalid_shape", f"{len(data)} images do not fill shape {shape}")
        check_count(len(data), limits.max_batch_files)
        if any(len(item) > limits.max_upload_bytes for item in data):
            raise too_large(None, limits.max_upload_bytes)
        service.check_request_pixels(model, data)
        return list(data)  # encoded images: the predictor decodes them
    raise ApiError(400, "invalid_datatype", f"datatype {str(spec.get('datatype'))[:32]!r}: use FP32 or BYTES")


async def run_infer(service: ModelService, model: ModelVersion, request: Request) -> Response:
    service.check_room(model)  # before the body is read
    payload, binary = await read_infer_request(request, service)
    spec = payload["inputs"][0]
    if len(payload["inputs"]) != 1 or not isinstance(spec, dict):
        raise ApiError(400, "invalid_request", "exactly one input tensor is expected")
    data, _offset = tensor_data(spec, binary, 0)
    batch = build_inputs(service, model, spec, data)
    with service.admit(model, len(batch)) as admission:
        outcomes, _timing = await service.classify(admission, batch)
    probabilities = stack_probabilities(outcomes)
    outputs = render_outputs(model, payload.get("outputs"), probabilities)
    body = {"model_name": model.name, "model_version": str(model.version), "outputs": outputs}
    if "id" in payload:
        body["id"] = payload["id"]
    return JSONResponse(body)


def render_outputs(model: ModelVersion, requested: Any, probabilities: np.ndarray) -> list[dict[str, Any]]:
    tensors = {PROBABILITIES: probabilities}
    wanted = requested if isinstance(requested, list) and requested else [{"name": PROBABILITIES}]
    outputs = []
    for output in wanted:
        name = output.get("name") if isinstance(output, dict) else None
        if name not in tensors:
            raise ApiError(400, "invalid_output", f"unknown output {name!r}; outputs are {sorted(tensors)}")
        values = tensors[name]
        k = tensor_parameters(output).get("classification")
        if k is None:
            outputs.append({"name": name, "datatype": "FP32", "shape": list(values.shape),
                            "data": values.astype(float).ravel().tolist()})
            continue
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= values.shape[1]:
            raise ApiError(400, "invalid_top_k", f"classification must be 1..{values.shape[1]}, got {k!r}")
        order = rank(values, k)
        strings = [f"{values[row, index]:f}:{index}:{model.labels[index]}"
                   for row in range(len(values)) for index in order[row]]
        outputs.append({"name": name, "datatype": "BYTES", "shape": [len(values), k], "data": strings})
    return outputs
