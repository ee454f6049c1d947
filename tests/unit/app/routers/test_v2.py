"""The Open Inference Protocol's infer route, in this process, on the fake backend."""

from __future__ import annotations

import base64

import numpy as np
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.conftest import png_bytes


def test_v2_infer_fp32_returns_probabilities_and_the_classification_extension(app: FastAPI) -> None:
    tensor = np.stack([np.zeros((1, 8, 8)), np.ones((1, 8, 8))]).astype(np.float32)
    request = {"id": "r1", "inputs": [{"name": "image", "datatype": "FP32", "shape": [2, 1, 8, 8],
                                       "data": tensor.ravel().tolist()}],
               "outputs": [{"name": "probabilities"}, {"name": "probabilities", "parameters": {"classification": 2}}]}
    response = TestClient(app).post("/v2/models/fake/infer", json=request)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == "r1" and body["model_version"] == "1"
    probabilities, classes = body["outputs"]
    assert probabilities["shape"] == [2, 3] and np.argmax(np.reshape(probabilities["data"], (2, 3)), axis=1).tolist() == [0, 2]
    assert [s.split(":", 2)[2] for s in classes["data"]] == ["dark", "grey", "light", "grey"]


def test_v2_infer_bytes_decodes_like_v1(app: FastAPI) -> None:
    image = base64.b64decode(base64.b64encode(png_bytes(np.full((9, 9), 255, dtype=np.uint8))))
    request = {"inputs": [{"name": "image_bytes", "datatype": "BYTES", "shape": [1],
                           "data": [image.decode("latin-1")]}]}
    body = TestClient(app).post("/v2/models/fake/infer", json=request).json()
    assert int(np.argmax(body["outputs"][0]["data"])) == 2


def test_v2_infer_refuses_a_tensor_of_the_wrong_shape(app: FastAPI) -> None:
    request = {"inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 1, 4, 4], "data": [0.0] * 16}]}
    response = TestClient(app).post("/v2/models/fake/infer", json=request)
    assert response.status_code == 400 and response.json()["code"] == "invalid_shape"
