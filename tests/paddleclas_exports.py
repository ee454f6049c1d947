"""PaddleClas and PaddleX exports as their tools write them, built for the tests from one small
network: `paddle.jit.save` of a classifier with a softmax appended (as PaddleClas's ExportModel
does), in Paddle 3's PIR `.json` program or the older `.pdmodel` one, beside a deploy config
written as each project's documentation defines it. The same seed gives the same weights in both."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from app.inference.manifest import hash_directory

LABELS = ["daisy", "dandelion", "rose"]
INPUT = (3, 48, 48)
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


# PaddleClas's deploy/configs/inference_cls.yaml, pointed at this network.
PADDLECLAS_CONFIG = """\
Global:
  infer_imgs: "./images/ImageNet/ILSVRC2012_val_00000010.jpeg"
  inference_model_dir: "./models"
  batch_size: 1
  use_gpu: False
  enable_mkldnn: True
  cpu_num_threads: 10

PreProcess:
  transform_ops:
    - ResizeImage:
        resize_short: 56
    - CropImage:
        size: 48
    - NormalizeImage:
        scale: 0.00392157
        mean: [0.485, 0.456, 0.406]
        std: [0.229, 0.224, 0.225]
        order: ''
        channel_num: 3
    - ToCHWImage:

PostProcess:
  main_indicator: Topk
  Topk:
    topk: 5
    class_id_map_file: "../ppcls/utils/flowers_label_list.txt"
  SavePreLabel:
    save_dir: ./pre_label/
"""

# inference.yml as PaddleX 3 (and PaddleClas's export_model.py) writes it.
PADDLEX_CONFIG = """\
Global:
  model_name: PP-LCNet_x1_0
PreProcess:
  transform_ops:
  - ResizeImage:
      resize_short: 56
  - CropImage:
      size: 48
  - NormalizeImage:
      channel_num: 3
      mean:
      - 0.485
      - 0.456
      - 0.406
      order: ''
      scale: 0.00392156862745098
      std:
      - 0.229
      - 0.224
      - 0.225
  - ToCHWImage: null
PostProcess:
  Topk:
    topk: 5
    label_list:
    - daisy
    - dandelion
    - rose
"""


def save_network(directory: Path, program: str) -> None:
    """program: "pir" (inference.json, Paddle 3's default) or "legacy" (inference.pdmodel)."""
    directory.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "FLAGS_enable_pir_api": "1" if program == "pir" else "0"}
    # A process of its own: the program format is fixed when paddle is imported.
    subprocess.run([sys.executable, "-m", "tests.paddleclas_exports", str(directory)], env=env, check=True,
                   capture_output=True, timeout=300, cwd=Path(__file__).resolve().parents[1])


def write_paddleclas_export(directory: Path) -> Path:
    save_network(directory, "legacy")
    (directory / "inference_cls.yaml").write_text(PADDLECLAS_CONFIG)
    (directory / "flowers_label_list.txt").write_text("".join(f"{i} {label}\n" for i, label in enumerate(LABELS)))
    return directory


def write_paddlex_export(directory: Path, config: str = PADDLEX_CONFIG) -> Path:
    save_network(directory, "pir")
    (directory / "inference.yml").write_text(config)
    return directory


def write_native_export(directory: Path, name: str) -> Path:
    """The same network with this project's own manifest, its preprocessing written by hand."""
    save_network(directory, "pir")
    files = hash_directory(directory)
    manifest = {
        "name": name, "version": int(directory.name), "created": "2026-01-01T00:00:00Z", "architecture": "tiny-cnn",
        "framework": {"name": "paddlepaddle"}, "model_file": "inference.json", "params_file": "inference.pdiparams",
        "labels": LABELS,
        "input": {"name": "x", "shape": [-1, *INPUT], "color_mode": "RGB"},
        "output": {"name": "probabilities", "activation": "softmax"},
        "preprocessing": {"steps": [
            {"op": "resize_short", "size": 56, "antialias": False}, {"op": "center_crop", "size": 48},
            {"op": "normalize", "mean": MEAN, "std": STD}]},
        "dataset": {"name": "none", "source": "random weights"},
        "files": files,
    }
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return directory


def build_network(target: Path) -> None:
    import paddle

    paddle.seed(7)

    class Net(paddle.nn.Layer):
        def __init__(self) -> None:
            super().__init__()
            self.features = paddle.nn.Sequential(
                paddle.nn.Conv2D(3, 8, 3, stride=2), paddle.nn.BatchNorm2D(8), paddle.nn.ReLU(),
                paddle.nn.Conv2D(8, 16, 3, stride=2), paddle.nn.ReLU(), paddle.nn.AdaptiveAvgPool2D(1))
            self.head = paddle.nn.Linear(16, len(LABELS))
            self.softmax = paddle.nn.Softmax(-1)

        def forward(self, x: paddle.Tensor) -> paddle.Tensor:
            return self.softmax(self.head(paddle.flatten(self.features(x), 1)) * 4)

    net = Net()
    net.eval()
    spec = paddle.static.InputSpec([None, *INPUT], "float32", "x")
    paddle.jit.save(paddle.jit.to_static(net, input_spec=[spec], full_graph=True), str(target / "inference"))


if __name__ == "__main__":
    build_network(Path(sys.argv[1]))
