"""`python -m training import`: a PaddleClas or PaddleX export made a versioned model directory of
this project, loaded from its manifest with the answers the export gives served as it came."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from app.inference.backends import BackendOptions
from app.inference.manifest import load_manifest, verify_files
from app.inference.model_version import LoadOptions, ModelVersion
from tests.conftest import ROOT
from tests.integration.app.test_paddleclas_exports import sample_images
from tests.integration.training.test_commands import run_cli
from tests.paddleclas_exports import LABELS, write_paddleclas_export, write_paddlex_export

OPTIONS = LoadOptions(BackendOptions("cpu", 1), 1, 40_000_000)


def outputs(directory: Path) -> np.ndarray:
    model = ModelVersion.load(directory, OPTIONS)
    try:
        return np.stack([outcome.probabilities for outcome in model.classify(sample_images())])
    finally:
        model.close()


@pytest.mark.parametrize(("export_format", "write"), [("paddleclas", write_paddleclas_export),
                                                      ("paddlex", write_paddlex_export)])
def test_import_writes_a_version_with_a_full_manifest(tmp_path: Path, export_format: str, write) -> None:  # noqa: ANN001
    export = write(tmp_path / "export")
    models = tmp_path / "models"
    result = run_cli("import", str(export), "--from", export_format, "--name", "flowers", "--models-dir", str(models))
    assert f"{models / 'flowers' / '1'}: " in result.stdout and "3 classes" in result.stdout
    target = models / "flowers" / "1"
    manifest = load_manifest(target)
    verify_files(target, manifest)
    assert manifest.labels == LABELS and manifest.training["imported_from"] == "export"
    assert manifest.training["source"] == ("PaddleClas export" if export_format == "paddleclas" else "PaddleX export")
    assert manifest.runtimes["onnx"].parity["top1_agreement"] == 1.0
    again = run_cli("import", str(export), "--from", export_format, "--name", "flowers", "--models-dir", str(models))
    assert f"{models / 'flowers' / '2'}: " in again.stdout and not list((models / "flowers").glob(".*"))
    np.testing.assert_allclose(outputs(target), outputs(export_as_served(export, tmp_path)), atol=1e-5)


def export_as_served(export: Path, tmp_path: Path) -> Path:
    """The export as the service finds it in models/<name>/<version>/."""
    served = tmp_path / "served" / "flowers" / "1"
    served.parent.mkdir(parents=True)
    export.rename(served)
    return served


def test_import_refuses_a_directory_that_is_not_an_export(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "training", "import", str(tmp_path), "--from", "paddlex",
                             "--name", "x", "--models-dir", str(tmp_path / "models")],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "has no deploy config" in result.stderr
    assert not (tmp_path / "models" / "x").exists()
