"""Networks from the Paddle MNIST course, created by name."""

from __future__ import annotations

from collections.abc import Callable

import paddle
from paddle import nn


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

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2D(in_channels, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2D(2, 2),
            nn.Conv2D(6, 16, 5), nn.ReLU(), nn.MaxPool2D(2, 2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120), nn.ReLU(),
            nn.Linear(120, 84), nn.ReLU(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.classifier(self.features(x))


ModelFactory = Callable[[tuple[int, int, int], int], nn.Layer]

_FACTORIES: dict[str, ModelFactory] = {
    "softmax": lambda shape, n: SoftmaxRegression(shape[0] * shape[1] * shape[2], n),
    "mlp": lambda shape, n: MLP(shape[0] * shape[1] * shape[2], n),
    "lenet": lambda shape, n: LeNet5(shape[0], n),
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
    return int(sum(p.numel().item() for p in model.parameters()))
