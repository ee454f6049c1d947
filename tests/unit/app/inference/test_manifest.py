"""The manifest contract: the bundled ones validate, tampering and bad fields are refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from app.inference.manifest import ManifestError, load_manifest, verify_files
from tests.conftest import MODELS_DIR

BUNDLED = sorted(p.parent for p in MODELS_DIR.glob("*/*/manifest.json"))


@pytest.fixture
def model_copy(tmp_path: Path) -> Path:
    target = tmp_path / "mnist-lenet" / "1"
    shutil.copytree(MODELS_DIR / "mnist-lenet" / "1", target)
    return target


def edit_manifest(directory: Path, **changes: object) -> None:
    path = directory / "manifest.json"
    raw = json.loads(path.read_text())
    raw.update(changes)
    path.write_text(json.dumps(raw))


def test_manifest_bundled_models_validate_and_match_their_files() -> None:
    assert {p.parent.name for p in BUNDLED} == {"mnist-softmax", "mnist-mlp", "mnist-lenet", "hymenoptera"}
    # Softmax regression gives up a little MNIST accuracy for the photos mixed into its training.
    floors = {"mnist-softmax": 0.915, "mnist-mlp": 0.98, "mnist-lenet": 0.99}
    for directory in [d for d in BUNDLED if d.parent.name.startswith("mnist-")]:
        manifest = load_manifest(directory)
        verify_files(directory, manifest)
        assert manifest.name == directory.parent.name and manifest.version == int(directory.name)
        assert manifest.metrics["test_accuracy"] >= floors[manifest.name]
        assert manifest.evaluation["images"] == 10_000
        # MNIST's own splits, plus the typeset digits (data.printed_digits) and rendered photos (data.photo_digits) mixed into training.
        assert manifest.dataset.splits == {"train": 50_000, "val": 10_000, "test": 10_000, "train_printed": 6_000, "train_photos": 12_000}


def test_manifest_bundled_photo_model_reports_its_held_out_test() -> None:
    (directory,) = [d for d in BUNDLED if d.parent.name == "hymenoptera"]
    manifest = load_manifest(directory)
    verify_files(directory, manifest)
    assert manifest.labels == ["ants", "bees"] and manifest.input.color_mode == "RGB"
    # A fifth of train/ set aside to choose the recipe; val/ (153 photos) is the test, chose nothing.
    assert manifest.dataset.splits == {"train": 195, "val": 49, "test": 153}  # the GIF placeholder skipped
    assert manifest.evaluation["split"] == "test" and manifest.evaluation["images"] == 153
    assert manifest.training["exported_weights"] == "last"
    assert manifest.training["initial_weights"].startswith("random")
    assert manifest.metrics["test_accuracy"] >= 0.75


def test_manifest_detects_tampered_weights(model_copy: Path) -> None:
    with (model_copy / "inference.pdiparams").open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ManifestError, match="inference.pdiparams has SHA-256"):
        verify_files(model_copy, load_manifest(model_copy))


def test_manifest_detects_missing_file(model_copy: Path) -> None:
    (model_copy / "inference.json").unlink()
    with pytest.raises(ManifestError, match="missing"):
        verify_files(model_copy, load_manifest(model_copy))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": "../etc"}, "name"),
        ({"labels": ["only-one"]}, "labels"),
        ({"input": {"name": "image", "shape": [1, 28, 28], "color_mode": "L"}}, "shape"),
        ({"input": {"name": "image", "shape": [-1, 3, 28, 28], "color_mode": "L"}}, "channel"),
        ({"surprise": 1}, "surprise"),
    ],
    ids=["traversal-name", "one-label", "no-batch-dim", "channels", "unknown-field"],
)
def test_manifest_rejects_invalid_fields(model_copy: Path, changes: dict, message: str) -> None:
    edit_manifest(model_copy, **changes)
    with pytest.raises(ManifestError, match=message):
        load_manifest(model_copy)


def test_manifest_rejects_non_json(model_copy: Path) -> None:
    (model_copy / "manifest.json").write_bytes(b"\xff\xfe not json")
    with pytest.raises(ManifestError, match="not readable JSON"):
        load_manifest(model_copy)
