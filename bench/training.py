"""Training benchmark (not a test): MNIST test accuracy per network from one command, and seconds
per LeNet epoch next to the same network, data and batch size in PyTorch, in the same run.

    python bench/training.py                 # both parts (accuracy trains four networks: long)
    python bench/training.py --only speed    # the Paddle-vs-PyTorch epoch timing alone
Needs `pip install torch==2.13.0` for the comparison (skipped with a note otherwise).
Writes bench/training-results.json."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ACCURACY_CONFIGS = {"softmax": "mnist_softmax.yaml", "mlp": "mnist_mlp.yaml", "lenet": "mnist_lenet.yaml",
                    "cnn_bn": "mnist_cnn_bn.yaml"}
GOALS = {"softmax": 0.92, "mlp": 0.98, "lenet": 0.99, "cnn_bn": 0.99}


def measure_accuracy(work: Path) -> dict[str, dict[str, float]]:
    results = {}
    for name, config in ACCURACY_CONFIGS.items():
        started = time.perf_counter()
        command = [sys.executable, "-m", "training", "train", "--config", f"training/configs/{config}",
                   "--set", f"output_dir={work / 'runs'}", "--set", f"export.models_dir={work / 'models'}"]
        subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        (manifest,) = [p for p in (work / "models").glob("*/1/manifest.json")
                       if json.loads(p.read_text())["architecture"] == name]
        accuracy = json.loads(manifest.read_text())["metrics"]["test_accuracy"]
        results[name] = {"test_accuracy": accuracy, "goal": GOALS[name], "met": accuracy >= GOALS[name],
                         "seconds": round(time.perf_counter() - started, 1)}
        print(f"{name:8s} test accuracy {accuracy:.4f} (goal {GOALS[name]:.2f}) in {results[name]['seconds']} s", flush=True)
    return results


def paddle_epoch_seconds(x: np.ndarray, y: np.ndarray, batch: int, epochs: int) -> list[float]:
    import paddle

    from training.augment import Augmenter
    from training.config import AugmentConfig
    from training.engine import train_one_epoch
    from training.models import create_model

    paddle.seed(0)
    model = create_model("lenet", (1, 28, 28), 10)
    optimizer = paddle.optimizer.Adam(learning_rate=1e-3, parameters=model.parameters())
    augment = Augmenter(AugmentConfig(), (28, 28), 10)
    times = []
    for epoch in range(epochs):
        order = np.random.default_rng(epoch).permutation(len(y))
        started = time.perf_counter()
        train_one_epoch(model, optimizer, x, y, order, batch, augment)
        times.append(time.perf_counter() - started)
    return times


def torch_epoch_seconds(x: np.ndarray, y: np.ndarray, batch: int, epochs: int) -> list[float]:
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2, 2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2, 2),
        nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    times = []
    for epoch in range(epochs):
        order = np.random.default_rng(epoch).permutation(len(y))
        started = time.perf_counter()
        model.train()
        for start in range(0, len(order), batch):
            index = order[start : start + batch]
            inputs, targets = torch.from_numpy(x[index]), torch.from_numpy(y[index])
            loss = loss_fn(model(inputs), targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        times.append(time.perf_counter() - started)
    return times


def measure_speed(epochs: int, batch: int) -> dict[str, object]:
    from training.config import DataConfig
    from training.data.dataset import load_dataset

    data = load_dataset(DataConfig(name="mnist"))
    x, y = np.ascontiguousarray(data.train.inputs), data.train.labels
    result: dict[str, Any] = {"images": int(len(y)), "batch_size": batch, "epochs_timed": epochs}
    result["paddle_seconds"] = paddle_epoch_seconds(x, y, batch, epochs)
    print(f"paddle  LeNet epoch: {min(result['paddle_seconds']):.2f} s (best of {epochs})", flush=True)
    try:
        import torch

        result["torch_version"] = torch.__version__
        result["torch_seconds"] = torch_epoch_seconds(x, y, batch, epochs)
        result["ratio_paddle_over_torch"] = min(result["paddle_seconds"]) / min(result["torch_seconds"])
        print(f"pytorch LeNet epoch: {min(result['torch_seconds']):.2f} s; Paddle / PyTorch = "
              f"{result['ratio_paddle_over_torch']:.2f} (goal <= 1.2)", flush=True)
    except ImportError:
        result["torch_seconds"] = None
        print("pytorch not installed: pip install torch==2.13.0 for the comparison", flush=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["accuracy", "speed"])
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per framework (best is reported)")
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    results: dict[str, object] = {}
    if args.only in (None, "speed"):
        results["lenet_epoch"] = measure_speed(args.epochs, args.batch_size)
    if args.only in (None, "accuracy"):
        with tempfile.TemporaryDirectory() as work:
            results["mnist_accuracy"] = measure_accuracy(Path(work))
    out = ROOT / "bench" / "training-results.json"
    previous = json.loads(out.read_text()) if out.is_file() else {}
    out.write_text(json.dumps({**previous, **results}, indent=2))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
