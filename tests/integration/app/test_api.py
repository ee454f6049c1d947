"""The HTTP API against a real uvicorn server with the bundled, real exported models."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import ROOT, Server, draw_digit_one, encode, png_bytes

LENET = "/v1/models/mnist-lenet"


def assert_error(response, status: int, code: str | None = None) -> dict:  # noqa: ANN001
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and {"code", "message", "request_id"} <= set(body["error"])
    assert body["error"]["request_id"] == response.headers["x-request-id"]
    if code:
        assert body["error"]["code"] == code, body
    return body["error"]


def test_health_live_and_ready(server: Server) -> None:
    with server.client() as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["models"] == {"mnist-lenet": "ready", "mnist-mlp": "ready", "mnist-softmax": "ready",
                                          "hymenoptera": "ready"}


def test_models_list_every_bundled_model(server: Server) -> None:
    with server.client() as client:
        models = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    assert set(models) == {"mnist-lenet", "mnist-mlp", "mnist-softmax", "hymenoptera"}
    assert all(m["status"] == "ready" and m["default_version"] == 1 for m in models.values())


def test_model_info_exposes_manifest_and_runtime(server: Server) -> None:
    with server.client() as client:
        info = client.get(LENET).json()
    manifest = info["manifest"]
    assert manifest["labels"] == [str(d) for d in range(10)]
    assert manifest["input"] == {"name": "image", "shape": [-1, 1, 28, 28], "dtype": "float32", "layout": "NCHW",
                                 "color_mode": "L"}
    assert [s["op"] for s in manifest["preprocessing"]["steps"]][-1] == "center_by_mass"
    assert manifest["metrics"]["test_accuracy"] >= 0.99
    assert manifest["dataset"]["sha256"]
    runtime = info["runtime"]
    # APP_BACKEND=auto: every installed runtime timed at warm-up, the fastest kept, and why.
    assert runtime["device"] == "cpu" and runtime["backend_reason"].startswith("auto: the most images/s")
    measured = runtime["backend_images_per_second"]
    assert {"paddle", "onnxruntime"} <= set(measured)
    assert {"paddle-inference": "paddle"}.get(runtime["backend"], runtime["backend"]) in measured


def test_predict_real_mnist_digits_over_http(server: Server, mnist) -> None:  # noqa: ANN001
    count, correct = 250, 0
    with server.client() as client:
        for image, label in zip(mnist.test.images[:count], mnist.test.labels[:count]):
            response = client.post(f"{LENET}/predict", files={"file": ("digit.png", png_bytes(image), "image/png")})
            assert response.status_code == 200, response.text
            body = response.json()
            scores = [p["score"] for p in body["predictions"]]
            assert scores == sorted(scores, reverse=True) and len(scores) == 5
            correct += body["predictions"][0]["class_id"] == int(label)
    assert correct / count >= 0.985, f"top-1 {correct}/{count}"


def test_predict_photo_style_dark_ink_on_paper(server: Server) -> None:
    data = encode(draw_digit_one().convert("RGB"), "JPEG", quality=90)
    with server.client() as client:
        body = client.post(f"{LENET}/predict", files={"file": ("one.jpg", data, "image/jpeg")}).json()
    assert body["predictions"][0]["label"] == "1"


def test_predict_top_k_and_response_shape(server: Server, mnist) -> None:  # noqa: ANN001
    with server.client() as client:
        body = client.post(f"{LENET}/predict", params={"top_k": 10},
                           files={"file": ("d.png", png_bytes(mnist.test.images[0]), "image/png")}).json()
    assert body["model"] == "mnist-lenet" and body["version"] == 1
    assert sorted(p["class_id"] for p in body["predictions"]) == list(range(10))
    assert sum(p["score"] for p in body["predictions"]) == pytest.approx(1.0, abs=1e-5)


def test_batch_with_corrupt_file_in_the_middle(server: Server, mnist) -> None:  # noqa: ANN001
    good = [png_bytes(image) for image in mnist.test.images[:4]]
    corrupt = good[0][: len(good[0]) // 2]
    files = [("files", ("a.png", good[0], "image/png")), ("files", ("b.png", good[1], "image/png")),
             ("files", ("broken.png", corrupt, "image/png")), ("files", ("c.png", good[2], "image/png")),
             ("files", ("d.png", good[3], "image/png"))]
    with server.client() as client:
        body = client.post(f"{LENET}/predict/batch", params={"top_k": 1}, files=files).json()
    results = body["results"]
    assert [r["filename"] for r in results] == ["a.png", "b.png", "broken.png", "c.png", "d.png"]
    assert "predictions" not in results[2] and results[2]["error"]["status"] == 400
    assert all("error" not in r for i, r in enumerate(results) if i != 2)
    predicted = [r["predictions"][0]["class_id"] for i, r in enumerate(results) if i != 2]
    assert predicted == [int(label) for label in mnist.test.labels[:4]]


@pytest.mark.parametrize(
    ("content", "status", "code"),
    [
        (b"", 400, "invalid_image"),
        (b"hello, I am text, not a picture\n" * 20, 415, "unsupported_media_type"),
        (b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\n", 415, "unsupported_media_type"),
        (b"PK\x03\x04" + bytes(200), 415, "unsupported_media_type"),
        ("truncated", 400, "invalid_image"),
        ("blank", 422, "unusable_image"),
    ],
    ids=["empty", "text", "pdf", "zip", "truncated-png", "blank-image"],
)
def test_predict_rejects_bad_files_and_keeps_serving(server: Server, mnist, content, status, code) -> None:  # noqa: ANN001
    if content == "truncated":
        content = png_bytes(mnist.test.images[0])[:100]
    elif content == "blank":
        content = png_bytes(np.full((28, 28), 0.5))
    with server.client() as client:
        assert_error(client.post(f"{LENET}/predict", files={"file": ("x.png", content, "image/png")}), status, code)
        assert client.get("/readyz").status_code == 200


def test_unknown_model_is_404(server: Server) -> None:
    with server.client() as client:
        assert_error(client.post("/v1/models/nope/predict", files={"file": ("x.png", b"x")}), 404, "model_not_found")
        assert_error(client.get("/v1/models/nope"), 404, "model_not_found")
        assert_error(client.get("/v1/models/..%2F..%2Fetc"), 404)


@pytest.mark.parametrize("top_k", ["0", "-1", "11", "100000", "three"])
def test_top_k_out_of_range_is_422(server: Server, mnist, top_k: str) -> None:  # noqa: ANN001
    with server.client() as client:
        response = client.post(f"{LENET}/predict", params={"top_k": top_k},
                               files={"file": ("d.png", png_bytes(mnist.test.images[0]), "image/png")})
    assert_error(response, 422)


def test_missing_file_field_is_422(server: Server) -> None:
    with server.client() as client:
        assert_error(client.post(f"{LENET}/predict", files={"picture": ("d.png", b"x")}), 422, "invalid_request")
        assert_error(client.post(f"{LENET}/predict/batch", files={"picture": ("d.png", b"x")}), 422, "invalid_request")
        assert_error(client.post(f"{LENET}/predict/batch", data={"x": "1"}), 415, "unsupported_media_type")


def test_request_id_is_echoed_or_made(server: Server) -> None:
    with server.client() as client:
        assert client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"] == "abc-123"
        made = client.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"}).headers["x-request-id"]
        assert made != "bad id\twith spaces" and len(made) == 32


def test_unknown_route_uses_error_shape(server: Server) -> None:
    with server.client() as client:
        assert_error(client.get("/v1/nothing-here"), 404)
        assert_error(client.delete("/v1/models"), 405)


def test_docs_and_openapi_are_served(server: Server) -> None:
    with server.client() as client:
        assert "swagger-ui" in client.get("/docs").text.lower()
        schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    for path in ("/healthz", "/readyz", "/v1/models", "/v1/models/{name}", "/v1/models/{name}/predict",
                 "/v1/models/{name}/predict/batch"):
        assert path in paths
    responses = paths["/v1/models/{name}/predict"]["post"]["responses"]
    assert {"200", "400", "404", "413", "415", "422"} <= set(responses)
    for path in ("/v1/models/{name}/predict", "/v1/models/{name}/versions/{version}/predict/batch"):
        parameters = {p["name"]: p for p in paths[path]["post"]["parameters"]}
        assert {"name", "top_k", "explain"} <= set(parameters)
        assert parameters["top_k"]["in"] == "query" and not parameters["top_k"]["required"]
        assert {"minimum": 1, "maximum": 10_000, "type": "integer"}.items() <= \
            parameters["top_k"]["schema"]["anyOf"][0].items()


def test_explain_input_returns_the_preprocessed_digit(server: Server) -> None:
    import base64
    import io

    from PIL import Image

    data = encode(draw_digit_one(), "PNG")
    with server.client() as client:
        body = client.post(f"{LENET}/predict", params={"explain": "input"}, files={"file": ("one.png", data)}).json()
        plain = client.post(f"{LENET}/predict", files={"file": ("one.png", data)}).json()
        batch = client.post(f"{LENET}/predict/batch", params={"explain": "input"},
                            files=[("files", ("a.png", data)), ("files", ("b.png", b"junk"))]).json()
        assert_error(client.post(f"{LENET}/predict", params={"explain": "everything"},
                                 files={"file": ("one.png", data)}), 422)
    prefix = "data:image/png;base64,"
    assert body["input_image"].startswith(prefix) and "input_image" not in plain
    image = Image.open(io.BytesIO(base64.b64decode(body["input_image"][len(prefix):])))
    assert image.size == (28, 28) and image.mode == "L"
    pixels = np.asarray(image)
    assert pixels[0, 0] == 0 and pixels.max() == 255  # light stroke on dark, as MNIST
    assert batch["results"][0]["input_image"].startswith(prefix) and "input_image" not in batch["results"][1]


def test_static_page_and_assets_are_served(server: Server) -> None:
    with server.client() as client:
        page = client.get("/")
        assert page.status_code == 200 and 'id="draw-canvas"' in page.text
        for asset in ("/static/app.js", "/static/style.css", "/static/swagger/swagger-ui-bundle.js",
                      "/static/swagger/swagger-ui.css"):
            assert client.get(asset).status_code == 200, asset
        docs = client.get("/docs").text
        assert "/static/swagger/swagger-ui-bundle.js" in docs and "cdn" not in docs.lower()
        assert_error(client.get("/static/../app/config.py"), 404)


def test_photo_model_classifies_real_photos_as_its_manifest_says(server: Server) -> None:
    """Every photo of the ants/bees val/ folder (the model's test split) over HTTP: the accuracy
    the manifest claims, to the image."""
    val = ROOT.parent / "shared" / "data" / "hymenoptera" / "val"
    correct = total = 0
    with server.client() as client:
        manifest = client.get("/v1/models/hymenoptera").json()
        for label in ("ants", "bees"):
            for path in sorted((val / label).iterdir()):
                response = client.post("/v1/models/hymenoptera/predict",
                                       files={"file": (path.name, path.read_bytes(), "image/jpeg")})
                assert response.status_code == 200, response.text
                correct += response.json()["predictions"][0]["label"] == label
                total += 1
    metrics = manifest.get("metrics") or manifest["manifest"]["metrics"]
    assert total == 153 and correct / total == pytest.approx(metrics["test_accuracy"], abs=1 / 153)


@pytest.mark.parametrize("condition", [{}, {"paper": "ruled"}, {"paper": "squared"}, {"light": "shadow"},
                                       {"light": "dim"}, {"edge": True}, {"ink": "pencil"}, {"size": "small"}])
def test_lenet_reads_phone_photos_of_handwritten_digits(server: Server, mnist, condition: dict) -> None:  # noqa: ANN001
    """Photos of MNIST test digits, redrawn with a pen on paper (training/data/photos.py, seeds
    training never uses), sent as JPEGs: LeNet reads nearly all of them."""
    from dataclasses import replace

    from training.data.photos import Scene, frame_for, render_photo

    scene = replace(Scene(), **condition)
    correct = 0
    with server.client() as client:
        for index in range(20):
            rng = np.random.default_rng([99, index])
            data = render_photo(None, scene, rng, frame_for(scene, rng), handwritten=mnist.test.images[index])
            response = client.post(f"{LENET}/predict", content=data, headers={"Content-Type": "image/jpeg"})
            assert response.status_code == 200, response.text
            correct += response.json()["predictions"][0]["label"] == str(mnist.test.labels[index])
    assert correct >= 18
