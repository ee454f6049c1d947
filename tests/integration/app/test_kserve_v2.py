"""The Open Inference Protocol (KServe v2) with the real tritonclient[http] client from PyPI."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from tests.conftest import Server, png_bytes

tritonhttp = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402

MODEL = "mnist-lenet"


@pytest.fixture(scope="module")
def client(server: Server):  # noqa: ANN201
    triton = tritonhttp.InferenceServerClient(url=server.url.removeprefix("http://"))
    yield triton
    triton.close()


@pytest.fixture(scope="module")
def digits(mnist):  # noqa: ANN001, ANN201
    from training.data.mnist import create_preprocessor

    preprocessor = create_preprocessor()
    images = mnist.test.images[:8]
    encoded = [png_bytes(image) for image in images]
    return {"png": encoded, "fp32": np.stack([preprocessor(data) for data in encoded]),
            "labels": [int(label) for label in mnist.test.labels[:8]]}


def test_v2_health_and_metadata(client) -> None:  # noqa: ANN001
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(MODEL) and client.is_model_ready(MODEL, "1")
    assert not client.is_model_ready("no-such-model")
    metadata = client.get_model_metadata(MODEL)
    assert metadata["name"] == MODEL and metadata["versions"] == ["1"]
    assert metadata["inputs"][0] == {"name": "image", "datatype": "FP32", "shape": [-1, 1, 28, 28]}
    assert metadata["outputs"][0]["name"] == "probabilities"
    assert client.get_model_metadata(MODEL, "1")["name"] == MODEL
    assert "classification" in client.get_server_metadata()["extensions"]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_v2_fp32_infer(client, digits, binary: bool) -> None:  # noqa: ANN001
    tensor = tritonhttp.InferInput("image", list(digits["fp32"].shape), "FP32")
    tensor.set_data_from_numpy(digits["fp32"], binary_data=binary)
    result = client.infer(MODEL, [tensor], outputs=[tritonhttp.InferRequestedOutput("probabilities",
                                                                                      binary_data=binary)])
    probabilities = result.as_numpy("probabilities")
    assert probabilities.shape == (8, 10) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    assert probabilities.argmax(axis=1).tolist() == digits["labels"]


def test_v2_bytes_infer_with_classification(client, digits) -> None:  # noqa: ANN001
    images = np.array(digits["png"], dtype=np.object_)
    tensor = tritonhttp.InferInput("image_bytes", [len(images)], "BYTES")
    tensor.set_data_from_numpy(images)
    output = tritonhttp.InferRequestedOutput("probabilities", class_count=3)
    result = client.infer(MODEL, [tensor], outputs=[output], model_version="1")
    classes = result.as_numpy("probabilities")
    assert classes.shape == (8, 3)
    top = [row[0].decode() if isinstance(row[0], bytes) else row[0] for row in classes]
    for entry, label in zip(top, digits["labels"]):
        score, index, name = entry.split(":")
        assert int(index) == label and name == str(label) and 0.5 < float(score) <= 1.0


def test_v2_bad_tensor_shape_is_reported(client, digits) -> None:  # noqa: ANN001
    wrong = np.zeros((2, 1, 32, 32), dtype=np.float32)
    tensor = tritonhttp.InferInput("image", list(wrong.shape), "FP32")
    tensor.set_data_from_numpy(wrong)
    with pytest.raises(InferenceServerException, match="does not match"):
        client.infer(MODEL, [tensor])


def test_v2_errors_keep_the_error_shape(server: Server) -> None:
    with httpx.Client(base_url=server.url) as http:
        for body, status in ((b"not json", 400), (b'{"inputs": []}', 400),
                             (b'{"inputs": [{"name": "image", "shape": [1, 1, 28, 28], "datatype": "INT8", '
                              b'"data": [1]}]}', 400),
                             (b'{"inputs": [{"name": "image", "shape": [1, 1, 28, 28], "datatype": "FP32", '
                              b'"data": [1, 2]}]}', 400)):
            response = http.post(f"/v2/models/{MODEL}/infer", content=body)
            assert response.status_code == status, response.text
            body = response.json()  # the protocol's error shape, with our code and request id beside it
            assert isinstance(body["error"], str) and body["request_id"] == response.headers["x-request-id"]
        assert http.post("/v2/models/nope/infer", content=b"{}").status_code == 404
        assert http.get(f"/v2/models/{MODEL}/versions/x1").status_code == 400
        # found by schemathesis: a Unicode digit that int() refuses was a 500
        assert http.post(f"/v2/models/{MODEL}/versions/%C2%B3/infer", content=b"{}").status_code == 400
        assert http.post(f"/v2/models/{MODEL}/infer", content=b"{}",
                         headers={"Inference-Header-Content-Length": b"\xb3"}).status_code in (400, 422)
        bad_image = http.post(f"/v2/models/{MODEL}/infer", json={"inputs": [
            {"name": "image_bytes", "shape": [1], "datatype": "BYTES", "data": ["not an image"]}]})
        assert bad_image.status_code == 415


def test_v2_bytes_image_over_the_upload_limit_is_413(server: Server) -> None:
    """One BYTES element larger than APP_MAX_UPLOAD_BYTES (10 MB), sent with the binary extension."""
    element = b"\xff\xd8" + b"\0" * (10 * 2**20)
    binary = len(element).to_bytes(4, "little") + element
    header = ('{"inputs": [{"name": "image_bytes", "datatype": "BYTES", "shape": [1], '
              f'"parameters": {{"binary_data_size": {len(binary)}}}}}]}}').encode()
    response = httpx.post(f"{server.url}/v2/models/{MODEL}/infer", content=header + binary, timeout=60,
                          headers={"Inference-Header-Content-Length": str(len(header)),
                                   "Content-Type": "application/octet-stream"})
    assert response.status_code == 413 and response.json()["code"] == "file_too_large"
    assert "larger than 10485760 bytes" in response.json()["error"]
