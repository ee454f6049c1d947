"""Model repository operations against a real server: versions, pinning, reload, polling,
admin auth, Prometheus metrics and JSON access logs."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from tests.conftest import MODELS_DIR, Server, draw_digit_one, encode
from tests.integration.app.test_api import assert_error

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ONE = encode(draw_digit_one(), "PNG")


def add_version(repository: Path, version: int) -> Path:
    target = repository / "mnist-lenet" / str(version)
    shutil.copytree(MODELS_DIR / "mnist-lenet" / "1", target)
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["version"] = version
    (target / "manifest.json").write_text(json.dumps(manifest))
    return target


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    shutil.copytree(MODELS_DIR / "mnist-lenet", root / "mnist-lenet")
    return root


def served_version(client, path: str = "/v1/models/mnist-lenet/predict") -> int:  # noqa: ANN001
    response = client.post(path, files={"file": ("one.png", ONE)})
    assert response.status_code == 200, response.text
    assert response.headers["x-model-version"] == f"mnist-lenet/{response.json()['version']}"
    return response.json()["version"]


def test_reload_adds_replaces_and_removes_versions(server_factory, repository: Path) -> None:  # noqa: ANN001
    add_version(repository, 2)
    server: Server = server_factory({"APP_MODEL_DIR": str(repository), "APP_ADMIN_TOKEN": TOKEN})
    with server.client() as client:
        assert served_version(client) == 2
        assert served_version(client, "/v1/models/mnist-lenet/versions/1/predict") == 1
        batch = client.post("/v1/models/mnist-lenet/versions/1/predict/batch", files=[("files", ("a.png", ONE))])
        assert batch.json()["version"] == 1 and batch.json()["results"][0]["predictions"]
        assert client.get("/v1/models/mnist-lenet/versions/1").json()["version"] == 1
        assert_error(client.get("/v1/models/mnist-lenet/versions/9"), 404, "model_not_found")
        assert_error(client.get("/v1/models/mnist-lenet/versions/0"), 422)
        assert_error(client.get("/v1/models/mnist-lenet/versions/abc"), 422)
        for bad in ("0", "abc"):  # the predict routes parse their path themselves (params.py)
            response = client.post(f"/v1/models/mnist-lenet/versions/{bad}/predict", files={"file": ("a.png", ONE)})
            assert_error(response, 422, "invalid_request")
            assert "path.version" in response.json()["error"]["message"]

        assert_error(client.post("/v1/admin/reload"), 401, "unauthorized")
        assert_error(client.post("/v1/admin/reload", headers={"Authorization": "Bearer wrong"}), 401)

        add_version(repository, 3)
        broken = add_version(repository, 4)
        (broken / "inference.pdiparams").write_bytes(b"not weights")
        report = client.post("/v1/admin/reload", headers=AUTH).json()
        assert report["loaded"] == ["mnist-lenet/3"] and "mnist-lenet/4" in report["failed"]
        assert sorted(report["unchanged"]) == ["mnist-lenet/1", "mnist-lenet/2"]
        assert served_version(client) == 3  # the broken 4 never takes over
        versions = {v["version"]: v for v in client.get("/v1/models").json()["models"][0]["versions"]}
        assert versions[4]["status"] == "failed" and "SHA-256" in versions[4]["error"]

        shutil.rmtree(repository / "mnist-lenet" / "3")
        shutil.rmtree(broken)
        report = client.post("/v1/admin/reload", headers=AUTH).json()
        assert sorted(report["removed"]) == ["mnist-lenet/3", "mnist-lenet/4"]
        assert served_version(client) == 2

        (repository / "mnist-lenet" / "model.json").write_text('{"default_version": 1}')
        client.post("/v1/admin/reload", headers=AUTH)
        assert served_version(client) == 1
        assert client.get("/v1/models").json()["models"][0]["default_version"] == 1

        metrics = client.get("/metrics").text
    assert 'classifier_model_load_failures_total{model="mnist-lenet",version="4"} 1.0' in metrics
    assert 'classifier_http_requests_total{method="POST",model="mnist-lenet",' in metrics
    assert 'route="/v1/models/{name}/versions/{version}/predict",status="200",version="1"}' in metrics


def test_admin_routes_disabled_without_token(server: Server) -> None:
    with server.client() as client:
        assert_error(client.post("/v1/admin/reload", headers=AUTH), 404)


def test_poll_picks_up_new_version(server_factory, repository: Path) -> None:  # noqa: ANN001
    server: Server = server_factory({"APP_MODEL_DIR": str(repository), "APP_MODEL_POLL_SECONDS": "0.5"})
    with server.client() as client:
        assert served_version(client) == 1
        add_version(repository, 2)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and served_version(client) != 2:
            time.sleep(0.3)
        assert served_version(client) == 2


def test_metrics_count_requests_batches_and_model_state(server: Server) -> None:
    with server.client() as client:
        served_version(client)
        client.post("/v1/models/mnist-lenet/predict", files={"file": ("x.png", b"")})
        text = client.get("/metrics").text
        backend = client.get("/v1/models/mnist-lenet").json()["runtime"]["backend"]
    for needle in ('classifier_http_requests_total{method="POST",model="mnist-lenet",route="/v1/models/{name}/predict"'
                   ',status="200",version="1"}',
                   'route="/v1/models/{name}/predict",status="400"',
                   'classifier_batch_size_bucket{le="1.0",model="mnist-lenet",version="1"}',
                   'classifier_inference_seconds_count{model="mnist-lenet",version="1"}',
                   'classifier_queue_wait_seconds_count{model="mnist-lenet",version="1"}',
                   'classifier_queue_depth_images{model="mnist-lenet",version="1"}',
                   'classifier_model_ready{model="mnist-lenet",version="1"} 1.0',
                   'classifier_http_request_duration_seconds_bucket'):
        assert needle in text, needle
    kind = {"paddle-inference": "paddle"}.get(backend, backend)
    assert f'classifier_model_backend{{backend="{kind}",model="mnist-lenet",version="1"}} 1.0' in text


def test_access_log_is_json_with_request_id(server: Server) -> None:
    with server.client() as client:
        client.get("/v1/models", headers={"X-Request-ID": "trace-me-42"})
    entries: list[dict] = []
    deadline = time.monotonic() + 5
    while not entries and time.monotonic() < deadline:
        time.sleep(0.1)
        for line in server.log().splitlines():
            if '"trace-me-42"' in line:
                entries.append(json.loads(line))
    assert len(entries) == 1, server.log()[-2000:]
    [entry] = entries
    assert entry["route"] == "/v1/models" and entry["status"] == 200 and entry["duration_ms"] >= 0
