"""Model outputs -> sorted top-k predictions with label names."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Prediction:
    class_id: int
    label: str
    score: float


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, stable for large logits. (N, K) -> (N, K)."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def to_probabilities(outputs: np.ndarray, activation: str) -> np.ndarray:
    outputs = np.asarray(outputs, dtype=np.float64)
    return softmax(outputs) if activation == "logits" else outputs


def top_k(probabilities: np.ndarray, labels: Sequence[str], k: int) -> list[Prediction]:
    """One row of probabilities (K,) -> the k best, highest first; ties keep the lower class id first."""
    if not 1 <= k <= len(labels):
        raise ValueError(f"k must be between 1 and {len(labels)}, got {k}")
    order = np.argsort(-probabilities, kind="stable")[:k]
    return [Prediction(i, labels[i], score) for i, score in zip(order.tolist(), probabilities[order].tolist())]
