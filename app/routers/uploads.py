"""Images from a request body, and the upload limits every protocol applies. The three forms /v1
accepts: multipart (`file` / `files`), a raw
image body (`Content-Type: image/*` or `application/octet-stream`), or JSON with base64
(`{"image": "..."}` / `{"images": ["...", ...]}`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Request
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException

from app.config import Settings
from app.errors import ApiError
from app.parsing import Base64Failure, JsonParser, ParseFailure


@dataclass
class ImageInput:
    filename: str | None
    data: bytes = b""
    error: ApiError | None = None


IMAGE_SCHEMA = {"type": "string", "format": "binary", "description": "PNG, JPEG, GIF, BMP, TIFF, WebP or PPM"}
BASE64_SCHEMA = {"type": "string", "format": "byte", "description": "the image file, base64-encoded"}


def request_body_doc(batch: bool) -> dict[str, Any]:
    """The OpenAPI requestBody for a predict route: every accepted form, with examples."""
    multipart: dict[str, Any]
    json_body: dict[str, Any]
    example: dict[str, Any]
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


async def read_single(request: Request, settings: Settings, parser: JsonParser) -> ImageInput:
    kind = media_type(request)
    if kind == "multipart/form-data":
        form = await read_form(request, max_files=1, max_fields=20, limit=1)
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ApiError(422, "invalid_request", "file: Field required (a multipart file field named 'file')")
        return await read_upload(upload, settings.max_upload_bytes)
    if kind.startswith("image/") or kind == "application/octet-stream":
        return checked(ImageInput(None, await request.body()), settings.max_upload_bytes)
    if kind == "application/json":
        payload = await read_json(request, parser)
        if set(payload) != {"image"}:
            raise ApiError(422, "invalid_request", 'the JSON body must be {"image": "<base64>"}')
        return checked(decoded_image(payload["image"], None), settings.max_upload_bytes)
    raise await unsupported(request, kind)


async def read_many(request: Request, settings: Settings, parser: JsonParser) -> list[ImageInput]:
    kind = media_type(request)
    limit = settings.max_batch_files
    if kind == "multipart/form-data":
        form = await read_form(request, max_files=limit, max_fields=limit + 20, limit=limit)
        sent = form.getlist("files")
        uploads = [u for u in sent if isinstance(u, UploadFile)]
        if not uploads or len(uploads) != len(sent):
            raise ApiError(422, "invalid_request", "files: Field required (repeated multipart file fields 'files')")
        check_count(len(uploads), limit)
        return [await read_upload(u, settings.max_upload_bytes) for u in uploads]
    if kind == "application/json":
        payload = await read_json(request, parser)
        images = payload.get("images")
        if set(payload) != {"images"} or not isinstance(images, list) or not images:
            raise ApiError(422, "invalid_request", 'the JSON body must be {"images": ["<base64>", ...]}')
        check_count(len(images), limit)
        return [checked(decoded_image(item, f"images[{i}]"), settings.max_upload_bytes)
                for i, item in enumerate(images)]
    raise await unsupported(request, kind, batch=True)


async def read_form(request: Request, max_files: int, max_fields: int, limit: int) -> FormData:
    """The multipart form; more files than `limit` is 413 too_many_files, however many more."""
    try:
        return await request.form(max_files=max_files, max_fields=max_fields)
    except HTTPException as exc:
        if "Too many files" in str(exc.detail):
            raise ApiError(413, "too_many_files", f"more than {limit} files sent; the limit is {limit} per request") \
                from exc
        raise


def check_count(count: int, limit: int) -> None:
    if count > limit:
        raise ApiError(413, "too_many_files", f"{count} files sent; the limit is {limit} per request")


async def read_upload(upload: UploadFile, limit: int) -> ImageInput:
    data = await upload.read(limit + 1)
    return checked(ImageInput(upload.filename, data), limit)


def too_large(name: str | None, limit: int) -> ApiError:
    return ApiError(413, "file_too_large", f"{name or 'an image'} is larger than {limit} bytes")


def checked(item: ImageInput, limit: int) -> ImageInput:
    if item.error is None and len(item.data) > limit:
        item.error, item.data = too_large(item.filename, limit), b""
    return item


async def read_json(request: Request, parser: JsonParser) -> dict[str, Any]:
    payload = await parser.parse(await request.body(), "images")
    if isinstance(payload, ParseFailure):
        raise ApiError(400, "invalid_json", payload.message)
    if not isinstance(payload, dict):
        raise ApiError(422, "invalid_request", "the JSON body must be an object")
    return payload


def decoded_image(value: Any, name: str | None) -> ImageInput:
    """A JSON image field after parse_body: bytes, or why not."""
    if isinstance(value, Base64Failure):
        return ImageInput(name, error=ApiError(400, "invalid_base64", value.message))
    if not isinstance(value, bytes):
        return ImageInput(name, error=ApiError(422, "invalid_request", "images must be base64 strings"))
    return ImageInput(name, value)


async def unsupported(request: Request, kind: str, batch: bool = False) -> ApiError:
    forms = "multipart/form-data or application/json" if batch else \
        "multipart/form-data, image/*, application/octet-stream or application/json"
    if not kind and not await request.body():
        return ApiError(422, "no_image", f"no image was sent: send one as {forms}")
    return ApiError(415, "unsupported_media_type", f"Content-Type {kind or '(none)'!r} is not accepted; send {forms}")
