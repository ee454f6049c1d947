"""`python -m training {train,bundle,evaluate}`: train and export the classifiers the app serves."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import paddle

from training.config import TrainConfig, load_config
from training.data.mnist import DatasetUnavailableError
from training.export import export_mnist_model, measure_metrics
from training.models import count_parameters, create_model
from training.data.mnist import INPUT_SHAPE
from training.trainer import load_dataset, run_training

CONFIG_DIR = Path(__file__).parent / "configs"
BUNDLED_CONFIGS = ("mnist_softmax.yaml", "mnist_mlp.yaml", "mnist_lenet.yaml")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train one model from a YAML config and export it")
    train.add_argument("--config", type=Path, required=True, help="e.g. training/configs/mnist_lenet.yaml")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config value, e.g. --set epochs=2 --set optimizer.lr=0.01")
    train.add_argument("--no-export", action="store_true", help="train only; keep the run directory")

    bundle = commands.add_parser("bundle", help="train and export the bundled models (softmax, mlp, lenet)")
    bundle.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")

    evaluate = commands.add_parser("evaluate", help="measure an exported model on the MNIST test split")
    evaluate.add_argument("--model", type=Path, required=True, help="models/<name>/<version>")
    evaluate.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    return parser.parse_args(argv)


def train_and_export(config: TrainConfig, export: bool = True) -> Path:
    data = load_dataset(config)
    result = run_training(config, data)
    print(f"best epoch {result.best_epoch}; run directory {result.run_dir}", flush=True)
    if not export:
        return result.run_dir
    model = create_model(config.model, INPUT_SHAPE, 10)
    model.set_state_dict(paddle.load(str(result.best_params)))
    best = result.history[result.best_epoch - 1]
    facts = {
        "config": config.to_dict(),
        "parameters": count_parameters(model),
        "best_epoch": result.best_epoch,
        "val_accuracy": best["val_accuracy"],
        "epochs_run": len(result.history),
        "seconds": round(sum(h["seconds"] for h in result.history), 1),
        "run_dir": str(result.run_dir),
    }
    target = export_mnist_model(model, config, data, facts, limit_test=config.data.limit_eval)
    print(f"exported {target}", flush=True)
    print(json.dumps(json.loads((target / "manifest.json").read_text())["metrics"], indent=2), flush=True)
    return target


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "train":
            train_and_export(load_config(args.config, args.overrides), export=not args.no_export)
        elif args.command == "bundle":
            for name in BUNDLED_CONFIGS:
                train_and_export(load_config(CONFIG_DIR / name, args.overrides))
        elif args.command == "evaluate":
            data = load_dataset(load_config(None, args.overrides))
            metrics = measure_metrics(args.model, data.test.images, data.test.labels)
            print(json.dumps(metrics, indent=2))
    except (DatasetUnavailableError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
