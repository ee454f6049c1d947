"""/v1 prediction through the whole request path, in this process, on the fake backend."""

from __future__ import annotations

import numpy as np
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.conftest import png_bytes

BLACK = png_bytes(np.zeros((20, 20), dtype=np.uint8))
WHITE = png_bytes(np.full((20, 20), 255, dtype=np.uint8))


def test_predict_answers_through_the_handler_and_the_backend(app: FastAPI) -> None:
    response = TestClient(app).post("/v1/models/fake/predict", files={"file": ("black.png", BLACK, "image/png")})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "fake" and body["version"] == 1 and "input_image" not in body
    labels = [p["label"] for p in body["predictions"]]
    scores = [p["score"] for p in body["predictions"]]
    assert labels == ["dark", "grey", "light"] and scores == sorted(scores, reverse=True)
    assert abs(sum(scores) - 1) < 1e-6  # softmax over the fake's logits
    assert response.headers["X-Model-Version"] == "fake/1" and "inference;dur=" in response.headers["Server-Timing"]


def test_predict_top_k_and_explain_input(app: FastAPI) -> None:
    response = TestClient(app).post("/v1/models/fake/predict?top_k=1&explain=input", content=WHITE,
                                    headers={"Content-Type": "image/png"})
    body = response.json()
    assert [p["label"] for p in body["predictions"]] == ["light"]
    assert body["input_image"].startswith("data:image/png;base64,")


def test_predict_batch_fails_only_the_bad_image(app: FastAPI) -> None:
    files = [("files", ("a.png", BLACK, "image/png")), ("files", ("b.png", b"not an image", "image/png")),
             ("files", ("c.png", WHITE, "image/png"))]
    results = TestClient(app).post("/v1/models/fake/predict/batch", files=files).json()["results"]
    assert [r["filename"] for r in results] == ["a.png", "b.png", "c.png"]
    assert results[0]["predictions"][0]["label"] == "dark" and results[2]["predictions"][0]["label"] == "light"
    assert results[1]["error"]["status"] == 415 and "predictions" not in results[1]


def test_predict_refuses_unknown_models_and_impossible_top_k(app: FastAPI) -> None:
    client = TestClient(app)
    missing = client.post("/v1/models/nothing/predict", content=BLACK, headers={"Content-Type": "image/png"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"
    too_many = client.post("/v1/models/fake/predict?top_k=4", content=BLACK, headers={"Content-Type": "image/png"})
    assert too_many.status_code == 422 and too_many.json()["error"]["code"] == "invalid_top_k"


def test_models_describe_the_backend_and_the_pool(app: FastAPI) -> None:
    runtime = TestClient(app).get("/v1/models/fake").json()["runtime"]
    assert runtime["backend"] == "fake" and runtime["isolation"] == "thread" and runtime["max_batch_size"] == 4
