"""The model zoo: a name in a config -> a Paddle network taking (N, C, H, W) float32, giving logits."""

from training.models.registry import MODEL_NAMES, count_parameters, create_model, print_summary

__all__ = ["MODEL_NAMES", "count_parameters", "create_model", "print_summary"]
