"""Settings: the one reader of APP_* variables, refusing what cannot work before anything starts."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.config import Settings


def test_settings_read_app_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_BACKEND", "paddle")
    monkeypatch.setenv("APP_MAX_BATCH_SIZE", "8")
    monkeypatch.setenv("APP_ADMIN_TOKEN", "   ")
    settings = Settings()
    assert settings.backend == "paddle" and settings.max_batch_size == 8
    assert settings.admin_token is None  # an empty token is no token: admin routes stay off


def test_settings_refuse_an_unknown_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_BACKEND", "tensorrt")
    known = "auto, onnxruntime, onnxruntime-int8, openvino, openvino-bf16, openvino-int8, paddle, paddle-bf16"
    with pytest.raises(ValidationError, match=f"unknown backend 'tensorrt': known are {known}"):
        Settings()


def test_load_options_refuse_a_runtime_that_is_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from app.inference.backends import BackendUnavailableError
    from app.lifespan import build_load_options

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a))
    with pytest.raises(BackendUnavailableError, match=r"needs the openvino package.*pip install openvino"):
        build_load_options(Settings(model_backend={"hymenoptera": "openvino"}))
