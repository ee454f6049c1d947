"""The model repository: broken versions are reported, not fatal; readiness tells why."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from app.inference.backends import BackendOptions
from app.inference.model_version import LoadOptions
from app.inference.registry import ModelNotFoundError, ModelNotReadyError, ModelRegistry, scan_repository
from tests.conftest import MODELS_DIR

OPTIONS = LoadOptions(BackendOptions(device="cpu", cpu_threads=1), predictors=1, max_image_pixels=1_000_000)


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    shutil.copytree(MODELS_DIR / "mnist-lenet", tmp_path / "mnist-lenet")
    shutil.copytree(MODELS_DIR / "mnist-lenet" / "1", tmp_path / "mnist-lenet" / "2")
    (tmp_path / "mnist-lenet" / "2" / "inference.pdiparams").write_bytes(b"corrupt")
    (tmp_path / "Not A Model").mkdir()
    (tmp_path / "mnist-lenet" / ".staging").mkdir()
    return tmp_path


def test_registry_scan_skips_invalid_names_and_non_versions(repository: Path) -> None:
    assert {name: sorted(v) for name, v in scan_repository(repository).items()} == {"mnist-lenet": [1, 2]}


def test_registry_reports_broken_version_with_reason(repository: Path) -> None:
    registry = ModelRegistry(repository, OPTIONS)
    registry.load_all()
    [entry] = registry.models()
    assert entry.versions[1].state == "ready"
    assert entry.versions[2].state == "failed" and "SHA-256" in entry.versions[2].error
    assert registry.get("mnist-lenet", 1).version == 1
    with pytest.raises(ModelNotReadyError, match="SHA-256"):
        registry.get("mnist-lenet", 2)
    assert entry.default_version == 1 and registry.get("mnist-lenet").version == 1  # the old version serves
    assert registry.readiness() == (True, [])


def test_registry_model_with_no_loadable_version_is_not_ready(repository: Path) -> None:
    shutil.rmtree(repository / "mnist-lenet" / "1")
    registry = ModelRegistry(repository, OPTIONS)
    registry.load_all()
    with pytest.raises(ModelNotReadyError):
        registry.get("mnist-lenet")
    ready, problems = registry.readiness()
    assert not ready and "mnist-lenet: version 2 failed" in problems[0]


def test_registry_unknown_model_and_empty_repository(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path, OPTIONS)
    assert registry.readiness() == (False, ["models are still loading"])
    registry.load_all()
    with pytest.raises(ModelNotFoundError):
        registry.get("mnist-lenet")
    assert registry.readiness()[0] is False
