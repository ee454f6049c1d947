"""Graceful shutdown under load (SIGTERM), and CORS closed by default but configurable."""

from __future__ import annotations

import signal
import threading
import time

import httpx
import pytest

from tests.conftest import Server, draw_digit_one, encode
from tests.integration.app.test_api import LENET


# APP_DEVICE=cpu is what the container runs: Paddle is then first imported while models load, which
# once let Paddle's own SIGTERM handler replace the graceful one (and hang as PID 1). Creating a
# Paddle predictor in the server process (thread isolation; APP_BACKEND=auto timing the runtimes)
# installs it again.
@pytest.mark.parametrize(("device", "settings"), [
    ("auto", {}), ("cpu", {}), ("cpu", {"APP_ISOLATION": "thread", "APP_BACKEND": "paddle"})])
def test_sigterm_under_load_drains_without_losing_requests(server_factory, device: str,  # noqa: ANN001
                                                           settings: dict[str, str]) -> None:
    server: Server = server_factory({"APP_DRAIN_SECONDS": "2", "APP_DEVICE": device, **settings})
    data = encode(draw_digit_one(), "PNG")
    outcomes: list[tuple[float, str]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client_loop() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            while not stop.is_set():
                try:
                    response = client.post(f"{LENET}/predict", files={"file": ("one.png", data)})
                    outcome = "ok" if response.status_code == 200 else f"status {response.status_code}"
                except (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError):
                    # The listener is closed, or the connection was closed before the request was
                    # read: a refusal the client sees as such; the server never processed it.
                    outcome = "refused"
                except httpx.HTTPError as exc:
                    outcome = f"lost: {type(exc).__name__}"
                with lock:
                    outcomes.append((time.monotonic(), outcome))
                if outcome == "refused":
                    return

    threads = [threading.Thread(target=client_loop) for _ in range(16)]
    for thread in threads:
        thread.start()
    # SIGTERM once the load is steady, however fast this machine answers: every client has been
    # answered at least once, so each has a request in flight or about to be.
    deadline = time.monotonic() + 120
    while len(outcomes) < 2 * len(threads) and time.monotonic() < deadline:
        time.sleep(0.05)
    server.process.send_signal(signal.SIGTERM)
    sent_at = time.monotonic()
    time.sleep(0.3)
    ready = httpx.get(server.url + "/readyz", timeout=5)
    assert ready.status_code == 503 and ready.json()["error"]["code"] == "shutting_down"
    assert httpx.get(server.url + "/healthz", timeout=5).status_code == 200  # still serving while draining
    server.process.wait(timeout=30)
    exit_seconds = time.monotonic() - sent_at
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    kinds = [outcome for _, outcome in outcomes]
    lost = [outcome for outcome in kinds if outcome not in ("ok", "refused")]
    assert kinds.count("ok") >= 2 * len(threads) and not lost, (len(kinds), lost[:5])
    drained = [outcome for at, outcome in outcomes if at > sent_at and outcome == "ok"]
    assert drained, "requests in flight at SIGTERM are answered, not dropped"
    assert kinds.count("refused") <= len(threads), "each client thread stops at its first refusal"
    assert exit_seconds < 15
    # uvicorn re-raises the SIGTERM it handled once shutdown is complete, so -15 is a clean exit.
    assert server.process.returncode in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in server.log()


def test_cors_closed_by_default(server: Server) -> None:
    response = httpx.options(server.url + "/v1/models", headers={"Origin": "https://evil.example",
                                                                 "Access-Control-Request-Method": "GET"})
    assert "access-control-allow-origin" not in response.headers
    plain = httpx.get(server.url + "/v1/models", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in plain.headers


def test_cors_allows_configured_origin(server_factory) -> None:  # noqa: ANN001
    server: Server = server_factory({"APP_CORS_ORIGINS": '["https://ui.example"]'})
    allowed = httpx.get(server.url + "/v1/models", headers={"Origin": "https://ui.example"})
    assert allowed.headers["access-control-allow-origin"] == "https://ui.example"
    other = httpx.get(server.url + "/v1/models", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


def test_lifespan_runs_off_the_main_thread(tmp_path) -> None:  # noqa: ANN001
    """Hosts that run the app's lifespan in a thread of their own (Starlette's TestClient, Ray
    Serve) must be able to start it: signal handlers belong to the main thread."""
    from starlette.testclient import TestClient

    from app.config import Settings
    from app.main import create_app

    answers = []

    def serve() -> None:
        with TestClient(create_app(Settings(model_dir=tmp_path, drain_seconds=1.0))) as client:
            answers.append(client.get("/healthz").status_code)

    # The host's own SIGTERM handler (uvicorn's, Ray's), as the lifespan finds it.
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        worker = threading.Thread(target=serve)
        worker.start()
        worker.join(120)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert answers == [200]
