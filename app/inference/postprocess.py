"""Model outputs -> probabilities -> the best classes with their labels: the only place these are
computed, for /v1, /v2 and training's reports alike."""

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
    """The model's outputs (N, K) as float64 probabilities: softmax over logits, else as they are."""
    outputs = np.asarray(outputs, dtype=np.float64)
    return softmax(outputs) if activation == "logits" else outputs


def rank(scores: np.ndarray, k: int) -> np.ndarray:
    """(N, K) scores -> (N, k) class ids, best first; ties keep the lower class id first (as argmax)."""
    return np.argsort(-scores, axis=-1, kind="stable")[..., :k]


def top_k(probabilities: np.ndarray, labels: Sequence[str], k: int) -> list[Prediction]:
    """One row of probabilities (K,) -> the k best, highest first."""
    if not 1 <= k <= len(labels):
        raise ValueError(f"k must be between 1 and {len(labels)}, got {k}")
    order = rank(probabilities, k)
    return [Prediction(i, labels[i], score) for i, score in zip(order.tolist(), probabilities[order].tolist())]
