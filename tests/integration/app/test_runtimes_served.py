"""A real server on each optional runtime (APP_BACKEND, APP_MODEL_BACKEND): every bundled model
loads on it and answers /v1 and /v2 as on Paddle Inference."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.conftest import Server, png_bytes


@pytest.mark.parametrize("kind", ["onnxruntime", "openvino"])
def test_server_runs_every_bundled_model_on_the_runtime(server_factory: Callable[..., Server], kind: str,
                                                       mnist) -> None:  # noqa: ANN001
    server = server_factory({"APP_BACKEND": kind})
    digits = [png_bytes(image) for image in mnist.test.images[:20]]
    with server.client() as client:
        for name in ("mnist-lenet", "mnist-mlp", "mnist-softmax", "hymenoptera"):
            runtime = client.get(f"/v1/models/{name}").json()["runtime"]
            assert runtime["backend"] == kind and runtime["backend_reason"] == "asked for", runtime
        response = client.post("/v1/models/mnist-lenet/predict/batch",
                               files=[("files", (f"{i}.png", data, "image/png")) for i, data in enumerate(digits)])
        labels = [item["predictions"][0]["label"] for item in response.json()["results"]]
        assert sum(label == str(truth) for label, truth in zip(labels, mnist.test.labels[:20])) >= 19
        infer = client.post("/v2/models/mnist-lenet/infer", json={"inputs": [
            {"name": "image_bytes", "datatype": "BYTES", "shape": [1], "data": [digits[0].decode("latin-1")]}]})
        assert infer.status_code == 200 and len(infer.json()["outputs"][0]["data"]) == 10


def test_server_runs_one_model_on_another_runtime(server_factory: Callable[..., Server]) -> None:
    server = server_factory({"APP_BACKEND": "paddle", "APP_MODEL_BACKEND": '{"hymenoptera": "onnxruntime"}'})
    with server.client() as client:
        assert client.get("/v1/models/hymenoptera").json()["runtime"]["backend"] == "onnxruntime"
        assert client.get("/v1/models/mnist-lenet").json()["runtime"]["backend"] == "paddle-inference"
