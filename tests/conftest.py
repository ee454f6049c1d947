"""Shared fixtures: real uvicorn servers on loopback ports, real MNIST digits, real exported models."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

# Registers HEIC with Pillow as the service does (same options): tests write HEIC through it.
import app.inference.preprocess  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
MODELS_DIR = ROOT / "models"
MNIST_CACHE = Path(os.environ.get("MNIST_CACHE_DIR", "~/.cache/paddle-classifier-serving/mnist")).expanduser()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    log_path: Path

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, **kwargs)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_server(env: dict[str, str], log_path: Path, wait_ready: bool = True, timeout: float = 120) -> Server:
    port = free_port()
    full_env = {**os.environ, "APP_MODEL_DIR": str(MODELS_DIR), **env}
    log = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT,
    )
    server = Server(f"http://127.0.0.1:{port}", process, log_path)
    deadline = time.monotonic() + timeout
    path = "/readyz" if wait_ready else "/healthz"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{server.log()}")
        try:
            if httpx.get(server.url + path, timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    stop_server(server)
    raise RuntimeError(f"server not {'ready' if wait_ready else 'up'} in {timeout}s:\n{server.log()}")


def stop_server(server: Server) -> None:
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


@pytest.fixture(scope="session")
def server_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def factory(env: dict[str, str] | None = None, wait_ready: bool = True) -> Server:
        log_path = tmp_path_factory.mktemp("server") / "server.log"
        server = start_server(env or {}, log_path, wait_ready)
        started.append(server)
        return server

    yield factory
    for server in started:
        stop_server(server)


@pytest.fixture(scope="session")
def server(server_factory: Callable[..., Server]) -> Server:
    """The bundled models, default settings."""
    return server_factory()


@pytest.fixture(scope="session")
def mnist():  # noqa: ANN201 - training.data.mnist.Mnist
    from training.data.mnist import load_mnist

    return load_mnist(MNIST_CACHE)


def lenet_without_onnx(directory: Path) -> Path:
    """A copy of the bundled LeNet at directory/1 as exported without its ONNX files (fp32 and int8)."""
    target = directory / "1"
    shutil.copytree(MODELS_DIR / "mnist-lenet" / "1", target)
    manifest = json.loads((target / "manifest.json").read_text())
    for artifact in manifest.pop("runtimes").values():
        del manifest["files"][artifact["file"]]
        (target / artifact["file"]).unlink()
    (target / "manifest.json").write_text(json.dumps(manifest))
    return target


def png_bytes(array: np.ndarray, mode: str = "L") -> bytes:
    """float [0, 1] (H, W) or uint8 array -> PNG bytes."""
    if array.dtype != np.uint8:
        array = np.round(np.clip(array, 0, 1) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buffer, "PNG")
    return buffer.getvalue()


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def draw_digit_one(size: int = 200, ink: int = 20, paper: int = 235) -> Image.Image:
    """A vertical stroke of dark ink on light paper: a '1' as a person would write it."""
    image = Image.new("L", (size, size), paper)
    pixels = np.asarray(image).copy()
    pixels[size // 5 : size - size // 5, size // 2 - size // 30 : size // 2 + size // 30] = ink
    return Image.fromarray(pixels)


# Suites that need what pip cannot install, and the one command that installs it (Debian).
SYSTEM_NEEDS = {
    "test_ui_browser": "the browser tests need Chromium",
    "tests/e2e/deploy": "the container tests need podman, runc and debootstrap",
}
INSTALL_COMMAND = "sudo apt-get install -y chromium podman runc debootstrap"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say loudly which suites did not run for want of a system package, and how to get it."""
    skipped = terminalreporter.stats.get("skipped", [])
    missing = sorted({need for report in skipped for marker, need in SYSTEM_NEEDS.items()
                      if marker in report.nodeid or marker in str(getattr(report, "fspath", ""))})
    if missing:
        terminalreporter.section("NOT RUN: system packages missing", sep="!", red=True, bold=True)
        for need in missing:
            terminalreporter.line(f"  {need}", red=True, bold=True)
        terminalreporter.line(f"  install them with: {INSTALL_COMMAND}", bold=True)


def missing_instructions(precision: str) -> str | None:
    """Why this CPU cannot run a `precision` runtime as the tests expect, or None: bf16 needs
    AVX-512 BF16 or AMX (without them the runtime is refused, see tests/unit); int8 needs VNNI,
    without which ONNX Runtime's int8 kernels saturate and the copy fails its accuracy gate."""
    from app.inference.cpu import cpu_flags, has_bf16

    if precision == "bf16" and not has_bf16():
        return "this CPU has no bf16 instructions (AVX-512 BF16 or AMX)"
    if precision == "int8" and not cpu_flags() & {"avx512_vnni", "avx_vnni", "amx_int8"}:
        return "this CPU has no VNNI instructions"
    return None
