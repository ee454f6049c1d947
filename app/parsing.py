"""JSON request bodies, parsed off the event loop when they are large.

`json.loads` holds the GIL for its whole run: a body of tens of megabytes of numbers takes it for
seconds, during which a server thread would not help the event loop at all. Bodies above INLINE_BYTES are parsed in a
helper process instead (one, started on first use, from the predictors' fork server), which also
does what follows parsing and costs as much: base64 images are decoded to bytes, FP32 tensor data
turned into float32 arrays. What comes back is compact and cheap to unpickle. Smaller bodies take
the same function inline.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import numpy as np

log = logging.getLogger(__name__)

INLINE_BYTES = 256 * 1024
Mode = Literal["images", "tensors"]


@dataclass(frozen=True)
class ParseFailure:
    """The body is not the JSON it should be: a client's mistake, and what it was."""

    message: str


@dataclass(frozen=True)
class Base64Failure:
    """One image's base64 could not be decoded."""

    message: str


def decode_base64(value: Any) -> bytes | Base64Failure | Any:
    """A base64 string (or a data URL) as bytes; anything that is not a string as it is."""
    if not isinstance(value, str):
        return value
    text = value.split(",", 1)[1] if value.startswith("data:") and "," in value else value
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        return Base64Failure(f"not valid base64: {exc}")


def parse_body(body: bytes, mode: Mode) -> Any:
    """Parse `body` as JSON and decode what the mode's routes need: "images" (/v1) turns the
    `image` / `images` strings into bytes; "tensors" (/v2) turns each input's FP32 `data` into a
    flat float32 array. Returns a ParseFailure for a body that is not JSON (too deeply nested
    included)."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        reason = "it is nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        return ParseFailure(f"the body is not valid JSON: {reason}")
    if mode == "images" and isinstance(payload, dict):
        if "image" in payload:
            payload["image"] = decode_base64(payload["image"])
        if isinstance(payload.get("images"), list):
            payload["images"] = [decode_base64(item) for item in payload["images"]]
    elif mode == "tensors" and isinstance(payload, dict) and isinstance(payload.get("inputs"), list):
        for spec in payload["inputs"]:
            if isinstance(spec, dict) and spec.get("datatype") == "FP32" and isinstance(spec.get("data"), list):
                try:
                    spec["data"] = np.asarray(spec["data"], dtype=np.float32).ravel()
                except (TypeError, ValueError, OverflowError, RecursionError):
                    pass  # left as it is: the route says what is wrong with it
    return payload


class JsonParser:
    """parse_body, inline for small bodies and in a helper process for large ones."""

    def __init__(self, context: Any, initializer: Callable[[str], None] | None = None) -> None:
        self._context = context
        self._initializer = initializer  # run in the helper with its name ("json-parser")
        self._pool: ProcessPoolExecutor | None = None

    async def parse(self, body: bytes, mode: Mode) -> Any:
        if len(body) <= INLINE_BYTES:
            return parse_body(body, mode)
        if self._pool is None:
            initializer = partial(self._initializer, "json-parser") if self._initializer else None
            self._pool = ProcessPoolExecutor(max_workers=1, mp_context=self._context, initializer=initializer)
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, parse_body, body, mode)
        except BrokenProcessPool:
            # The helper died on this body (out of memory, most likely): start another next time.
            log.warning("the JSON helper process died parsing a %d-byte body; starting a new one", len(body))
            self._pool = None
            return ParseFailure("the body could not be parsed within the server's memory")

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
