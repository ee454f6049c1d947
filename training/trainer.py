"""One training run: data -> model -> epochs -> best checkpoint, with a run directory that records it."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

import numpy as np
import paddle

from training.config import TrainConfig, save_config
from training.data.mnist import INPUT_SHAPE, Mnist, load_mnist, prepare_inputs
from training.engine import build_optimizer, build_schedule, evaluate, shift_images, train_one_epoch
from training.models import count_parameters, create_model

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    run_dir: Path
    best_params: Path
    best_epoch: int
    history: list[dict[str, float]] = field(default_factory=list)


def load_dataset(config: TrainConfig) -> Mnist:
    if config.data.name != "mnist":
        raise ValueError(f"unknown dataset {config.data.name!r}: this version trains on mnist")
    return load_mnist(Path(config.data.cache_dir))


def limit(array: np.ndarray, count: int | None) -> np.ndarray:
    return array if count is None else array[:count]


def create_run_dir(config: TrainConfig) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    run_dir = Path(config.output_dir) / f"{config.export.name}-{stamp}"
    run_dir.mkdir(parents=True, exist_ok=False)
    return run_dir


def run_training(config: TrainConfig, data: Mnist) -> RunResult:
    paddle.seed(config.seed)
    rng = np.random.default_rng(config.seed)
    run_dir = create_run_dir(config)
    cache_dir = Path(config.data.cache_dir)
    save_config(config, run_dir / "config.yaml")

    x_train = prepare_inputs(limit(data.train.images, config.data.limit_train), cache_dir, "train")
    y_train = limit(data.train.labels, config.data.limit_train)
    x_val = prepare_inputs(limit(data.val.images, config.data.limit_eval), cache_dir, "val")
    y_val = limit(data.val.labels, config.data.limit_eval)

    model = create_model(config.model, INPUT_SHAPE, 10)
    log.info("model %s: %d parameters", config.model, count_parameters(model))
    steps_per_epoch = -(-len(y_train) // config.batch_size)
    schedule = build_schedule(config.schedule.name, config.optimizer.lr, config.epochs, steps_per_epoch,
                              config.schedule.warmup_epochs)
    optimizer = build_optimizer(config.optimizer.name, schedule, model.parameters(),
                                config.optimizer.weight_decay, config.optimizer.momentum)
    scheduler = schedule if isinstance(schedule, paddle.optimizer.lr.LRScheduler) else None
    augment = partial(shift_images, max_shift=config.augment.max_shift, rng=rng) if config.augment.max_shift else None

    result = RunResult(run_dir, run_dir / "best.pdparams", best_epoch=0)
    best_accuracy = -1.0
    for epoch in range(1, config.epochs + 1):
        started = time.perf_counter()
        train = train_one_epoch(model, optimizer, x_train, y_train, config.batch_size, rng, augment, scheduler,
                                description=f"epoch {epoch}/{config.epochs}")
        val = evaluate(model, x_val, y_val)
        seconds = time.perf_counter() - started
        record = {"epoch": epoch, "train_loss": train.loss, "train_accuracy": train.accuracy,
                  "val_loss": val.loss, "val_accuracy": val.accuracy, "seconds": seconds}
        result.history.append(record)
        print(f"epoch {epoch:3d}  train_loss {train.loss:.4f}  train_acc {train.accuracy:.4f}  "
              f"val_loss {val.loss:.4f}  val_acc {val.accuracy:.4f}  {seconds:.1f}s", flush=True)
        if val.accuracy > best_accuracy:
            best_accuracy, result.best_epoch = val.accuracy, epoch
            paddle.save(model.state_dict(), str(result.best_params))
        (run_dir / "metrics.json").write_text(json.dumps(result.history, indent=2), encoding="utf-8")
    return result
