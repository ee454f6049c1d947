"""`python -m training {train,bundle,reexport,evaluate,eda,summary,convert,predict}`: train, inspect and export the
classifiers the app serves. The command line only: each command is a function of its own module."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from app.inference.backends.paddle import import_paddle
from app.inference.manifest import Manifest, load_manifest

import_paddle()  # before the modules that import Paddle: without its ccache warning (it compiles nothing here)

from training.config import load_config
from training.data.mnist import DatasetUnavailableError
from training.eda import run_eda
from training.export import evaluate_model
from training.models import MODEL_NAMES, print_summary
from training.pipeline import retrain_bundled, train_and_export

CONFIG_DIR = Path(__file__).parent / "configs"
BUNDLED_CONFIGS = {"mnist-softmax": "mnist_softmax.yaml", "mnist-mlp": "mnist_mlp.yaml",
                   "mnist-lenet": "mnist_lenet.yaml", "hymenoptera": "hymenoptera_cnn.yaml"}
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

    bundle = commands.add_parser("bundle", help="retrain the bundled models (all, or those named) and replace "
                                                "them in models/")
    bundle.add_argument("names", nargs="*", metavar="NAME", help=f"some of {', '.join(BUNDLED_CONFIGS)} (default: all)")
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

    convert = commands.add_parser("convert", help="add the ONNX file that ONNX Runtime and OpenVINO read to exported "
                                                  "model versions, checked against Paddle Inference, and its int8 "
                                                  "copy, calibrated on training images and kept where it passes the "
                                                  "accuracy gate")
    convert.add_argument("--model", type=Path, required=True, action="append", dest="models",
                         help="models/<name>/<version> (repeat for several)")
    convert.add_argument("--no-int8", dest="int8", action="store_false",
                         help="only the ONNX file (int8 needs the training data the manifest names)")
    convert.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                         help="change the recorded training config, e.g. data.root for data kept elsewhere")

    imports = commands.add_parser("import", help="make a PaddleClas or PaddleX classification export a versioned "
                                                 "model directory with a full manifest")
    imports.add_argument("export", type=Path, help="the export: inference.json or .pdmodel, inference.pdiparams, "
                                                   "and its deploy config (inference.yml or inference_cls.yaml)")
    imports.add_argument("--from", dest="export_format", required=True, choices=["paddleclas", "paddlex"])
    imports.add_argument("--name", required=True, help="the model's name in the service, e.g. flowers")
    imports.add_argument("--models-dir", type=Path, default=BUNDLED_MODELS, help="default: models/")
    imports.add_argument("--labels", type=Path, help="the class_id_map_file the deploy config names, where it is "
                                                     "not beside the export")

    reexport = commands.add_parser("reexport", help="write an exported model's network again, without training, "
                                                    "with other export settings (e.g. export.rotation_average); "
                                                    "as the model's next version unless export.version says otherwise")
    reexport.add_argument("--model", type=Path, required=True, help="models/<name>/<version>")
    reexport.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                          help="export.*, or data.root for data kept elsewhere")

    samples = commands.add_parser("samples", help="store some of a model's test images with it, on which APP_BACKEND="
                                                  "auto checks a runtime of reduced precision (bf16) before using it")
    samples.add_argument("--model", type=Path, required=True, action="append", dest="models",
                         help="models/<name>/<version> (repeat for several)")
    samples.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                         help="change the recorded training config, e.g. data.root for data kept elsewhere")

    predict = commands.add_parser("predict", help="classify a folder of images into a CSV (id,label,score)")
    predict.add_argument("--model", type=Path, required=True, help="models/<name> or models/<name>/<version>")
    predict.add_argument("--images", type=Path, required=True)
    predict.add_argument("--out", type=Path, default=Path("submission.csv"))
    predict.add_argument("--id", dest="id_style", choices=["name", "stem"], default="name",
                         help="the id column: file name (default) or file name without extension")
    args = parser.parse_args(argv)
    unknown = [name for name in getattr(args, "names", []) if name not in BUNDLED_CONFIGS]
    if unknown:
        bundle.error(f"not a bundled model: {', '.join(unknown)} (bundled: {', '.join(BUNDLED_CONFIGS)})")
    return args


def describe_int8(directory: Path, overrides: list[str], manifest: Manifest) -> str:
    """Add the int8 copy to an exported model and say how it went: one that fails the accuracy gate
    is not an error (the model serves in fp32 or bf16), only reported."""
    from training.convert import add_int8
    from training.export import calibration_recorded

    try:
        int8 = add_int8(directory, calibration_recorded(directory, overrides), manifest).runtimes["onnx-int8"]
    except (ValueError, FileNotFoundError, DatasetUnavailableError) as exc:
        return f"no int8 copy: {exc}"
    return f"int8 by {int8.converter}; the accuracy gate passed: {int8.parity}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "train":
            train_and_export(load_config(args.config, args.overrides), export=not args.no_export)
        elif args.command == "bundle":
            outcomes = [retrain_bundled(load_config(CONFIG_DIR / BUNDLED_CONFIGS[name],
                                                    [f"export.models_dir={BUNDLED_MODELS}", *args.overrides]))
                        for name in args.names or BUNDLED_CONFIGS]
            print("\n".join(outcomes))
        elif args.command == "evaluate":
            print(json.dumps(evaluate_model(args.model, args.overrides), indent=2))
        elif args.command == "eda":
            run_eda(load_config(args.config, args.overrides), args.out)
        elif args.command == "summary":
            print_summary(args.model, args.input, args.classes)
        elif args.command == "convert":
            from training.convert import add_onnx

            for directory in args.models:
                manifest = add_onnx(directory)
                print(f"{directory}: {manifest.runtimes['onnx'].converter}; parity {manifest.runtimes['onnx'].parity}")
                if args.int8:
                    print(f"{directory}: {describe_int8(directory, args.overrides, manifest)}")
        elif args.command == "reexport":
            from training.export import reexport_model

            print(f"exported {reexport_model(args.model, args.overrides)}")
        elif args.command == "samples":
            from training.export import evaluate_recorded, write_samples

            for directory in args.models:
                stored = write_samples(directory, load_manifest(directory),
                                       evaluate_recorded(directory, args.overrides)).samples
                assert stored is not None
                print(f"{directory}: {stored.images} {stored.split} images, Paddle Inference accuracy {stored.accuracy:.4f}")
        elif args.command == "import":
            from training.importer import import_export

            target, manifest = import_export(args.export, args.export_format, args.name, args.models_dir, args.labels)
            runtimes = f"; ONNX file added ({manifest.runtimes['onnx'].converter})" if manifest.runtimes else ""
            print(f"{target}: {manifest.architecture}, {len(manifest.labels)} classes, input "
                  f"{manifest.input.shape[1:]}, output {manifest.output.activation}{runtimes}")
        elif args.command == "predict":
            from training.predict import predict_folder

            rows, skipped = predict_folder(args.model, args.images, args.out, args.id_style)
            print(f"wrote {rows} rows to {args.out}" + (f"; skipped {len(skipped)} file(s)" if skipped else ""))
    except (DatasetUnavailableError, ValueError, FileNotFoundError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
