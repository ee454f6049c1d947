"""The pipe's wire format between the server and a predictor process: JSON headers plus raw
float32 bytes (no pickle). A request is a header and one payload; a reply is a header, the outputs,
and (explain=input) the model inputs asked for back."""

from __future__ import annotations

import json
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from app.inference.handler import Classified
from app.inference.input_errors import ImageDecodeError, ImageTooLargeError, PreprocessError, UnsupportedImageError
from app.inference.preprocess import ExplainedImage, Input

# Errors a child reports by name and the parent raises again, so that routes map them as before.
CLIENT_ERRORS = {cls.__name__: cls for cls in (ImageDecodeError, UnsupportedImageError, ImageTooLargeError,
                                              PreprocessError)}


def send_header(conn: Connection, header: dict[str, Any]) -> None:
    conn.send_bytes(json.dumps(header).encode())


def encode_items(inputs: list[Input]) -> tuple[list[list[Any]], bytes]:
    """Inputs as the wire's item list plus one payload: encoded images as they are (marked when
    their model input is wanted back), arrays as float32."""
    items: list[list[Any]] = []
    parts: list[bytes | memoryview] = []
    for item in inputs:
        if isinstance(item, np.ndarray):
            array = np.ascontiguousarray(item, dtype=np.float32)
            items.append(["array", list(array.shape)])
            parts.append(array.reshape(-1).view(np.uint8).data)  # joined below: copied once, not twice
        else:
            items.append(["explain" if isinstance(item, ExplainedImage) else "encoded", len(item)])
            parts.append(item)
    return items, b"".join(parts)


def split_payload(items: list[list[Any]], payload: bytes) -> list[Input]:
    inputs: list[Input] = []
    offset = 0
    for kind, detail in items:
        if kind == "array":
            size = 4 * int(np.prod(detail))
            inputs.append(np.frombuffer(payload, np.float32, size // 4, offset).reshape(detail))
        else:
            size = int(detail)
            data = payload[offset : offset + size]
            inputs.append(ExplainedImage(data) if kind == "explain" else data)
        offset += size
    return inputs


def encode_reply(classified: Classified) -> tuple[dict[str, Any], np.ndarray, bytes]:
    """A child's answer: the reply header, the outputs, and the model inputs asked for back."""
    explained = sorted(classified.explained.items())
    header = {
        "ok": True,
        "errors": [[index, type(exc).__name__, str(exc)] for index, exc in classified.errors.items()],
        "timings": classified.timings,
        "inference_ms": classified.inference_ms,
        "explained": [[index, list(array.shape)] for index, array in explained],
    }
    extra = b"".join(np.ascontiguousarray(array, dtype=np.float32).tobytes() for _, array in explained)
    return header, np.ascontiguousarray(classified.outputs, dtype=np.float32), extra


def decode_reply(header: dict[str, Any], outputs: np.ndarray, extra: bytes) -> Classified:
    """The parent's copy of a child's answer (see encode_reply)."""
    errors = {index: rebuild_error(name, message) for index, name, message in header["errors"]}
    timings = [(float(decode), float(preprocess)) for decode, preprocess in header["timings"]]
    explained = split_explained(header["explained"], extra) if header.get("explained") else {}
    return Classified(outputs, errors, timings, float(header["inference_ms"]), explained)


def split_explained(spec: list[list[Any]], data: bytes) -> dict[int, np.ndarray]:
    explained = {}
    offset = 0
    for index, shape in spec:
        count = int(np.prod(shape))
        explained[int(index)] = np.frombuffer(data, np.float32, count, offset).reshape(shape)
        offset += 4 * count
    return explained


def rebuild_error(name: str, message: str) -> Exception:
    """The parent's copy of an error a child reported for one input."""
    kind = CLIENT_ERRORS.get(name)
    return kind(message) if kind is not None else RuntimeError(f"{name}: {message}")
