"""`python -m training {train,bundle,evaluate,eda,summary,predict}`: train, inspect and export the
classifiers the app serves."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

from app.inference.predictor import import_paddle

paddle = import_paddle()  # without Paddle's ccache warning (it compiles nothing here)

from training.config import TrainConfig, load_config
from training.data.dataset import Dataset, load_dataset
from training.data.mnist import DatasetUnavailableError
from training.engine import predict_logits
from training.export import evaluate_model, export_model
from training.models import MODEL_NAMES, count_parameters, create_model
from training.report import format_table, write_report
from training.trainer import run_training

CONFIG_DIR = Path(__file__).parent / "configs"
BUNDLED_CONFIGS = ("mnist_softmax.yaml", "mnist_mlp.yaml", "mnist_lenet.yaml", "hymenoptera_cnn.yaml")
BUNDLED_MODELS = "models"  # the repository's own, which the service serves by default


def add_config_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument("--config", type=Path, required=required, help="e.g. training/configs/mnist_lenet.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set epochs=2 --set optimizer.lr=0.01")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train one model from a YAML config, report and export it (into "
                                              "its run directory unless export.models_dir says where)")
    add_config_arguments(train)
    train.add_argument("--no-export", action="store_true", help="train only; keep the run directory")

    bundle = commands.add_parser("bundle", help="retrain the bundled models and replace them in models/")
    bundle.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")

    evaluate = commands.add_parser("evaluate", help="measure an exported model on the test (or validation) split "
                                                    "of the data it was trained on")
    evaluate.add_argument("--model", type=Path, required=True, help="models/<name>/<version>")
    evaluate.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")

    eda = commands.add_parser("eda", help="class counts per split and a class histogram PNG")
    add_config_arguments(eda)
    eda.add_argument("--out", type=Path, default=Path("runs/eda.png"))

    summary = commands.add_parser("summary", help="the layer and parameter table of a network")
    summary.add_argument("--model", required=True, choices=MODEL_NAMES)
    summary.add_argument("--input", default="3,224,224", help="C,H,W (default 3,224,224)")
    summary.add_argument("--classes", type=int, default=10)

    predict = commands.add_parser("predict", help="classify a folder of images into a CSV (id,label,score)")
    predict.add_argument("--model", type=Path, required=True, help="models/<name> or models/<name>/<version>")
    predict.add_argument("--images", type=Path, required=True)
    predict.add_argument("--out", type=Path, default=Path("submission.csv"))
    predict.add_argument("--id", dest="id_style", choices=["name", "stem"], default="name",
                         help="the id column: file name (default) or file name without extension")
    return parser.parse_args(argv)


def train_and_export(config: TrainConfig, export: bool = True) -> Path:
    data = load_dataset(config.data)
    result = run_training(config, data)
    if paddle.distributed.get_rank() != 0:
        return result.run_dir
    print(f"best epoch {result.best_epoch}; run directory {result.run_dir}", flush=True)
    if data.skipped:
        (result.run_dir / "skipped.txt").write_text("\n".join(data.skipped) + "\n", encoding="utf-8")
    if config.export_weights not in ("best", "last"):
        raise ValueError(f"export_weights must be best or last, got {config.export_weights!r}")
    model = create_model(config.model, data.input_shape, len(data.classes))
    chosen = result.best_params if config.export_weights == "best" else result.run_dir / "last.pdckpt" / "model.pdparams"
    model.set_state_dict(paddle.load(str(chosen)))
    epoch = result.best_epoch if config.export_weights == "best" else len(result.history)
    facts = {
        "config": config.to_dict(),
        "initial_weights": config.finetune.init_from or "random: trained from scratch, no pretrained weights",
        "parameters": count_parameters(model),
        "exported_weights": config.export_weights,
        "exported_epoch": epoch,
        "best_epoch": result.best_epoch,
        "val_accuracy": result.history[epoch - 1]["val_accuracy"],
        "epochs_run": len(result.history),
        "stopped_early": result.stopped_early,
        "seconds": round(sum(h["seconds"] for h in result.history), 1),
        "skipped_files": len(data.skipped),
        "run_dir": str(result.run_dir),
    }
    if export:
        target, evaluation, _ = export_model(model, config, data, facts, result.run_dir)
        split, inputs, labels, logits = evaluation.split, evaluation.inputs, evaluation.labels, evaluation.logits
        outcome = f"exported {target}"
    else:
        # The report still: the network as trained, in this process, on the evaluation split.
        split, part = data.evaluation
        model.eval()
        target, inputs, labels = result.run_dir, part.inputs, part.labels
        logits = predict_logits(model, inputs)
        outcome = "not exported (--no-export)"
    metrics = write_report(result.run_dir, split, result.history, inputs, labels, logits, data.classes)
    print(format_table(metrics, split), flush=True)
    print(f"{outcome}; report in {result.run_dir}", flush=True)
    return target


def describe_classes(data: Dataset) -> dict[str, dict[str, int]]:
    splits = {"train": data.train, "val": data.val, **({"test": data.test} if data.test is not None else {})}
    return {name: {c: int((split.labels == i).sum()) for i, c in enumerate(data.classes)} for name, split in splits.items()}


def run_eda(config: TrainConfig, out: Path) -> None:
    from training.report import plt  # matplotlib, already set to files only

    data = load_dataset(config.data)
    counts = describe_classes(data)
    width = max(8, *(len(c) for c in data.classes))
    print(f"{'class':<{width}}  " + "  ".join(f"{s:>7}" for s in counts))
    for name in data.classes:
        print(f"{name:<{width}}  " + "  ".join(f"{counts[s][name]:7d}" for s in counts))
    if data.skipped:
        print(f"skipped {len(data.skipped)} file(s):\n  " + "\n  ".join(data.skipped))
    figure, axis = plt.subplots(figsize=(max(5, 0.6 * len(data.classes) + 2), 4))
    positions = np.arange(len(data.classes))
    bar = 0.8 / len(counts)
    for offset, (split, values) in enumerate(counts.items()):
        axis.bar(positions + offset * bar, [values[c] for c in data.classes], bar, label=split)
    axis.set_xticks(positions + bar * (len(counts) - 1) / 2, data.classes, rotation=45, ha="right")
    axis.set_ylabel("images")
    axis.set_title(f"{data.name}: images per class")
    axis.legend()
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=100)
    plt.close(figure)
    print(f"histogram: {out}")


def run_summary(name: str, shape_text: str, classes: int) -> None:
    shape = tuple(int(part) for part in shape_text.split(","))
    if len(shape) != 3:
        raise ValueError(f"--input must be C,H,W, got {shape_text!r}")
    model = create_model(name, shape, classes)
    paddle.summary(model, (1, *shape))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "train":
            train_and_export(load_config(args.config, args.overrides), export=not args.no_export)
        elif args.command == "bundle":
            for name in BUNDLED_CONFIGS:
                train_and_export(load_config(CONFIG_DIR / name, [f"export.models_dir={BUNDLED_MODELS}",
                                                                 *args.overrides]))
        elif args.command == "evaluate":
            print(json.dumps(evaluate_model(args.model, args.overrides), indent=2))
        elif args.command == "eda":
            run_eda(load_config(args.config, args.overrides), args.out)
        elif args.command == "summary":
            run_summary(args.model, args.input, args.classes)
        elif args.command == "predict":
            from training.predict import predict_folder

            rows, skipped = predict_folder(args.model, args.images, args.out, args.id_style)
            print(f"wrote {rows} rows to {args.out}" + (f"; skipped {len(skipped)} file(s)" if skipped else ""))
    except (DatasetUnavailableError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
