"""A fake backend behind the real backend seam, and a model directory it serves: the service's
whole request path (routes, service, batcher, handler) runs in milliseconds, in this process."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from app.inference.backends import BackendSpec
from app.inference.manifest import (
    DatasetProvenance,
    Manifest,
    Preprocessing,
    PreprocessStep,
    TensorInput,
    TensorOutput,
    hash_directory,
    save_manifest,
)

LABELS = ["dark", "grey", "light"]
SIDE = 8


class FakeBackend:
    """Scores each class by how near the input's mean brightness is to it: a black image is
    "dark", a white one "light". Its model file says how many classes and the input's name."""

    spins_between_runs = False
    gate: threading.Event | None = None  # when set by a test, every run waits for it to open
    runs: list[int] = []  # the batch size of every run, for tests to read

    def __init__(self, classes: int, input_name: str) -> None:
        self.classes = classes
        self.input_name = input_name

    @classmethod
    def load(cls, spec: BackendSpec) -> FakeBackend:
        model = json.loads(spec.model_file.read_text())
        return cls(model["classes"], model["input_name"])

    def run(self, batch: np.ndarray, solo: bool = False) -> np.ndarray:
        if self.gate is not None:
            self.gate.wait(10)
        FakeBackend.runs.append(len(batch))
        brightness = batch.reshape(len(batch), -1).mean(axis=1) * (self.classes - 1)
        logits = -5.0 * np.abs(brightness[:, None] - np.arange(self.classes)[None, :])
        return logits.astype(np.float32)

    def clone(self) -> FakeBackend:
        return FakeBackend(self.classes, self.input_name)

    def describe(self) -> dict[str, Any]:
        return {"backend": "fake", "device": "cpu"}

    def close(self) -> None:
        pass


def write_fake_model(models_dir: Path, name: str = "fake", version: int = 1) -> Path:
    """models_dir/name/version with the fake's model file and a manifest for it."""
    target = models_dir / name / str(version)
    target.mkdir(parents=True)
    (target / "fake.json").write_text(json.dumps({"classes": len(LABELS), "input_name": "image"}))
    (target / "fake.params").write_bytes(b"no weights")
    manifest = Manifest(
        name=name, version=version, created=datetime.now(UTC), architecture="brightness",
        framework={"name": "fake", "version": "1"}, model_file="fake.json", params_file="fake.params",
        labels=LABELS, input=TensorInput(name="image", shape=[-1, 1, SIDE, SIDE], color_mode="L"),
        output=TensorOutput(name="scores", activation="logits"),
        preprocessing=Preprocessing(steps=[PreprocessStep(op="resize", size=[SIDE, SIDE])]),
        dataset=DatasetProvenance(name="none", source="a rule, not a dataset"),
        files=hash_directory(target),
    )
    save_manifest(target, manifest)
    return target
