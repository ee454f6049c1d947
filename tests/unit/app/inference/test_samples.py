"""The test images stored with a model and the accuracy gate a reduced-precision runtime must pass."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.inference import samples
from app.inference.backends import BACKENDS, BackendEntry, BackendOptions, BackendSpec, load_backend
from app.inference.samples import gate_backends, judge, load_samples, save_samples
from tests.unit.fakes import FakeBackend, write_fake_model


def test_save_samples_stores_8_bit_affine_inputs_exactly(tmp_path: Path) -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (20, 3, 6, 6))
    pixels[0, :, 0, 0], pixels[0, :, 0, 1] = 0, 255  # every channel spans 0-255, as photos do
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    inputs = ((pixels / 255.0 - mean[None, :, None, None]) / std[None, :, None, None]).astype(np.float32)
    assert save_samples(tmp_path / "s.npz", inputs, np.arange(20)) == 20
    stored, labels = load_samples(tmp_path / "s.npz")
    assert stored.dtype == np.float32 and stored.shape == inputs.shape and list(labels) == list(range(20))
    np.testing.assert_allclose(stored, inputs, atol=1e-5)


def test_save_samples_keeps_other_inputs_within_half_a_step(tmp_path: Path) -> None:
    inputs = np.random.default_rng(1).random((50, 1, 8, 8)).astype(np.float32)
    save_samples(tmp_path / "s.npz", inputs, np.zeros(50))
    stored, _ = load_samples(tmp_path / "s.npz")
    step = (inputs.max() - inputs.min()) / 255
    assert np.abs(stored - inputs).max() <= step / 2 + 1e-6


def test_save_samples_caps_the_stored_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(samples, "MAX_BYTES", 3 * 64 * 64 * 10)
    inputs = np.zeros((40, 3, 64, 64), dtype=np.float32)
    assert save_samples(tmp_path / "s.npz", inputs, np.zeros(40)) == 10


def outputs_for(predicted: list[int], classes: int = 3) -> np.ndarray:
    return np.eye(classes, dtype=np.float32)[predicted]


def test_judge_passes_one_flip_in_a_thousand_and_no_more() -> None:
    labels = np.arange(1000) % 3
    reference = outputs_for(list(labels))
    one_flip = outputs_for([(labels[0] + 1) % 3, *labels[1:]])
    two_flips = outputs_for([(labels[0] + 1) % 3, (labels[1] + 1) % 3, *labels[2:]])
    assert judge(reference, reference, labels).passed
    assert judge(one_flip, reference, labels).passed  # 99.9% agreement, 0.1 point of accuracy
    result = judge(two_flips, reference, labels)
    assert not result.passed and result.describe()["top1_agreement"] == 0.998


def test_judge_fails_a_runtime_that_agrees_but_loses_accuracy_on_a_small_sample() -> None:
    labels = np.zeros(100, dtype=np.int64)
    reference = outputs_for([0] * 100)
    assert not judge(outputs_for([1] + [0] * 99), reference, labels).passed


class FlippingBackend(FakeBackend):
    """The fake, with its scores for the first and last class swapped on every input: what a runtime
    that computes wrongly would give."""

    def run(self, batch: np.ndarray, solo: bool = False) -> np.ndarray:
        return super().run(batch)[:, ::-1].copy()


def test_gate_backends_judges_each_runtime_on_the_stored_samples(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 fake_backend: type[FakeBackend]) -> None:
    monkeypatch.setitem(BACKENDS, "flipping", BackendEntry(f"{__name__}:FlippingBackend", "numpy", precision="bf16"))
    directory = write_fake_model(tmp_path)
    inputs = np.concatenate([np.zeros((10, 1, 8, 8)), np.ones((10, 1, 8, 8))]).astype(np.float32)
    save_samples(directory / "samples.npz", inputs, np.array([0] * 10 + [2] * 10))
    spec = BackendSpec("fake", directory / "fake.json", directory / "fake.params", BackendOptions())
    flipping = BackendSpec("flipping", spec.model_file, spec.params_file, spec.options)
    results = gate_backends({"fake": load_backend(spec), "flipping": load_backend(flipping)}, load_backend(spec),
                            directory / "samples.npz")
    assert results["fake"].passed and results["fake"].accuracy == 1.0
    assert not results["flipping"].passed and results["flipping"].agreement == 0.0
