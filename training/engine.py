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


def epoch_order(labels: np.ndarray, rng: np.random.Generator, balanced: bool = False, rank: int = 0,
                world: int = 1) -> np.ndarray:
    """This epoch's sample indices for this rank. Balanced: as many draws as samples, each class
    equally likely (the course's label shuffling). Ranks take disjoint, equally long slices."""
    if balanced:
        counts = np.bincount(labels)
        weights = 1.0 / counts[labels]
        order = rng.choice(len(labels), size=len(labels), replace=True, p=weights / weights.sum())
    else:
        order = rng.permutation(len(labels))
    per_rank = len(order) // world
    return order[rank * per_rank : (rank + 1) * per_rank] if world > 1 else order


Augment = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def train_one_epoch(
    model: nn.Layer,
    optimizer: paddle.optimizer.Optimizer,
    images: np.ndarray,
    labels: np.ndarray,
    order: np.ndarray,
    batch_size: int,
    augment: Augment,
    scheduler: paddle.optimizer.lr.LRScheduler | None = None,
    description: str = "train",
) -> EpochResult:
    """images: stored training arrays; augment turns a batch into (inputs, soft targets)."""
    model.train()
    total_loss, correct = 0.0, 0
    batches = range(0, len(order), batch_size)
    with tqdm(batches, desc=description, unit="batch", leave=False, dynamic_ncols=True, disable=None) as bar:
        for start in bar:
            index = order[start : start + batch_size]
            inputs, targets = augment(images[index], labels[index])
            logits = model(paddle.to_tensor(inputs))
            loss = F.cross_entropy(logits, paddle.to_tensor(targets), soft_label=True)
            loss.backward()
            optimizer.step()
            optimizer.clear_grad()
            if scheduler is not None:
                scheduler.step()
            batch_loss = float(loss)
            total_loss += batch_loss * len(index)
            correct += int((logits.argmax(axis=1).numpy() == labels[index]).sum())
            bar.set_postfix(loss=f"{batch_loss:.4f}")
    return EpochResult(total_loss / max(1, len(order)), correct / max(1, len(order)))


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
    if name == "adamw":  # decoupled weight decay, not an L2 term in the gradient
        return paddle.optimizer.AdamW(learning_rate=lr, parameters=parameters, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}: use sgd, momentum, adam or adamw")


def build_schedule(name: str, lr: float, epochs: int, steps_per_epoch: int, warmup_epochs: int,
                   step_epochs: int = 10, gamma: float = 0.1) -> float | paddle.optimizer.lr.LRScheduler:
    """Per-step schedule; the caller calls .step() after every optimiser step if it is a scheduler."""
    warmup_steps = warmup_epochs * steps_per_epoch
    if name == "constant":
        schedule: float | paddle.optimizer.lr.LRScheduler = lr
    elif name == "step":
        schedule = paddle.optimizer.lr.StepDecay(lr, step_size=max(1, step_epochs * steps_per_epoch), gamma=gamma)
    elif name == "cosine":  # anneals over the steps after the warm-up
        schedule = paddle.optimizer.lr.CosineAnnealingDecay(lr, T_max=max(1, epochs * steps_per_epoch - warmup_steps))
    else:
        raise ValueError(f"unknown schedule {name!r}: use constant, step or cosine")
    if warmup_epochs > 0:
        schedule = paddle.optimizer.lr.LinearWarmup(schedule, warmup_steps=warmup_steps,
                                                    start_lr=0.0, end_lr=lr)
    return schedule
