"""Export a trained network as a static Paddle inference model plus the manifest the app reads.

Metrics in the manifest are measured on the exported files through the app's own predictor and
preprocessing (MNIST: PNG-encoded test digits; image folders: the validation or test files), so the
numbers describe what a client of the service gets.
"""

from __future__ import annotations

import io
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import paddle
from paddle.static import InputSpec
from PIL import Image

from app.inference.backends import Backend, BackendOptions, BackendSpec, load_backend, run_in_batches
from app.inference.manifest import (
    DatasetProvenance,
    Manifest,
    SampleSet,
    TensorInput,
    TensorOutput,
    hash_directory,
    load_manifest,
    save_manifest,
    sha256_file,
)
from app.inference.registry import scan_versions
from app.inference.samples import SAMPLES_FILE, load_samples, save_samples
from training.augment import center_crop
from training.config import TrainConfig, apply_overrides, build_dataclass
from training.convert import CALIBRATION_IMAGES, try_add_int8, try_add_onnx
from training.data.dataset import Dataset, load_dataset
from training.data.mnist import create_preprocessor, load_mnist
from training.models.registry import FlipAveraged, RotationAveraged, check_rotation_average
from training.report import classification_metrics, top_k_accuracy

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


def recorded_config(directory: Path, overrides: list[str], manifest: Manifest | None = None) -> TrainConfig:
    """The training config an exported model's manifest records (`manifest`, where it is read
    already), with `overrides` applied."""
    recorded = (manifest or load_manifest(directory)).training.get("config")
    if not recorded:
        raise ValueError(f"{directory}: the manifest records no training config to find its data by")
    return build_dataclass(TrainConfig, apply_overrides(recorded, overrides))


def evaluate_recorded(directory: Path, overrides: list[str]) -> Evaluation:
    """An exported model on the evaluation split of the data it was trained on (the manifest records
    the training config; `overrides` change it, e.g. data.root for data kept elsewhere), measured as
    at export."""
    # Only the evaluation split is needed: no typeset digits or photos, one training image.
    config = recorded_config(directory, ["data.printed_digits=0", "data.photo_digits=0", "data.limit_train=1",
                                         *overrides])
    data = load_dataset(config.data)
    return evaluate_exported(directory, data, Path(config.data.cache_dir), config.data.limit_eval)


def calibration_recorded(directory: Path, overrides: list[str]) -> np.ndarray:
    """Training images for an exported model's int8 calibration, from the data its manifest's
    training config names (`overrides` change it, as for evaluate_recorded)."""
    # The training split as stored, without the typeset digits and photos that take long to render.
    config = recorded_config(directory, ["data.printed_digits=0", "data.photo_digits=0", "data.limit_eval=1",
                                         *overrides])
    return calibration_inputs(load_dataset(config.data))


def calibration_inputs(data: Dataset, count: int = CALIBRATION_IMAGES) -> np.ndarray:
    """`count` training images drawn at random, as the model receives them (the service's centre
    crop, then the dataset's normalisation): what an int8 copy's activation ranges are measured on."""
    chosen = np.sort(np.random.default_rng(0).permutation(len(data.train.labels))[:count])
    images = center_crop(np.asarray(data.train.inputs[chosen], dtype=np.float32), data.input_shape[1:])
    if data.normalize is not None:
        mean, std = (np.asarray(values, np.float32)[None, :, None, None] for values in data.normalize)
        images = (images - mean) / std
    return np.ascontiguousarray(images, dtype=np.float32)


def evaluate_model(directory: Path, overrides: list[str]) -> dict[str, float]:
    """`python -m training evaluate`: the accuracy of an exported model on its evaluation split."""
    evaluation = evaluate_recorded(directory, overrides)
    logits, labels = evaluation.logits, evaluation.labels
    return {"images": int(len(labels)), f"{evaluation.split}_accuracy": top_k_accuracy(logits, labels, 1),
            f"{evaluation.split}_top2_accuracy": top_k_accuracy(logits, labels, 2)}


def create_predictor(directory: Path) -> Backend:
    """The exported files in the service's default backend, as the service will run them."""
    return load_backend(BackendSpec("paddle", find_model_file(directory), directory / f"{FILE_PREFIX}.pdiparams",
                                    BackendOptions(device="cpu", cpu_threads=2)))


def png_path_logits(directory: Path, images: np.ndarray) -> np.ndarray:
    """Each MNIST digit encoded as an 8-bit PNG, decoded and preprocessed by the service's code,
    classified by the exported files through Paddle Inference."""
    preprocessor = create_preprocessor()
    return run_in_batches(create_predictor(directory), np.stack([preprocessor(encode_png(image)) for image in images]),
                          500)


@dataclass(frozen=True)
class Evaluation:
    split: str
    inputs: np.ndarray
    labels: np.ndarray
    logits: np.ndarray
    method: str


def evaluate_exported(directory: Path, data: Dataset, cache_dir: Path, limit_eval: int | None) -> Evaluation:
    split_name, split = data.evaluation
    if data.name == "mnist":
        raw = load_mnist(cache_dir).test
        images = raw.images[:limit_eval] if limit_eval else raw.images
        return Evaluation(split_name, split.inputs, split.labels, png_path_logits(directory, images),
                          "each test digit encoded as an 8-bit PNG, decoded and preprocessed by the service's code, "
                          "classified by the exported model through Paddle Inference")
    logits = run_in_batches(create_predictor(directory), split.inputs, 64)
    return Evaluation(split_name, split.inputs, split.labels, logits,
                      f"every {split_name} image decoded and preprocessed from its file by the service's code, "
                      "classified by the exported model through Paddle Inference")


def write_samples(directory: Path, manifest: Manifest, evaluation: Evaluation) -> Manifest:
    """Store some of the evaluation images with the model (the accuracy gate's, app/inference/samples.py),
    with Paddle Inference's accuracy on them as stored, and save the manifest that lists them."""
    path = directory / SAMPLES_FILE
    count = save_samples(path, evaluation.inputs, evaluation.labels)
    inputs, labels = load_samples(path)
    accuracy = top_k_accuracy(run_in_batches(create_predictor(directory), inputs, 64), labels, 1)
    updated = manifest.model_copy(update={
        "files": {**manifest.files, SAMPLES_FILE: sha256_file(path)},
        "samples": SampleSet(file=SAMPLES_FILE, split=evaluation.split, images=count, accuracy=accuracy),
    })
    save_manifest(directory, Manifest.model_validate(updated.model_dump()))
    return updated


def manifest_metrics(split: str, metrics: dict[str, Any]) -> dict[str, float]:
    return {f"{split}_{key}": float(value) for key, value in metrics.items()
            if key.endswith(("accuracy", "macro_f1", "macro_precision", "macro_recall"))}


def exported_network(model: paddle.nn.Layer, config: TrainConfig, input_shape: tuple[int, int, int]) -> paddle.nn.Layer:
    """The trained network with the test-time averaging the export asks for around it."""
    if config.export.rotation_average:
        model = RotationAveraged(model, input_shape, config.export.rotation_average)
    return FlipAveraged(model) if config.export.flip_average else model


def version_dir(models_dir: Path, config: TrainConfig) -> Path:
    """Where `config` exports its model in the repository `models_dir`."""
    return models_dir / config.export.name / str(config.export.version)


def export_model(model: paddle.nn.Layer, config: TrainConfig, data: Dataset, training_facts: dict[str, Any],
                 run_dir: Path, dataset: DatasetProvenance | None = None) -> tuple[Path, Evaluation, dict[str, Any]]:
    """Write <models_dir>/<name>/<version>/ atomically (a reader never sees a half-written version)
    and measure the written files; returns (directory, evaluation, metrics). Without a models_dir
    the model goes inside the run directory (run_dir/models/...). `dataset` is the manifest's account of
    the training data, where `data` is not all of it (data.provenance by default)."""
    target = version_dir(Path(config.export.models_dir) if config.export.models_dir else run_dir / "models", config)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{config.export.version}-", dir=target.parent))
    try:
        save_inference_model(exported_network(model, config, data.input_shape), data.input_shape, staging)
        evaluation = evaluate_exported(staging, data, Path(config.data.cache_dir), config.data.limit_eval)
        metrics = classification_metrics(evaluation.logits, evaluation.labels, data.classes)
        model_file = find_model_file(staging)
        manifest = Manifest(
            name=config.export.name,
            version=config.export.version,
            created=datetime.now(UTC).replace(microsecond=0),
            architecture=config.model,
            framework={"name": "paddlepaddle", "version": paddle.__version__},
            model_file=model_file.name,
            params_file=f"{FILE_PREFIX}.pdiparams",
            labels=list(data.classes),
            input=TensorInput(name=INPUT_NAME, shape=[-1, *data.input_shape], dtype="float32", layout="NCHW",
                              color_mode=data.color_mode),
            output=TensorOutput(name="logits", activation="logits"),
            preprocessing=data.preprocessing,
            metrics=manifest_metrics(evaluation.split, metrics),
            evaluation={"split": evaluation.split, "images": int(len(evaluation.labels)), "method": evaluation.method,
                        "per_class": metrics["per_class"], "confusion": metrics["confusion"]},
            dataset=dataset or data.provenance,
            training=training_facts,
            files=hash_directory(staging),
        )
        save_manifest(staging, manifest)
        manifest = try_add_onnx(staging, write_samples(staging, manifest, evaluation))
        try_add_int8(staging, calibration_inputs(data), manifest)
        # mkdtemp makes the directory 0700: the service often runs as another user (the image's uid 10001).
        staging.chmod(0o755)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return target, evaluation, metrics


# What a re-export may change: how the network is exported, and where its data is kept.
REEXPORT_KEYS = ("export.", "data.root=", "data.cache_dir=")


def reexport_model(directory: Path, overrides: list[str]) -> Path:
    """`python -m training reexport`: an exported model's network written again, without training,
    with other export settings (the views it averages; its name, version or models directory:
    by default the model's next version, beside the one it read). The manifest keeps the training facts,
    records the version it came from, and is measured again on the written files."""
    refused = [override for override in overrides if not override.startswith(REEXPORT_KEYS)]
    if refused:
        raise ValueError(f"a re-export changes only export.* (and data.root, data.cache_dir): {', '.join(refused)}")
    manifest = load_manifest(directory)
    recorded = recorded_config(directory, [], manifest).export
    if recorded.rotation_average or recorded.flip_average:
        raise ValueError(f"{directory} already averages views of each image: a re-export would average those again")
    config = recorded_config(directory, [f"export.models_dir={directory.parent.parent}",
                                         f"export.version={max(scan_versions(directory.parent)) + 1}", *overrides],
                             manifest)
    _, channels, height, width = manifest.input.shape
    check_rotation_average(config.export.rotation_average, (channels, height, width))
    # The evaluation split and calibration images only: no typeset digits or photos to render.
    data = load_dataset(recorded_config(directory, ["data.printed_digits=0", "data.photo_digits=0", *overrides],
                                        manifest).data)
    network = paddle.jit.load(str(directory / FILE_PREFIX))
    network.eval()
    facts = {**manifest.training, "config": config.to_dict(),
             "exported_from": {"name": manifest.name, "version": manifest.version,
                               "created": manifest.created.isoformat(),
                               "params_sha256": manifest.files.get(manifest.params_file)}}
    target, _, _ = export_model(network, config, data, facts, directory, dataset=manifest.dataset)
    return target
