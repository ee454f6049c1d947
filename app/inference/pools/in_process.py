"""Predictors in the server's own process (APP_ISOLATION=thread): for scripts and tools that
classify a folder and need no event loop kept responsive, and for the fake backends of unit tests.

Paddle holds the GIL while it runs, so these share one core's worth of Python with the event
loop; predictors in child processes (processes.py) are the server's default."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

import numpy as np

from app.inference.backends import Backend
from app.inference.handler import Classified, ModelHandler
from app.inference.pools.base import Lender
from app.inference.preprocess import Input

# Encoded images up to this size decode in well under a thread hand-off.
INLINE_ENCODED_BYTES = 64 * 1024


class InProcessPool:
    side_by_side = False
    restarts = 0  # nothing here restarts

    def __init__(self, first: Backend, size: int, handler: ModelHandler) -> None:
        self._backends = [first] + [first.clone() for _ in range(max(1, size) - 1)]
        self.input_name = first.input_name
        self.backend_description = first.describe()
        self.handler = handler
        # Set once a full batch is known to take about a millisecond: then handing it to a thread
        # and back (and fighting for the GIL) costs more than the inference, so run it on the loop.
        self.inline = False
        self._lender = Lender(self._backends)

    @property
    def size(self) -> int:
        return len(self._backends)

    def grow(self, size: int) -> None:
        while len(self._backends) < size:
            backend = self._backends[0].clone()
            self._backends.append(backend)
            self._lender.add(backend)

    def run(self, batch: np.ndarray, solo: bool = False) -> np.ndarray:
        with self._lender.borrow() as backend:
            return backend.run(batch, solo)

    def run_each(self, batch: np.ndarray, solo: bool = False, start: int = 0) -> list[np.ndarray]:
        return [backend.run(batch, solo) for backend in self._backends[start:]]

    async def classify_async(self, inputs: list[Input], solo: bool = False) -> Classified:
        run = partial(self.run, solo=solo)
        if self.inline and all(isinstance(x, np.ndarray) or len(x) <= INLINE_ENCODED_BYTES for x in inputs):
            return self.handler.prepare_and_predict(inputs, run)
        return await asyncio.to_thread(self.handler.prepare_and_predict, inputs, run)

    def describe(self) -> dict[str, Any]:
        return {"isolation": "thread", "predictors": self.size, "predictor_restarts": 0,
                "inference_on_event_loop": self.inline}

    def close(self) -> None:
        for backend in self._backends:
            backend.close()

    def kill(self) -> None:
        self.close()
