"""Export a trained network as a static Paddle inference model plus the manifest the app reads.

Metrics in the manifest are measured on the exported files through the app's own predictor, both
on the test arrays as they come and through the service's preprocessing of PNG-encoded digits, so
the numbers describe what a client of the service gets.
"""

from __future__ import annotations

import io
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import paddle
from paddle.static import InputSpec
from PIL import Image

from app.inference.manifest import (
    DatasetProvenance,
    Manifest,
    TensorInput,
    TensorOutput,
    save_manifest,
    sha256_file,
)
from app.inference.predictor import Predictor, RuntimeOptions
from training.config import TrainConfig
from training.data.mnist import LABELS, PREPROCESSING, Mnist, create_preprocessor

INPUT_NAME = "image"
FILE_PREFIX = "inference"

def save_inference_model(model: paddle.nn.Layer, input_shape: tuple[int, int, int], directory: Path) -> None:
    """jit.save with a dynamic batch dimension, so the service can batch any number of images."""
    model.eval()
    spec = InputSpec([None, *input_shape], "float32", INPUT_NAME)
    paddle.jit.save(model, str(directory / FILE_PREFIX), input_spec=[spec])


def find_model_file(directory: Path) -> Path:
    """Paddle 3 writes a PIR `.json` program; older versions a `.pdmodel`."""
    for suffix in (".json", ".pdmodel"):
        candidate = directory / f"{FILE_PREFIX}{suffix}"
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no {FILE_PREFIX}.json or {FILE_PREFIX}.pdmodel in {directory}")


def encode_png(image: np.ndarray) -> bytes:
    """float (H, W) in [0, 1] -> 8-bit greyscale PNG bytes, as a client would send it."""
    buffer = io.BytesIO()
    Image.fromarray(np.round(np.clip(image, 0, 1) * 255).astype(np.uint8), mode="L").save(buffer, "PNG")
    return buffer.getvalue()


def run_predictor(predictor: Predictor, batch: np.ndarray, batch_size: int = 500) -> np.ndarray:
    return np.concatenate([predictor.run(batch[i : i + batch_size]) for i in range(0, len(batch), batch_size)])


def measure_metrics(directory: Path, images: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy of the exported files as a client gets it: each test digit encoded as an 8-bit PNG,
    decoded and preprocessed by the service's code, classified by Paddle Inference."""
    predictor = Predictor.create(find_model_file(directory), directory / f"{FILE_PREFIX}.pdiparams",
                                 RuntimeOptions(device="cpu", cpu_threads=2))
    preprocessor = create_preprocessor()
    outputs = run_predictor(predictor, np.stack([preprocessor(encode_png(image)) for image in images]))
    ranked = np.argsort(-outputs, axis=1)
    return {
        "test_accuracy": float((ranked[:, 0] == labels).mean()),
        "test_top2_accuracy": float((ranked[:, :2] == labels[:, None]).any(axis=1).mean()),
    }


def export_mnist_model(model: paddle.nn.Layer, config: TrainConfig, data: Mnist, training_facts: dict[str, Any],
                       limit_test: int | None = None) -> Path:
    """Write models/<name>/<version>/ atomically: a reader never sees a half-written version."""
    target = Path(config.export.models_dir) / config.export.name / str(config.export.version)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{config.export.version}-", dir=target.parent))
    try:
        save_inference_model(model, (1, 28, 28), staging)
        test_images = data.test.images[:limit_test] if limit_test else data.test.images
        test_labels = data.test.labels[:limit_test] if limit_test else data.test.labels
        metrics = measure_metrics(staging, test_images, test_labels)
        model_file = find_model_file(staging)
        manifest = Manifest(
            name=config.export.name,
            version=config.export.version,
            created=datetime.now(timezone.utc).replace(microsecond=0),
            architecture=config.model,
            framework={"name": "paddlepaddle", "version": paddle.__version__},
            model_file=model_file.name,
            params_file=f"{FILE_PREFIX}.pdiparams",
            labels=list(LABELS),
            input=TensorInput(name=INPUT_NAME, shape=[-1, 1, 28, 28], dtype="float32", layout="NCHW",
                              color_mode="L"),
            output=TensorOutput(name="logits", activation="logits"),
            preprocessing=PREPROCESSING,
            metrics=metrics,
            evaluation={
                "split": "test",
                "images": int(len(test_labels)),
                "method": "each test digit encoded as an 8-bit PNG, decoded and preprocessed by the service's "
                          "code, classified by the exported model through Paddle Inference",
            },
            dataset=DatasetProvenance(name="mnist", source=data.source, sha256=data.sha256, splits=data.sizes()),
            training=training_facts,
            files={p.name: sha256_file(p) for p in sorted(staging.iterdir()) if p.is_file()},
        )
        save_manifest(staging, manifest)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return target
