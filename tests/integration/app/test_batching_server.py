"""Dynamic batching in a real server: concurrent clients, timing header, measured policy, overload."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import Server, png_bytes
from tests.integration.app.test_api import LENET, assert_error


@pytest.fixture(scope="module")
def thread_server(server_factory) -> Server:  # noqa: ANN001
    return server_factory({"APP_ISOLATION": "thread"})


@pytest.mark.parametrize("isolation", ["process", "thread"])
def test_concurrent_requests_are_all_answered_correctly(isolation: str, request, mnist) -> None:  # noqa: ANN001
    server: Server = request.getfixturevalue("server" if isolation == "process" else "thread_server")
    images = [png_bytes(image) for image in mnist.test.images[:96]]
    labels = [int(label) for label in mnist.test.labels[:96]]
    with server.client() as client:
        runtime = client.get(LENET).json()["runtime"]
    assert runtime["isolation"] == isolation and runtime["predictor_restarts"] == 0

    def send(index: int) -> int:
        with server.client() as client:
            response = client.post(f"{LENET}/predict", params={"top_k": 1},
                                   files={"file": ("d.png", images[index], "image/png")})
            assert response.status_code == 200, response.text
            return response.json()["predictions"][0]["class_id"]

    with ThreadPoolExecutor(32) as pool:
        predicted = list(pool.map(send, range(len(images))))
    assert sum(p == t for p, t in zip(predicted, labels)) >= 94


def test_server_timing_header_says_where_time_went(server: Server, mnist) -> None:  # noqa: ANN001
    with server.client() as client:
        response = client.post(f"{LENET}/predict", files={"file": ("d.png", png_bytes(mnist.test.images[0]))})
    timing = response.headers["server-timing"]
    for name in ("decode;dur=", "preprocess;dur=", "queue;dur=", "inference;dur="):
        assert name in timing


def test_model_info_reports_measured_batch_size(server: Server) -> None:
    with server.client() as client:
        runtime = client.get(LENET).json()["runtime"]
    assert runtime["max_batch_size"] in (1, 2, 4, 8, 16, 32, 64)
    assert "measured" in runtime["batch_size_reason"]
    measured = {int(k): v for k, v in runtime["measured_images_per_second"].items()}
    assert set(measured) == {1, 2, 4, 8, 16, 32, 64} and all(v > 0 for v in measured.values())


@pytest.fixture(scope="module")
def tight_server(server_factory) -> Server:  # noqa: ANN001
    return server_factory({"APP_MAX_QUEUE_IMAGES": "2", "APP_MODEL_MAX_BATCH_SIZE": '{"mnist-lenet": 4}',
                           "APP_MAX_BATCH_SIZE": "1"})


def test_batch_size_overrides_per_model_and_globally(tight_server: Server) -> None:
    with tight_server.client() as client:
        lenet = client.get(LENET).json()["runtime"]
        mlp = client.get("/v1/models/mnist-mlp").json()["runtime"]
    assert lenet["max_batch_size"] == 4 and "APP_MODEL_MAX_BATCH_SIZE" in lenet["batch_size_reason"]
    assert mlp["max_batch_size"] == 1 and "APP_MAX_BATCH_SIZE" in mlp["batch_size_reason"]


def test_queue_full_is_503_with_retry_after(tight_server: Server, mnist) -> None:  # noqa: ANN001
    files = [("files", (f"{i}.png", png_bytes(mnist.test.images[i]))) for i in range(3)]
    with tight_server.client() as client:
        response = client.post(f"{LENET}/predict/batch", files=files)
        assert_error(response, 503, "overloaded")
        assert response.headers["retry-after"] == "1"
        ok = client.post(f"{LENET}/predict/batch", files=files[:2])
        assert ok.status_code == 200 and all(r["predictions"] for r in ok.json()["results"])
