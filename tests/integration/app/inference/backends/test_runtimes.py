"""Every runtime behind the backend seam, on the bundled models' own files: the same answers as
Paddle Inference, batching, per-input errors, a crashed predictor process replaced, and a model
without the runtime's file served by Paddle Inference, saying why."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from app.inference.backends import BACKENDS, BackendOptions, missing_package
from app.inference.input_errors import ImageDecodeError
from app.inference.model_version import LoadOptions, ModelVersion
from app.inference.pools import ProcessPool
from tests.conftest import MODELS_DIR, lenet_without_onnx, missing_instructions, png_bytes

RUNTIMES = [kind for kind in BACKENDS if missing_package(kind) is None]
OTHERS = [kind for kind in RUNTIMES if kind != "paddle"]
# The runtimes that can read the bundled photo model: those that need no other file, and those whose
# file it has (its int8 copy did not pass the accuracy gate).
PHOTO_RUNTIMES = [kind for kind in OTHERS if BACKENDS[kind].artifact in
                  {None, *json.loads((MODELS_DIR / "hymenoptera" / "1" / "manifest.json").read_text())["runtimes"]}]
CONVERTED = [kind for kind in OTHERS if BACKENDS[kind].artifact is not None]  # those that read another file
# fp32 runtimes agree with Paddle Inference to rounding; bf16 to its 8 bits of mantissa; int8 to its
# 256 levels per tensor (probabilities, not the answers: those are checked exactly).
TOLERANCE = {"fp32": 1e-4, "bf16": 3e-2, "int8": 1e-1}


def tolerance(kind: str) -> float:
    return TOLERANCE[BACKENDS[kind].precision]


def load(directory: Path, kind: str, isolation: str = "thread") -> ModelVersion:
    return ModelVersion.load(directory, LoadOptions(BackendOptions("cpu", 1), 1, 1_000_000, backend_kind=kind,
                                                    isolation=isolation, max_batch_size=8))  # type: ignore[arg-type]


def probabilities(model: ModelVersion, images: list[bytes]) -> np.ndarray:
    return np.stack([outcome.probabilities for outcome in model.classify(images)])  # type: ignore[misc]


def test_every_declared_runtime_is_installed_for_the_tests() -> None:
    assert RUNTIMES == list(BACKENDS), [missing_package(kind) for kind in BACKENDS]


@pytest.fixture(scope="module")
def digits(mnist) -> tuple[list[bytes], np.ndarray]:  # noqa: ANN001
    return [png_bytes(image) for image in mnist.test.images[:300]], mnist.test.labels[:300]


@pytest.fixture(scope="module")
def paddle_answers(digits: tuple[list[bytes], np.ndarray]) -> np.ndarray:
    model = load(MODELS_DIR / "mnist-lenet" / "1", "paddle")
    try:
        return probabilities(model, digits[0])
    finally:
        model.close()


@pytest.mark.parametrize("kind", OTHERS)
def test_runtime_answers_the_digits_as_paddle_inference_does(kind: str, digits: tuple[list[bytes], np.ndarray],
                                                             paddle_answers: np.ndarray) -> None:
    if (why := missing_instructions(BACKENDS[kind].precision)) is not None:
        pytest.skip(why)
    model = load(MODELS_DIR / "mnist-lenet" / "1", kind)
    try:
        answers = probabilities(model, digits[0])
        info = model.describe()
    finally:
        model.close()
    assert info["backend"] == kind and info["backend_reason"] == "asked for"
    assert (answers.argmax(1) == paddle_answers.argmax(1)).all()
    assert np.abs(answers - paddle_answers).max() < tolerance(kind)


@pytest.mark.parametrize("kind", PHOTO_RUNTIMES)
def test_runtime_reads_the_photo_model(kind: str) -> None:
    directory = MODELS_DIR / "hymenoptera" / "1"
    photos = sorted((MODELS_DIR.parent.parent / "shared" / "data" / "hymenoptera" / "val").glob("*/*.jpg"))[:6]
    assert photos, "the ants and bees photos are in ../shared/data/hymenoptera"
    images = [path.read_bytes() for path in photos]
    reference, model = load(directory, "paddle"), load(directory, kind)
    try:
        np.testing.assert_allclose(probabilities(model, images), probabilities(reference, images), atol=tolerance(kind))
    finally:
        reference.close()
        model.close()


@pytest.mark.parametrize("kind", RUNTIMES)
def test_runtime_in_a_predictor_process_batches_fails_one_input_and_survives_a_crash(
        kind: str, digits: tuple[list[bytes], np.ndarray], paddle_answers: np.ndarray) -> None:
    model = load(MODELS_DIR / "mnist-lenet" / "1", kind, isolation="process")
    try:
        inputs = [*digits[0][:5], b"\x89PNG\r\n\x1a\n cut short"]
        outcomes = asyncio.run(model.classify_async(inputs))
        assert isinstance(outcomes[5].error, ImageDecodeError)
        got = np.stack([o.probabilities for o in outcomes[:5]])  # type: ignore[misc]
        assert np.abs(got - paddle_answers[:5]).max() < tolerance(kind)
        assert isinstance(model.pool, ProcessPool)
        [process] = model.pool.processes
        assert process.pid is not None
        os.kill(process.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while process.alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        again = asyncio.run(model.classify_async(inputs[:2]))  # a fresh process takes the next batch
        assert model.pool.restarts == 1 and all(o.error is None for o in again)
    finally:
        model.close()


@pytest.mark.parametrize("kind", CONVERTED)
def test_model_without_the_runtimes_file_is_served_by_paddle_inference(kind: str, tmp_path: Path) -> None:
    model = load(lenet_without_onnx(tmp_path), kind)
    try:
        info = model.describe()
    finally:
        model.close()
    assert info["backend"] == "paddle-inference" and f"no {BACKENDS[kind].artifact} file" in info["backend_reason"]


def test_auto_measures_every_installed_runtime_and_keeps_the_fastest(digits: tuple[list[bytes], np.ndarray],
                                                                     paddle_answers: np.ndarray) -> None:
    model = load(MODELS_DIR / "mnist-lenet" / "1", "auto")
    try:
        info = model.describe()
        answers = probabilities(model, digits[0][:50])
    finally:
        model.close()
    measured = info["backend_images_per_second"]
    # Where the CPU lacks an instruction set, a runtime that needs it is refused or may fail its gate.
    usable = {kind for kind in RUNTIMES if missing_instructions(BACKENDS[kind].precision) is None}
    assert usable <= set(measured) <= set(RUNTIMES) and all(rate > 0 for rates in measured.values() for rate in rates.values())
    assert info["backend_reason"].startswith("auto: the most images/s at batch 8")
    chosen = {"paddle-inference": "paddle"}.get(info["backend"], info["backend"])
    eligible = {kind: rates for kind, rates in measured.items() if rates["1"] >= measured["paddle"]["1"]}
    assert chosen in eligible or chosen == "paddle"
    assert measured[chosen]["8"] * 1.05 >= max(rates["8"] for rates in [*eligible.values(), measured["paddle"]])
    assert np.abs(answers - paddle_answers[:50]).max() < tolerance(chosen)


def test_auto_takes_bf16_only_where_the_accuracy_gate_passes(tmp_path: Path) -> None:
    if (why := missing_instructions("bf16")) is not None:
        pytest.skip(why)
    model = load(MODELS_DIR / "hymenoptera" / "1", "auto")
    try:
        gate = model.describe()["backend_accuracy_gate"]
        measured = model.describe()["backend_images_per_second"]
    finally:
        model.close()
    assert gate["openvino-bf16"]["images"] == model.manifest.samples.images  # type: ignore[union-attr]
    assert gate["openvino-bf16"]["paddle_fp32_accuracy"] == pytest.approx(model.manifest.samples.accuracy, abs=1e-4)  # type: ignore[union-attr]
    assert ("openvino-bf16" in measured) == gate["openvino-bf16"]["passed"]

    unchecked = without_samples(MODELS_DIR / "hymenoptera" / "1", tmp_path)
    model = load(unchecked, "auto")
    try:
        info = model.describe()
    finally:
        model.close()
    assert "openvino-bf16" not in info["backend_images_per_second"] and info["backend"] != "openvino-bf16"
    assert "stores no test images" in info["backend_accuracy_gate"]["openvino-bf16"]["reason"]


def without_samples(directory: Path, tmp_path: Path) -> Path:
    target = tmp_path / directory.parent.name / directory.name
    shutil.copytree(directory, target)
    manifest = json.loads((target / "manifest.json").read_text())
    del manifest["samples"], manifest["files"]["samples.npz"]
    (target / "samples.npz").unlink()
    (target / "manifest.json").write_text(json.dumps(manifest))
    return target
