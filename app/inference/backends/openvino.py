"""OpenVINO on CPU, from the ONNX file `python -m training convert` writes beside the Paddle files
(OpenVINO's Paddle frontend does not read Paddle 3's `.json` programs). fp32: the same answers as
Paddle Inference, to rounding."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov

from app.inference.backends.base import BackendOptions, BackendSpec


def compile_model(core: ov.Core, path: Path, threads: int) -> ov.CompiledModel:
    return core.compile_model(core.read_model(str(path)), "CPU", {
        "INFERENCE_NUM_THREADS": max(1, threads),
        "INFERENCE_PRECISION_HINT": "f32",
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": 1,
    })


class OpenVinoBackend:
    """One compiled model on options.cpu_threads, and with solo_threads above that a second on
    solo_threads for a batch that runs alone (as PaddleBackend does)."""

    def __init__(self, path: Path, options: BackendOptions) -> None:
        self._path = path
        self.options = options
        core = ov.Core()
        compiled = compile_model(core, path, options.cpu_threads)
        self._request = compiled.create_infer_request()
        self._solo = compile_model(core, path, options.solo_threads).create_infer_request() if options.has_solo else None
        self.input_name: str = compiled.inputs[0].get_any_name()

    @classmethod
    def load(cls, spec: BackendSpec) -> OpenVinoBackend:
        return cls(spec.artifact("onnx"), spec.options)

    def clone(self) -> OpenVinoBackend:
        return OpenVinoBackend(self._path, self.options)

    def run(self, batch: np.ndarray, solo: bool = False) -> np.ndarray:
        request = self._solo if solo and self._solo is not None else self._request
        request.infer({0: np.ascontiguousarray(batch, dtype=np.float32)})
        return np.array(request.get_output_tensor(0).data, dtype=np.float32)  # a copy: the request reuses its buffer

    def describe(self) -> dict[str, Any]:
        return {"backend": "openvino", "backend_version": ov.__version__, "device": "cpu",
                "cpu_threads": self.options.cpu_threads, "precision": "fp32"}

    def close(self) -> None:
        """Compiled models are freed with their last reference."""
