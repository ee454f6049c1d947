"""The training and evaluation loops, over in-memory numpy arrays (no per-sample Python work)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import paddle
import paddle.nn.functional as F
from paddle import nn
from tqdm import tqdm


@dataclass(frozen=True)
class EpochResult:
    loss: float
    accuracy: float


def shift_images(images: np.ndarray, max_shift: int, rng: np.random.Generator) -> np.ndarray:
    """Translate each (N, C, H, W) image by up to max_shift pixels, filling with zeros."""
    if max_shift <= 0:
        return images
    n, _, height, width = images.shape
    padded = np.pad(images, ((0, 0), (0, 0), (max_shift, max_shift), (max_shift, max_shift)))
    dy = rng.integers(0, 2 * max_shift + 1, size=n)
    dx = rng.integers(0, 2 * max_shift + 1, size=n)
    rows = dy[:, None] + np.arange(height)[None, :]
    cols = dx[:, None] + np.arange(width)[None, :]
    return padded[np.arange(n)[:, None, None, None], np.arange(images.shape[1])[None, :, None, None],
                  rows[:, None, :, None], cols[:, None, None, :]]


def train_one_epoch(
    model: nn.Layer,
    optimizer: paddle.optimizer.Optimizer,
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    rng: np.random.Generator,
    augment: Callable[[np.ndarray], np.ndarray] | None = None,
    scheduler: paddle.optimizer.lr.LRScheduler | None = None,
    description: str = "train",
) -> EpochResult:
    """images: float32 (N, C, H, W); labels: int64 (N,). Returns mean loss and accuracy."""
    model.train()
    order = rng.permutation(len(labels))
    total_loss, correct = 0.0, 0
    batches = range(0, len(order), batch_size)
    with tqdm(batches, desc=description, unit="batch", leave=False, dynamic_ncols=True, disable=None) as bar:
        for start in bar:
            index = order[start : start + batch_size]
            batch = images[index] if augment is None else augment(images[index])
            x = paddle.to_tensor(batch)
            y = paddle.to_tensor(labels[index])
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            loss.backward()
            optimizer.step()
            optimizer.clear_grad()
            if scheduler is not None:
                scheduler.step()
            batch_loss = float(loss)
            total_loss += batch_loss * len(index)
            correct += int((logits.argmax(axis=1) == y).astype("int64").sum())
            bar.set_postfix(loss=f"{batch_loss:.4f}")
    return EpochResult(total_loss / len(order), correct / len(order))


@paddle.no_grad()
def predict_logits(model: nn.Layer, images: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    model.eval()
    chunks = [model(paddle.to_tensor(images[i : i + batch_size])).numpy() for i in range(0, len(images), batch_size)]
    return np.concatenate(chunks, axis=0)


def evaluate(model: nn.Layer, images: np.ndarray, labels: np.ndarray, batch_size: int = 1000) -> EpochResult:
    logits = predict_logits(model, images, batch_size)
    loss = float(F.cross_entropy(paddle.to_tensor(logits), paddle.to_tensor(labels)))
    return EpochResult(loss, float((logits.argmax(axis=1) == labels).mean()))


def build_optimizer(name: str, lr: float | paddle.optimizer.lr.LRScheduler, parameters: list,
                    weight_decay: float, momentum: float) -> paddle.optimizer.Optimizer:
    decay = paddle.regularizer.L2Decay(weight_decay) if weight_decay > 0 else None
    if name == "sgd":
        return paddle.optimizer.SGD(learning_rate=lr, parameters=parameters, weight_decay=decay)
    if name == "momentum":
        return paddle.optimizer.Momentum(learning_rate=lr, momentum=momentum, parameters=parameters,
                                         weight_decay=decay)
    if name == "adam":
        return paddle.optimizer.Adam(learning_rate=lr, parameters=parameters, weight_decay=decay)
    raise ValueError(f"unknown optimizer {name!r}: use sgd, momentum or adam")


def build_schedule(name: str, lr: float, epochs: int, steps_per_epoch: int,
                   warmup_epochs: int) -> float | paddle.optimizer.lr.LRScheduler:
    """Per-step schedule; the caller calls .step() after every optimiser step if it is a scheduler."""
    if name == "constant":
        schedule: float | paddle.optimizer.lr.LRScheduler = lr
    elif name == "cosine":
        schedule = paddle.optimizer.lr.CosineAnnealingDecay(lr, T_max=max(1, epochs * steps_per_epoch))
    else:
        raise ValueError(f"unknown schedule {name!r}: use constant or cosine")
    if warmup_epochs > 0:
        schedule = paddle.optimizer.lr.LinearWarmup(schedule, warmup_steps=warmup_epochs * steps_per_epoch,
                                                    start_lr=0.0, end_lr=lr)
    return schedule
