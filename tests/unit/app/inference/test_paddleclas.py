"""Reading PaddleClas and PaddleX deploy configs: what is reproduced becomes the service's own
steps with the same values, what is not is refused with the reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from app.inference.paddleclas import (
    ExportError,
    find_deploy_config,
    find_model_files,
    is_export,
    read_class_id_map,
    read_deploy_config,
    read_labels,
    read_scale,
    translate_ops,
)
from app.inference.preprocess import Preprocessor
from tests.paddleclas_exports import PADDLECLAS_CONFIG, PADDLEX_CONFIG

DEFAULT_OPS: list[Any] = [
    {"ResizeImage": {"resize_short": 256}},
    {"CropImage": {"size": 224}},
    {"NormalizeImage": {"scale": 0.00392157, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                        "order": "", "channel_num": 3}},
    {"ToCHWImage": None},
]


def paddleclas_input(pixels: np.ndarray, scale: float, mean: list[float], std: list[float]) -> np.ndarray:
    """PaddleClas's NormalizeImage and ToCHWImage on 0-255 pixels."""
    normalized = (pixels.astype(np.float32) * np.float32(scale) - np.float32(mean)) / np.float32(std)
    return normalized.transpose(2, 0, 1)


def test_translate_ops_default_classification_config_becomes_resize_crop_normalize() -> None:
    translation = translate_ops(DEFAULT_OPS)
    assert [step["op"] for step in translation.steps] == ["resize_short", "center_crop", "normalize"]
    assert translation.steps[0] == {"op": "resize_short", "size": 256, "antialias": False}
    assert translation.size == (224, 224)
    np.testing.assert_allclose(translation.steps[2]["mean"], [0.485, 0.456, 0.406], rtol=1e-6)


@pytest.mark.parametrize("scale", [0.00392157, "1.0/255.0", 1.0, 0.5])
def test_translate_ops_normalize_gives_paddleclas_values_for_any_scale(scale: float | str) -> None:
    mean, std = [0.5, 120.0, 3.0], [0.25, 60.0, 2.0]
    ops = [{"ResizeImage": {"size": 8}}, {"NormalizeImage": {"scale": scale, "mean": mean, "std": std}}]
    translation = translate_ops(ops)
    pixels = np.random.default_rng(0).integers(0, 256, (8, 8, 3)).astype(np.uint8)
    specs = [(step["op"], {k: v for k, v in step.items() if k != "op"}) for step in translation.steps]
    ours = Preprocessor.create("RGB", (3, 8, 8), specs, 10_000).process_image(Image.fromarray(pixels))
    expected = paddleclas_input(pixels, read_scale(scale), mean, std)
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-5)


def test_translate_ops_without_normalize_feeds_0_to_255_pixels() -> None:
    translation = translate_ops([{"ResizeImage": {"size": [32, 24]}}])
    assert translation.size == (24, 32)  # PaddleClas sizes are [width, height]
    assert translation.steps[-1] == {"op": "normalize", "mean": [0.0], "std": [1 / 255]}


def test_translate_ops_pil_backend_resizes_with_antialiasing_and_its_filter() -> None:
    translation = translate_ops([{"ResizeImage": {"resize_short": 40, "backend": "pil"}}, {"CropImage": {"size": 32}}])
    assert translation.steps[0] == {"op": "resize_short", "size": 40, "antialias": True, "resample": "bilinear"}
    bicubic = translate_ops([{"ResizeImage": {"size": 32, "interpolation": "bicubic", "backend": "pil"}}])
    assert bicubic.steps[0] == {"op": "resize", "size": [32, 32], "antialias": True, "resample": "bicubic"}


def test_translate_ops_pil_bicubic_is_pillows_bicubic() -> None:
    """What PaddleClas's ResizeImage does with backend pil: Image.resize with the filter named."""
    ops = [{"ResizeImage": {"resize_short": 40, "interpolation": "bicubic", "backend": "pil"}},
           {"CropImage": {"size": 32}}, {"NormalizeImage": {"scale": 1.0, "mean": [0, 0, 0], "std": [1, 1, 1]}}]
    steps = [(step["op"], {k: v for k, v in step.items() if k != "op"}) for step in translate_ops(ops).steps]
    photo = Image.fromarray(np.random.default_rng(6).integers(0, 256, (90, 120, 3)).astype(np.uint8))
    ours = Preprocessor.create("RGB", (3, 32, 32), steps, 100_000).process_image(photo)
    resized = np.asarray(photo.resize((53, 40), Image.Resampling.BICUBIC), dtype=np.float32)
    expected = resized[4:36, 10:42].transpose(2, 0, 1)
    assert np.abs(ours - expected).max() <= 1.0  # one 8-bit level (the service resizes the crop's box only)


@pytest.mark.parametrize(("ops", "reason"), [
    ([{"RandCropImage": {"size": 224}}], "'RandCropImage' is not one this service reproduces"),
    ([{"ResizeImage": {"resize_short": 256, "interpolation": "bicubic"}}, {"CropImage": {"size": 224}}],
     "interpolation 'bicubic' with backend cv2 is not reproduced"),
    ([{"ResizeImage": {"resize_short": 256, "interpolation": "box", "backend": "pil"}}, {"CropImage": {"size": 224}}],
     "interpolation 'box' with backend pil is not reproduced"),
    ([{"ResizeImage": {"resize_short": 256}}], "leave the input size open"),
    ([{"ResizeImage": {"size": 64}}, {"CropImage": {"size": [32, 48]}}], "crops squares"),
    ([{"ResizeImage": {"size": 16}}, {"CropImage": {"size": 32}}], "a 32 crop of a 16x16 image"),
    ([{"ResizeImage": {"size": 32}}, {"NormalizeImage": {"channel_num": 4}}], "channel_num 4"),
    ([{"DecodeImage": {"to_rgb": False}}, {"ResizeImage": {"size": 32}}], "BGR"),
    ([{"NormalizeImage": {}}, {"ResizeImage": {"size": 32}}], "after NormalizeImage"),
    ([{"ResizeImage": {"size": 32, "keep_ratio": True}}], "['keep_ratio'] are not reproduced"),
    ([{"ResizeImage": {"size": 0}}], "from 1 to 4096"),
    ([{"ResizeImage": {"size": 32}}, {"NormalizeImage": {"mean": [0.5, 0.5]}}], "three numbers"),
    ([{"ResizeImage": {"size": 32}}, {"NormalizeImage": {"scale": "__import__('os')"}}], "not a number"),
    (["ResizeImage"], "a mapping of one op name"),
])
def test_translate_ops_refuses_what_it_cannot_reproduce(ops: list[Any], reason: str) -> None:
    with pytest.raises(ExportError) as raised:
        translate_ops(ops)
    assert reason in str(raised.value)


def test_read_deploy_config_paddlex_labels_come_from_label_list(tmp_path: Path) -> None:
    (tmp_path / "inference.yml").write_text(PADDLEX_CONFIG)
    config = read_deploy_config(tmp_path / "inference.yml")
    assert config.labels == ["daisy", "dandelion", "rose"] and config.model_name == "PP-LCNet_x1_0"
    assert config.input_size == (48, 48)


def test_read_deploy_config_paddleclas_labels_come_from_the_class_id_map_beside_it(tmp_path: Path) -> None:
    (tmp_path / "inference_cls.yaml").write_text(PADDLECLAS_CONFIG)
    with pytest.raises(ExportError, match="flowers_label_list.txt is not in the model directory"):
        read_deploy_config(tmp_path / "inference_cls.yaml")
    (tmp_path / "flowers_label_list.txt").write_text("0 daisy\n1 common dandelion\n2 rose\n")
    config = read_deploy_config(tmp_path / "inference_cls.yaml")
    assert config.labels == ["daisy", "common dandelion", "rose"]
    assert config.labels_source == "class_id_map_file flowers_label_list.txt"


def test_read_deploy_config_refuses_a_feature_extractor(tmp_path: Path) -> None:
    path = tmp_path / "inference.yml"
    path.write_text(PADDLEX_CONFIG.split("PostProcess:")[0] + "PostProcess:\n  NormalizeFeatures: null\n")
    with pytest.raises(ExportError, match="only image classification exports"):
        read_deploy_config(path)


@pytest.mark.parametrize("text", ["not: [valid", "- a list\n", "PreProcess: {}\n"])
def test_read_deploy_config_refuses_what_is_not_a_deploy_config(tmp_path: Path, text: str) -> None:
    path = tmp_path / "inference.yml"
    path.write_text(text)
    with pytest.raises(ExportError):
        read_deploy_config(path)


def test_read_class_id_map_orders_by_id_and_refuses_gaps(tmp_path: Path) -> None:
    path = tmp_path / "labels.txt"
    path.write_text("1 b\n0 a a\n\n2 c\n")
    assert read_class_id_map(path, " ") == ["a a", "b", "c"]
    path.write_text("0 a\n2 c\n")
    with pytest.raises(ExportError, match="without gaps"):
        read_class_id_map(path, " ")
    path.write_text("0 a\n0 b\n")
    with pytest.raises(ExportError, match="appears twice"):
        read_class_id_map(path, " ")


def test_read_labels_without_any_gives_none(tmp_path: Path) -> None:
    assert read_labels({"topk": 5}, tmp_path)[0] is None


def test_find_export_files_in_a_version_directory(tmp_path: Path) -> None:
    assert not is_export(tmp_path)
    (tmp_path / "inference.pdiparams").write_bytes(b"w")
    (tmp_path / "inference.pdmodel").write_bytes(b"p")
    (tmp_path / "custom.yaml").write_text(PADDLEX_CONFIG)
    assert is_export(tmp_path) and find_deploy_config(tmp_path) == tmp_path / "custom.yaml"
    assert find_model_files(tmp_path) == (tmp_path / "inference.pdmodel", tmp_path / "inference.pdiparams")
    (tmp_path / "inference.json").write_bytes(b"p")  # Paddle 3's program wins where both are present
    assert find_model_files(tmp_path)[0] == tmp_path / "inference.json"
    (tmp_path / "manifest.json").write_text("{}")
    assert not is_export(tmp_path)  # a manifest of ours says what the directory is
