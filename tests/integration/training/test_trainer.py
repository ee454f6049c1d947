"""Training runs on slices of real MNIST: seeded runs repeat exactly, a resumed run ends where the
uninterrupted one does, early stopping stops, fine-tuning loads, freezes and replaces the head, and
two data-parallel CPU ranks see different data and end with identical weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import paddle
import pytest

from tests.conftest import MNIST_CACHE, ROOT, free_port
from training import trainer
from training.config import TrainConfig, load_config
from training.data.dataset import load_dataset
from training.engine import build_optimizer, build_schedule
from training.trainer import RunResult, run_training

SLICE = ["data.limit_train=1200", "data.printed_digits=0", "data.photo_digits=0", "data.limit_eval=300", f"data.cache_dir={MNIST_CACHE}",
         "batch_size=100"]


def smoke_config(tmp_path: Path, *overrides: str) -> TrainConfig:
    return load_config(ROOT / "training/configs/mnist_lenet.yaml",
                       [*SLICE, f"output_dir={tmp_path / 'runs'}", "augment.max_shift=2", *overrides])


def weights(path: Path) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in paddle.load(str(path)).items()}


def final_weights(result: RunResult) -> dict[str, np.ndarray]:
    return weights(result.run_dir / "last.pdckpt" / "model.pdparams")


def same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def data(mnist):  # noqa: ANN001, ANN201
    return load_dataset(smoke_config(Path("/unused")).data)


def test_trainer_seeded_runs_repeat_exactly(tmp_path: Path, data) -> None:  # noqa: ANN001
    config = smoke_config(tmp_path, "epochs=2", "augment.random_erasing=0.5", "label_smoothing=0.1",
                          "augment.random_resized_crop=true", "augment.rotation=10", "augment.mixup_alpha=0.2")
    first, second = run_training(config, data), run_training(config, data)
    assert same(final_weights(first), final_weights(second))
    assert first.history[-1]["train_loss"] == second.history[-1]["train_loss"]
    other = run_training(smoke_config(tmp_path, "epochs=2", "seed=7"), data)
    assert not same(final_weights(first), final_weights(other))


def test_trainer_resume_continues_exactly_where_the_run_stopped(tmp_path: Path, data,  # noqa: ANN001
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    whole = run_training(smoke_config(tmp_path, "epochs=3"), data)
    # An interrupted run: it got through one epoch of the same three-epoch schedule, then stopped.
    with monkeypatch.context() as patch:
        patch.setattr(trainer, "should_stop", lambda result, patience: True)
        interrupted = run_training(smoke_config(tmp_path, "epochs=3"), data)
    assert len(interrupted.history) == 1
    resumed = run_training(smoke_config(tmp_path, "epochs=3", f"resume={interrupted.run_dir}"), data)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    assert same(final_weights(whole), final_weights(resumed))
    assert resumed.history[-1]["val_accuracy"] == whole.history[-1]["val_accuracy"]



def test_trainer_resume_of_a_finished_run_holds_its_last_epoch(tmp_path: Path, data) -> None:  # noqa: ANN001
    """Resuming a run with no epoch left (to export its last epoch) gives a whole run directory."""
    finished = run_training(smoke_config(tmp_path, "epochs=2"), data)
    again = run_training(smoke_config(tmp_path, "epochs=2", f"resume={finished.run_dir}"), data)
    assert again.run_dir != finished.run_dir and again.history == finished.history
    assert same(final_weights(finished), final_weights(again))

def test_trainer_early_stopping_stops_after_patience(tmp_path: Path, data) -> None:  # noqa: ANN001
    # A learning rate of zero never improves on epoch 1.
    result = run_training(smoke_config(tmp_path, "epochs=10", "early_stopping_patience=2", "optimizer.lr=0.0",
                                       "schedule.name=constant"), data)
    assert result.stopped_early and len(result.history) == 3 and result.best_epoch == 1


def test_trainer_finetune_loads_backbone_replaces_head_and_freezes(tmp_path: Path, data) -> None:  # noqa: ANN001
    source = run_training(smoke_config(tmp_path, "epochs=3"), data)
    start = weights(source.best_params)
    # The same backbone on a 5-class problem: digits 0-4 only.
    keep = data.train.labels < 5
    from dataclasses import replace

    from training.data.dataset import ArraySplit
    small = replace(data, classes=data.classes[:5],
                    train=ArraySplit(data.train.inputs[keep], data.train.labels[keep], []),
                    val=ArraySplit(data.val.inputs[data.val.labels < 5], data.val.labels[data.val.labels < 5], []))
    tuned = run_training(smoke_config(tmp_path, "epochs=3", "optimizer.lr=0.01", f"finetune.init_from={source.best_params}",
                                      "finetune.freeze_backbone=true"), small)
    end = final_weights(tuned)
    head = [k for k in start if start[k].shape != end[k].shape]
    assert head and all(end[k].shape[-1] == 5 for k in head)
    assert all(np.array_equal(start[k], end[k]) for k in start if k not in head)  # frozen
    assert tuned.history[-1]["val_accuracy"] > 0.6  # only the head trained: the loaded features carry over


def test_trainer_without_validation_trains_and_refuses_to_pick_an_epoch(tmp_path: Path, data) -> None:  # noqa: ANN001
    from dataclasses import replace

    from training.data.dataset import empty_split
    unvalidated = replace(data, val=empty_split(data.input_shape))
    result = run_training(smoke_config(tmp_path, "epochs=2", "export_weights=last"), unvalidated)
    assert [(h["val_loss"], h["val_accuracy"]) for h in result.history] == [(None, None)] * 2
    assert result.best_epoch == 0 and not result.best_params.exists()
    assert result.history[1]["train_loss"] < result.history[0]["train_loss"]  # it did train
    with pytest.raises(ValueError, match="export_weights: last"):
        run_training(smoke_config(tmp_path, "epochs=1", "export_weights=best"), unvalidated)
    with pytest.raises(ValueError, match="early_stopping_patience: 0"):
        run_training(smoke_config(tmp_path, "epochs=1", "export_weights=last", "early_stopping_patience=2"),
                     unvalidated)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam", "adamw"])
@pytest.mark.parametrize("schedule", ["constant", "step", "cosine"])
def test_engine_builds_every_optimizer_and_schedule(optimizer: str, schedule: str) -> None:
    layer = paddle.nn.Linear(4, 2)
    lr = build_schedule(schedule, 0.1, epochs=4, steps_per_epoch=5, warmup_epochs=1, step_epochs=1, gamma=0.5)
    opt = build_optimizer(optimizer, lr, layer.parameters(), weight_decay=0.01, momentum=0.9)
    rates = []
    for _ in range(20):
        layer(paddle.ones([3, 4])).sum().backward()
        opt.step()
        opt.clear_grad()
        rates.append(opt.get_lr())
        if not isinstance(lr, float):
            lr.step()
    assert rates[0] == pytest.approx(0.0 if schedule != "constant" else 0.1, abs=1e-9) or schedule == "constant"
    if schedule != "constant":
        assert max(rates) == pytest.approx(0.1, rel=0.05) and rates[-1] < 0.1


def assert_ranks_agree(runs: Path) -> None:
    (run_dir,) = runs.iterdir()
    ranks = [json.loads((run_dir / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    first, second = (set(r["samples"]) for r in ranks)
    assert len(first) == len(second) == 600 and not first & second
    assert ranks[0]["weights_sha256"] == ranks[1]["weights_sha256"]
    assert (run_dir / "metrics.json").is_file() and (run_dir / "best.pdparams").is_file()


def test_trainer_two_nodes_train_as_one(tmp_path: Path) -> None:
    """Two machines as Paddle's launcher joins them (`--nnodes 2 --rank R --master HOST:PORT`), here
    both on loopback: each node its own launcher and process, with a cache of its own prepared at
    the same moment as the other's."""
    port = str(free_port())
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo"}  # gloo's transport: the interface the nodes share
    nodes = [subprocess.Popen(
        [sys.executable, "-m", "paddle.distributed.launch", "--nnodes", "2", "--rank", str(rank),
         "--master", f"127.0.0.1:{port}", "--nproc_per_node", "1", "--log_dir", str(tmp_path / f"logs-{rank}"),
         "training/train.py", "--config", "training/configs/mnist_lenet.yaml", "--no-export",
         "--set", "epochs=1", "--set", f"output_dir={tmp_path / 'runs'}",
         *[a for s in SLICE for a in ("--set", s)], "--set", f"data.cache_dir={tmp_path / 'cache'}"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for rank in (0, 1)]
    outputs = [node.communicate(timeout=600)[0] for node in nodes]
    logs = "\n".join(p.read_text(errors="replace")[-2000:] for p in sorted(tmp_path.glob("logs-*/*")) if p.is_file())
    assert [node.returncode for node in nodes] == [0, 0], "\n".join(o[-2000:] for o in outputs) + logs
    assert_ranks_agree(tmp_path / "runs")


def test_trainer_two_cpu_ranks_see_different_data_and_end_identical(tmp_path: Path, mnist) -> None:  # noqa: ANN001
    """`python -m paddle.distributed.launch --nproc_per_node 2 training/train.py` with the usual config."""
    command = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2",
               "--log_dir", str(tmp_path / "logs"), "training/train.py",
               "--config", "training/configs/mnist_lenet.yaml", "--no-export",
               "--set", "epochs=1", "--set", f"output_dir={tmp_path / 'runs'}", *[a for s in SLICE for a in ("--set", s)]]
    env = dict(os.environ)
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    logs = "\n".join(p.read_text(errors="replace")[-2000:] for p in sorted((tmp_path / "logs").glob("*")) if p.is_file())
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:] + logs
    assert_ranks_agree(tmp_path / "runs")
