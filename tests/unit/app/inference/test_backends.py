"""Which runtime a model version runs on, and why."""

from __future__ import annotations

import pytest

from app.inference.backends import choose_backend


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
