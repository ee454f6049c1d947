"""The ONNX files beside an export: written, checked against Paddle Inference, recorded; a failed
conversion, or an int8 copy that fails the accuracy gate, leaves the version as it was."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from app.inference.manifest import load_manifest, verify_files
from app.inference.samples import MIN_AGREEMENT
from tests.conftest import MNIST_CACHE, ROOT, lenet_without_onnx, missing_instructions
from training.convert import INT8_FILE, add_int8, add_onnx, try_add_onnx


def test_convert_command_adds_checked_onnx_and_int8_files(tmp_path: Path, mnist) -> None:  # noqa: ANN001
    if (why := missing_instructions("int8")) is not None:
        pytest.skip(why)
    target = lenet_without_onnx(tmp_path)
    result = subprocess.run([sys.executable, "-m", "training", "convert", "--model", str(target),
                             "--set", f"data.cache_dir={MNIST_CACHE}"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    manifest = load_manifest(target)
    verify_files(target, manifest)
    assert manifest.runtimes["onnx"].parity["top1_agreement"] == 1.0 and "parity" in result.stdout
    int8 = manifest.runtimes["onnx-int8"]
    assert int8.file == INT8_FILE and "256 training images" in int8.converter and "accuracy gate passed" in result.stdout
    assert int8.parity["inputs"] == manifest.samples.images  # type: ignore[union-attr]
    assert int8.parity["top1_agreement"] >= MIN_AGREEMENT
    assert int8.parity["paddle_fp32_accuracy"] - int8.parity["accuracy"] <= 0.001


def test_an_int8_copy_that_fails_the_accuracy_gate_is_not_kept(tmp_path: Path) -> None:
    target = lenet_without_onnx(tmp_path)
    before = add_onnx(target)
    # Ranges calibrated on blank images saturate every activation of a real digit.
    with pytest.raises(ValueError, match="does not classify the stored test images as Paddle Inference does"):
        add_int8(target, np.zeros((16, 1, 28, 28), dtype=np.float32), before)
    assert not (target / INT8_FILE).exists() and load_manifest(target) == before


def test_a_failed_conversion_leaves_the_version_as_it_was(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    target = lenet_without_onnx(tmp_path)
    (target / "inference.json").write_text('{"not": "a program"}')
    before = load_manifest(target)
    assert try_add_onnx(target, before) == before
    assert not (target / "inference.onnx").exists() and load_manifest(target) == before
    assert "no ONNX file written" in caplog.text
