"""IDX files, the format MNIST and Fashion-MNIST ship in (`*-images-idx3-ubyte[.gz]`,
`*-labels-idx1-ubyte[.gz]`), read with numpy only and checked against their own headers."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import numpy as np

# The third header byte names the element type; MNIST-style data is always unsigned bytes.
_DTYPES: dict[int, Any] = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class IdxError(ValueError):
    pass


def read_idx(path: Path) -> np.ndarray:
    raw = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise IdxError(f"{path}: not an IDX file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_DTYPES[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise IdxError(f"{path}: header says {shape} ({expected} bytes) but {len(raw) - header} bytes follow")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def find_idx_pair(root: Path, prefix: str) -> tuple[Path, Path] | None:
    """The images and labels files starting with `prefix` (`train`, `t10k`), gzipped or not."""
    def find(kind: str) -> Path | None:
        matches = sorted(root.glob(f"{prefix}*-{kind}-idx*-ubyte*"))
        return matches[0] if matches else None

    images, labels = find("images"), find("labels")
    return (images, labels) if images and labels else None


def load_idx_split(root: Path, prefix: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(images uint8 (N, H, W), labels int64 (N,)) or None when the files are not there."""
    pair = find_idx_pair(root, prefix)
    if pair is None:
        return None
    images, labels = read_idx(pair[0]), read_idx(pair[1])
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise IdxError(f"{pair[0].name} / {pair[1].name}: expected (N, H, W) images and N labels, "
                       f"got {images.shape} and {labels.shape}")
    return images.astype(np.uint8), labels.astype(np.int64)
