"""The one error shape, {"error": {"code", "message", "request_id"}}, and what maps to it."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class ApiError(StarletteHTTPException):
    """A client-facing error. Subclasses HTTPException so FastAPI's body parsing passes it through."""

    def __init__(self, status_code: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(status_code=status_code, detail=message, headers=headers)
        self.code = code
        self.message = message


def request_id_of(request: Request) -> str:
    return getattr(request.state, "request_id", None) or new_request_id()


def new_request_id() -> str:
    return uuid.uuid4().hex


V2_PREFIX = "/v2/"


def error_response(status: int, code: str, message: str, request_id: str,
                   headers: dict[str, str] | None = None, protocol_v2: bool = False) -> JSONResponse:
    if protocol_v2:
        # The Open Inference Protocol's own shape ({"error": "<message>"}), which Triton and KServe
        # clients parse; our code and request id ride beside it.
        body: dict = {"error": message, "code": code, "request_id": request_id}
    else:
        body = {"error": {"code": code, "message": message, "request_id": request_id}}
    return JSONResponse(body, status_code=status, headers={**(headers or {}), REQUEST_ID_HEADER: request_id})


_STATUS_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large",
                 415: "unsupported_media_type", 422: "invalid_request", 503: "unavailable"}


async def handle_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = getattr(exc, "code", None) or _STATUS_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    return error_response(exc.status_code, code, message, request_id_of(request), dict(exc.headers or {}),
                          is_v2(request))


def is_v2(request: Request) -> bool:
    return request.url.path.startswith(V2_PREFIX)


async def handle_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "request"
        problems.append(f"{where}: {error.get('msg', 'invalid')}")
    return error_response(422, "invalid_request", "; ".join(problems) or "invalid request", request_id_of(request),
                          protocol_v2=is_v2(request))


async def handle_unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    request_id = request_id_of(request)
    log.exception("unhandled error in request %s", request_id)
    return error_response(500, "internal_error", "internal server error; quote the request id", request_id,
                          protocol_v2=is_v2(request))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(StarletteHTTPException, handle_http_error)
    app.add_exception_handler(RequestValidationError, handle_validation_error)
    app.add_exception_handler(Exception, handle_unexpected_error)


class RequestContextMiddleware:
    """Gives every request an id (the client's X-Request-ID if sane) and caps the body size.

    The cap is enforced twice: a declared Content-Length over the limit is refused before any of
    the body is read, and a body without one (chunked) is cut off as soon as it passes the limit.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int, is_draining: Callable[[], bool] = lambda: False) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.is_draining = is_draining

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        client_id = headers.get(REQUEST_ID_HEADER.lower(), "")
        request_id = client_id if _CLIENT_ID.match(client_id) else new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id

        declared = headers.get("content-length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > self.max_body_bytes:
            response = error_response(413, "payload_too_large",
                                      f"request body is {declared} bytes; the limit is {self.max_body_bytes}",
                                      request_id, {"Connection": "close"})
            await response(scope, receive, send)
            return

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise ApiError(413, "payload_too_large",
                                   f"request body exceeds the limit of {self.max_body_bytes} bytes")
            return message

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                raw = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                raw.append((b"x-request-id", request_id.encode("latin-1")))
                if self.is_draining():
                    # Shutting down: no more requests on this connection, so none races the close.
                    raw.append((b"connection", b"close"))
                message = {**message, "headers": raw}
            await send(message)

        await self.app(scope, limited_receive, send_with_id)
