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

from app.inference.manifest import ManifestError, load_manifest
from training.config import TrainConfig
from training.data.dataset import Dataset, load_dataset
from training.engine import predict_logits
from training.export import export_model, version_dir
from training.models import count_parameters, create_model
from training.models.registry import Ensemble, check_rotation_average
from training.report import classification_metrics, format_table, top_k_accuracy, write_report
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
    val_accuracy: float | None  # None: trained on all of its data, with no validation split
    epochs_run: int
    stopped_early: bool
    seconds: float
    skipped_files: int
    run_dir: str
    members: list[dict[str, Any]]  # an ensemble's: seed, run directory, exported epoch, val accuracy


@dataclass(frozen=True)
class Measured:
    """The evaluation split as measured, and its metrics."""

    split: str
    inputs: np.ndarray
    labels: np.ndarray
    logits: np.ndarray
    metrics: dict[str, Any]


def train_and_export(config: TrainConfig, export: bool = True) -> Path:
    """Train (each member of an ensemble in turn), then export and measure the exported files (or,
    without `export`, measure the network as trained), then write the report, in the first
    member's run directory. Returns the exported version's directory (or that run's)."""
    check_rotation_average(config.export.rotation_average)
    data = load_dataset(config.data)
    check_rotation_average(config.export.rotation_average, data.input_shape)
    members = member_configs(config)
    results = [run_training(member, data) for member in members]
    first = results[0]
    if paddle.distributed.get_rank() != 0:
        return first.run_dir
    for result in results:
        print(f"best epoch {result.best_epoch}; run directory {result.run_dir}", flush=True)
    if data.skipped:
        (first.run_dir / "skipped.txt").write_text("\n".join(data.skipped) + "\n", encoding="utf-8")
    chosen = [load_chosen_weights(member, data, result) for member, result in zip(members, results, strict=True)]
    model = chosen[0][0] if len(chosen) == 1 else Ensemble([network for network, _ in chosen])
    if export:
        facts = describe_training(config, data, members, results, model, [epoch for _, epoch in chosen])
        target, evaluation, metrics = export_model(model, config, data, dataclasses.asdict(facts), first.run_dir)
        measured = Measured(evaluation.split, evaluation.inputs, evaluation.labels, evaluation.logits, metrics)
        outcome = f"exported {target}"
    else:
        target, measured = first.run_dir, measure_trained(model, data)
        outcome = "not exported (--no-export)"
    write_report(first.run_dir, measured.split, first.history, measured.inputs, measured.labels, measured.logits,
                 data.classes, measured.metrics)
    print(format_table(measured.metrics, measured.split), flush=True)
    print(f"{outcome}; report in {first.run_dir}", flush=True)
    return target


def member_configs(config: TrainConfig) -> list[TrainConfig]:
    """One config per network to train: the config itself, or an ensemble's members by seed."""
    if config.ensemble < 1:
        raise ValueError(f"ensemble must be 1 or more, got {config.ensemble}")
    if config.ensemble > 1 and config.resume:
        raise ValueError("resume continues one run; resume an ensemble's members one by one, with ensemble: 1")
    return [dataclasses.replace(config, seed=config.seed + i) for i in range(config.ensemble)]


def load_chosen_weights(config: TrainConfig, data: Dataset, result: RunResult) -> tuple[paddle.nn.Layer, int]:
    """The network with the weights config.export_weights names (best or last), and their epoch."""
    model = create_model(config.model, data.input_shape, len(data.classes))
    if config.export_weights == "best":
        model.set_state_dict(paddle.load(str(result.best_params)))
        return model, result.best_epoch
    model.set_state_dict(paddle.load(str(result.run_dir / "last.pdckpt" / "model.pdparams")))
    return model, len(result.history)


def describe_training(config: TrainConfig, data: Dataset, members: list[TrainConfig], results: list[RunResult],
                      model: paddle.nn.Layer, epochs: list[int]) -> TrainingFacts:
    """The first member's run, with the exported network's validation accuracy (an ensemble's is
    measured here, on the same validation split) and, for an ensemble, each member's run."""
    first, epoch = results[0], epochs[0]
    if len(results) == 1:
        val_accuracy, runs = first.history[epoch - 1]["val_accuracy"], []
    else:
        val_accuracy = (top_k_accuracy(predict_logits(model, data.val.inputs), data.val.labels, 1)
                        if len(data.val.labels) else None)
        runs = [{"seed": member.seed, "run_dir": str(result.run_dir), "exported_epoch": exported,
                 "val_accuracy": result.history[exported - 1]["val_accuracy"]}
                for member, result, exported in zip(members, results, epochs, strict=True)]
    return TrainingFacts(
        config=config.to_dict(),
        initial_weights=config.finetune.init_from or "random: trained from scratch, no pretrained weights",
        parameters=count_parameters(model),
        exported_weights=config.export_weights,
        exported_epoch=epoch,
        best_epoch=first.best_epoch,
        val_accuracy=val_accuracy,
        epochs_run=len(first.history),
        stopped_early=first.stopped_early,
        seconds=round(sum(h["seconds"] for result in results for h in result.history), 1),
        skipped_files=len(data.skipped),
        run_dir=str(first.run_dir),
        members=runs,
    )


def measure_trained(model: paddle.nn.Layer, data: Dataset) -> Measured:
    """The network as trained, in this process, on the evaluation split."""
    split, part = data.evaluation
    model.eval()
    logits = predict_logits(model, part.inputs)
    return Measured(split, part.inputs, part.labels, logits, classification_metrics(logits, part.labels, data.classes))


def retrain_bundled(config: TrainConfig) -> str:
    """Train and export a bundled model into its place in the model repository, and say how the
    new version measures against the one it replaced. Retrains of the same recipe spread by a few
    tenths of a point, so a replacement that came out worse should be seen at once (git has the
    one replaced)."""
    models_dir = config.export.models_dir  # None: the run's own directory, where nothing is replaced
    before = recorded_accuracy(version_dir(Path(models_dir), config)) if models_dir else None
    after = recorded_accuracy(train_and_export(config))
    return compare_accuracy(config.export.name, after, before)


def recorded_accuracy(directory: Path) -> tuple[str, float] | None:
    """(split, accuracy) as an exported version's manifest records them; None where there is no
    readable manifest or it records no accuracy."""
    try:
        manifest = load_manifest(directory)
    except ManifestError:
        return None
    split = str(manifest.evaluation.get("split", "test"))
    accuracy = manifest.metrics.get(f"{split}_accuracy")
    return None if accuracy is None else (split, accuracy)


def compare_accuracy(name: str, after: tuple[str, float] | None, before: tuple[str, float] | None) -> str:
    """One line: the new version's accuracy beside that of the version it replaced."""
    if after is None:
        return f"{name}: exported; its manifest records no accuracy"
    split, accuracy = after
    line = f"{name}: {split} accuracy {accuracy:.2%}"
    if before is None:
        return f"{line} (it replaced no model)"
    if before[0] != split:
        return f"{line}; the model it replaced recorded {before[1]:.2%} on its {before[0]} split"
    change = "better than" if accuracy > before[1] else "worse than" if accuracy < before[1] else "the same as"
    return f"{line}, {change} the model it replaced ({before[1]:.2%})"
