"""Networks from the Paddle image-classification course, created by name (no weight download:
the `paddle.vision.models` networks start from random weights; see finetune.init_from)."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import paddle
from paddle import nn
from paddle.vision import models
from scipy import ndimage


class SoftmaxRegression(nn.Layer):
    """One linear layer; softmax lives in the loss (train) and the service (serve)."""

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.fc(self.flatten(x))


class MLP(nn.Layer):
    """Two hidden ReLU layers with dropout, the course's 98%+ model."""

    def __init__(self, in_features: int, num_classes: int, hidden: tuple[int, int] = (512, 256),
                 dropout: float = 0.2) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(in_features, hidden[0]), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden[0], hidden[1]), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden[1], num_classes),
        )

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.net(x)


class LeNet5(nn.Layer):
    """LeNet-5 for 28x28 inputs (padding 2 on the first conv stands in for the original 32x32)."""

    def __init__(self, in_channels: int, num_classes: int, size: tuple[int, int] = (28, 28)) -> None:
        super().__init__()
        side = [(d // 2 - 4) // 2 for d in size]  # after conv(pad 2), pool, conv(5), pool
        self.features = nn.Sequential(
            nn.Conv2D(in_channels, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2D(2, 2),
            nn.Conv2D(6, 16, 5), nn.ReLU(), nn.MaxPool2D(2, 2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * side[0] * side[1], 120), nn.ReLU(),
            nn.Linear(120, 84), nn.ReLU(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.classifier(self.features(x))


class CnnBn(nn.Layer):
    """Two conv + BatchNorm + ReLU + pool blocks and a small head: the clothing exercise's network."""

    def __init__(self, in_channels: int, num_classes: int, size: tuple[int, int]) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> list[nn.Layer]:
            return [nn.Conv2D(cin, cout, 3, padding=1), nn.BatchNorm2D(cout), nn.ReLU(), nn.MaxPool2D(2, 2)]

        self.features = nn.Sequential(*block(in_channels, 32), *block(32, 64))
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * (size[0] // 4) * (size[1] // 4), 128), nn.ReLU(), nn.Dropout(0.3),
            nn.Linear(128, num_classes),
        )

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.classifier(self.features(x))


class Cnn4(nn.Layer):
    """Four conv + BatchNorm + ReLU + pool blocks (32, 64, 128, 256 channels), global average
    pooling and a dropout head: deeper than cnn_bn, still small enough to learn from a few hundred
    photos, and independent of the input size."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        layers: list[nn.Layer] = []
        for cin, cout in ((in_channels, 32), (32, 64), (64, 128), (128, 256)):
            layers += [nn.Conv2D(cin, cout, 3, padding=1, bias_attr=False), nn.BatchNorm2D(cout), nn.ReLU(),
                       nn.MaxPool2D(2, 2)]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2D(1)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(0.3), nn.Linear(256, num_classes))

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.classifier(self.pool(self.features(x)))


def vision_model(factory: Callable[..., nn.Layer], in_channels: int, num_classes: int) -> nn.Layer:
    """A paddle.vision network with random weights; a first conv for 1-channel inputs if needed."""
    model = factory(pretrained=False, num_classes=num_classes)
    if in_channels != 3:
        adapt_first_conv(model, in_channels)
    return model


def adapt_first_conv(model: nn.Layer, in_channels: int) -> None:
    for name, layer in model.named_sublayers():
        if isinstance(layer, nn.Conv2D):
            replacement = nn.Conv2D(in_channels, layer._out_channels, layer._kernel_size, stride=layer._stride,
                                    padding=layer._padding, bias_attr=False if layer.bias is None else None)
            parent = model
            *path, leaf = name.split(".")
            for part in path:
                parent = getattr(parent, part) if not part.isdigit() else parent[int(part)]  # type: ignore[index]
            if leaf.isdigit():
                parent[int(leaf)] = replacement
            else:
                setattr(parent, leaf, replacement)
            return


class FlipAveraged(nn.Layer):
    """A network's logits averaged over the image and its left-right mirror: the exported graph
    does both passes, so a client sends one image and the manifest's accuracy includes it."""

    def __init__(self, network: nn.Layer) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return (self.network(x) + self.network(paddle.flip(x, axis=[3]))) / 2


def rotation_matrix(height: int, width: int, degrees: float) -> np.ndarray:
    """(H*W, H*W): a flattened image times it is the image turned `degrees` counter-clockwise
    about its centre as scipy.ndimage.rotate turns it (bilinear, zero where the turn reads from
    outside the frame, an MNIST input's background). The turn is linear, so row i is pixel i
    alone, turned; as a constant matmul, every runtime the export reaches runs it."""
    basis = np.eye(height * width, dtype=np.float32).reshape(-1, height, width)
    turned = ndimage.rotate(basis, degrees, axes=(2, 1), reshape=False, order=1, mode="grid-constant", cval=0.0)
    return turned.reshape(height * width, height * width)


# The turn is a dense (H*W)^2 matrix per angle: 64x64 inputs make 64 MB of it, 96x96 ones 340 MB.
MAX_TURNED_PIXELS = 64 * 64


def check_rotation_average(degrees: list[float], input_shape: tuple[int, int, int] | None = None,
                           required: bool = False) -> None:
    """Refuse angles that are 0 or turn a digit past 45 degrees, and inputs too large to turn by a
    matrix (checked before training, and once the input's shape is known, not at export)."""
    if (required and not degrees) or any(not 0 < abs(angle) <= 45 for angle in degrees):
        raise ValueError(f"rotation_average takes angles from -45 to 45 degrees, none 0; got {degrees}")
    if degrees and input_shape is not None and input_shape[1] * input_shape[2] > MAX_TURNED_PIXELS:
        raise ValueError(f"rotation_average turns inputs of at most {MAX_TURNED_PIXELS} pixels (64x64, small "
                         f"digit inputs); this one is {input_shape[1]}x{input_shape[2]}")


class RotationAveraged(nn.Layer):
    """A network's answer averaged over the image and the image turned by each of `degrees`: the
    mean of the probabilities, returned as their logarithm (logits whose softmax is that mean).
    Probabilities, not logits, are averaged: a view the network finds unreadable then weighs
    little instead of pulling the others with large logits. Every view goes through the network in
    one batch, inside the exported graph."""

    def __init__(self, network: nn.Layer, input_shape: tuple[int, int, int], degrees: list[float]) -> None:
        super().__init__()
        check_rotation_average(degrees, input_shape, required=True)
        self.network = network
        self.input_shape = input_shape
        _, height, width = input_shape
        turns = np.concatenate([rotation_matrix(height, width, angle) for angle in degrees], axis=1)
        self.register_buffer("turns", paddle.to_tensor(turns), persistable=True)
        self.views = len(degrees) + 1

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        channels, height, width = self.input_shape
        turned = paddle.matmul(paddle.reshape(x, [-1, height * width]), self.turns)  # (N*C, turns*H*W)
        turned = paddle.reshape(turned, [-1, channels, self.views - 1, height * width])
        turned = paddle.reshape(paddle.transpose(turned, [2, 0, 1, 3]), [-1, channels, height, width])
        probabilities = nn.functional.softmax(self.network(paddle.concat([x, turned], axis=0)), axis=1)
        probabilities = paddle.reshape(probabilities, [self.views, -1, probabilities.shape[-1]])
        return paddle.log(paddle.mean(probabilities, axis=0))


class Ensemble(nn.Layer):
    """The mean of several networks' logits: networks trained from different seeds make different
    mistakes, and their mean makes fewer. The exported graph runs every member, one request."""

    def __init__(self, members: list[nn.Layer]) -> None:
        super().__init__()
        self.members = nn.LayerList(members)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return paddle.add_n([member(x) for member in self.members]) / len(self.members)


ModelFactory = Callable[[tuple[int, int, int], int], nn.Layer]

_FACTORIES: dict[str, ModelFactory] = {
    "softmax": lambda shape, n: SoftmaxRegression(shape[0] * shape[1] * shape[2], n),
    "mlp": lambda shape, n: MLP(shape[0] * shape[1] * shape[2], n),
    "lenet": lambda shape, n: LeNet5(shape[0], n, (shape[1], shape[2])),
    "cnn_bn": lambda shape, n: CnnBn(shape[0], n, (shape[1], shape[2])),
    "cnn4": lambda shape, n: Cnn4(shape[0], n),
    "resnet18": lambda shape, n: vision_model(models.resnet18, shape[0], n),
    "resnet34": lambda shape, n: vision_model(models.resnet34, shape[0], n),
    "resnet50": lambda shape, n: vision_model(models.resnet50, shape[0], n),
    "mobilenet_v2": lambda shape, n: vision_model(models.mobilenet_v2, shape[0], n),
    "mobilenet_v3_small": lambda shape, n: vision_model(models.mobilenet_v3_small, shape[0], n),
}
MODEL_NAMES = tuple(sorted(_FACTORIES))


def create_model(name: str, input_shape: tuple[int, int, int], num_classes: int) -> nn.Layer:
    """input_shape is (C, H, W) without the batch dimension."""
    try:
        factory = _FACTORIES[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}") from None
    return factory(input_shape, num_classes)


def count_parameters(model: nn.Layer) -> int:
    return sum(math.prod(p.shape) for p in model.parameters())


def print_summary(name: str, shape_text: str, classes: int) -> None:
    """`python -m training summary`: the layer and parameter table of a network."""
    shape = tuple(int(part) for part in shape_text.split(","))
    if len(shape) != 3:
        raise ValueError(f"--input must be C,H,W, got {shape_text!r}")
    model = create_model(name, shape, classes)
    paddle.summary(model, (1, *shape))
