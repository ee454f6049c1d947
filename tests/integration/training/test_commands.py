"""`python -m training eda | summary | predict | reexport | bundle` as a user runs them, and the report a train run
writes (its exported model comes from the `exported` fixture in conftest.py)."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from app.inference.backends import BackendOptions, run_in_batches
from app.inference.manifest import load_manifest, verify_files
from app.inference.model_version import LoadOptions, ModelVersion
from app.inference.postprocess import softmax
from tests.conftest import MNIST_CACHE, MODELS_DIR, ROOT, png_bytes
from tests.integration.app.inference.backends.test_runtimes import without_samples
from training.data.mnist import prepare_inputs
from training.export import create_predictor


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "training", *args], cwd=ROOT, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


def export_small_ensemble(tmp_path: Path, *extra: str) -> tuple[Path, list[str]]:
    """`python -m training train` of two four-block CNNs on a slice of the ants and bees at 32x32, one
    epoch each, exported as an ensemble; returns its version's directory and the overrides used."""
    overrides = [f"data.root={ROOT.parent / 'shared' / 'data' / 'hymenoptera'}", "ensemble=2", "epochs=1",
                 "data.input_size=32", "data.limit_train=40", "data.limit_eval=24",
                 f"output_dir={tmp_path / 'runs'}", f"export.models_dir={tmp_path / 'models'}", *extra]
    run_cli("train", "--config", "training/configs/hymenoptera_cnn.yaml", *[a for o in overrides for a in ("--set", o)])
    return tmp_path / "models" / "hymenoptera" / "1", overrides


def test_eda_prints_class_counts_and_writes_a_histogram(tmp_path: Path) -> None:
    out = tmp_path / "eda.png"
    result = run_cli("eda", "--config", "training/configs/hymenoptera_cnn.yaml", "--set", "data.input_size=32",
                     "--out", str(out))
    assert "ants" in result.stdout and "bees" in result.stdout and "imageNotFound.gif" in result.stdout
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines() if line.startswith(("ants", "bees"))}
    # train/ less a fifth set aside to validate (data.validation: train); val/ is the test split.
    assert rows == {"ants": ["98", "25", "70"], "bees": ["97", "24", "83"]}
    assert Image.open(out).size[0] > 300


def test_summary_prints_the_layer_table() -> None:
    result = run_cli("summary", "--model", "resnet18", "--input", "3,64,64", "--classes", "2")
    assert "Conv2D" in result.stdout and "Trainable params: 11,177,538" in result.stdout


def test_predict_writes_a_csv_through_the_service_path(tmp_path: Path, mnist) -> None:  # noqa: ANN001
    images = tmp_path / "digits"
    images.mkdir()
    for index in range(30):
        (images / f"test_{index:03d}.png").write_bytes(png_bytes(mnist.test.images[index]))
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    out = tmp_path / "submission.csv"
    result = run_cli("predict", "--model", str(MODELS_DIR / "mnist-lenet"), "--images", str(images), "--out", str(out),
                     "--id", "stem")
    assert "wrote 30 rows" in result.stdout and "skipped 1" in result.stdout
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["id"] for r in rows] == [f"test_{i:03d}" for i in range(30)]
    correct = sum(r["label"] == str(mnist.test.labels[i]) for i, r in enumerate(rows))
    assert correct >= 29 and all(0.0 < float(r["score"]) <= 1.0 for r in rows)


def test_train_writes_the_report_and_puts_final_metrics_in_the_manifest(exported: Path) -> None:
    manifest = json.loads((exported / "manifest.json").read_text())
    run_dir = Path(manifest["training"]["run_dir"])
    for name in ("config.yaml", "metrics.json", "curves.png", "confusion.png", "misclassified.png", "report.json",
                 "report.txt"):
        assert (run_dir / name).is_file(), name
    report = json.loads((run_dir / "report.json").read_text())
    assert report["split"] == "test" and set(report["per_class"]) == {str(d) for d in range(10)}
    assert np.asarray(report["confusion"]).sum() == report["images"] == 500
    assert manifest["metrics"]["test_accuracy"] == report["accuracy"]
    assert manifest["metrics"]["test_top5_accuracy"] == report["top5_accuracy"]
    assert manifest["evaluation"]["per_class"] == report["per_class"]
    assert "precision" in (run_dir / "report.txt").read_text()


def test_train_exports_into_its_run_directory_unless_told_where(tmp_path: Path) -> None:
    """A user's training run never replaces the models the service serves."""
    served = {path: path.read_bytes() for path in sorted((MODELS_DIR / "mnist-lenet").rglob("*")) if path.is_file()}
    result = run_cli("train", "--config", "training/configs/mnist_softmax.yaml", "--set", "epochs=1",
                     "--set", "data.limit_train=600", "--set", "data.limit_eval=100", "--set", "data.printed_digits=0",
                     "--set", "data.photo_digits=0", "--set", f"output_dir={tmp_path / 'runs'}",
                     "--set", "export.name=mnist-lenet")
    exported = next((tmp_path / "runs").glob("mnist-lenet-*/models/mnist-lenet/1/manifest.json"))
    assert str(exported.parent) in result.stdout
    assert {path: path.read_bytes() for path in served} == served



def test_bundle_replaces_the_model_and_compares_it_with_the_one_replaced(tmp_path: Path) -> None:
    """`python -m training bundle` writes the model into its place in the repository and says how
    it measures against the version it replaced."""
    shutil.copytree(MODELS_DIR / "mnist-softmax", tmp_path / "models" / "mnist-softmax")
    result = run_cli("bundle", "mnist-softmax", "--set", "epochs=1", "--set", "data.limit_train=600",
                     "--set", "data.limit_eval=100", "--set", "data.printed_digits=0", "--set", "data.photo_digits=0",
                     "--set", f"output_dir={tmp_path / 'runs'}", "--set", f"export.models_dir={tmp_path / 'models'}")
    replaced = tmp_path / "models" / "mnist-softmax" / "1"
    manifest = load_manifest(replaced)
    verify_files(replaced, manifest)
    assert manifest.evaluation["images"] == 100 and manifest.created != load_manifest(MODELS_DIR / "mnist-softmax" / "1").created
    accuracy = manifest.metrics["test_accuracy"]
    assert f"mnist-softmax: test accuracy {accuracy:.2%}, worse than the model it replaced (91.85%)" in result.stdout


def test_evaluate_measures_any_export_on_the_data_it_was_trained_on() -> None:
    """An RGB photo model too: its recorded training config says where its data is."""
    result = run_cli("evaluate", "--model", str(MODELS_DIR / "hymenoptera" / "1"))
    measured = json.loads(result.stdout[result.stdout.index("{"):])
    manifest = json.loads((MODELS_DIR / "hymenoptera" / "1" / "manifest.json").read_text())
    [(key, claimed)] = [(k, v) for k, v in manifest["metrics"].items() if k.endswith("_accuracy") and "top" not in k]
    assert measured[key] == pytest.approx(claimed, abs=1e-6) and measured["images"] == 153


def test_samples_stores_the_test_images_a_bundled_model_is_gated_on(tmp_path: Path) -> None:
    bundled = MODELS_DIR / "mnist-lenet" / "1"
    copy = without_samples(bundled, tmp_path)
    result = run_cli("samples", "--model", str(copy))
    assert "1000 test images" in result.stdout
    manifest, original = load_manifest(copy), load_manifest(bundled)
    verify_files(copy, manifest)
    assert manifest.samples == original.samples
    assert (copy / "samples.npz").read_bytes() == (bundled / "samples.npz").read_bytes()  # the same, again


def test_reexport_writes_a_model_again_with_views_averaged(tmp_path: Path, mnist) -> None:  # noqa: ANN001
    """The bundled softmax model, re-exported as a new version that also reads each digit turned: it
    answers the mean of the first version's probabilities over the views (on Paddle Inference and on
    OpenVINO), keeps the training facts, names the version it came from, and is measured again; a
    second averaging, or a change to how it was trained, is refused."""
    shutil.copytree(MODELS_DIR / "mnist-softmax", tmp_path / "mnist-softmax")
    source = tmp_path / "mnist-softmax" / "1"
    run_cli("reexport", "--model", str(source), "--set", "export.rotation_average=[-15, 15]")  # the next version
    target = tmp_path / "mnist-softmax" / "2"
    manifest, original = load_manifest(target), load_manifest(source)
    verify_files(target, manifest)
    verify_files(source, original)
    assert manifest.training["config"]["export"]["rotation_average"] == [-15.0, 15.0]
    assert manifest.training["exported_from"]["params_sha256"] == original.files["inference.pdiparams"]
    assert manifest.training["run_dir"] == original.training["run_dir"] and manifest.dataset == original.dataset
    assert manifest.evaluation["images"] == 10_000 and "onnx" in manifest.runtimes
    inputs = prepare_inputs(mnist.test.images[:32], MNIST_CACHE, "reexport")
    views = [inputs] + [ndimage.rotate(inputs, degrees, axes=(3, 2), reshape=False, order=1, mode="grid-constant")
                        for degrees in (-15.0, 15.0)]
    first, second = (create_predictor(directory) for directory in (source, target))
    expected = np.log(np.mean([softmax(run_in_batches(first, view, 32)) for view in views], axis=0))
    assert np.abs(run_in_batches(second, inputs, 32) - expected).max() < 1e-4
    # OpenVINO fuses the turn's first operations into the input, whose names it then merges: still "image".
    served = ModelVersion.load(target, LoadOptions(BackendOptions("cpu", 1), 1, 1_000_000, backend_kind="openvino",
                                                   isolation="thread"))
    try:
        assert np.abs(served.pool.run(inputs) - expected).max() < 1e-4
    finally:
        served.close()
    for model, override, reason in ((target, "export.rotation_average=[10]", "already averages"),
                                    (source, "epochs=3", "changes only export.*")):
        refused = subprocess.run([sys.executable, "-m", "training", "reexport", "--model", str(model), "--set", override],
                                 cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert refused.returncode != 0 and reason in refused.stderr, refused.stderr[-1000:]


def test_predict_walks_class_folders_and_refuses_an_empty_one(tmp_path: Path, mnist) -> None:  # noqa: ANN001
    for label in ("3", "7"):
        (tmp_path / "digits" / label).mkdir(parents=True)
    for index in range(6):
        folder = tmp_path / "digits" / ("3" if index % 2 else "7")
        (folder / f"{index}.png").write_bytes(png_bytes(mnist.test.images[index]))
    out = tmp_path / "out.csv"
    result = run_cli("predict", "--model", str(MODELS_DIR / "mnist-lenet"), "--images", str(tmp_path / "digits"),
                     "--out", str(out))
    assert "wrote 6 rows" in result.stdout
    with out.open() as handle:
        ids = [row["id"] for row in csv.DictReader(handle)]
    assert sorted(ids) == sorted(f"{'3' if i % 2 else '7'}/{i}.png" for i in range(6))
    (tmp_path / "empty").mkdir()
    failed = subprocess.run([sys.executable, "-m", "training", "predict", "--model", str(MODELS_DIR / "mnist-lenet"),
                             "--images", str(tmp_path / "empty")], cwd=ROOT, capture_output=True, text=True)
    assert failed.returncode == 2 and "no files" in failed.stderr


def test_train_without_export_still_writes_its_report(tmp_path: Path) -> None:
    run_cli("train", "--config", "training/configs/mnist_softmax.yaml", "--no-export", "--set", "epochs=1",
            "--set", "data.limit_train=600", "--set", "data.limit_eval=100", "--set", "data.printed_digits=0",
            "--set", "data.photo_digits=0", "--set", f"output_dir={tmp_path / 'runs'}")
    (run_dir,) = (tmp_path / "runs").iterdir()
    for name in ("curves.png", "confusion.png", "report.json", "report.txt"):
        assert (run_dir / name).is_file(), name
    assert not (run_dir / "models").exists()


def test_train_on_all_of_train_records_no_validation_and_measures_the_test_split(tmp_path: Path) -> None:
    """data.val_fraction 0: every training photo trains, nothing is validated, and the folder's
    val/ is the one measurement."""
    exported, _ = export_small_ensemble(tmp_path, "data.val_fraction=0")
    manifest = load_manifest(exported)
    assert manifest.training["val_accuracy"] is None
    assert [m["val_accuracy"] for m in manifest.training["members"]] == [None, None]
    assert manifest.evaluation["split"] == "test" and manifest.evaluation["images"] == 24
    assert manifest.dataset.splits == {"train": 40, "val": 0, "test": 24}
    for member in manifest.training["members"]:
        history = json.loads((Path(member["run_dir"]) / "metrics.json").read_text())
        assert [(h["val_loss"], h["val_accuracy"]) for h in history] == [(None, None)]
    assert (Path(manifest.training["run_dir"]) / "curves.png").is_file()
