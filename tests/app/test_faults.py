"""Faults on disk: a corrupted or half-deleted new version never takes the model down."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.app.test_api import LENET
from tests.conftest import MODELS_DIR, Server, draw_digit_one, encode


def test_corrupted_and_deleted_versions_are_reported_and_old_version_serves(server_factory, tmp_path: Path) -> None:  # noqa: ANN001
    repository = tmp_path / "models"
    shutil.copytree(MODELS_DIR / "mnist-lenet", repository / "mnist-lenet")
    shutil.copytree(MODELS_DIR / "mnist-lenet" / "1", repository / "mnist-lenet" / "2")
    shutil.copytree(MODELS_DIR / "mnist-lenet" / "1", repository / "mnist-lenet" / "3")
    with (repository / "mnist-lenet" / "2" / "inference.pdiparams").open("r+b") as handle:
        handle.seek(100)
        handle.write(b"\xde\xad\xbe\xef")  # corrupted in place
    (repository / "mnist-lenet" / "3" / "inference.json").unlink()  # half-deleted
    server: Server = server_factory({"APP_MODEL_DIR": str(repository)})
    with server.client() as client:
        [model] = client.get("/v1/models").json()["models"]
        states = {v["version"]: (v["status"], v["error"] or "") for v in model["versions"]}
        assert model["default_version"] == 1 and model["status"] == "ready"
        assert states[1] == ("ready", "")
        assert states[2][0] == "failed" and "SHA-256" in states[2][1]
        assert states[3][0] == "failed" and "missing" in states[3][1]
        response = client.post(f"{LENET}/predict", files={"file": ("one.png", encode(draw_digit_one(), "PNG"))})
        assert response.status_code == 200 and response.json()["version"] == 1
        assert client.get("/readyz").status_code == 200
