"""Model runtimes behind one seam (base.py). A new runtime is one module here with a class that has
`load(spec) -> Backend`, named in BACKENDS; pools, the batcher and the routes stay as they are.
Modules are imported on first use, so a predictor process imports only the runtime it runs, and a
runtime whose package is not installed costs nothing until it is asked for."""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from app.inference.backends.base import Backend, BackendOptions, BackendSpec, run_in_batches
from app.inference.cpu import has_bf16


@dataclass(frozen=True)
class BackendEntry:
    target: str  # "module:class"
    package: str  # what must be importable for it to run
    artifact: str | None = None  # the file format it reads beside Paddle's files (manifest `runtimes`)
    install: str = ""  # how to get the package
    precision: str = "fp32"  # below fp32 (bf16, int8), APP_BACKEND=auto takes it only where the accuracy gate passes


BACKENDS: dict[str, BackendEntry] = {
    "paddle": BackendEntry("app.inference.backends.paddle:PaddleBackend", "paddle"),
    "paddle-bf16": BackendEntry("app.inference.backends.paddle:PaddleBackend", "paddle", precision="bf16"),
    "onnxruntime": BackendEntry("app.inference.backends.onnxruntime:OnnxRuntimeBackend", "onnxruntime", "onnx",
                                "pip install onnxruntime"),
    "openvino": BackendEntry("app.inference.backends.openvino:OpenVinoBackend", "openvino", "onnx",
                             "pip install openvino"),
    "openvino-bf16": BackendEntry("app.inference.backends.openvino:OpenVinoBackend", "openvino", "onnx",
                                  "pip install openvino", "bf16"),
    "onnxruntime-int8": BackendEntry("app.inference.backends.onnxruntime:OnnxRuntimeBackend", "onnxruntime",
                                     "onnx-int8", "pip install onnxruntime", "int8"),
    "openvino-int8": BackendEntry("app.inference.backends.openvino:OpenVinoBackend", "openvino", "onnx-int8",
                                  "pip install openvino", "int8"),
}


class BackendUnavailableError(RuntimeError):
    """APP_BACKEND (or APP_MODEL_BACKEND) names a runtime whose package is not installed."""


def missing_package(kind: str) -> str | None:
    """Why `kind` cannot run here (its package is not installed), or None when it can."""
    entry = BACKENDS[kind]
    if importlib.util.find_spec(entry.package) is None:
        return f"APP_BACKEND {kind} needs the {entry.package} package, which is not installed: {entry.install}"
    return None


def choose_backend(kind: str, artifacts: set[str], options: BackendOptions) -> tuple[str, str]:
    """The backend a model version runs on, and why: `kind` where the model has the files it reads
    and the device is one it runs on, else Paddle Inference, which reads every export."""
    entry = BACKENDS[kind]
    if kind == "paddle":
        return kind, "the default"
    if options.device != "cpu":
        return "paddle", f"{kind} runs on CPU here; the GPU runs Paddle Inference"
    if entry.artifact is not None and entry.artifact not in artifacts:
        return "paddle", (f"asked for {kind}, but the model has no {entry.artifact} file "
                          "(python -m training convert adds one)")
    if entry.precision == "bf16" and not has_bf16():
        return "paddle", f"asked for {kind}, but this CPU has no bf16 instructions (AVX-512 BF16 or AMX)"
    if entry.package == "paddle" and not options.onednn:
        return "paddle", f"asked for {kind}, which runs on oneDNN, but APP_ONEDNN is off"
    return kind, "asked for"


def runtime_file(spec: BackendSpec) -> Path:
    """The model's file in the format `spec.kind` reads (its BACKENDS entry's `artifact`)."""
    artifact = BACKENDS[spec.kind].artifact
    if artifact is None:
        raise ValueError(f"{spec.kind} reads Paddle's own files")
    return spec.artifact(artifact)


def load_backend(spec: BackendSpec) -> Backend:
    """Build the backend `spec.kind` names; a kind not in BACKENDS is a ValueError."""
    try:
        entry = BACKENDS[spec.kind]
    except KeyError:
        raise ValueError(f"unknown backend {spec.kind!r}: known are {', '.join(sorted(BACKENDS))}") from None
    module_name, class_name = entry.target.split(":")
    backend: Backend = getattr(importlib.import_module(module_name), class_name).load(spec)
    return backend


__all__ = [
    "BACKENDS", "Backend", "BackendEntry", "BackendOptions", "BackendSpec", "BackendUnavailableError",
    "choose_backend", "load_backend", "missing_package", "run_in_batches", "runtime_file",
]
