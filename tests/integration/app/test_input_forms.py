"""/v1 accepts multipart, raw image bodies and base64 JSON, with the same limits and error shape."""

from __future__ import annotations

import base64

import pytest

from tests.conftest import Server, draw_digit_one, encode
from tests.integration.app.test_api import LENET, assert_error

ONE = encode(draw_digit_one(), "PNG")
B64 = base64.b64encode(ONE).decode()


@pytest.mark.parametrize("content_type", ["image/png", "image/jpeg", "application/octet-stream"])
def test_raw_image_body_is_classified(server: Server, content_type: str) -> None:
    with server.client() as client:
        response = client.post(f"{LENET}/predict", content=ONE, headers={"Content-Type": content_type})
    assert response.status_code == 200, response.text
    assert response.json()["predictions"][0]["label"] == "1"


def test_base64_json_single_and_data_url(server: Server) -> None:
    with server.client() as client:
        plain = client.post(f"{LENET}/predict", json={"image": B64})
        data_url = client.post(f"{LENET}/predict", json={"image": "data:image/png;base64," + B64})
    assert plain.json()["predictions"][0]["label"] == "1"
    assert data_url.json()["predictions"][0]["label"] == "1"


def test_base64_json_batch_with_bad_items(server: Server) -> None:
    with server.client() as client:
        body = client.post(f"{LENET}/predict/batch", json={"images": [B64, "***not base64***", 7, B64]}).json()
    results = body["results"]
    assert results[0]["predictions"][0]["label"] == "1" and results[3]["predictions"][0]["label"] == "1"
    assert results[1]["error"]["code"] == "invalid_base64" and results[2]["error"]["status"] == 422


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        ({"json": {"picture": B64}}, 422),
        ({"json": ["not", "an", "object"]}, 422),
        ({"content": b"{not json", "headers": {"Content-Type": "application/json"}}, 400),
        ({"content": b"hello", "headers": {"Content-Type": "text/plain"}}, 415),
        ({"content": b"", "headers": {"Content-Type": "image/png"}}, 400),
        ({"content": b"GIF89a-broken", "headers": {"Content-Type": "image/gif"}}, 400),
    ],
    ids=["wrong-key", "json-list", "bad-json", "text-plain", "empty-raw", "corrupt-raw"],
)
def test_input_forms_reject_bad_bodies(server: Server, kwargs: dict, status: int) -> None:
    with server.client() as client:
        assert_error(client.post(f"{LENET}/predict", **kwargs), status)


def test_raw_body_is_not_a_batch(server: Server) -> None:
    with server.client() as client:
        assert_error(client.post(f"{LENET}/predict/batch", content=ONE, headers={"Content-Type": "image/png"}),
                     415, "unsupported_media_type")


def test_input_forms_keep_limits(server_factory) -> None:  # noqa: ANN001
    server: Server = server_factory({"APP_MAX_UPLOAD_BYTES": "2000", "APP_MAX_BATCH_FILES": "2"})
    big = encode(draw_digit_one(300).rotate(7), "PNG") + bytes(3000)
    with server.client() as client:
        assert_error(client.post(f"{LENET}/predict", content=big, headers={"Content-Type": "image/png"}), 413)
        assert_error(client.post(f"{LENET}/predict", json={"image": base64.b64encode(big).decode()}), 413)
        assert_error(client.post(f"{LENET}/predict/batch", json={"images": [B64] * 3}), 413, "too_many_files")
