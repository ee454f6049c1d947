"""Where a model version's backends run, as one interface: a pool of predictors (copies of the
backend), each running one batch at a time. In-process (in_process.py) or in child processes
(processes.py): the model version, the batcher and the routes do not know which."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Generic, Protocol, TypeVar

import numpy as np

from app.inference.handler import Classified
from app.inference.preprocess import Input

T = TypeVar("T")


class PoolBusyError(RuntimeError):
    """A predictor was asked for on the event loop while every one was lent (never waited for)."""


class Pool(Protocol):
    input_name: str
    # True where predictors run batches side by side on separate cores (processes); False where
    # they share this process's GIL, which Paddle holds while it runs (more would not help).
    side_by_side: bool
    # True where a whole batch is cheaper to run on the event loop than to hand elsewhere.
    inline: bool

    @property
    def backend_description(self) -> dict[str, Any]:
        """The backend's own description (Backend.describe)."""
        ...

    @property
    def size(self) -> int: ...

    @property
    def restarts(self) -> int: ...

    def grow(self, size: int) -> None:
        """Add predictors until there are `size` (not warmed up: see run_each)."""

    def run(self, batch: np.ndarray, solo: bool = False) -> np.ndarray:
        """Blocking: one model run on one free predictor, float32 (N, C, H, W) -> (N, K)."""
        ...

    def run_each(self, batch: np.ndarray, solo: bool = False, start: int = 0) -> list[np.ndarray]:
        """Run the batch once on every predictor from `start` on (warm-up, before any request)."""
        ...

    async def classify_async(self, inputs: list[Input], solo: bool = False) -> Classified:
        """Encoded images and/or model inputs -> the model's outputs, in one run, through the
        handler's first three stages, without blocking the event loop."""
        ...

    def describe(self) -> dict[str, Any]:
        """Where the predictors run: isolation, how many, restarts."""
        ...

    def close(self) -> None:
        """Stop the predictors once they finish what they run."""

    def kill(self) -> None:
        """Stop the predictors now, whatever they are doing."""


class Lender(Generic[T]):
    """Lends each of a set of items to one caller at a time; further callers wait."""

    def __init__(self, items: Sequence[T]) -> None:
        self._free = list(items)
        self._available = threading.Semaphore(len(self._free))
        self._lock = threading.Lock()

    def add(self, item: T) -> None:
        with self._lock:
            self._free.append(item)
        self._available.release()

    @contextmanager
    def borrow(self, wait: bool = True) -> Iterator[T]:
        """One item for the `with` block. wait=False (callers on the event loop, which must never
        block): raise PoolBusyError at once when every item is lent."""
        if not self._available.acquire(blocking=wait):
            raise PoolBusyError("every predictor is busy")
        try:
            with self._lock:
                item = self._free.pop()
            try:
                yield item
            finally:
                with self._lock:
                    self._free.append(item)
        finally:
            self._available.release()
