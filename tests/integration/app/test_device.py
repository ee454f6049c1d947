"""Device choice: auto falls back to CPU here; gpu is refused clearly, at start."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.inference.backends.base import DeviceUnavailableError
from app.inference.backends.paddle import gpu_status, resolve_device
from tests.conftest import start_server


def test_resolve_device_auto_picks_cpu_without_gpu() -> None:
    usable, _ = gpu_status()
    if usable:
        pytest.skip("this machine has a usable GPU")
    device, reason = resolve_device("auto")
    assert device == "cpu" and "no usable GPU" in reason


def test_resolve_device_gpu_is_refused_without_gpu() -> None:
    if gpu_status()[0]:
        pytest.skip("this machine has a usable GPU")
    with pytest.raises(DeviceUnavailableError, match="APP_DEVICE=gpu"):
        resolve_device("gpu")


def test_resolve_device_cpu_never_probes() -> None:
    assert resolve_device("cpu") == ("cpu", "APP_DEVICE=cpu")


def test_server_with_gpu_device_fails_at_start_with_message(tmp_path: Path) -> None:
    if gpu_status()[0]:
        pytest.skip("this machine has a usable GPU")
    with pytest.raises(RuntimeError) as excinfo:
        start_server({"APP_DEVICE": "gpu"}, tmp_path / "server.log", wait_ready=False, timeout=60)
    assert "exited" in str(excinfo.value)
    assert "APP_DEVICE=gpu but the GPU cannot be used" in str(excinfo.value)
