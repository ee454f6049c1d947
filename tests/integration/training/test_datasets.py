"""Dataset layouts: IDX files, ImageFolder trees, CSV-labelled folders; stratified splits; files
that are not usable photos listed once and skipped."""

from __future__ import annotations

import csv
import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT
from training.config import DataConfig
from training.data.dataset import load_dataset
from training.data.idx import IdxError, load_idx_split, read_idx
from training.data.split import stratified_split

HYMENOPTERA = ROOT.parent / "shared" / "data" / "hymenoptera"


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    payload = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path.write_bytes(gzip.compress(payload) if path.name.endswith(".gz") else payload)


@pytest.fixture(scope="module")
def idx_dir(tmp_path_factory: pytest.TempPathFactory, mnist) -> Path:  # noqa: ANN001
    """A Fashion-MNIST-style directory: gzipped training files, plain test files."""
    root = tmp_path_factory.mktemp("idx")
    train = np.round(mnist.train.images[:600] * 255).astype(np.uint8)
    test = np.round(mnist.test.images[:200] * 255).astype(np.uint8)
    write_idx(root / "train-images-idx3-ubyte.gz", train)
    write_idx(root / "train-labels-idx1-ubyte.gz", mnist.train.labels[:600].astype(np.uint8))
    write_idx(root / "t10k-images-idx3-ubyte", test)
    write_idx(root / "t10k-labels-idx1-ubyte", mnist.test.labels[:200].astype(np.uint8))
    return root


def test_idx_reads_gzipped_and_plain_files(idx_dir: Path, mnist) -> None:  # noqa: ANN001
    images, labels = load_idx_split(idx_dir, "train")
    assert images.shape == (600, 28, 28) and images.dtype == np.uint8
    assert np.array_equal(labels, mnist.train.labels[:600])
    assert read_idx(idx_dir / "t10k-images-idx3-ubyte").shape == (200, 28, 28)


def test_idx_rejects_bad_magic_and_truncated_files(tmp_path: Path) -> None:
    (tmp_path / "bad").write_bytes(b"PK\x03\x04" + b"\0" * 20)
    with pytest.raises(IdxError, match="magic"):
        read_idx(tmp_path / "bad")
    write_idx(tmp_path / "short", np.zeros((3, 4, 4), np.uint8))
    (tmp_path / "short").write_bytes((tmp_path / "short").read_bytes()[:-5])
    with pytest.raises(IdxError, match="bytes follow"):
        read_idx(tmp_path / "short")


def test_idx_dataset_splits_train_and_keeps_test(idx_dir: Path) -> None:
    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    data = load_dataset(DataConfig(name="idx", root=str(idx_dir), val_fraction=0.2, class_names=names,
                                   preprocessing="plain"))
    assert data.classes == names and data.input_shape == (1, 28, 28)
    assert len(data.train.labels) + len(data.val.labels) == 600 and len(data.val.labels) == pytest.approx(120, abs=10)
    assert data.test is not None and len(data.test.labels) == 200
    assert data.train.inputs.dtype == np.float32 and 0.0 <= data.train.inputs.min() and data.train.inputs.max() <= 1.0
    sizes = {"train": len(data.train.labels), "val": len(data.val.labels), "test": 200}
    assert data.provenance.sha256 and data.provenance.splits == sizes  # per-class rounding moves one or two


def test_split_is_stratified_and_seeded() -> None:
    labels = np.array([0] * 90 + [1] * 10)
    train, val = stratified_split(labels, 0.2, seed=3)
    assert len(set(train) & set(val)) == 0 and len(train) + len(val) == 100
    assert (labels[val] == 0).sum() == 18 and (labels[val] == 1).sum() == 2
    again, _ = stratified_split(labels, 0.2, seed=3)
    other, _ = stratified_split(labels, 0.2, seed=4)
    assert np.array_equal(train, again) and not np.array_equal(train, other)



def test_split_of_zero_keeps_every_sample_in_train() -> None:
    labels = np.array([0] * 9 + [1] * 3)
    train, val = stratified_split(labels, 0.0, seed=3)
    assert np.array_equal(train, np.arange(12)) and len(val) == 0
    with pytest.raises(ValueError, match="below 1"):
        stratified_split(labels, 1.0, seed=3)


def photo_files(count: int, kind: str) -> list[Path]:
    return sorted((HYMENOPTERA / "train" / kind).glob("*.jpg"))[:count]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    for kind in ("ants", "bees"):
        (root / kind).mkdir(parents=True)
        for path in photo_files(10, kind):
            shutil.copy(path, root / kind / path.name)
    (root / "ants" / "notes.jpg").write_text("not an image at all")
    shutil.copy(HYMENOPTERA / "train" / "ants" / "imageNotFound.gif", root / "bees" / "placeholder.jpg")
    return root


def test_folder_dataset_skips_unusable_files_once_and_keeps_class_order(folder: Path) -> None:
    data = load_dataset(DataConfig(name="folder", root=str(folder), input_size=64, val_fraction=0.2))
    assert data.classes == ["ants", "bees"] and data.input_shape == (3, 64, 64)
    assert len(data.train.labels) + len(data.val.labels) == 20
    assert len(data.skipped) == 2 and len(set(data.skipped)) == 2
    assert any("notes.jpg" in line for line in data.skipped)
    assert any("placeholder.jpg" in line and "GIF" in line for line in data.skipped)
    assert data.train.inputs.shape[1:] == (3, 73, 73)  # stored larger than the input, for cropping
    assert data.val.inputs.shape[1:] == (3, 64, 64) and data.val.inputs.min() < 0  # normalised like serving


def test_real_hymenoptera_set_lists_its_one_non_photo() -> None:
    data = load_dataset(DataConfig(name="folder", root=str(HYMENOPTERA), input_size=32))
    assert len(data.train.labels) == 244 and len(data.val.labels) == 153
    assert len(data.skipped) == 1 and "imageNotFound.gif" in data.skipped[0]


def test_csv_dataset_takes_ids_without_extension_and_numeric_labels(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    rows = []
    for label, kind in enumerate(("ants", "bees")):
        for index, path in enumerate(photo_files(8, kind)):
            name = f"{kind}{index:03d}"
            shutil.copy(path, images / f"{name}.jpg")
            rows.append((name, label))
    rows.append(("missing", 0))
    with (tmp_path / "train.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([("id", "class_num"), *rows])
    data = load_dataset(DataConfig(name="csv", csv=str(tmp_path / "train.csv"), root=str(images),
                                   label_column="class_num", class_names=["ant", "bee"], input_size=48,
                                   val_fraction=0.25))
    assert data.classes == ["ant", "bee"]
    assert sorted(np.bincount(data.val.labels)) == [2, 2] and len(data.train.labels) == 12
    assert data.skipped == [f"{images / 'missing'}: listed in train.csv but not found"]


def test_printed_digits_are_rendered_from_training_faces_only_and_balanced() -> None:
    from training.data.printed import matplotlib_faces, render_printed_digits, training_faces

    faces = {p.name for p in training_faces()}
    held_out = {p.name for p in matplotlib_faces()} - faces
    assert faces and held_out and all(name.startswith("DejaVu") for name in faces)
    images, labels = render_printed_digits(40, seed=3)
    again, _ = render_printed_digits(40, seed=3)
    assert images.shape == (40, 64, 64) and np.array_equal(images, again)  # seeded: runs repeat
    assert np.bincount(labels).tolist() == [4] * 10
    assert (images.reshape(40, -1).max(axis=1) > 0.5).all()  # every digit is visible ink


def test_mnist_dataset_adds_printed_digits_to_training_only(mnist) -> None:  # noqa: ANN001
    from tests.conftest import MNIST_CACHE

    config = DataConfig(name="mnist", cache_dir=str(MNIST_CACHE), limit_train=500, limit_eval=100, printed_digits=30)
    data = load_dataset(config)
    assert len(data.train.labels) == 530 and data.train.ids[-1] == "printed-29"
    assert data.train.inputs.shape == (530, 1, 28, 28)
    assert len(data.val.labels) == len(data.test.labels) == 100  # measured on MNIST alone
    assert data.provenance.splits["train_printed"] == 30 and "DejaVu" in data.provenance.source
    printed = data.train.inputs[500:]
    for digit in printed[:, 0]:  # fitted into MNIST's 20x20 box, like every digit the service sees
        rows, cols = np.flatnonzero(digit.any(axis=1)), np.flatnonzero(digit.any(axis=0))
        assert digit.max() > 0.9 and rows[-1] - rows[0] < 20 and cols[-1] - cols[0] < 20


def test_mnist_dataset_adds_rendered_photos_to_training_only_and_caches_them(mnist, tmp_path: Path) -> None:  # noqa: ANN001
    from tests.conftest import MNIST_CACHE

    cache = tmp_path / "cache"
    shutil.copytree(MNIST_CACHE, cache, ignore=shutil.ignore_patterns("inputs-*", "photos-*"))
    config = DataConfig(name="mnist", cache_dir=str(cache), limit_train=300, limit_eval=50, photo_digits=12)
    data = load_dataset(config)
    assert len(data.train.labels) == 312 and data.train.ids[-1] == "photo-11"
    assert len(data.val.labels) == len(data.test.labels) == 50
    assert data.provenance.splits["train_photos"] == 12 and "phone photos" in data.provenance.source
    photos = data.train.inputs[300:, 0]
    assert photos.shape == (12, 28, 28) and (photos.reshape(12, -1).max(axis=1) > 0.5).all()
    assert len(list(cache.glob("photos-12-*.npz"))) == 1
    again = load_dataset(config)  # from the cache: the same inputs
    assert np.array_equal(again.train.inputs, data.train.inputs)


def test_folder_validation_from_train_keeps_the_folders_val_as_an_untouched_test_split() -> None:
    data = load_dataset(DataConfig(name="folder", root=str(HYMENOPTERA), input_size=32, validation="train",
                                   val_fraction=0.2))
    assert len(data.test.labels) == 153  # hymenoptera's val/, now only measured at export
    assert len(data.train.labels) + len(data.val.labels) == 244
    assert sorted(np.bincount(data.val.labels)) == [24, 25]  # stratified, from train/
    assert data.evaluation[0] == "test"
    with pytest.raises(ValueError, match="folder or train"):
        load_dataset(DataConfig(name="folder", root=str(HYMENOPTERA), input_size=32, validation="val"))


def test_folder_without_validation_trains_on_all_of_train_and_needs_a_test_split(folder: Path) -> None:
    data = load_dataset(DataConfig(name="folder", root=str(HYMENOPTERA), input_size=32, validation="train",
                                   val_fraction=0.0))
    assert len(data.train.labels) == 244 and data.val.inputs.shape == (0, 3, 32, 32)
    assert data.evaluation[0] == "test" and len(data.evaluation[1].labels) == 153
    with pytest.raises(ValueError, match="leaves none to measure"):
        load_dataset(DataConfig(name="folder", root=str(folder), input_size=32, val_fraction=0.0))
