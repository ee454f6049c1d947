"""Size, pixel and count limits against a real server configured with small limits."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.conftest import Server, encode, png_bytes
from tests.integration.app.test_api import LENET, assert_error


@pytest.fixture(scope="module")
def small_server(server_factory) -> Server:  # noqa: ANN001
    return server_factory({"APP_MAX_UPLOAD_BYTES": "20000", "APP_MAX_REQUEST_BYTES": "100000",
                           "APP_MAX_IMAGE_PIXELS": "250000", "APP_MAX_BATCH_FILES": "3",
                           "APP_PREDICTORS": "2", "APP_CPU_THREADS": "1"})


def noise_png(size: int) -> bytes:
    return png_bytes(np.random.default_rng(size).random((size, size)))


def test_file_over_upload_limit_is_413(small_server: Server) -> None:
    with small_server.client() as client:
        assert_error(client.post(f"{LENET}/predict", files={"file": ("n.png", noise_png(200))}), 413,
                     "file_too_large")


def test_body_over_limit_with_content_length_is_413(small_server: Server) -> None:
    with small_server.client() as client:
        response = client.post(f"{LENET}/predict", files={"file": ("n.png", bytes(150_000))})
    assert_error(response, 413, "payload_too_large")


def test_body_over_limit_without_content_length_is_413(small_server: Server) -> None:
    def chunks():  # noqa: ANN202 - a generator makes httpx send Transfer-Encoding: chunked
        yield b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.png\"\r\n\r\n"
        for _ in range(50):
            yield bytes(10_000)

    with small_server.client() as client:
        response = client.post(f"{LENET}/predict", content=chunks(),
                               headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert_error(response, 413, "payload_too_large")


def test_too_many_pixels_is_413(small_server: Server) -> None:
    data = encode(Image.new("L", (1000, 1000)), "PNG")  # tiny file, a million pixels
    with small_server.client() as client:
        assert_error(client.post(f"{LENET}/predict", files={"file": ("big.png", data)}), 413, "image_too_large")


def test_too_many_files_is_413(small_server: Server, mnist) -> None:  # noqa: ANN001
    files = [("files", (f"{i}.png", png_bytes(mnist.test.images[i]))) for i in range(4)]
    with small_server.client() as client:
        assert_error(client.post(f"{LENET}/predict/batch", files=files), 413, "too_many_files")


def test_oversized_item_fails_only_its_item(small_server: Server, mnist) -> None:  # noqa: ANN001
    files = [("files", ("ok.png", png_bytes(mnist.test.images[0]))), ("files", ("huge.png", noise_png(200)))]
    with small_server.client() as client:
        results = client.post(f"{LENET}/predict/batch", files=files).json()["results"]
    assert results[0]["predictions"][0]["class_id"] == int(mnist.test.labels[0])
    assert results[1]["error"]["status"] == 413


def test_server_still_serves_after_limit_errors(small_server: Server, mnist) -> None:  # noqa: ANN001
    with small_server.client() as client:
        for _ in range(3):
            client.post(f"{LENET}/predict", files={"file": ("n.png", bytes(150_000))})
        ok = client.post(f"{LENET}/predict", files={"file": ("d.png", png_bytes(mnist.test.images[1]))})
        assert ok.status_code == 200 and client.get("/readyz").status_code == 200
    assert httpx.get(small_server.url + "/healthz").status_code == 200
