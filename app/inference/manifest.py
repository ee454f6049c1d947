"""The manifest: the only contract between `training/` (which writes it) and `app/` (which reads it).

A model version directory holds the Paddle inference files and `manifest.json`. Everything the
service needs to know about a model (labels, input tensor, preprocessing, metrics, provenance,
file hashes) is read from here; nothing about a model is hard-coded in the app.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from app.inference.preprocess import Recipe

MANIFEST_FILE = "manifest.json"
SCHEMA_VERSION: Literal[1] = 1
# Names travel in URL paths and become directory names: keep them boring.
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


class ManifestError(ValueError):
    """A model directory whose manifest is missing, invalid, or does not match its files."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TensorInput(_Strict):
    name: str = Field(description="Input tensor name in the Paddle program")
    shape: list[int] = Field(description="Shape with -1 for the dynamic batch dimension, e.g. [-1, 1, 28, 28]")
    dtype: Literal["float32"] = "float32"
    layout: Literal["NCHW"] = "NCHW"
    color_mode: Literal["L", "RGB"] = Field(description="L: one grey channel; RGB: three channels")

    @field_validator("shape")
    @classmethod
    def _check_shape(cls, shape: list[int]) -> list[int]:
        if len(shape) != 4 or shape[0] != -1 or any(d <= 0 for d in shape[1:]):
            raise ValueError("shape must be [-1, C, H, W] with positive C, H, W")
        return shape

    @model_validator(mode="after")
    def _check_channels(self) -> TensorInput:
        expected = 1 if self.color_mode == "L" else 3
        if self.shape[1] != expected:
            raise ValueError(f"color_mode {self.color_mode} needs {expected} channel(s), shape has {self.shape[1]}")
        return self


class TensorOutput(_Strict):
    name: str
    activation: Literal["logits", "softmax"] = Field(
        description="logits: the app applies softmax; softmax: outputs are already probabilities"
    )


class PreprocessStep(BaseModel):
    """One step, e.g. {"op": "fit_into_box", "size": 20}; parameters beside `op`."""

    model_config = ConfigDict(extra="allow", frozen=True)
    op: str

    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class Preprocessing(_Strict):
    description: str = ""
    steps: list[PreprocessStep]


def step_specs(steps: Sequence[PreprocessStep]) -> list[tuple[str, dict[str, Any]]]:
    """Manifest steps as the (op, parameters) pairs that Preprocessor.create takes."""
    return [(step.op, step.params()) for step in steps]


def preprocessing_recipe(manifest: Manifest, max_pixels: int) -> Recipe:
    """What a preprocessor for this model is built from, in this process or a predictor's child."""
    return Recipe(manifest.input.color_mode, tuple(manifest.input.shape[1:]),
                  tuple(step_specs(manifest.preprocessing.steps)), max_pixels)


class DatasetProvenance(_Strict):
    name: str
    source: str
    sha256: str | None = None
    splits: dict[str, int] = Field(default_factory=dict)


class RuntimeArtifact(_Strict):
    """The model in another runtime's format, converted from the Paddle files and checked against them."""

    file: str = Field(description="Listed in `files`, e.g. inference.onnx")
    converter: str = Field(description="What converted it, e.g. paddle2onnx 2.1.0, opset 17")
    parity: dict[str, float] = Field(default_factory=dict, description=(
        "Against Paddle Inference on the same inputs: inputs, top1_agreement, and max_abs_diff (of the outputs; "
        "fp32) or accuracy and paddle_fp32_accuracy (int8, on the stored test images)"))


class SampleSet(_Strict):
    """Some of the model's own test images, as model inputs, stored with it: what a runtime of reduced
    precision (bf16, int8) must classify as Paddle Inference does before `APP_BACKEND=auto` may choose it."""

    file: str = Field(description="Listed in `files`, e.g. samples.npz (app/inference/samples.py reads it)")
    split: str = Field(description="The split they come from, e.g. test")
    images: int = Field(ge=1)
    accuracy: float = Field(ge=0.0, le=1.0, description="Paddle Inference's top-1 accuracy on them, fp32")


class Manifest(_Strict):
    schema_version: Literal[1] = SCHEMA_VERSION
    name: str
    version: int = Field(ge=1)
    created: datetime
    task: Literal["image-classification"] = "image-classification"
    architecture: str
    framework: dict[str, str] = Field(description="e.g. {'name': 'paddlepaddle', 'version': '3.3.1'}")
    model_file: str
    params_file: str
    labels: list[str] = Field(min_length=2)
    input: TensorInput
    output: TensorOutput
    preprocessing: Preprocessing
    metrics: dict[str, float] = Field(default_factory=dict)
    evaluation: dict[str, Any] = Field(default_factory=dict, description="How the metrics were measured")
    dataset: DatasetProvenance
    training: dict[str, Any] = Field(default_factory=dict)
    files: dict[str, str] = Field(description="SHA-256 of every file in the directory except the manifest")
    runtimes: dict[str, RuntimeArtifact] = Field(default_factory=dict, description=(
        "The model in other runtimes' formats, by format (onnx: ONNX Runtime and OpenVINO read it; onnx-int8: "
        "its int8 copy, quantised after training)"))
    samples: SampleSet | None = None

    @field_validator("name")
    @classmethod
    def _check_name(cls, name: str) -> str:
        if not NAME_PATTERN.match(name):
            raise ValueError(f"model name {name!r} must match {NAME_PATTERN.pattern}")
        return name

    @model_validator(mode="after")
    def _check_files_listed(self) -> Manifest:
        samples = [self.samples.file] if self.samples else []
        for required in (self.model_file, self.params_file, *(a.file for a in self.runtimes.values()), *samples):
            if required not in self.files:
                raise ValueError(f"{required} is not listed in files")
        return self


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def hash_directory(directory: Path) -> dict[str, str]:
    """A manifest's `files`: the SHA-256 of every file in the directory except the manifest."""
    return {p.name: sha256_file(p) for p in sorted(directory.iterdir()) if p.is_file() and p.name != MANIFEST_FILE}


def load_manifest(directory: Path) -> Manifest:
    """Read and validate `directory/manifest.json` (no hash check: see `verify_files`)."""
    path = directory / MANIFEST_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ManifestError(f"{path} is missing") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{path} is not readable JSON: {exc}") from exc
    try:
        return Manifest.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "manifest"
        raise ManifestError(f"{path}: {where}: {first['msg']}") from exc


def verify_files(directory: Path, manifest: Manifest) -> None:
    """Check every listed file exists and has the recorded SHA-256, so a half-copied model never loads."""
    for filename, expected in manifest.files.items():
        if Path(filename).name != filename:
            raise ManifestError(f"file name {filename!r} must not contain a path")
        path = directory / filename
        if not path.is_file():
            raise ManifestError(f"{filename} is listed in the manifest but missing")
        actual = sha256_file(path)
        if actual != expected:
            raise ManifestError(f"{filename} has SHA-256 {actual[:12]}…, manifest says {expected[:12]}…")


def save_manifest(directory: Path, manifest: Manifest) -> Path:
    path = directory / MANIFEST_FILE
    # Without other runtimes' files or samples the manifest is written as before they existed, so a
    # service that does not know `runtimes` or `samples` still reads it.
    unused = ({"runtimes"} if not manifest.runtimes else set()) | ({"samples"} if manifest.samples is None else set())
    path.write_text(manifest.model_dump_json(indent=2, exclude=unused) + "\n", encoding="utf-8")
    return path
