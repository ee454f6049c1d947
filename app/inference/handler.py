"""One model version's request path, top to bottom: decode -> preprocess -> predict -> postprocess.

The server, `python -m training predict`, the benchmarks and the tests all classify through a
ModelHandler. Where the first three stages run is a pool's choice (app/inference/pools/): in a
predictor's child process, which then sends the model's outputs back, or in this process; the
fourth always runs where the answer is written.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from app.inference.manifest import Manifest, preprocessing_recipe
from app.inference.postprocess import Prediction, to_probabilities, top_k
from app.inference.preprocess import Input, Mapper, Prepared, Preprocessor, Recipe

Run = Callable[[np.ndarray], np.ndarray]  # a backend's run: float32 (N, C, H, W) -> (N, K)


@dataclass
class Classified:
    """The model's answer for one batch: outputs for the inputs that preprocessed, in order."""

    outputs: np.ndarray  # (inputs without an error, K)
    errors: dict[int, Exception]
    timings: list[tuple[float, float]]  # (decode ms, preprocess ms) per input
    inference_ms: float
    explained: dict[int, np.ndarray] = field(default_factory=dict)  # input index -> model input (C, H, W)


@dataclass(frozen=True)
class Outcome:
    """What became of one input: its probabilities, or the error it raised (its bytes are the
    client's fault for app.inference.input_errors, ours for anything else)."""

    probabilities: np.ndarray | None
    error: Exception | None = None
    decode_ms: float = 0.0
    preprocess_ms: float = 0.0
    inference_ms: float = 0.0  # the model run of the batch it was part of
    model_input: np.ndarray | None = None  # (C, H, W), for an ExplainedImage


@dataclass(frozen=True)
class HandlerSpec:
    """What a handler is built from, as plain values: a predictor's child process receives it
    (pickled) and builds the very same handler."""

    recipe: Recipe
    activation: str
    labels: tuple[str, ...]

    @classmethod
    def of(cls, manifest: Manifest, max_image_pixels: int) -> HandlerSpec:
        return cls(preprocessing_recipe(manifest, max_image_pixels), manifest.output.activation,
                   tuple(manifest.labels))

    def build(self) -> ModelHandler:
        return ModelHandler(self, self.recipe.build())


class ModelHandler:
    def __init__(self, spec: HandlerSpec, preprocessor: Preprocessor) -> None:
        self.spec = spec
        self.preprocessor = preprocessor

    @property
    def labels(self) -> tuple[str, ...]:
        return self.spec.labels

    def classify(self, inputs: Sequence[Input], run: Run) -> list[Outcome]:
        """All four stages in this thread: for scripts, tools and tests."""
        return self.postprocess(self.prepare_and_predict(inputs, run))

    def prepare_and_predict(self, inputs: Sequence[Input], run: Run, mapper: Mapper = map) -> Classified:
        """The stages that run beside the backend: every input decoded and preprocessed (each failing
        alone), then one model run over all that were prepared. `mapper` may be a thread pool's map:
        Pillow and numpy release the GIL for most of the work."""
        return self.predict(self.preprocess(inputs, mapper), run)

    def preprocess(self, inputs: Sequence[Input], mapper: Mapper = map) -> Prepared:
        """Stages 1 and 2 for each input: decode (limits before pixels), then the manifest's steps.
        Model-ready arrays (C, H, W) pass as they are."""
        return self.preprocessor.prepare(inputs, mapper)

    def decode(self, data: bytes) -> Image.Image:
        """Stage 1 alone: bytes -> an upright image (for callers that want to look at it)."""
        return self.preprocessor.decode(data)

    def image_size(self, data: bytes) -> tuple[int, int]:
        """(width, height) from the header alone, with the decoding limits applied."""
        size: tuple[int, int] = self.preprocessor.open(data).size
        return size

    def predict(self, prepared: Prepared, run: Run) -> Classified:
        """Stage 3: one model run over the prepared inputs."""
        started = time.perf_counter()
        outputs = run(np.stack(prepared.arrays)) if prepared.arrays else np.zeros((0, 0), dtype=np.float32)
        return Classified(outputs, prepared.errors, prepared.timings, (time.perf_counter() - started) * 1000,
                          prepared.explained)

    def postprocess(self, classified: Classified) -> list[Outcome]:
        """Stage 4: outputs -> probabilities, one Outcome per input in the order given."""
        rows = iter(to_probabilities(classified.outputs, self.spec.activation) if len(classified.outputs) else [])
        outcomes = []
        for index, (decode_ms, preprocess_ms) in enumerate(classified.timings):
            error = classified.errors.get(index)
            outcomes.append(Outcome(None if error else next(rows), error, decode_ms, preprocess_ms,
                                    classified.inference_ms, classified.explained.get(index)))
        return outcomes

    def top_k(self, probabilities: np.ndarray, k: int) -> list[Prediction]:
        """One input's probabilities (K,) -> its k best classes with their labels."""
        return top_k(probabilities, self.labels, k)

    def check(self) -> None:
        """Run the preprocessing once, at load: a recipe whose steps do not end at the model's input
        shape, or that yields NaN, fails the load with the reason (the version before it keeps
        serving) instead of failing every request."""
        try:
            array = self.preprocessor(probe_image())
        except Exception as exc:  # noqa: BLE001 - whatever it is, the recipe is unusable
            raise ValueError(f"the preprocessing fails on a plain test image: {type(exc).__name__}: {exc}") from exc
        if not np.isfinite(array).all():
            raise ValueError("the preprocessing yields NaN or infinite values")


def probe_image() -> bytes:
    """A dark stroke on light paper, 96x128 px: what any model's preprocessing must turn into an
    input of the model's shape (a digit pipeline finds the stroke; a photo pipeline crops it)."""
    pixels = np.full((128, 96), 235, dtype=np.uint8)
    pixels[24:104, 44:52] = 25
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()
