"""Arrays cached on disk between runs, written so that no reader ever sees half a file, and so that
processes preparing the same data at once (the ranks of a distributed run on one machine) do not
trip over each other: each writes its own temporary file, and the last rename wins."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np


def replace_atomically(path: Path, suffix: str, write: Callable[[Path], object]) -> None:
    """`write` a temporary file of this process's own beside `path` (numpy wants its suffix), then
    rename it over `path`."""
    temporary = path.with_name(f".{path.stem}.{os.getpid()}-{uuid.uuid4().hex[:8]}{suffix}")
    try:
        write(temporary)
        temporary.replace(path)
    finally:
        temporary.unlink(missing_ok=True)


def save_array(path: Path, array: np.ndarray) -> None:
    replace_atomically(path, ".npy", lambda temporary: np.save(temporary, array))


def save_arrays(path: Path, **arrays: np.ndarray) -> None:
    replace_atomically(path, ".npz", lambda temporary: np.savez(temporary, **arrays))  # type: ignore[arg-type]
