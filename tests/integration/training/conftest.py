"""The trained-and-exported model that several training test modules inspect."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import MNIST_CACHE, ROOT

SMOKE = ["epochs=1", "data.limit_train=3000", "data.printed_digits=300", "data.photo_digits=40", "data.limit_eval=500",
         f"data.cache_dir={MNIST_CACHE}"]


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory, mnist) -> Path:  # noqa: ANN001
    """`python -m training train` as a user runs it, on a slice of real MNIST; trained once,
    shared by the export and report tests."""
    work = tmp_path_factory.mktemp("train")
    overrides = [*SMOKE, f"output_dir={work / 'runs'}", f"export.models_dir={work / 'models'}",
                 "export.name=smoke-lenet", "export.version=3"]
    command = [sys.executable, "-m", "training", "train", "--config", "training/configs/mnist_lenet.yaml"]
    for item in overrides:
        command += ["--set", item]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "val_acc" in result.stdout
    return work / "models" / "smoke-lenet" / "3"
