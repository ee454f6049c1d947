"""PaddleClas and PaddleX classification exports, served as they come.

Such a directory holds the Paddle inference files (`inference.json` or `inference.pdmodel`, with
`inference.pdiparams`) and a deploy config in YAML: `inference.yml`, as PaddleX 3 and PaddleClas's
`tools/export_model.py` write it, or a file in the style of PaddleClas's
`deploy/configs/inference_cls.yaml`. Its `PreProcess.transform_ops` say how an image becomes the
model's input; its `PostProcess.Topk` names the labels (`label_list`, or a `class_id_map_file` of
"id label" lines). This module reads both into the service's own manifest. An op, or a parameter,
that the service cannot reproduce is refused with the reason, never approximated in silence.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from app.inference.backends import BackendOptions, BackendSpec, load_backend
from app.inference.manifest import (
    MANIFEST_FILE,
    DatasetProvenance,
    Manifest,
    ManifestError,
    Preprocessing,
    PreprocessStep,
    TensorInput,
    TensorOutput,
    hash_directory,
)

# Looked for in this order; otherwise the directory's only YAML file.
DEPLOY_CONFIG_NAMES = ("inference.yml", "inference.yaml", "inference_cls.yaml", "inference_cls.yml")
MAX_CONFIG_BYTES = 16 << 20  # a 1,000-class label_list is ~30 KB
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
PROBE_INPUTS = 4
# A row of probabilities sums to 1 to float32 rounding; a row of logits does so only by accident.
PROBABILITY_TOLERANCE = 1e-4
FORMATS = {"paddleclas": "PaddleClas", "paddlex": "PaddleX"}


class ExportError(ManifestError):
    """A PaddleClas or PaddleX export this service cannot serve exactly as its config describes."""


@dataclass
class Translation:
    """The deploy config's transforms, as they are read: the service's steps, the input size they
    produce (height, width) once it is fixed, and what each did in words."""

    steps: list[dict[str, Any]] = field(default_factory=list)
    size: tuple[int, int] | None = None
    words: list[str] = field(default_factory=list)
    normalized: bool = False


@dataclass(frozen=True)
class DeployConfig:
    path: Path
    steps: list[dict[str, Any]]
    input_size: tuple[int, int]  # (height, width)
    description: str
    labels: list[str] | None
    labels_source: str
    model_name: str | None
    transform_ops: list[Any]


@dataclass(frozen=True)
class ModelProbe:
    """What running the model once says about it: its input's name, its number of classes, and
    whether it already outputs probabilities (PaddleClas appends a softmax unless told not to)."""

    input_name: str
    classes: int
    activation: str


def find_deploy_config(directory: Path) -> Path | None:
    for name in DEPLOY_CONFIG_NAMES:
        if (directory / name).is_file():
            return directory / name
    found = [p for p in directory.iterdir() if p.is_file() and p.suffix in (".yml", ".yaml")]
    return found[0] if len(found) == 1 else None


def is_export(directory: Path) -> bool:
    """A version directory with no manifest of ours, but Paddle weights and a deploy config."""
    return (not (directory / MANIFEST_FILE).exists() and any(directory.glob("*.pdiparams"))
            and find_deploy_config(directory) is not None)


def find_model_files(directory: Path) -> tuple[Path, Path]:
    """(program, weights): Paddle 3 writes a PIR `.json` program, older versions a `.pdmodel`."""
    weights = sorted(directory.glob("*.pdiparams"))
    if len(weights) != 1:
        raise ExportError(f"expected one .pdiparams file, found {len(weights)}")
    for suffix in (".json", ".pdmodel"):
        program = weights[0].with_suffix(suffix)
        if program.is_file():
            return program, weights[0]
    raise ExportError(f"{weights[0].name} has no {weights[0].stem}.json or {weights[0].stem}.pdmodel beside it")


def read_config_yaml(path: Path) -> dict[str, Any]:
    """The deploy config's YAML, parsed: a mapping at the top, or ExportError."""
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ExportError(f"{path.name} is larger than {MAX_CONFIG_BYTES >> 20} MB")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ExportError(f"{path.name} is not readable YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ExportError(f"{path.name} is not a deploy config (no mapping at the top)")
    return raw


def read_deploy_config(path: Path) -> DeployConfig:
    raw = read_config_yaml(path)
    ops = section(raw, "PreProcess").get("transform_ops")
    if not isinstance(ops, list) or not ops:
        raise ExportError(f"{path.name} has no PreProcess.transform_ops list")
    post = section(raw, "PostProcess")
    if post and "Topk" not in post:
        raise ExportError(f"{path.name}: PostProcess {sorted(post)} is not a classifier's (Topk): "
                          "only image classification exports are served")
    translation = translate_ops(ops)
    labels, labels_source = read_labels(post.get("Topk") or {}, path.parent)
    model_name = section(raw, "Global").get("model_name")
    assert translation.size is not None  # translate_ops refuses transforms that leave it open
    return DeployConfig(path, translation.steps, translation.size, "; ".join(translation.words), labels,
                        labels_source, str(model_name) if model_name else None, ops)


def section(raw: dict[str, Any], key: str) -> dict[str, Any]:
    value = raw.get(key)
    return value if isinstance(value, dict) else {}


def translate_ops(ops: list[Any]) -> Translation:
    """PaddleClas transform ops -> the service's preprocessing steps, exactly or not at all."""
    translation = Translation()
    for position, entry in enumerate(ops):
        if not isinstance(entry, dict) or len(entry) != 1:
            raise ExportError(f"PreProcess.transform_ops[{position}] must be a mapping of one op name to its parameters")
        op, params = next(iter(entry.items()))
        params = params or {}
        translate = TRANSLATORS.get(op)
        if translate is None:
            raise ExportError(f"transform op {op!r} is not one this service reproduces "
                              f"(it reproduces {', '.join(TRANSLATORS)})")
        if not isinstance(params, dict):
            raise ExportError(f"{op}: its parameters must be a mapping")
        unknown = set(params) - KNOWN_PARAMETERS[op]
        if unknown:
            raise ExportError(f"{op}: parameter(s) {sorted(unknown)} are not reproduced by this service")
        translate(params, translation)
    if translation.size is None:
        raise ExportError("the transforms leave the input size open: a CropImage, or a ResizeImage with size, must fix it")
    if not translation.normalized:
        # PaddleClas feeds raw 0-255 pixels when there is no NormalizeImage; the service's are in [0, 1].
        translation.steps.append({"op": "normalize", "mean": [0.0], "std": [1 / 255]})
        translation.words.append("pixels 0-255 (no normalisation)")
    return translation


def translate_decode(params: dict[str, Any], translation: Translation) -> None:
    if params.get("to_rgb", True) is not True:
        raise ExportError("DecodeImage: to_rgb false (BGR input) is not reproduced; the service decodes to RGB")
    if params.get("channel_first", False) or params.get("to_np", True) is False:
        raise ExportError("DecodeImage: only the default layout (to_np, channel_first false) is reproduced")


def translate_resize(params: dict[str, Any], translation: Translation) -> None:
    backend = str(params.get("backend", "cv2")).lower()
    if backend not in ("cv2", "pil"):
        raise ExportError(f"ResizeImage: backend {params['backend']!r} is unknown")
    interpolation = params.get("interpolation") or "bilinear"
    # OpenCV's resize interpolates between the nearest pixels only (its bicubic with other weights
    # than Pillow's); Pillow's averages all the pixels a shrunk one covers, with the filter named.
    reproduced = ("bilinear", "bicubic", "lanczos") if backend == "pil" else ("bilinear",)
    if interpolation not in reproduced:
        raise ExportError(f"ResizeImage: interpolation {interpolation!r} with backend {backend} is not reproduced "
                          f"(reproduced: {', '.join(reproduced)})")
    check_geometric("ResizeImage", translation)
    antialias = backend == "pil"
    how = interpolation + ("" if antialias else ", no antialiasing (as OpenCV)")
    filters = {"antialias": antialias, **({"resample": interpolation} if antialias else {})}
    short = params.get("resize_short")
    if isinstance(short, int) and not isinstance(short, bool) and short > 0:  # as PaddleClas reads it
        positive_int("ResizeImage resize_short", short)
        translation.steps.append({"op": "resize_short", "size": short, **filters})
        translation.size = None
        translation.words.append(f"resize the short side to {short} ({how})")
        return
    if params.get("size") is None:
        raise ExportError("ResizeImage: needs resize_short or size")
    width, height = width_height("ResizeImage size", params["size"])
    translation.steps.append({"op": "resize", "size": [height, width], **filters})
    translation.size = (height, width)
    translation.words.append(f"resize to {width}x{height} ({how})")


def translate_crop(params: dict[str, Any], translation: Translation) -> None:
    check_geometric("CropImage", translation)
    width, height = width_height("CropImage size", params.get("size"))
    if width != height:
        raise ExportError(f"CropImage: a {width}x{height} crop is not reproduced (the service crops squares)")
    if translation.size is not None and min(translation.size) < width:
        raise ExportError(f"CropImage: a {width} crop of a {translation.size[1]}x{translation.size[0]} image")
    translation.steps.append({"op": "center_crop", "size": width})
    translation.size = (height, width)
    translation.words.append(f"centre crop {width}x{height}")


def translate_normalize(params: dict[str, Any], translation: Translation) -> None:
    if translation.normalized:
        raise ExportError("NormalizeImage: appears twice")
    scale = read_scale(params.get("scale"))
    mean = three_floats("NormalizeImage mean", params.get("mean", IMAGENET_MEAN))
    std = three_floats("NormalizeImage std", params.get("std", IMAGENET_STD))
    if any(s <= 0 for s in std):
        raise ExportError("NormalizeImage: std must be positive")
    if params.get("channel_num", 3) != 3:
        raise ExportError("NormalizeImage: channel_num 4 (a zero fourth channel) is not reproduced")
    if params.get("order", "") not in ("", "hwc", "chw"):
        raise ExportError(f"NormalizeImage: order {params['order']!r} is unknown")
    if params.get("output_fp16", False):
        raise ExportError("NormalizeImage: output_fp16 is not reproduced (the service feeds float32)")
    # PaddleClas: (pixel * scale - mean) / std on 0-255 pixels. The service's pixels are p / 255, so
    # the same values come from mean / (255 * scale) and std / (255 * scale).
    factor = 255.0 * scale
    translation.steps.append({"op": "normalize", "mean": [m / factor for m in mean], "std": [s / factor for s in std]})
    translation.normalized = True
    translation.words.append(f"scale {scale:.8g}, mean {mean}, std {std}")


def translate_to_chw(params: dict[str, Any], translation: Translation) -> None:
    """The service's model inputs are CHW already."""


TRANSLATORS: dict[str, Callable[[dict[str, Any], Translation], None]] = {
    "DecodeImage": translate_decode,
    "ResizeImage": translate_resize,
    "CropImage": translate_crop,
    "NormalizeImage": translate_normalize,
    "ToCHWImage": translate_to_chw,
}
KNOWN_PARAMETERS: dict[str, set[str]] = {
    "DecodeImage": {"to_rgb", "to_np", "channel_first"},
    "ResizeImage": {"size", "resize_short", "interpolation", "backend", "return_numpy"},
    "CropImage": {"size"},
    "NormalizeImage": {"scale", "mean", "std", "order", "channel_num", "output_fp16"},
    "ToCHWImage": set(),
}


def check_geometric(op: str, translation: Translation) -> None:
    if translation.normalized:
        raise ExportError(f"{op} after NormalizeImage is not reproduced (the service resizes 8-bit pixels)")


def positive_int(what: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 4096:
        raise ExportError(f"{what} must be a whole number from 1 to 4096, not {value!r}")
    return value


def width_height(what: str, value: Any) -> tuple[int, int]:
    """PaddleClas sizes: one number, or [width, height]."""
    if isinstance(value, list) and len(value) == 2:
        return positive_int(what, value[0]), positive_int(what, value[1])
    side = positive_int(what, value)
    return side, side


def three_floats(what: str, value: Any) -> list[float]:
    if (not isinstance(value, list) or len(value) != 3
            or not all(isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v) for v in value)):
        raise ExportError(f"{what} must be three numbers, not {value!r}")
    return [float(v) for v in value]


_FRACTION = re.compile(r"^\s*([0-9.]+)\s*/\s*([0-9.]+)\s*$")


def read_scale(value: Any) -> float:
    """A number, or a fraction written as text ("1.0/255.0"), which PaddleClas evaluates."""
    if value is None:
        return 1 / 255
    if isinstance(value, str):
        match = _FRACTION.match(value)
        try:
            value = float(match.group(1)) / float(match.group(2)) if match else float(value)
        except (ValueError, ZeroDivisionError) as exc:
            raise ExportError(f"NormalizeImage scale {value!r} is not a number") from exc
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1e3:
        raise ExportError(f"NormalizeImage scale must be a positive number, not {value!r}")
    return float(value)


def read_labels(topk: dict[str, Any], directory: Path) -> tuple[list[str] | None, str]:
    """The labels and where they came from; None when the export names none."""
    if not isinstance(topk, dict):
        raise ExportError("PostProcess.Topk must be a mapping")
    listed = topk.get("label_list")
    if listed:
        if not isinstance(listed, list) or not all(isinstance(v, str | int | float) for v in listed):
            raise ExportError("PostProcess.Topk.label_list must be a list of names")
        return [str(v) for v in listed], "PostProcess.Topk.label_list"
    mapped = label_map_name(topk)
    if mapped:
        path = directory / mapped
        if not path.is_file():
            raise ExportError(f"class_id_map_file {mapped} is not in the model directory")
        return read_class_id_map(path, topk.get("delimiter") or " "), f"class_id_map_file {path.name}"
    return None, "none in the export: the class numbers stand in"


def label_map_name(topk: dict[str, Any]) -> str | None:
    """The file name of Topk's class_id_map_file: its path in a deploy config is relative to where
    PaddleClas ran, and the file travels beside the config."""
    mapped = topk.get("class_id_map_file")
    return Path(str(mapped)).name if mapped else None


def read_class_id_map(path: Path, delimiter: str) -> list[str]:
    """Lines of "<class id><delimiter><label>", ids 0 to N-1."""
    labels: dict[int, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.strip().split(delimiter, 1)
        if len(parts) != 2 or not parts[0].strip().isdigit():
            raise ExportError(f"{path.name} line {number}: expected '<class id>{delimiter}<label>'")
        class_id = int(parts[0])
        if class_id in labels:
            raise ExportError(f"{path.name} line {number}: class id {class_id} appears twice")
        labels[class_id] = parts[1].strip()
    if sorted(labels) != list(range(len(labels))):
        raise ExportError(f"{path.name}: class ids must run from 0 to {len(labels) - 1} without gaps")
    return [labels[i] for i in range(len(labels))]


def probe_model(program: Path, weights: Path, input_shape: tuple[int, int, int]) -> ModelProbe:
    """Run the model on a few inputs of the shape the deploy config produces."""
    batch = np.random.default_rng(0).normal(0.0, 1.0, (PROBE_INPUTS, *input_shape)).astype(np.float32)
    backend = load_backend(BackendSpec("paddle", program, weights, BackendOptions("cpu", 1)))
    try:
        outputs = backend.run(batch)
    except Exception as exc:  # noqa: BLE001 - Paddle's own error on a shape it does not take
        first_line = (str(exc).strip().splitlines() or [""])[0]
        raise ExportError(f"the model does not take the {'x'.join(map(str, input_shape))} input its deploy "
                          f"config produces: {first_line}") from exc
    finally:
        backend.close()
    if outputs.ndim != 2 or outputs.shape[0] != PROBE_INPUTS or outputs.shape[1] < 2:
        raise ExportError(f"the model outputs shape {list(outputs.shape)} for {PROBE_INPUTS} images: "
                          "not one row of class scores per image")
    sums = outputs.sum(axis=1)
    probabilities = bool((outputs >= 0).all() and np.abs(sums - 1).max() < PROBABILITY_TOLERANCE)
    return ModelProbe(backend.input_name, int(outputs.shape[1]), "softmax" if probabilities else "logits")


def fingerprint_export(directory: Path) -> str:
    """Cheap to compute at every reload: the files' names, sizes and modification times."""
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.iterdir() if p.is_file()):
        stat = path.stat()
        digest.update(f"{path.name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def manifest_for_export(directory: Path, name: str, version: int, source: str | None = None,
                        recorded_files: dict[str, str] | None = None) -> Manifest:
    """A manifest for the export in `directory`, as if it had been written with it. `recorded_files`:
    the hashes from this export's first load, which its files must still have."""
    config_path = find_deploy_config(directory)
    if config_path is None:
        raise ExportError("no deploy config (inference.yml) beside the Paddle files")
    config = read_deploy_config(config_path)
    program, weights = find_model_files(directory)
    files = hash_directory(directory)
    for filename, expected in (recorded_files or {}).items():
        actual = files.get(filename)
        if actual != expected:
            now = "it is gone" if actual is None else f"SHA-256 {actual[:12]}…, was {expected[:12]}…"
            raise ExportError(f"{filename} changed since this server first loaded the export ({now}): "
                              "put a changed export in a new version directory")
    probe = probe_model(program, weights, (3, *config.input_size))
    labels = config.labels or [str(i) for i in range(probe.classes)]
    if len(labels) != probe.classes:
        raise ExportError(f"the model has {probe.classes} classes; {config.labels_source} names {len(labels)}")
    kind = source or ("PaddleX" if config.model_name else "PaddleClas")
    try:
        return Manifest(
            name=name, version=version,
            created=datetime.fromtimestamp(weights.stat().st_mtime, UTC),
            architecture=config.model_name or "not named by the export",
            framework={"name": "paddlepaddle", "format": "pir" if program.suffix == ".json" else "program"},
            model_file=program.name, params_file=weights.name, labels=labels,
            input=TensorInput(name=probe.input_name, shape=[-1, 3, *config.input_size], color_mode="RGB"),
            output=TensorOutput(name="output", activation=probe.activation),
            preprocessing=Preprocessing(
                description=f"RGB; {config.description} (from {config_path.name})",
                steps=[PreprocessStep(**step) for step in config.steps]),
            dataset=DatasetProvenance(name="unknown", source=f"not recorded by the {kind} export"),
            training={"source": f"{kind} export", "deploy_config": config_path.name,
                      "transform_ops": config.transform_ops, "labels": config.labels_source,
                      "output": f"{probe.activation}, measured on {PROBE_INPUTS} inputs"},
            files=files,
        )
    except ValueError as exc:
        raise ExportError(f"the export does not make a valid manifest: {exc}") from exc
