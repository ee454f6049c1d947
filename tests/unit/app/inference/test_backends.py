"""Which runtime a model version runs on, and why."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.inference import backends
from app.inference.backends import BackendOptions, choose_backend
from app.inference.cpu import cpu_flags
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
    ("paddle-bf16", set(), "gpu", ("paddle", "paddle-bf16 runs on CPU here; the GPU runs Paddle Inference")),
])
def test_choose_backend_falls_back_to_paddle_inference_with_the_reason(kind: str, artifacts: set[str], device: str,
                                                                      expected: tuple[str, str]) -> None:
    assert choose_backend(kind, artifacts, BackendOptions(device)) == expected  # type: ignore[arg-type]


def test_choose_backend_paddle_bf16_needs_no_file_but_onednn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backends, "has_bf16", lambda: True)
    assert choose_backend("paddle-bf16", set(), BackendOptions("cpu")) == ("paddle-bf16", "asked for")
    kind, reason = choose_backend("paddle-bf16", set(), BackendOptions("cpu", onednn=False))
    assert kind == "paddle" and "APP_ONEDNN is off" in reason


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


def test_choose_backend_bf16_needs_the_cpu_instructions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backends, "has_bf16", lambda: False)
    kind, reason = choose_backend("openvino-bf16", {"onnx"}, BackendOptions("cpu"))
    assert kind == "paddle" and "no bf16 instructions" in reason
    monkeypatch.setattr(backends, "has_bf16", lambda: True)
    assert choose_backend("openvino-bf16", {"onnx"}, BackendOptions("cpu")) == ("openvino-bf16", "asked for")


def test_cpu_flags_reads_proc_cpuinfo(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16\n\nprocessor\t: 1\n")
    assert {"avx512_bf16", "fpu"} <= cpu_flags.__wrapped__(cpuinfo)
    assert cpu_flags.__wrapped__(tmp_path / "missing") == frozenset()
