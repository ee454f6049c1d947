"""One training run from a checked config: train -> export -> report. The metrics are computed
once, on what is measured (the exported files, or the network as trained with --no-export), and
shared by the manifest and the report."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import paddle

from training.config import TrainConfig
from training.data.dataset import Dataset, load_dataset
from training.engine import predict_logits
from training.export import export_model
from training.models import count_parameters, create_model
from training.report import classification_metrics, format_table, write_report
from training.trainer import RunResult, run_training


@dataclass(frozen=True)
class TrainingFacts:
    """What the manifest records of how the exported weights came about."""

    config: dict[str, Any]
    initial_weights: str
    parameters: int
    exported_weights: str
    exported_epoch: int
    best_epoch: int
    val_accuracy: float
    epochs_run: int
    stopped_early: bool
    seconds: float
    skipped_files: int
    run_dir: str


@dataclass(frozen=True)
class Measured:
    """The evaluation split as measured, and its metrics."""

    split: str
    inputs: np.ndarray
    labels: np.ndarray
    logits: np.ndarray
    metrics: dict[str, Any]


def train_and_export(config: TrainConfig, export: bool = True) -> Path:
    """Train, then export and measure the exported files (or, without `export`, measure the network
    as trained), then write the report. Returns the exported version's directory (or the run's)."""
    data = load_dataset(config.data)
    result = run_training(config, data)
    if paddle.distributed.get_rank() != 0:
        return result.run_dir
    print(f"best epoch {result.best_epoch}; run directory {result.run_dir}", flush=True)
    if data.skipped:
        (result.run_dir / "skipped.txt").write_text("\n".join(data.skipped) + "\n", encoding="utf-8")
    model, epoch = load_chosen_weights(config, data, result)
    if export:
        facts = describe_training(config, data, result, model, epoch)
        target, evaluation, metrics = export_model(model, config, data, dataclasses.asdict(facts), result.run_dir)
        measured = Measured(evaluation.split, evaluation.inputs, evaluation.labels, evaluation.logits, metrics)
        outcome = f"exported {target}"
    else:
        target, measured = result.run_dir, measure_trained(model, data)
        outcome = "not exported (--no-export)"
    write_report(result.run_dir, measured.split, result.history, measured.inputs, measured.labels, measured.logits,
                 data.classes, measured.metrics)
    print(format_table(measured.metrics, measured.split), flush=True)
    print(f"{outcome}; report in {result.run_dir}", flush=True)
    return target


def load_chosen_weights(config: TrainConfig, data: Dataset, result: RunResult) -> tuple[paddle.nn.Layer, int]:
    """The network with the weights config.export_weights names (best or last), and their epoch."""
    model = create_model(config.model, data.input_shape, len(data.classes))
    if config.export_weights == "best":
        model.set_state_dict(paddle.load(str(result.best_params)))
        return model, result.best_epoch
    model.set_state_dict(paddle.load(str(result.run_dir / "last.pdckpt" / "model.pdparams")))
    return model, len(result.history)


def describe_training(config: TrainConfig, data: Dataset, result: RunResult, model: paddle.nn.Layer,
                      epoch: int) -> TrainingFacts:
    return TrainingFacts(
        config=config.to_dict(),
        initial_weights=config.finetune.init_from or "random: trained from scratch, no pretrained weights",
        parameters=count_parameters(model),
        exported_weights=config.export_weights,
        exported_epoch=epoch,
        best_epoch=result.best_epoch,
        val_accuracy=result.history[epoch - 1]["val_accuracy"],
        epochs_run=len(result.history),
        stopped_early=result.stopped_early,
        seconds=round(sum(h["seconds"] for h in result.history), 1),
        skipped_files=len(data.skipped),
        run_dir=str(result.run_dir),
    )


def measure_trained(model: paddle.nn.Layer, data: Dataset) -> Measured:
    """The network as trained, in this process, on the evaluation split."""
    split, part = data.evaluation
    model.eval()
    logits = predict_logits(model, part.inputs)
    return Measured(split, part.inputs, part.labels, logits, classification_metrics(logits, part.labels, data.classes))
