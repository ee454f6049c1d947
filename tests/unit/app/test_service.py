"""The service between the routes and the models: batching waiting requests into one backend run,
refusing an overload at once, in this process, on the fake backend."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import httpx
import numpy as np

from tests.conftest import png_bytes
from tests.unit.conftest import fake_app
from tests.unit.fakes import FakeBackend, write_fake_model

GREY = png_bytes(np.full((10, 10), 128, dtype=np.uint8))


async def post_images(app: object, count: int, gate: threading.Event) -> list[httpx.Response]:
    """One request first (its batch blocks in the backend), then `count` more while it runs."""
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        def post() -> asyncio.Task[httpx.Response]:
            return asyncio.ensure_future(client.post("/v1/models/fake/predict", content=GREY,
                                                     headers={"Content-Type": "image/png"}))

        first = post()
        await asyncio.sleep(0.1)  # its batch is now waiting at the gate, in the backend
        later = [post() for _ in range(count)]
        await asyncio.sleep(0.1)
        gate.set()
        return [await first, *[await task for task in later]]


def test_service_batches_requests_that_wait_into_one_backend_run(tmp_path: Path, fake_backend: type[FakeBackend]) -> None:
    write_fake_model(tmp_path)
    app = fake_app(tmp_path, max_batch_delay_ms=0)
    gate = fake_backend.gate = threading.Event()
    responses = asyncio.run(post_images(app, 3, gate))
    assert [r.status_code for r in responses] == [200] * 4
    assert {r.json()["predictions"][0]["label"] for r in responses} == {"grey"}
    assert fake_backend.runs == [1, 3], fake_backend.runs  # the three that waited ran together


def test_service_refuses_an_overload_at_once_with_retry_after(tmp_path: Path, fake_backend: type[FakeBackend]) -> None:
    write_fake_model(tmp_path)
    app = fake_app(tmp_path, max_queue_images=2, max_batch_delay_ms=0)
    gate = fake_backend.gate = threading.Event()
    responses = asyncio.run(post_images(app, 3, gate))
    statuses = [r.status_code for r in responses]
    assert statuses.count(503) >= 1 and statuses[0] == 200
    refused = next(r for r in responses if r.status_code == 503)
    assert refused.json()["error"]["code"] == "overloaded" and refused.headers["Retry-After"] == "1"
