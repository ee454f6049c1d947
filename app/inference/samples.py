"""The test images stored with a model (`samples.npz`, the manifest's `samples`), and the accuracy
gate they serve: a runtime that computes in reduced precision (bf16, int8) runs the model only where, on
these images, it gives Paddle Inference's fp32 answers.

The images are stored as model inputs, quantised to 8 bits per value with a scale and an offset per
channel: exact where the input is an affine map of 8-bit pixels (the photo models: resize, crop,
normalize), within half a step elsewhere. What the gate compares is two runtimes on the same
stored inputs, so the quantisation only has to keep them realistic.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.inference.backends import Backend, run_in_batches

SAMPLES_FILE = "samples.npz"
MAX_IMAGES = 1000
MAX_BYTES = 4 << 20  # stored with every model version: a 96x96 photo model keeps ~150 images
MIN_AGREEMENT = 0.999  # top-1 agreement with Paddle Inference fp32
MAX_ACCURACY_DROP = 0.001  # one tenth of a point
BATCH_SIZE = 64


def save_samples(path: Path, inputs: np.ndarray, labels: np.ndarray) -> int:
    """Store up to MAX_IMAGES (and MAX_BYTES) of `inputs` (N, C, H, W) float32 with their labels;
    returns how many."""
    count = int(min(len(inputs), MAX_IMAGES, max(1, MAX_BYTES // int(np.prod(inputs.shape[1:])))))
    chosen = np.asarray(inputs[:count], dtype=np.float32)
    low = chosen.min(axis=(0, 2, 3))
    high = chosen.max(axis=(0, 2, 3))
    scale = np.where(high > low, (high - low) / 255.0, 1.0).astype(np.float32)
    pixels = np.round((chosen - low[None, :, None, None]) / scale[None, :, None, None])
    np.savez_compressed(path, pixels=np.clip(pixels, 0, 255).astype(np.uint8), scale=scale,
                        offset=low.astype(np.float32), labels=np.asarray(labels[:count], dtype=np.int64))
    return count


def load_samples(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(inputs float32 (N, C, H, W), labels (N,))."""
    with np.load(path, allow_pickle=False) as stored:
        pixels, scale, offset = stored["pixels"], stored["scale"], stored["offset"]
        inputs = pixels.astype(np.float32) * scale[None, :, None, None] + offset[None, :, None, None]
        return inputs, stored["labels"]


@dataclass(frozen=True)
class GateResult:
    images: int
    agreement: float  # top-1 agreement with the reference
    accuracy: float
    reference_accuracy: float

    @property
    def passed(self) -> bool:
        # Counted shares (999 of 1000): a margin far below one image keeps float rounding out of it.
        return (self.agreement >= MIN_AGREEMENT - 1e-9
                and self.reference_accuracy - self.accuracy <= MAX_ACCURACY_DROP + 1e-9)

    def describe(self) -> dict[str, float | int | bool]:
        return {"images": self.images, "top1_agreement": round(self.agreement, 4), "accuracy": round(self.accuracy, 4),
                "paddle_fp32_accuracy": round(self.reference_accuracy, 4), "passed": self.passed}


def judge(outputs: np.ndarray, reference: np.ndarray, labels: np.ndarray) -> GateResult:
    """A runtime's outputs on the samples against Paddle Inference fp32's."""
    predicted, expected = outputs.argmax(axis=1), reference.argmax(axis=1)
    return GateResult(len(labels), float((predicted == expected).mean()), float((predicted == labels).mean()),
                      float((expected == labels).mean()))


def gate_backends(backends: dict[str, Backend], reference: Backend, samples: Path) -> dict[str, GateResult]:
    """Each runtime in `backends` judged on the stored samples against `reference` (Paddle Inference)."""
    inputs, labels = load_samples(samples)
    expected = run_in_batches(reference, inputs, BATCH_SIZE)
    return {kind: judge(run_in_batches(backend, inputs, BATCH_SIZE), expected, labels)
            for kind, backend in backends.items()}
