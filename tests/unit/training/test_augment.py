"""Augmentation switches: each one changes what training sees, and targets stay distributions."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from training.augment import Augmenter
from training.config import AugmentConfig
from training.engine import epoch_order


@pytest.fixture
def batch() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.random((8, 3, 40, 40), dtype=np.float32), np.array([0, 1, 2, 0, 1, 2, 0, 1])


def run(config: AugmentConfig, batch: tuple[np.ndarray, np.ndarray], **kwargs: object) -> tuple[np.ndarray, np.ndarray]:
    return Augmenter(config, (32, 32), 3, rng=np.random.default_rng(1), **kwargs)(*batch)


def test_augment_off_is_a_centre_crop_with_one_hot_targets(batch) -> None:  # noqa: ANN001
    inputs, targets = run(AugmentConfig(), batch)
    assert np.array_equal(inputs, batch[0][:, :, 4:36, 4:36])
    assert np.array_equal(targets, np.eye(3, dtype=np.float32)[batch[1]])


@pytest.mark.parametrize("switch", [
    {"random_resized_crop": True}, {"hflip": True}, {"vflip": True}, {"rotation": 30.0}, {"color_jitter": 0.5},
    {"random_erasing": 1.0}, {"mixup_alpha": 0.4}, {"cutmix_alpha": 1.0}, {"randaugment": True, "randaugment_magnitude": 15},
    {"max_shift": 3},
])
def test_augment_each_switch_changes_the_batch(batch, switch: dict) -> None:  # noqa: ANN001
    plain, _ = run(AugmentConfig(), batch)
    inputs, targets = run(dataclasses.replace(AugmentConfig(), **switch), batch)
    assert inputs.shape == (8, 3, 32, 32) and inputs.dtype == np.float32
    assert not np.allclose(inputs, plain)
    assert np.allclose(targets.sum(1), 1.0) and (targets >= 0).all()


def test_augment_label_smoothing_and_mixup_give_soft_targets(batch) -> None:  # noqa: ANN001
    _, smoothed = run(AugmentConfig(), batch, label_smoothing=0.3)
    assert np.allclose(smoothed.max(1), 0.8) and np.allclose(smoothed.min(1), 0.1)
    _, mixed = run(AugmentConfig(mixup_alpha=1.0), batch)
    assert (np.sort(mixed, axis=1)[:, -2] > 0).any()  # some rows mix two classes


def test_augment_normalises_after_cropping(batch) -> None:  # noqa: ANN001
    inputs, _ = run(AugmentConfig(), batch, normalize=([0.5] * 3, [0.25] * 3))
    assert np.allclose(inputs, (batch[0][:, :, 4:36, 4:36] - 0.5) / 0.25, atol=1e-6)


def test_epoch_order_balanced_sampling_evens_out_classes() -> None:
    labels = np.array([0] * 900 + [1] * 100)
    counts = np.bincount(labels[epoch_order(labels, np.random.default_rng(0), balanced=True)], minlength=2)
    assert abs(counts[0] - counts[1]) < 120
    plain = epoch_order(labels, np.random.default_rng(0))
    assert sorted(plain) == list(range(1000))


def test_epoch_order_gives_ranks_disjoint_equal_slices() -> None:
    labels = np.arange(101) % 3
    first = epoch_order(labels, np.random.default_rng(5), rank=0, world=2)
    second = epoch_order(labels, np.random.default_rng(5), rank=1, world=2)
    assert len(first) == len(second) == 50 and not set(first) & set(second)
