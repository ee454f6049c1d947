"""How the bundled digit models do on photo-like pictures of digits (not a test; not MNIST itself).

    python bench/digit_photos.py [--per-digit 12] [--handwritten 300] [--out bench/digit-photos-results.json]

Two synthetic sets, made fresh from a fixed seed, each image a 900x1200 JPEG of dark ink on
unevenly lit (a brightness ramp of up to +-40 levels across the page), noisy, tinted paper,
the ink tilted up to 8 degrees, slightly blurred (what a phone photo of a sheet looks like once it
is cropped to the digit's neighbourhood):
- printed: the digits 0-9 typeset at random sizes and positions, in two sets: the faces
  matplotlib ships that training never uses (STIX, Computer Modern), and the DejaVu faces from
  which training's typeset digits are rendered (`data.printed_digits`; other sizes, tilts, paper);
- handwritten: MNIST *test* digits (never trained on) enlarged 10-30x, thickened, as ink.
Each image goes through the model's own preprocessing (`Classifier.preprocess`, as the service
does) and predictor. Prints and writes top-1 accuracy per model and set, and the commonest confusions.
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.inference.classifier import Classifier, LoadOptions  # noqa: E402
from app.inference.predictor import RuntimeOptions  # noqa: E402
from training.data.printed import TRAINING_FACE_PREFIX, matplotlib_faces, training_faces, typeset  # noqa: E402

MODELS = ("mnist-softmax", "mnist-mlp", "mnist-lenet")
PAGE = (900, 1200)


def held_out_faces() -> list[Path]:
    """matplotlib's faces that training's typeset digits do not use (STIX, Computer Modern)."""
    return [p for p in matplotlib_faces() if not p.name.startswith(TRAINING_FACE_PREFIX)]


def photograph(ink_mask: Image.Image, rng: np.random.Generator) -> bytes:
    """Tilted ink (mask 255) on paper with a lighting gradient, grain and tint; blur, JPEG."""
    # Tilt the ink, not the photo: rotating the photo would leave fill-coloured corners no real photo has.
    ink_mask = ink_mask.rotate(rng.uniform(-8, 8), resample=Image.Resampling.BICUBIC)
    width, height = ink_mask.size
    y, x = np.mgrid[0:height, 0:width]
    paper = 200 + 40 * rng.random() + x / width * rng.uniform(-40, 40) + y / height * rng.uniform(-40, 40)
    paper = paper + rng.normal(0, 4, (height, width))
    paper = paper[..., None] * np.array([1.0, rng.uniform(0.95, 1.0), rng.uniform(0.85, 1.0)])
    ink = np.array([rng.uniform(10, 60), rng.uniform(10, 60), rng.uniform(20, 90)])
    coverage = np.asarray(ink_mask, dtype=np.float32)[..., None] / 255
    pixels = np.clip(paper * (1 - coverage) + ink * coverage, 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 2)))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=int(rng.integers(60, 95)))
    return buffer.getvalue()


def printed_digit(digit: int, font: Path, rng: np.random.Generator) -> bytes:
    font_size = int(rng.uniform(300, 700))
    centre = (PAGE[0] / 2 + rng.uniform(-150, 150), PAGE[1] / 2 + rng.uniform(-200, 200))
    return photograph(typeset(digit, font, font_size, PAGE, centre), rng)


def handwritten_digit(image: np.ndarray, rng: np.random.Generator) -> bytes:
    scale = rng.uniform(10, 30)
    big = Image.fromarray((image * 255).astype(np.uint8)).resize((int(28 * scale),) * 2, Image.Resampling.BICUBIC)
    big = big.filter(ImageFilter.MaxFilter(3))
    mask = Image.new("L", PAGE, 0)
    mask.paste(big, (int(rng.uniform(0, PAGE[0] - big.width)), int(rng.uniform(0, max(1, PAGE[1] - big.height)))))
    return photograph(mask, rng)


def make_sets(per_digit: int, handwritten: int) -> dict[str, list[tuple[bytes, int]]]:
    from tests.conftest import MNIST_CACHE
    from training.data.mnist import load_mnist

    rng = np.random.default_rng(0)
    sets = {}
    for kind, fonts in (("printed_unseen_faces", held_out_faces()), ("printed_training_faces", training_faces())):
        sets[kind] = [(printed_digit(d, fonts[(d * per_digit + i) % len(fonts)], rng), d)
                      for d in range(10) for i in range(per_digit)]
    test = load_mnist(MNIST_CACHE).test
    picks = rng.choice(len(test.labels), handwritten, replace=False)
    sets["handwritten"] = [(handwritten_digit(test.images[i], rng), int(test.labels[i])) for i in picks]
    return sets


def score(classifier: Classifier, samples: list[tuple[bytes, int]]) -> dict:
    confusions: collections.Counter[str] = collections.Counter()
    correct = 0
    for data, label in samples:
        predicted = int(classifier.predict(classifier.preprocess(data)[None])[0].argmax())
        correct += predicted == label
        if predicted != label:
            confusions[f"{label}->{predicted}"] += 1
    return {"accuracy": round(correct / len(samples), 4), "images": len(samples),
            "top_confusions": dict(confusions.most_common(5))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-digit", type=int, default=12, help="printed images per digit")
    parser.add_argument("--handwritten", type=int, default=300, help="handwritten images")
    parser.add_argument("--models-dir", type=Path, default=ROOT / "models")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated model names")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "digit-photos-results.json")
    args = parser.parse_args()
    sets = make_sets(args.per_digit, args.handwritten)
    results: dict = {"unseen_faces": [p.stem for p in held_out_faces()],
                     "training_faces": [p.stem for p in training_faces()]}
    for name in args.models.split(","):
        version = max((p for p in (args.models_dir / name).iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
        classifier = Classifier.load(version, LoadOptions(RuntimeOptions("cpu", 2), 1, 40_000_000, isolation="thread"))
        results[name] = {kind: score(classifier, samples) for kind, samples in sets.items()}
        classifier.close()
        print(f"{name}: " + ", ".join(f"{kind} {r['accuracy']:.1%} of {r['images']} (worst: {r['top_confusions']})"
                                      for kind, r in results[name].items()), flush=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"full results: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
