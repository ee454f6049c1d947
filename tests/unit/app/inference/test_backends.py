"""Which runtime a model version runs on, and why."""

from __future__ import annotations

import pytest

from app.inference.backends import BackendOptions, choose_backend
from app.inference.manifest import load_manifest
from app.inference.model_version import LoadOptions, decide_backend
from tests.conftest import MODELS_DIR


@pytest.mark.parametrize(("kind", "artifacts", "device", "expected"), [
    ("paddle", set(), "cpu", ("paddle", "the default")),
    ("onnxruntime", {"onnx"}, "cpu", ("onnxruntime", "asked for")),
    ("openvino", {"onnx"}, "cpu", ("openvino", "asked for")),
    ("onnxruntime", set(), "cpu", ("paddle", "asked for onnxruntime, but the model has no onnx file "
                                             "(python -m training convert adds one)")),
    ("openvino", {"onnx"}, "gpu", ("paddle", "openvino runs on CPU here; the GPU runs Paddle Inference")),
])
def test_choose_backend_falls_back_to_paddle_inference_with_the_reason(kind: str, artifacts: set[str], device: str,
                                                                      expected: tuple[str, str]) -> None:
    assert choose_backend(kind, artifacts, device) == expected


@pytest.mark.parametrize(("requested", "device", "expected"), [
    ("auto", "gpu", ("paddle", "auto: the GPU runs Paddle Inference")),
    ("onnxruntime", "cpu", ("onnxruntime", "asked for")),
    ("paddle", "cpu", ("paddle", "the default")),
])
def test_decide_backend_without_measuring(requested: str, device: str, expected: tuple[str, str]) -> None:
    directory = MODELS_DIR / "mnist-lenet" / "1"
    options = LoadOptions(BackendOptions(device), 1, 1_000_000, backend_kind=requested)  # type: ignore[arg-type]
    choice = decide_backend(directory, load_manifest(directory), options)
    assert (choice.kind, choice.reason) == expected and not choice.images_per_second
