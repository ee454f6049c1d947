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
    monkeypatch.setenv("APP_BACKEND", "onnx-but-not-installed")
    with pytest.raises(ValidationError, match="unknown backend 'onnx-but-not-installed': known are paddle"):
        Settings()
