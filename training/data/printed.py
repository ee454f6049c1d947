"""Typeset digits to mix into MNIST training: MNIST is handwriting only, and a model trained on it
alone reads a printed 6 or 9 as 0 (round typeset loops). Rendered from the DejaVu faces that ship
inside matplotlib (a dependency, so nothing is downloaded); the other faces matplotlib ships (STIX,
Computer Modern) are left out of training so that `bench/digit_photos.py` can measure on faces the
model never saw."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

CANVAS = 64  # rendered larger than 28x28; the service's preprocessing crops, fits and centres it
TRAINING_FACE_PREFIX = "DejaVu"


def matplotlib_faces() -> list[Path]:
    """Upright and italic text faces matplotlib ships (symbol and size-variant faces left out)."""
    import matplotlib

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    skip = ("Siz", "NonUni", "cmex", "cmsy", "cmmi", "LastResort", "Display")
    return sorted(p for p in folder.glob("*.ttf") if not any(s in p.name for s in skip))


def training_faces() -> list[Path]:
    return [p for p in matplotlib_faces() if p.name.startswith(TRAINING_FACE_PREFIX)]


def typeset(digit: int, face: Path, font_size: int, size: tuple[int, int],
            centre: tuple[float, float]) -> Image.Image:
    """The digit as a mask (255 = ink, 0 = none) of `size`, its glyph centred on `centre`."""
    canvas = Image.new("L", size, 0)
    font = ImageFont.truetype(str(face), font_size)
    ImageDraw.Draw(canvas).text(centre, str(digit), font=font, fill=255, anchor="mm")
    return canvas


def render_digit(digit: int, face: Path, rng: np.random.Generator) -> np.ndarray:
    """One digit, light on dark like MNIST, at a random size, tilt, weight and blur: (64, 64) in [0, 1]."""
    canvas = typeset(digit, face, int(rng.integers(28, 48)), (CANVAS, CANVAS), (CANVAS / 2, CANVAS / 2))
    canvas = canvas.rotate(rng.uniform(-10, 10), resample=Image.Resampling.BILINEAR)
    weight = rng.random()
    if weight < 0.25:
        canvas = canvas.filter(ImageFilter.MaxFilter(3))  # a heavier pen or print
    elif weight > 0.9:
        canvas = canvas.filter(ImageFilter.MinFilter(3))
    canvas = canvas.filter(ImageFilter.GaussianBlur(rng.uniform(0.0, 1.0)))
    return np.asarray(canvas, dtype=np.float32) / 255.0


def render_printed_digits(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` typeset digits, classes balanced, faces cycled: (images (N, 64, 64), labels (N,))."""
    faces = training_faces()
    if not faces:
        raise FileNotFoundError("matplotlib's DejaVu fonts are missing (matplotlib/mpl-data/fonts/ttf)")
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 10
    images = np.stack([render_digit(int(label), faces[i % len(faces)], rng) for i, label in enumerate(labels)])
    blank = images.reshape(count, -1).max(axis=1) == 0
    if blank.any():  # a face without a glyph renders nothing; never train on an empty image
        raise ValueError(f"{int(blank.sum())} rendered digits are blank")
    return images, labels.astype(np.int64)
