"""The one error shape, {"error": {"code", "message", "request_id"}}, and what maps to it."""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
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


CLIENT_CLOSED_REQUEST = 499  # nginx's code: the client went away before the answer was ready


async def handle_client_disconnect(request: Request, exc: ClientDisconnect) -> Response:
    """The client hung up mid-upload: nobody to answer, nothing wrong with the server. The status
    is only for the metrics and the access log."""
    log.info("request %s: the client disconnected before sending its whole body", request_id_of(request))
    return Response(status_code=CLIENT_CLOSED_REQUEST)


def install_error_handlers(app: FastAPI) -> None:
    # Starlette types every handler as taking Exception; each of these takes the class it is registered for.
    app.add_exception_handler(StarletteHTTPException, handle_http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, handle_validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(ClientDisconnect, handle_client_disconnect)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, handle_unexpected_error)


class BodyBudget:
    """Bytes of request bodies being received at once, over all requests: what a burst of large
    uploads may hold in the server's memory. Past it, a request is refused (503) before its body
    is read."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def take(self, size: int) -> bool:
        if self.held + size > self.limit:
            return False
        self.held += size
        return True

    def give_back(self, size: int) -> None:
        self.held -= size


class RequestContextMiddleware:
    """Gives every request an id (the client's X-Request-ID if sane) and bounds its body.

    - Size: a declared Content-Length over the limit is refused before any of the body is read,
      and a body without one (chunked) is cut off as soon as it passes the limit (413).
    - Memory: bodies in flight at once share a budget (BodyBudget); a request that would pass it
      is refused with 503 and Retry-After, by its declared length before reading, or as its
      chunks arrive.
    - Time: once a request starts reading its body, the whole body must arrive within
      `body_timeout` seconds (408, and the connection is closed): a client that trickles a byte
      at a time holds nothing for longer.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int, body_budget: BodyBudget | None = None,
                 body_timeout: float = 30.0, is_draining: Callable[[], bool] = lambda: False) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_budget = body_budget or BodyBudget(2**62)
        self.body_timeout = body_timeout
        self.is_draining = is_draining

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        client_id = headers.get(REQUEST_ID_HEADER.lower(), "")
        request_id = client_id if _CLIENT_ID.match(client_id) else new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id

        declared_text = headers.get("content-length", "")
        declared = int(declared_text) if declared_text.isascii() and declared_text.isdigit() else None
        if declared is not None and declared > self.max_body_bytes:
            response = error_response(413, "payload_too_large",
                                      f"request body is {declared} bytes; the limit is {self.max_body_bytes}",
                                      request_id, {"Connection": "close"})
            await response(scope, receive, send)
            return
        if declared and not self.body_budget.take(declared):
            response = error_response(503, "overloaded", "too many request bodies are being received at once; "
                                      "retry shortly", request_id, {"Retry-After": "1", "Connection": "close"})
            await response(scope, receive, send)
            return
        reading = BodyReading(self, receive, declared or 0)
        try:
            await self.app(scope, reading.receive, self.with_request_id(send, request_id))
        finally:
            reading.finish()

    def with_request_id(self, send: Send, request_id: str) -> Send:
        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                raw = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                raw.append((b"x-request-id", request_id.encode("latin-1")))
                raw.append((b"x-content-type-options", b"nosniff"))
                if self.is_draining():
                    # Shutting down: no more requests on this connection, so none races the close.
                    raw.append((b"connection", b"close"))
                message = {**message, "headers": raw}
            await send(message)

        return send_with_id


class BodyReading:
    """One request's body as it arrives: counted against the size limit and the shared budget,
    and timed. The deadline is one timer for the whole body, armed at the first read (cheaper
    than a timeout around every read): when it fires while the request still waits for body,
    the waiting task is cancelled and the read raises 408."""

    def __init__(self, middleware: RequestContextMiddleware, receive: Receive, held: int) -> None:
        self.middleware = middleware
        self._receive = receive
        self.received = 0
        self.held = held  # bytes of the shared budget this request holds
        self.complete = False
        self.overdue = False
        self._timer: asyncio.TimerHandle | None = None
        self._waiting: asyncio.Task[object] | None = None

    async def receive(self) -> Message:
        if self.complete:
            return await self._receive()  # after the body: only a disconnect is left to hear
        if self.overdue:
            raise self.timed_out()
        if self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.middleware.body_timeout, self._expire)
        self._waiting = asyncio.current_task()
        try:
            message = await self._receive()
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if self.overdue and task is not None and task.cancelling() == 1:
                task.uncancel()  # our own cancellation, turned into the 408 below
                raise self.timed_out() from None
            raise
        finally:
            self._waiting = None
        if message["type"] == "http.request":
            self.count(len(message.get("body", b"")))
            if not message.get("more_body", False):
                self.complete = True
                self._cancel_timer()
        else:
            self.complete = True  # disconnected
            self._cancel_timer()
        return message

    def timed_out(self) -> ApiError:
        return ApiError(408, "request_timeout", f"the request body did not arrive within "
                                                f"{self.middleware.body_timeout:g} s", headers={"Connection": "close"})

    def count(self, size: int) -> None:
        self.received += size
        limit = self.middleware.max_body_bytes
        if self.received > limit:
            raise ApiError(413, "payload_too_large", f"request body exceeds the limit of {limit} bytes",
                           headers={"Connection": "close"})
        if self.received > self.held:  # no Content-Length, or more than it said
            extra = self.received - self.held
            if not self.middleware.body_budget.take(extra):
                raise ApiError(503, "overloaded", "too many request bodies are being received at once; retry "
                                                  "shortly", headers={"Retry-After": "1", "Connection": "close"})
            self.held += extra

    def _expire(self) -> None:
        self._timer = None
        if not self.complete:
            self.overdue = True
            if self._waiting is not None:
                self._waiting.cancel()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def finish(self) -> None:
        self._cancel_timer()
        self.middleware.body_budget.give_back(self.held)
        self.held = 0
