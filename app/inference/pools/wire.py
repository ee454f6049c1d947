"""The pipe's wire format between the server and a predictor process: JSON headers plus raw
float32 bytes (no pickle). A request is a header and one payload; a reply is a header, the outputs,
and (explain=input) the model inputs asked for back.

Each side writes a request or a reply in one write, as messages that `Connection.recv_bytes` reads
one by one. The other side sleeps in a read until something arrives, and each write that wakes it
costs a wake-up (on a VM, an interrupt to another virtual CPU); with a header, a length prefix and
a payload written one after another, the woken reader also ran on the writer's core between
writes, and a lone request's hop took several times the pipe's round trip."""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from app.inference.handler import Classified
from app.inference.input_errors import ImageDecodeError, ImageTooLargeError, PreprocessError, UnsupportedImageError
from app.inference.preprocess import ExplainedImage, Input

# Errors a child reports by name and the parent raises again, so that routes map them as before.
CLIENT_ERRORS = {cls.__name__: cls for cls in (ImageDecodeError, UnsupportedImageError, ImageTooLargeError,
                                              PreprocessError)}


Buffer = bytes | memoryview


def send_header(conn: Connection, header: dict[str, Any]) -> None:
    send_messages(conn, [[json.dumps(header).encode()]])


def send_messages(conn: Connection, messages: Sequence[Sequence[Buffer]]) -> None:
    """Messages (each given as its parts) framed as `Connection.send_bytes` frames them, written
    with one copy and, up to the socket's buffer size, one write."""
    chunks: list[Buffer] = []
    for parts in messages:
        size = sum(memoryview(part).nbytes for part in parts)
        chunks.append(struct.pack("!i", size) if size <= 0x7FFFFFFF else struct.pack("!iQ", -1, size))
        chunks.extend(parts)
    data = memoryview(b"".join(chunks))
    fd = conn.fileno()
    while data:
        data = data[os.write(fd, data):]


def float32_bytes(array: np.ndarray) -> memoryview:
    """An array's values as flat float32 bytes (no copy where they already are)."""
    return np.ascontiguousarray(array, dtype=np.float32).reshape(-1).view(np.uint8).data


def encode_items(inputs: list[Input]) -> tuple[list[list[Any]], list[Buffer]]:
    """Inputs as the wire's item list plus the parts of one payload: encoded images as they are
    (marked when their model input is wanted back), arrays as float32."""
    items: list[list[Any]] = []
    parts: list[Buffer] = []
    for item in inputs:
        if isinstance(item, np.ndarray):
            items.append(["array", list(item.shape)])
            parts.append(float32_bytes(item))  # copied once, by send_messages
        else:
            items.append(["explain" if isinstance(item, ExplainedImage) else "encoded", len(item)])
            parts.append(item)
    return items, parts


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
    """A child's answer: the reply header, the outputs, and the model inputs asked for back
    (sent only where the header lists some)."""
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
