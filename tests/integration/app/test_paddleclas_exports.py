"""PaddleClas and PaddleX exports dropped into the model directory as they come, served by a real
server with the answers of the same network exported with this project's own manifest."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import ROOT, Server, encode
from tests.integration.app.test_repository_ops import AUTH, TOKEN
from tests.paddleclas_exports import (
    LABELS,
    PADDLEX_CONFIG,
    write_native_export,
    write_paddleclas_export,
    write_paddlex_export,
)

PHOTOS = sorted((ROOT.parent / "shared" / "data" / "hymenoptera" / "val").glob("*/*.jpg"))[:6]


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("exports") / "models"
    write_native_export(root / "flowers-native" / "1", "flowers-native")
    write_paddleclas_export(root / "flowers-paddleclas" / "1")
    write_paddlex_export(root / "flowers-paddlex" / "1")
    write_paddlex_export(root / "flowers-bicubic" / "1",
                         PADDLEX_CONFIG.replace("resize_short: 56", "resize_short: 56\n      interpolation: bicubic"))
    write_paddlex_export(root / "flowers-random-crop" / "1",
                         PADDLEX_CONFIG.replace("- CropImage:\n      size: 48", "- RandCropImage:\n      size: 48"))
    return root


@pytest.fixture(scope="module")
def exports_server(server_factory: Callable[..., Server], repository: Path) -> Server:
    """One server for the repository above, its versions loaded or failed."""
    return loaded(server_factory({"APP_MODEL_DIR": str(repository)}, wait_ready=False))


def loaded(server: Server) -> Server:
    """The server once every version has loaded or failed (some fail here: it never becomes ready)."""
    with server.client() as client:
        deadline = time.monotonic() + 120
        while "still loading" in client.get("/readyz").text:
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.2)
    return server


def sample_images() -> list[bytes]:
    """Photos (JPEG, shrunk), a small PNG (enlarged), a transparent one and a grey one."""
    images = [path.read_bytes() for path in PHOTOS]
    gradient = np.linspace(0, 255, 40 * 30 * 3).reshape(30, 40, 3).astype(np.uint8)
    images.append(encode(Image.fromarray(gradient), "PNG"))
    images.append(encode(Image.new("RGBA", (64, 64), (200, 40, 40, 90)), "PNG"))
    images.append(encode(Image.fromarray(gradient).convert("L"), "PNG"))
    return images


def probabilities(client, model: str, image: bytes) -> dict[str, float]:  # noqa: ANN001
    response = client.post(f"/v1/models/{model}/predict", params={"top_k": len(LABELS)},
                           files={"file": ("image", image)})
    assert response.status_code == 200, response.text
    return {item["label"]: item["score"] for item in response.json()["predictions"]}


def test_paddleclas_exports_serve_the_answers_of_their_native_equivalent(exports_server: Server) -> None:
    with exports_server.client() as client:
        for image in sample_images():
            native = probabilities(client, "flowers-native", image)
            for model in ("flowers-paddleclas", "flowers-paddlex"):
                served = probabilities(client, model, image)
                assert served.keys() == native.keys() == set(LABELS)
                assert max(abs(served[label] - native[label]) for label in LABELS) <= 1e-5, (model, served, native)


def test_paddleclas_export_model_information_says_where_it_came_from(exports_server: Server) -> None:
    with exports_server.client() as client:
        clas = client.get("/v1/models/flowers-paddleclas").json()["manifest"]
        paddlex = client.get("/v1/models/flowers-paddlex").json()["manifest"]
    assert clas["labels"] == paddlex["labels"] == LABELS
    assert clas["training"]["source"] == "PaddleClas export"
    assert clas["training"]["labels"] == "class_id_map_file flowers_label_list.txt"
    assert paddlex["training"]["source"] == "PaddleX export" and paddlex["architecture"] == "PP-LCNet_x1_0"
    assert paddlex["output"]["activation"] == "softmax" and paddlex["input"]["shape"] == [-1, 3, 48, 48]
    assert clas["model_file"] == "inference.pdmodel" and paddlex["model_file"] == "inference.json"
    assert "no antialiasing" in paddlex["preprocessing"]["description"]
    assert set(paddlex["files"]) == {"inference.json", "inference.pdiparams", "inference.yml"}


def test_unsupported_deploy_config_is_refused_with_its_reason_while_others_serve(exports_server: Server) -> None:
    with exports_server.client() as client:
        models = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
        assert models["flowers-paddlex"]["status"] == "ready"
        reasons = {name: models[name]["versions"][0]["error"] for name in ("flowers-bicubic", "flowers-random-crop")}
        assert models["flowers-bicubic"]["status"] == models["flowers-random-crop"]["status"] == "failed"
        assert "interpolation 'bicubic' with backend cv2 is not reproduced" in reasons["flowers-bicubic"]
        assert "'RandCropImage' is not one this service reproduces" in reasons["flowers-random-crop"]
        refused = client.post("/v1/models/flowers-bicubic/predict", files={"file": ("a.jpg", PHOTOS[0].read_bytes())})
        assert refused.status_code == 503 and "bicubic" in refused.json()["error"]["message"]
        assert probabilities(client, "flowers-paddlex", PHOTOS[0].read_bytes())


def test_export_files_changed_after_first_load_are_refused_on_reload(
        server_factory: Callable[..., Server], tmp_path: Path) -> None:
    root = tmp_path / "models"
    export = write_paddlex_export(root / "flowers" / "1")
    server = server_factory({"APP_MODEL_DIR": str(root), "APP_ADMIN_TOKEN": TOKEN})
    with server.client() as client:
        before = probabilities(client, "flowers", PHOTOS[0].read_bytes())
        weights = export / "inference.pdiparams"
        data = bytearray(weights.read_bytes())
        data[-4:] = b"\x00\x00\x80\x7f"  # the last weight becomes +inf
        weights.write_bytes(bytes(data))
        report = client.post("/v1/admin/reload", headers=AUTH).json()
        assert "changed since this server first loaded" in report["failed"]["flowers/1"], report
        # The copy loaded before the change keeps serving.
        assert probabilities(client, "flowers", PHOTOS[0].read_bytes()) == before
        shutil.copytree(export, root / "flowers" / "2")
        report = client.post("/v1/admin/reload", headers=AUTH).json()
        assert report["loaded"] == ["flowers/2"], report


def test_export_with_labels_that_do_not_match_the_model_is_refused(
        server_factory: Callable[..., Server], tmp_path: Path) -> None:
    root = tmp_path / "models"
    write_paddlex_export(root / "flowers" / "1", PADDLEX_CONFIG.replace("    - rose\n", ""))
    server = loaded(server_factory({"APP_MODEL_DIR": str(root)}, wait_ready=False))
    with server.client() as client:
        error = client.get("/v1/models").json()["models"][0]["versions"][0]["error"]
    assert "the model has 3 classes; PostProcess.Topk.label_list names 2" in error

