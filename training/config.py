"""Training configuration: YAML -> typed, frozen dataclasses -> CLI overrides -> a frozen copy per run."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from types import UnionType
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

T = TypeVar("T")


@dataclass(frozen=True)
class DataConfig:
    # mnist: the verified wheel; idx: *-images-idx3-ubyte[.gz] + *-labels-idx1-ubyte[.gz] in `root`;
    # folder: root/<class>/* or root/{train,val}/<class>/*; csv: `csv` (id, label) + images in `root`.
    name: Literal["mnist", "idx", "folder", "csv"] = "mnist"
    root: str | None = None
    csv: str | None = None
    id_column: str = "id"
    label_column: str = "label"
    class_names: list[str] | None = None  # names for numeric CSV / IDX labels, in label order
    # Stratified split when the data has no validation part of its own. 0: train on all of it, with
    # no validation (the last epoch is exported and the test split is the only measurement).
    val_fraction: float = 0.1
    # folder: root/val/ validates (picks the epoch); train: a val_fraction of root/train/ does, and
    # root/val/ becomes the test split, measured once at export (an honest held-out figure).
    validation: Literal["folder", "train"] = "folder"
    split_seed: int = 0
    color_mode: Literal["L", "RGB"] = "RGB"  # folder / csv; IDX and MNIST are L
    # Image formats (by content, whatever the extension) a folder / csv dataset may contain; others,
    # like a GIF placeholder in a photo set, are listed and skipped. None: any the service decodes.
    formats: list[str] | None = field(default_factory=lambda: ["JPEG", "PNG", "WEBP", "BMP", "TIFF", "HEIF", "AVIF"])
    input_size: int = 224  # square model input for folder / csv images
    # digits: MNIST's centring (for photos of digits); plain: resize to the input; photo: resize the
    # short side, centre-crop, ImageNet-normalise (the usual CNN preprocessing).
    preprocessing: Literal["digits", "plain", "photo"] | None = None  # default: digits for mnist / idx, photo otherwise
    cache_dir: str = "~/.cache/paddle-classifier-serving/mnist"
    limit_train: int | None = None  # take the first N training images (smoke runs)
    limit_eval: int | None = None  # take the first N validation / test images
    # mnist only: add this many digits typeset in matplotlib's DejaVu faces to the training split
    # (validation and test stay MNIST's), so photos of printed digits are read too.
    printed_digits: int = 0
    # mnist only: add this many rendered phone photos of training digits (paper, ruling, light,
    # shadows, the desk, pens and pencil, small digits, thumbnails: training/data/photos.py),
    # decoded and preprocessed by the service's code, to the training split.
    photo_digits: int = 0


@dataclass(frozen=True)
class OptimizerConfig:
    name: Literal["sgd", "momentum", "adam", "adamw"] = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0  # L2 regularisation (sgd, momentum, adam); decoupled decay (adamw)
    momentum: float = 0.9


@dataclass(frozen=True)
class ScheduleConfig:
    name: Literal["constant", "step", "cosine"] = "constant"
    warmup_epochs: int = 0  # linear warm-up from 0 before the schedule
    step_epochs: int = 10  # step: multiply the rate by gamma every step_epochs
    gamma: float = 0.1


@dataclass(frozen=True)
class AugmentConfig:
    max_shift: int = 0  # random translation in pixels (digits)
    random_resized_crop: bool = False  # else a centre crop from the stored size
    crop_scale_min: float = 0.35
    hflip: bool = False
    vflip: bool = False
    rotation: float = 0.0  # degrees, uniform in [-rotation, rotation]
    color_jitter: float = 0.0  # brightness, contrast and saturation strength
    random_erasing: float = 0.0  # probability per image (RandomErasing / Cutout)
    mixup_alpha: float = 0.0  # Beta(alpha, alpha); 0 = off
    cutmix_alpha: float = 0.0
    randaugment: bool = False  # RandAugment: `randaugment_ops` random ops of `randaugment_magnitude`
    randaugment_ops: int = 2
    randaugment_magnitude: int = 9  # 0-30


@dataclass(frozen=True)
class FinetuneConfig:
    init_from: str | None = None  # a local .pdparams; layers whose shape differs (the head) start fresh
    freeze_backbone: bool = False  # train only the layers not loaded from init_from


@dataclass(frozen=True)
class ExportConfig:
    name: str = "model"
    version: int = 1
    # Where models/<name>/<version>/ is written. None: inside the run's own directory, so that a
    # training run never replaces a model being served; `bundle` writes the repository's models/.
    models_dir: str | None = None
    # Export a network that answers the mean of its logits for the image and its mirror image
    # (test-time flip averaging, inside the exported graph: twice the compute, one request).
    flip_average: bool = False
    # Also answer for the input turned by each of these angles, in degrees (e.g. [-20, -10, 10, 20]),
    # the mean of the probabilities over all the views: a digit photographed turned further than
    # the training tilts is read as well. One network pass per view, inside the exported graph.
    rotation_average: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class TrainConfig:
    model: str = "lenet"
    epochs: int = 10
    batch_size: int = 128
    seed: int = 42
    output_dir: str = "runs"
    label_smoothing: float = 0.0
    balanced_sampling: bool = False  # draw each class equally often per epoch (the course's label shuffling)
    early_stopping_patience: int = 0  # stop after this many epochs without a better val accuracy; 0 = off
    resume: str | None = None  # a run directory (its last.pdckpt) or a .pdckpt file
    # Train this many networks on the same data, with seeds seed, seed + 1, ..., and export the
    # mean of their logits as one network (each member's run has its own directory).
    ensemble: int = 1
    # Which weights to export: "best" val accuracy (val then also picked them, so its accuracy is
    # optimistic) or the "last" epoch (val stays an untouched held-out measurement).
    export_weights: Literal["best", "last"] = "best"
    data: DataConfig = field(default_factory=DataConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    export: ExportConfig = field(default_factory=ExportConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def build_dataclass(cls: type[T], raw: dict[str, Any], where: str = "config") -> T:
    """Nested dict -> dataclass, refusing unknown keys so a typo never silently does nothing."""
    if not isinstance(raw, dict):
        raise ValueError(f"{where} must be a mapping, got {type(raw).__name__}")
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]  # T is a dataclass
    unknown = set(raw) - names
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; known: {sorted(names)}")
    values = {}
    for key, value in raw.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            values[key] = build_dataclass(hint, value, f"{where}.{key}")  # type: ignore[arg-type]
        else:
            values[key] = _coerce(value, hint, f"{where}.{key}")
    return cls(**values)


def _coerce(value: Any, hint: Any, where: str) -> Any:
    if get_origin(hint) is Literal:
        if value in get_args(hint) and type(value) is type(get_args(hint)[0]):
            return value
        raise ValueError(f"{where}: {value!r} is not one of {', '.join(map(repr, get_args(hint)))}")
    allowed = get_args(hint) if get_origin(hint) in (Union, UnionType) else (hint,)
    if value is None and type(None) in allowed:
        return None
    for kind in allowed:
        if get_origin(kind) is Literal and value in get_args(kind):
            return value
        if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if kind in (int, str, bool) and type(value) is kind:
            return value
        if getattr(kind, "__origin__", None) is list and isinstance(value, list):
            (item,) = kind.__args__
            return [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    raise ValueError(f"{where}: {value!r} is not a {hint}")


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """`a.b=value` strings (value parsed as YAML) applied onto a nested dict."""
    merged = yaml.safe_load(yaml.safe_dump(raw)) or {}
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r} must look like key.sub=value")
        node = merged
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(text)
    return merged


def load_config(path: Path | None, overrides: list[str] | None = None) -> TrainConfig:
    raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) if path else {}
    return build_dataclass(TrainConfig, apply_overrides(raw or {}, overrides or []))


def save_config(config: TrainConfig, path: Path) -> None:
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")
