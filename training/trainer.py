"""One training run: data -> model -> epochs -> best checkpoint, with a run directory that records it.

Randomness is re-derived from (seed, epoch) at the start of every epoch, so a run resumed from a
checkpoint continues exactly as the uninterrupted run would have. Under
`python -m paddle.distributed.launch` each rank trains on its own slice of every epoch and
gradients are all-reduced (paddle.DataParallel); rank 0 alone writes the run directory."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import paddle
import paddle.distributed as dist

from training.augment import Augmenter
from training.config import TrainConfig, save_config
from training.data.dataset import Dataset
from training.engine import build_optimizer, build_schedule, epoch_order, evaluate, train_one_epoch
from training.models import count_parameters, create_model

log = logging.getLogger(__name__)
CHECKPOINT = "last.pdckpt"


@dataclass
class RunResult:
    run_dir: Path
    best_params: Path
    best_epoch: int
    history: list[dict[str, Any]] = field(default_factory=list)  # metrics.json: val_* None without validation
    stopped_early: bool = False


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_ranks() -> Ranks:
    world = dist.get_world_size()
    if world > 1:
        dist.init_parallel_env()
    return Ranks(dist.get_rank(), world)


def create_run_dir(config: TrainConfig, ranks: Ranks) -> Path:
    name = [f"{config.export.name}-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S-%f')}"]
    if ranks.world > 1:
        dist.broadcast_object_list(name, src=0)  # one directory for all ranks
    run_dir = Path(config.output_dir) / name[0]
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def seed_epoch(seed: int, epoch: int) -> np.random.Generator:
    """Every source of randomness for one epoch, from (seed, epoch) alone."""
    paddle.seed(seed * 1000 + epoch)
    random.seed(seed * 1000 + epoch)
    np.random.seed((seed * 1000 + epoch) % 2**32)  # paddle.vision.transforms draws from numpy's global RNG
    return np.random.default_rng([seed, epoch])


def build_model(config: TrainConfig, data: Dataset) -> tuple[paddle.nn.Layer, list[paddle.Tensor]]:
    """The network, fine-tuned from finetune.init_from if given; returns it and what to train."""
    paddle.seed(config.seed)
    model = create_model(config.model, data.input_shape, len(data.classes))
    if not config.finetune.init_from:
        return model, model.parameters()
    state = paddle.load(config.finetune.init_from)
    own = model.state_dict()
    loaded = {k: v for k, v in state.items() if k in own and list(v.shape) == list(own[k].shape)}
    if not loaded:
        raise ValueError(f"{config.finetune.init_from}: no parameter matches {config.model}'s names and shapes")
    model.set_state_dict(loaded)
    fresh = sorted(set(own) - set(loaded))
    log.info("fine-tuning: %d tensors loaded from %s, %d start fresh: %s", len(loaded), config.finetune.init_from,
             len(fresh), ", ".join(fresh))
    if not config.finetune.freeze_backbone:
        return model, model.parameters()
    trainable = []
    for name, param in model.named_parameters():
        param.stop_gradient = name in loaded
        if not param.stop_gradient:
            trainable.append(param)
    return model, trainable


def eval_batch_size(input_shape: tuple[int, int, int]) -> int:
    return max(16, min(1000, (1 << 20) // int(np.prod(input_shape))))


def run_training(config: TrainConfig, data: Dataset) -> RunResult:
    """Train per `config`. Every epoch leaves a checkpoint, so a run that stops for any reason
    continues from its last epoch with `resume: <run directory>`."""
    check_validation(config, data)
    ranks = init_ranks()
    run_dir = create_run_dir(config, ranks)
    if ranks.is_main:
        save_config(config, run_dir / "config.yaml")
    model, trainable = build_model(config, data)
    log.info("model %s: %d parameters (%d trainable)", config.model, count_parameters(model),
             sum(math.prod(p.shape) for p in trainable))
    per_rank = len(data.train.labels) // ranks.world
    steps_per_epoch = -(-per_rank // config.batch_size)
    schedule = build_schedule(config.schedule.name, config.optimizer.lr, config.epochs, steps_per_epoch,
                              config.schedule.warmup_epochs, config.schedule.step_epochs, config.schedule.gamma)
    optimizer = build_optimizer(config.optimizer.name, schedule, trainable, config.optimizer.weight_decay,
                                config.optimizer.momentum)
    scheduler = schedule if isinstance(schedule, paddle.optimizer.lr.LRScheduler) else None
    network = paddle.DataParallel(model) if ranks.world > 1 else model

    result = RunResult(run_dir, run_dir / "best.pdparams", best_epoch=0)
    first_epoch = 1
    if config.resume:
        first_epoch = load_checkpoint(Path(config.resume), model, optimizer, scheduler, result)
        if ranks.is_main and result.history:
            # The new run directory holds the run so far, so that it is whole even when no epoch
            # is left to run (resuming a finished run to export its last epoch).
            (run_dir / "metrics.json").write_text(json.dumps(result.history, indent=2), encoding="utf-8")
            save_checkpoint(run_dir / CHECKPOINT, model, optimizer, scheduler, result, first_epoch - 1)
    best = max((h["val_accuracy"] for h in result.history if h["val_accuracy"] is not None), default=-1.0)
    validated = len(data.val.labels) > 0
    size = data.input_shape[1:]
    for epoch in range(first_epoch, config.epochs + 1):
        rng = seed_epoch(config.seed, epoch)
        augment = Augmenter(config.augment, size, len(data.classes), config.label_smoothing, data.normalize, rng)
        order = epoch_order(data.train.labels, rng, config.balanced_sampling, ranks.rank, ranks.world)
        started = time.perf_counter()
        train = train_one_epoch(network, optimizer, data.train.inputs, data.train.labels, order, config.batch_size,
                                augment, scheduler, description=f"epoch {epoch}/{config.epochs}")
        val = evaluate(model, data.val.inputs, data.val.labels, eval_batch_size(data.input_shape)) if validated else None
        record = {"epoch": epoch, "train_loss": train.loss, "train_accuracy": train.accuracy,
                  "val_loss": val.loss if val else None, "val_accuracy": val.accuracy if val else None,
                  "lr": float(optimizer.get_lr()), "seconds": time.perf_counter() - started}
        result.history.append(record)
        if ranks.world > 1:
            write_rank_record(run_dir, ranks, epoch, order, data, model)
        if not ranks.is_main:
            continue
        validation = f"val_loss {val.loss:.4f}  val_acc {val.accuracy:.4f}  " if val else ""
        print(f"epoch {epoch:3d}  train_loss {train.loss:.4f}  train_acc {train.accuracy:.4f}  "
              f"{validation}{record['seconds']:.1f}s", flush=True)
        if val and val.accuracy > best:
            best, result.best_epoch = val.accuracy, epoch
            paddle.save(model.state_dict(), str(result.best_params))
        (run_dir / "metrics.json").write_text(json.dumps(result.history, indent=2), encoding="utf-8")
        save_checkpoint(run_dir / CHECKPOINT, model, optimizer, scheduler, result, epoch)
        if should_stop(result, config.early_stopping_patience):
            result.stopped_early = True
            print(f"early stopping: no better val accuracy for {config.early_stopping_patience} epochs", flush=True)
            break
    return result


def check_validation(config: TrainConfig, data: Dataset) -> None:
    """Without a validation split nothing can pick an epoch or stop early; refuse a config that asks to."""
    if len(data.val.labels):
        return
    if config.export_weights != "last":
        raise ValueError("no validation split (data.val_fraction 0) to pick the best epoch by: "
                         "use export_weights: last")
    if config.early_stopping_patience:
        raise ValueError("no validation split (data.val_fraction 0) to stop early by: "
                         "use early_stopping_patience: 0")


def should_stop(result: RunResult, patience: int) -> bool:
    return patience > 0 and len(result.history) - result.best_epoch >= patience


def save_checkpoint(path: Path, model: paddle.nn.Layer, optimizer: paddle.optimizer.Optimizer,
                    scheduler: paddle.optimizer.lr.LRScheduler | None, result: RunResult, epoch: int) -> None:
    """Model, optimiser, scheduler, epoch and history; the RNG needs no state (see seed_epoch)."""
    path.mkdir(exist_ok=True)
    paddle.save(model.state_dict(), str(path / "model.pdparams"))
    paddle.save(rename_optimizer_state(optimizer.state_dict(), model, to_structured=True), str(path / "optimizer.pdopt"))
    state = {"epoch": epoch, "best_epoch": result.best_epoch, "history": result.history,
             "scheduler": scheduler.state_dict() if scheduler is not None else None}
    (path / "state.json").write_text(json.dumps(state, indent=2), encoding="utf-8")


def rename_optimizer_state(state: dict, model: paddle.nn.Layer, to_structured: bool) -> dict:
    """Optimiser accumulators are keyed by Paddle's generated parameter names (`conv2d_10.w_0_moment1_0`),
    which differ between processes and model instances; checkpoints use the structured names."""
    pairs = [(param.name + "_", name + "_") for name, param in model.named_parameters()]
    if not to_structured:
        pairs = [(b, a) for a, b in pairs]
    pairs.sort(key=lambda pair: len(pair[0]), reverse=True)
    renamed = {}
    for key, value in state.items():
        for old, new in pairs:
            if key.startswith(old):
                key = new + key[len(old):]
                break
        renamed[key] = value
    return renamed


def load_checkpoint(path: Path, model: paddle.nn.Layer, optimizer: paddle.optimizer.Optimizer,
                    scheduler: paddle.optimizer.lr.LRScheduler | None, result: RunResult) -> int:
    """Restore a checkpoint (a run directory or its last.pdckpt); returns the next epoch to run."""
    path = path / CHECKPOINT if (path / CHECKPOINT).is_dir() else path
    if not (path / "state.json").is_file():
        raise FileNotFoundError(f"resume: no checkpoint at {path}")
    state = json.loads((path / "state.json").read_text(encoding="utf-8"))
    model.set_state_dict(paddle.load(str(path / "model.pdparams")))
    optimizer.set_state_dict(rename_optimizer_state(paddle.load(str(path / "optimizer.pdopt")), model, to_structured=False))
    if scheduler is not None and state["scheduler"] is not None:
        scheduler.set_state_dict(state["scheduler"])
    result.history[:] = state["history"]
    result.best_epoch = state["best_epoch"]
    best_params = path.parent / "best.pdparams"
    if best_params.is_file() and best_params != result.best_params:
        result.best_params.write_bytes(best_params.read_bytes())
    log.info("resumed from %s after epoch %d", path, state["epoch"])
    return int(state["epoch"]) + 1


def write_rank_record(run_dir: Path, ranks: Ranks, epoch: int, order: np.ndarray, data: Dataset,
                      model: paddle.nn.Layer) -> None:
    """What this rank saw and where its weights ended: shows disjoint data and identical weights."""
    digest = hashlib.sha256()
    for _, value in sorted(model.state_dict().items()):
        digest.update(np.ascontiguousarray(value.numpy()).tobytes())
    record = {"rank": ranks.rank, "world": ranks.world, "epoch": epoch, "samples": sorted(data.train.ids[i] for i in order),
              "weights_sha256": digest.hexdigest()}
    (run_dir / f"rank-{ranks.rank}.json").write_text(json.dumps(record), encoding="utf-8")
