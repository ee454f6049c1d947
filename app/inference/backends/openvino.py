"""OpenVINO on CPU, from the ONNX file `python -m training convert` writes beside the Paddle files
(OpenVINO's Paddle frontend does not read Paddle 3's `.json` programs). fp32: the same answers as
Paddle Inference, to rounding. bf16 (`openvino-bf16`): OpenVINO computes in bfloat16 where the CPU
has the instructions, several times faster on convolutions, answers no longer equal to rounding:
`APP_BACKEND=auto` takes it only where the accuracy gate passes (app/inference/samples.py).
int8 (`openvino-int8`): the int8 copy of the ONNX file (`runtimes.onnx-int8`), whose quantised
operations OpenVINO runs in int8 and the rest in fp32; gated the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov

from app.inference.backends import BACKENDS, runtime_file
from app.inference.backends.base import BackendOptions, BackendSpec


def compile_model(core: ov.Core, model: ov.Model, threads: int, precision: str) -> ov.CompiledModel:
    return core.compile_model(model, "CPU", {
        "INFERENCE_NUM_THREADS": max(1, threads),
        # int8: the file's quantised operations run in int8 whatever the hint; the rest in fp32.
        "INFERENCE_PRECISION_HINT": {"fp32": "f32", "bf16": "bf16", "int8": "f32"}[precision],
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": 1,
        # OpenVINO pins its threads to cores by default, and one-thread predictors in two processes
        # were pinned to the same core: MobileNetV2 in bf16 ran at less than half the images/s.
        "ENABLE_CPU_PINNING": False,
    })


class OpenVinoBackend:
    """One compiled model on options.cpu_threads, and with solo_threads above that a second on
    solo_threads for a batch that runs alone (as PaddleBackend does)."""

    spins_between_runs = False  # its thread pool's workers sleep almost at once

    def __init__(self, kind: str, path: Path, options: BackendOptions) -> None:
        self.kind = kind  # an entry of BACKENDS, which says the file it reads and its precision
        self.precision = BACKENDS[kind].precision
        self._path = path
        self.options = options
        core = ov.Core()
        model = core.read_model(str(path))
        self._request = compile_model(core, model, options.cpu_threads, self.precision).create_infer_request()
        self._solo = (compile_model(core, model, options.solo_threads, self.precision).create_infer_request()
                      if options.has_solo else None)
        # The file's name for it: a compiled model's input also takes the names of the operations
        # fused into it (a cast that follows it), and any one of them may come back.
        self.input_name: str = model.inputs[0].get_any_name()

    @classmethod
    def load(cls, spec: BackendSpec) -> OpenVinoBackend:
        return cls(spec.kind, runtime_file(spec), spec.options)

    def clone(self) -> OpenVinoBackend:
        return type(self)(self.kind, self._path, self.options)

    def run(self, batch: np.ndarray, solo: bool = False) -> np.ndarray:
        request = self._solo if solo and self._solo is not None else self._request
        request.infer({0: np.ascontiguousarray(batch, dtype=np.float32)})
        return np.array(request.get_output_tensor(0).data, dtype=np.float32)  # a copy: the request reuses its buffer

    def describe(self) -> dict[str, Any]:
        return {"backend": self.kind, "backend_version": ov.__version__, "device": "cpu",
                "cpu_threads": self.options.cpu_threads, "precision": self.precision}

    def close(self) -> None:
        """Compiled models are freed with their last reference."""
