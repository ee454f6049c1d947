"""Images from a request body, in the three forms /v1 accepts: multipart (`file` / `files`), a raw
image body (`Content-Type: image/*` or `application/octet-stream`), or JSON with base64
(`{"image": "..."}` / `{"images": ["...", ...]}`)."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from starlette.datastructures import UploadFile

from app.config import Settings
from app.errors import ApiError


@dataclass
class ImageInput:
    filename: str | None
    data: bytes = b""
    error: ApiError | None = None


IMAGE_SCHEMA = {"type": "string", "format": "binary", "description": "PNG, JPEG, GIF, BMP, TIFF, WebP or PPM"}
BASE64_SCHEMA = {"type": "string", "format": "byte", "description": "the image file, base64-encoded"}


def request_body_doc(batch: bool) -> dict[str, Any]:
    """The OpenAPI requestBody for a predict route: every accepted form, with examples."""
    if batch:
        multipart = {"type": "object", "required": ["files"],
                     "properties": {"files": {"type": "array", "items": IMAGE_SCHEMA, "minItems": 1}}}
        json_body = {"type": "object", "required": ["images"], "additionalProperties": False,
                     "properties": {"images": {"type": "array", "items": BASE64_SCHEMA, "minItems": 1}}}
        example = {"images": ["iVBORw0KGgoAAAANSUhEUgAA..."]}
    else:
        multipart = {"type": "object", "required": ["file"], "properties": {"file": IMAGE_SCHEMA}}
        json_body = {"type": "object", "required": ["image"], "additionalProperties": False,
                     "properties": {"image": BASE64_SCHEMA}}
        example = {"image": "iVBORw0KGgoAAAANSUhEUgAA..."}
    content: dict[str, Any] = {
        "multipart/form-data": {"schema": multipart},
        "application/json": {"schema": json_body, "example": example},
    }
    if not batch:
        content["image/*"] = {"schema": IMAGE_SCHEMA}
        content["application/octet-stream"] = {"schema": IMAGE_SCHEMA}
    return {"requestBody": {"required": True, "content": content}}


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def read_single(request: Request, settings: Settings) -> ImageInput:
    kind = media_type(request)
    if kind == "multipart/form-data":
        form = await request.form(max_files=1, max_fields=20)
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ApiError(422, "invalid_request", "file: Field required (a multipart file field named 'file')")
        return await read_upload(upload, settings.max_upload_bytes)
    if kind.startswith("image/") or kind == "application/octet-stream":
        return checked(ImageInput(None, await request.body()), settings.max_upload_bytes)
    if kind == "application/json":
        payload = await read_json(request)
        if set(payload) != {"image"}:
            raise ApiError(422, "invalid_request", 'the JSON body must be {"image": "<base64>"}')
        return checked(decode_base64(payload["image"], None), settings.max_upload_bytes)
    raise unsupported(kind)


async def read_many(request: Request, settings: Settings) -> list[ImageInput]:
    kind = media_type(request)
    limit = settings.max_batch_files
    if kind == "multipart/form-data":
        form = await request.form(max_files=limit + 1, max_fields=limit + 20)
        uploads = form.getlist("files")
        if not uploads or not all(isinstance(u, UploadFile) for u in uploads):
            raise ApiError(422, "invalid_request", "files: Field required (repeated multipart file fields 'files')")
        check_count(len(uploads), limit)
        return [await read_upload(u, settings.max_upload_bytes) for u in uploads]
    if kind == "application/json":
        payload = await read_json(request)
        images = payload.get("images")
        if set(payload) != {"images"} or not isinstance(images, list) or not images:
            raise ApiError(422, "invalid_request", 'the JSON body must be {"images": ["<base64>", ...]}')
        check_count(len(images), limit)
        return [checked(decode_base64(item, f"images[{i}]"), settings.max_upload_bytes)
                for i, item in enumerate(images)]
    raise unsupported(kind, batch=True)


def check_count(count: int, limit: int) -> None:
    if count > limit:
        raise ApiError(413, "too_many_files", f"{count} files sent; the limit is {limit} per request")


async def read_upload(upload: UploadFile, limit: int) -> ImageInput:
    data = await upload.read(limit + 1)
    return checked(ImageInput(upload.filename, data), limit)


def checked(item: ImageInput, limit: int) -> ImageInput:
    if item.error is None and len(item.data) > limit:
        name = item.filename or "the image"
        item.error, item.data = ApiError(413, "file_too_large", f"{name} is larger than {limit} bytes"), b""
    return item


async def read_json(request: Request) -> dict[str, Any]:
    try:
        payload = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise ApiError(422, "invalid_request", "the JSON body must be an object")
    return payload


def decode_base64(value: Any, name: str | None) -> ImageInput:
    if not isinstance(value, str):
        return ImageInput(name, error=ApiError(422, "invalid_request", "images must be base64 strings"))
    text = value.split(",", 1)[1] if value.startswith("data:") and "," in value else value  # data URLs too
    try:
        return ImageInput(name, base64.b64decode(text, validate=True))
    except (binascii.Error, ValueError) as exc:
        return ImageInput(name, error=ApiError(400, "invalid_base64", f"not valid base64: {exc}"))


def unsupported(kind: str, batch: bool = False) -> ApiError:
    forms = "multipart/form-data or application/json" if batch else \
        "multipart/form-data, image/*, application/octet-stream or application/json"
    return ApiError(415, "unsupported_media_type", f"Content-Type {kind or '(none)'!r} is not accepted; send {forms}")
