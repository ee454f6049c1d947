"""The model zoo: a name in a config -> a Paddle network taking (N, C, H, W) float32, giving logits."""

from training.models.registry import MODEL_NAMES, create_model, count_parameters

__all__ = ["MODEL_NAMES", "create_model", "count_parameters"]
