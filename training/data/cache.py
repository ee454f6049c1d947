"""Arrays cached on disk between runs, written so that no reader ever sees half a file, and so that
processes preparing the same data at once (the ranks of a distributed run on one machine) do not
trip over each other: each writes its own temporary file, and the last rename wins."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np


def save_array(path: Path, array: np.ndarray) -> None:
    temporary = path.with_name(f".{path.stem}.{os.getpid()}-{uuid.uuid4().hex[:8]}.npy")
    try:
        np.save(temporary, array)
        temporary.replace(path)
    finally:
        temporary.unlink(missing_ok=True)


def save_arrays(path: Path, **arrays: np.ndarray) -> None:
    temporary = path.with_name(f".{path.stem}.{os.getpid()}-{uuid.uuid4().hex[:8]}.npz")
    try:
        np.savez(temporary, **arrays)  # type: ignore[arg-type]
        temporary.replace(path)
    finally:
        temporary.unlink(missing_ok=True)
