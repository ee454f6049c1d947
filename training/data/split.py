"""A stratified, seeded train/validation split: every class keeps its share in both parts."""

from __future__ import annotations

import numpy as np


def stratified_split(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val), each sorted. A class with 2+ samples puts at least one in each part;
    a val_fraction of 0 puts every sample in train and none in val."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be at least 0 and below 1, got {val_fraction}")
    if val_fraction == 0.0:
        return np.arange(len(labels)), np.arange(0)
    rng = np.random.default_rng(seed)
    train, val = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        count = int(round(len(members) * val_fraction))
        if len(members) >= 2:
            count = min(max(count, 1), len(members) - 1)
        val.append(members[:count])
        train.append(members[count:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))
