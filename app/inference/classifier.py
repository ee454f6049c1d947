"""One loaded model version: preprocess -> predict -> postprocess, each callable on its own."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.inference.manifest import Manifest, load_manifest, verify_files
from app.inference.postprocess import Prediction, to_probabilities, top_k
from app.inference.predictor import Predictor, PredictorPool, RuntimeOptions
from app.inference.preprocess import Preprocessor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadOptions:
    runtime: RuntimeOptions
    predictors: int
    max_image_pixels: int
    device_reason: str = ""


@dataclass
class Classifier:
    directory: Path
    manifest: Manifest
    preprocessor: Preprocessor
    pool: PredictorPool
    options: LoadOptions
    load_seconds: float = 0.0
    warmup_ms: float = 0.0

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> int:
        return self.manifest.version

    @property
    def labels(self) -> list[str]:
        return self.manifest.labels

    @classmethod
    def load(cls, directory: Path, options: LoadOptions) -> "Classifier":
        """Validate the manifest, check file hashes, build predictors and warm them up."""
        started = time.perf_counter()
        manifest = load_manifest(directory)
        verify_files(directory, manifest)
        preprocessor = Preprocessor.create(
            manifest.input.color_mode,
            manifest.input.shape[1:],
            [(step.op, step.params()) for step in manifest.preprocessing.steps],
            options.max_image_pixels,
        )
        first = Predictor.create(directory / manifest.model_file, directory / manifest.params_file, options.runtime)
        if first.input_name != manifest.input.name:
            raise ValueError(f"model input is {first.input_name!r}, manifest says {manifest.input.name!r}")
        classifier = cls(directory, manifest, preprocessor, PredictorPool(first, options.predictors), options)
        classifier.warmup_ms = classifier.warm_up()
        classifier.load_seconds = time.perf_counter() - started
        return classifier

    def warm_up(self) -> float:
        """Run a dummy batch through every predictor so the first client never pays oneDNN's set-up."""
        started = time.perf_counter()
        dummy = np.zeros((1, *self.manifest.input.shape[1:]), dtype=np.float32)
        for _ in range(self.pool.size):
            outputs = self.pool.run(dummy)
            if outputs.shape != (1, len(self.labels)):
                raise ValueError(f"model outputs {outputs.shape}, expected (1, {len(self.labels)}) for its labels")
        return (time.perf_counter() - started) * 1000

    def preprocess(self, data: bytes) -> np.ndarray:
        """Encoded image -> (C, H, W) float32. Raises the preprocess module's client errors."""
        return self.preprocessor(data)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """(N, C, H, W) -> (N, K) probabilities."""
        return to_probabilities(self.pool.run(batch), self.manifest.output.activation)

    def postprocess(self, probabilities: np.ndarray, k: int) -> list[Prediction]:
        return top_k(probabilities, self.labels, k)

    def classify(self, inputs: Sequence[np.ndarray], k: int) -> list[list[Prediction]]:
        probabilities = self.predict(np.stack(inputs))
        return [self.postprocess(row, k) for row in probabilities]

    def runtime_info(self) -> dict[str, Any]:
        runtime = self.options.runtime
        return {
            "backend": "paddle-inference",
            "device": runtime.device,
            "device_reason": self.options.device_reason,
            "cpu_threads": runtime.cpu_threads if runtime.device == "cpu" else None,
            "onednn": runtime.onednn if runtime.device == "cpu" else False,
            "predictors": self.pool.size,
            "load_seconds": round(self.load_seconds, 3),
            "warmup_ms": round(self.warmup_ms, 2),
        }
