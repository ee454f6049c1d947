"""Faults: a corrupted or half-deleted new version never takes the model down; a crashed or stuck
predictor process fails only its own batch and never stops the server answering."""

from __future__ import annotations

import os
import shutil
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import MODELS_DIR, Server, draw_digit_one, encode
from tests.integration.app.test_api import LENET, assert_error


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


def child_pids(pid: int) -> list[int]:
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += [int(child) for child in (task / "children").read_text().split()]
    return children


def predictor_pids(server: Server) -> list[int]:
    """The server's grandchildren named "predictor": predictor processes forked by its fork server."""
    return [grandchild for child in child_pids(server.process.pid) for grandchild in child_pids(child)
            if Path(f"/proc/{grandchild}/comm").read_text().strip() == "predictor"]


# These tests stop or kill "the" predictor process. A measured thread choice (APP_CPU_THREADS=0)
# can grow a model to one process per core on a noisy start, so they fix the threads: one process.
ONE_PREDICTOR = {"APP_CPU_THREADS": "1", "APP_PREDICTORS": "1"}


def wait_for_metric(client: httpx.Client, line: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while line not in client.get("/metrics").text:
        assert time.monotonic() < deadline, f"metric line {line!r} never appeared"
        time.sleep(0.05)


@pytest.fixture
def lenet_only(server_factory, tmp_path: Path) -> Server:  # noqa: ANN001
    shutil.copytree(MODELS_DIR / "mnist-lenet", tmp_path / "models" / "mnist-lenet")
    return server_factory({**ONE_PREDICTOR, "APP_MODEL_DIR": str(tmp_path / "models"), "APP_MAX_BATCH_SIZE": "8"})


def test_predictor_crash_mid_batch_is_500_with_request_id_and_later_requests_succeed(lenet_only: Server) -> None:
    digit = encode(draw_digit_one(), "PNG")
    [pid] = predictor_pids(lenet_only)
    with lenet_only.client() as client, ThreadPoolExecutor(1) as pool:
        os.kill(pid, signal.SIGSTOP)  # hold the predictor inside the batch, then kill it there
        in_flight = pool.submit(client.post, f"{LENET}/predict", files={"file": ("one.png", digit)})
        wait_for_metric(client, 'classifier_queue_depth_images{model="mnist-lenet",version="1"} 1.0')
        time.sleep(0.3)
        os.kill(pid, signal.SIGKILL)
        error = assert_error(in_flight.result(), 500, "inference_failed")
        assert "died" in error["message"] and error["request_id"]
        # the next request starts a fresh predictor; the service never stopped answering
        later = [client.post(f"{LENET}/predict", files={"file": ("one.png", digit)}) for _ in range(5)]
        assert [r.status_code for r in later] == [200] * 5
        assert {r.json()["predictions"][0]["label"] for r in later} == {"1"}
        assert client.get(LENET).json()["runtime"]["predictor_restarts"] == 1
        assert client.get("/readyz").status_code == 200
    [new_pid] = predictor_pids(lenet_only)
    assert new_pid != pid


def test_stuck_predictor_does_not_stop_the_server_refusing_overload(server_factory, tmp_path: Path) -> None:  # noqa: ANN001
    """With inference stalled, the queue fills; the excess is refused at once and health answers."""
    shutil.copytree(MODELS_DIR / "mnist-lenet", tmp_path / "models" / "mnist-lenet")
    server = server_factory({**ONE_PREDICTOR, "APP_MODEL_DIR": str(tmp_path / "models"),
                             "APP_MAX_BATCH_SIZE": "1", "APP_MAX_QUEUE_IMAGES": "2", "APP_REQUEST_TIMEOUT_MS": "60000"})
    digit = encode(draw_digit_one(), "PNG")
    [pid] = predictor_pids(server)
    os.kill(pid, signal.SIGSTOP)
    try:
        with server.client() as client, ThreadPoolExecutor(3) as pool:
            held = []
            for depth in ("1.0", "1.0", "2.0"):  # one running (stopped), then two queued: the queue is full
                held.append(pool.submit(client.post, f"{LENET}/predict", files={"file": ("one.png", digit)}))
                wait_for_metric(client, f'classifier_queue_depth_images{{model="mnist-lenet",version="1"}} {depth}')
                time.sleep(0.3)
            refused = [client.post(f"{LENET}/predict", files={"file": ("one.png", digit)}) for _ in range(20)]
            assert all(r.status_code == 503 and r.headers["retry-after"] == "1" for r in refused)
            assert max(r.elapsed.total_seconds() for r in refused) < 1.0
            assert client.get("/healthz").status_code == 200
            os.kill(pid, signal.SIGCONT)
            assert [f.result().status_code for f in held] == [200, 200, 200]
            assert client.post(f"{LENET}/predict", files={"file": ("one.png", digit)}).status_code == 200
    finally:
        os.kill(pid, signal.SIGCONT)
