"""The service in this process, on the fake backend: an ASGI app whose models are loaded before
the first request (no lifespan, no child processes, no Paddle)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI

from app.config import Settings
from app.inference.backends import BACKENDS, BackendEntry, BackendOptions
from app.inference.model_version import LoadOptions
from app.inference.registry import ModelRegistry
from app.main import create_app
from app.service import ModelService
from tests.unit.fakes import FakeBackend, write_fake_model


@pytest.fixture
def fake_backend(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[FakeBackend]]:
    """The fake registered as a backend; its record of runs starts empty."""
    monkeypatch.setitem(BACKENDS, "fake", BackendEntry("tests.unit.fakes:FakeBackend", "numpy"))
    FakeBackend.runs = []
    FakeBackend.gate = None
    yield FakeBackend
    if FakeBackend.gate is not None:
        FakeBackend.gate.set()


def fake_app(models_dir: Path, **settings: object) -> FastAPI:
    """The real app and service over models_dir, every version loaded on the fake backend."""
    config = Settings(model_dir=models_dir, backend="fake", cpu_threads=1, **settings)  # type: ignore[arg-type]
    options = LoadOptions(BackendOptions("cpu", 1), predictors=1, max_image_pixels=config.max_image_pixels,
                          backend_kind="fake", max_batch_size=4)
    registry = ModelRegistry(models_dir, options)
    registry.load_all()
    FakeBackend.runs = []  # the warm-up's runs are not the test's
    app = create_app(config)
    app.state.service = ModelService(config, registry)
    return app


@pytest.fixture
def app(tmp_path: Path, fake_backend: type[FakeBackend]) -> FastAPI:
    write_fake_model(tmp_path)
    return fake_app(tmp_path)
