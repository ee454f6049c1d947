"""The handler's four stages, each on its own and together, with a plain function as the model."""

from __future__ import annotations

import numpy as np
import pytest

from app.inference.handler import Classified, HandlerSpec, ModelHandler
from app.inference.input_errors import ImageDecodeError
from app.inference.preprocess import ExplainedImage, Recipe
from tests.conftest import png_bytes

LABELS = ("zero", "one", "two")


def handler(activation: str = "logits") -> ModelHandler:
    recipe = Recipe("L", (1, 4, 4), (("resize", {"size": [4, 4]}),), 1_000_000)
    return HandlerSpec(recipe, activation, LABELS).build()


def brightness_logits(batch: np.ndarray) -> np.ndarray:
    """Class 2 for a white input, 0 for a black one."""
    level = batch.reshape(len(batch), -1).mean(axis=1) * 2
    return -np.abs(level[:, None] - np.arange(3)[None, :]).astype(np.float32)


def test_handler_classify_keeps_input_order_and_fails_only_bad_inputs() -> None:
    white, black = png_bytes(np.ones((6, 6))), png_bytes(np.zeros((6, 6)))
    runs: list[int] = []

    def run(batch: np.ndarray) -> np.ndarray:
        runs.append(len(batch))
        return brightness_logits(batch)

    outcomes = handler().classify([white, b"\x89PNG\r\n\x1a\n cut short", black], run)
    assert runs == [2]  # one model run for every input that was prepared
    assert isinstance(outcomes[1].error, ImageDecodeError) and outcomes[1].probabilities is None
    assert [int(o.probabilities.argmax()) for o in (outcomes[0], outcomes[2])] == [2, 0]
    assert outcomes[0].probabilities.sum() == pytest.approx(1.0)


def test_handler_preprocess_passes_arrays_and_returns_explained_inputs() -> None:
    array = np.full((1, 4, 4), 0.5, dtype=np.float32)
    prepared = handler().preprocess([array, ExplainedImage(png_bytes(np.ones((6, 6))))])
    assert prepared.arrays[0] is array and prepared.timings[0] == (0.0, 0.0)
    assert set(prepared.explained) == {1} and prepared.explained[1].shape == (1, 4, 4)


def test_handler_postprocess_takes_softmax_outputs_as_they_are() -> None:
    classified = Classified(np.array([[0.2, 0.5, 0.3]], dtype=np.float32), {}, [(1.0, 2.0)], 3.0)
    [outcome] = handler(activation="softmax").postprocess(classified)
    np.testing.assert_allclose(outcome.probabilities, [0.2, 0.5, 0.3], rtol=1e-6)
    assert (outcome.decode_ms, outcome.preprocess_ms, outcome.inference_ms) == (1.0, 2.0, 3.0)
    assert [p.label for p in handler().top_k(outcome.probabilities, 2)] == ["one", "two"]


def test_handler_check_refuses_a_recipe_that_misses_the_model_shape() -> None:
    recipe = Recipe("L", (1, 4, 4), (("resize", {"size": [5, 5]}),), 1_000_000)
    with pytest.raises(ValueError, match="fails on a plain test image"):
        HandlerSpec(recipe, "logits", LABELS).build().check()
