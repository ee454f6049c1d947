"""The HTTP server: uvicorn, with the limits uvicorn leaves out. Run with `python -m app`.

uvicorn's httptools protocol has no limit on the size of a request's headers (httptools joins a
header's pieces as they arrive, so a 150 MB header keeps the event loop busy for seconds) and no
deadline for them: a connection that sends nothing, or a header a byte at a time, stays open for
good, and enough of them use up the process's file descriptors. GuardedProtocol adds:

- a cap on the bytes before the end of a request's headers (431, then the connection is closed);
- a deadline for them, from the connection's start or the end of the previous response (408,
  closed): idle and slowloris connections are dropped;
- a cap on open connections (what is over it is closed at once), below the descriptor limit.

The body's own deadline and size are enforced per request by RequestContextMiddleware.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import resource
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.config import Settings, get_settings
from app.errors import new_request_id

log = logging.getLogger(__name__)

# Descriptors kept free for the process's own use: model files, pipes to predictor processes,
# logs, the listening socket.
RESERVED_DESCRIPTORS = 64


def error_response(status: int, reason: str, code: str, message: str) -> bytes:
    """A refusal in the service's one error shape, written before the request reached the app
    (so the request id is a fresh one); the connection is closed after it."""
    body = json.dumps({"error": {"code": code, "message": message, "request_id": new_request_id()}}).encode()
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode() + body


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header size and time limits and a connection cap."""

    max_header_bytes = 64 * 1024
    header_timeout = 10.0
    max_connections = 1000

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._awaiting_headers = True
        self._header_bytes = 0
        self._tail = b""  # the last bytes of the previous read, for a blank line split across reads
        self._header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            log.warning("closing a new connection: %d are open, the limit is %d", len(self.connections),
                        self.max_connections)
            transport.write(error_response(503, "Service Unavailable", "overloaded",
                                           "too many open connections; retry shortly"))
            transport.close()
            return
        self._await_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._awaiting_headers:
            # Counted before the parser sees them (it would join a huge header's pieces over and
            # over), up to the blank line that ends the headers; a body in the same read is not.
            seen = self._tail + data
            end = seen.find(b"\r\n\r\n")
            header_part = len(data) if end < 0 else max(0, end + 4 - len(self._tail))
            self._header_bytes += header_part
            self._tail = seen[-3:]
            if self._header_bytes > self.max_header_bytes:
                self._refuse(431, "Request Header Fields Too Large", "header_too_large",
                             f"the request line and headers exceed {self.max_header_bytes} bytes")
                return
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._awaiting_headers = False
        self._cancel_header_deadline()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and not self.pipeline:
            self._await_headers()

    def _await_headers(self) -> None:
        """The next request's headers are due within header_timeout (uvicorn's keep-alive timer,
        armed after a response, closes an idle connection sooner)."""
        self._awaiting_headers = True
        self._header_bytes = 0
        self._tail = b""
        self._cancel_header_deadline()
        self._header_deadline = self.loop.call_later(self.header_timeout, self._headers_overdue)

    def _cancel_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_overdue(self) -> None:
        self._header_deadline = None
        if self._awaiting_headers and not self.transport.is_closing():
            if self._header_bytes:
                self._refuse(408, "Request Timeout", "request_timeout",
                             f"the headers did not arrive within {self.header_timeout:g} s")
            else:
                self.transport.close()  # nothing was asked: just hang up

    def _refuse(self, status: int, reason: str, code: str, message: str) -> None:
        self._awaiting_headers = False
        self._cancel_header_deadline()
        if not self.transport.is_closing():
            self.transport.write(error_response(status, reason, code, message))
            self.transport.close()


def connection_limit(wanted: int) -> int:
    """`wanted`, or fewer where the descriptor limit (ulimit -n) would not leave room for it."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, soft - RESERVED_DESCRIPTORS))


def guarded_protocol(settings: Settings) -> type[GuardedProtocol]:
    """GuardedProtocol with this deployment's limits."""
    return type("ConfiguredGuardedProtocol", (GuardedProtocol,), {
        "max_header_bytes": settings.max_header_bytes,
        "header_timeout": settings.header_timeout_seconds,
        "max_connections": connection_limit(settings.max_connections),
    })


def build_config(settings: Settings, host: str, port: int, access_log: bool) -> uvicorn.Config:
    return uvicorn.Config(
        "app.main:app",
        host=host,
        port=port,
        http=guarded_protocol(settings),
        access_log=access_log,
        timeout_keep_alive=settings.keep_alive_seconds,
        # In-flight requests get this long after SIGTERM's drain; then the server exits anyway.
        timeout_graceful_shutdown=max(1, round(settings.shutdown_seconds)),
        log_level=settings.log_level.lower(),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m app", description="Serve the models in APP_MODEL_DIR over HTTP.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--access-log", action="store_true",
                        help="uvicorn's own access lines too (the app already logs one JSON line per request)")
    args = parser.parse_args(argv)
    uvicorn.Server(build_config(get_settings(), args.host, args.port, args.access_log)).run()
