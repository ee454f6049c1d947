"""The ONNX file beside an export: written, checked against Paddle Inference, recorded; a failed
conversion leaves the version as it was."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from app.inference.manifest import load_manifest, verify_files
from tests.conftest import ROOT, lenet_without_onnx
from training.convert import try_add_onnx


def test_convert_command_adds_a_checked_onnx_file(tmp_path: Path) -> None:
    target = lenet_without_onnx(tmp_path)
    result = subprocess.run([sys.executable, "-m", "training", "convert", "--model", str(target)], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    manifest = load_manifest(target)
    verify_files(target, manifest)
    assert manifest.runtimes["onnx"].parity["top1_agreement"] == 1.0 and "parity" in result.stdout


def test_a_failed_conversion_leaves_the_version_as_it_was(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    target = lenet_without_onnx(tmp_path)
    (target / "inference.json").write_text('{"not": "a program"}')
    before = load_manifest(target)
    assert try_add_onnx(target, before) == before
    assert not (target / "inference.onnx").exists() and load_manifest(target) == before
    assert "no ONNX file written" in caplog.text
