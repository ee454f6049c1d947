"""How the bundled digit models read phone photos of digits, one condition per column (a benchmark,
not a test), and what a 12-megapixel JPEG costs through /predict beside a 1-megapixel one.

    python bench/digit_photos.py [--per-column 150] [--seed 2026] [--out bench/digit-photos-results.json]

Photos are rendered by training/data/photos.py, but from digits, faces and seeds that training
never uses: handwritten MNIST *test* digits (two in three) and digits typeset in the faces
matplotlib ships beside the DejaVu ones training uses (STIX, Computer Modern), plus any
handwriting faces Debian has installed here (fonts-dkg-handwriting, fonts-breip,
fonts-femkeklaver, fonts-rufscript, fonts-humor-sans, fonts-comic-neue), which the results list.

Columns: a plain photo (blank paper, even light, black pen, digit 30-75% of the frame's height),
then one condition changed at a time (ruled paper, squared paper, light falling off, a shadow,
the paper's edge with the desk in frame, blue ballpoint, pencil, a small digit in a large
frame, a low-resolution thumbnail enlarged, too little light: a dim, grainy photo), then
everything drawn at random ("mixed"), then scenes training does not render: a note or a
scrap of paper lying inside the frame with the desk all round it ("note"), a flash's light,
bright where it points, darker towards the corners, with a glare ("flash"), a box drawn round
the digit, a line under it or a pen lying beside it ("marked"), a dot grid's paper ("dotted"),
a ruled page photographed turned 10-30 degrees ("askew"), the digit circled ("circled"), and a
whole page photographed from afar, the desk all round it and the digit 4-8% of the frame's height
("far"). Each photo goes through the model's own decoding and preprocessing (as the service does)
and its predictor. The MNIST test accuracy is the manifest's (measured at export on all 10,000).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.inference.backends import BackendOptions  # noqa: E402
from app.inference.model_version import LoadOptions, ModelVersion  # noqa: E402
from training.data.photos import Scene, frame_for, render_photo, typeset_ink  # noqa: E402
from training.data.printed import TRAINING_FACE_PREFIX, matplotlib_faces  # noqa: E402

MODELS = ("mnist-softmax", "mnist-mlp", "mnist-lenet")
PLAIN = Scene()
COLUMNS: dict[str, Scene | None] = {
    "plain": PLAIN,
    "ruled": replace(PLAIN, paper="ruled"),
    "squared": replace(PLAIN, paper="squared"),
    "falloff": replace(PLAIN, light="falloff"),
    "shadow": replace(PLAIN, light="shadow"),
    "paper_edge": replace(PLAIN, edge=True),
    "blue_ink": replace(PLAIN, ink="blue"),
    "pencil": replace(PLAIN, ink="pencil"),
    "small": replace(PLAIN, size="small"),
    "low_resolution": replace(PLAIN, low_resolution=True),
    "dim": replace(PLAIN, light="dim"),  # after the others: each column's photos are drawn by its place
    "mixed": None,  # every condition drawn at random, as in training
    "note": replace(PLAIN, sheet="note"),
    "flash": replace(PLAIN, light="flash"),
    "marked": replace(PLAIN, marked=True),
    "dotted": replace(PLAIN, paper="dotted"),
    "askew": replace(PLAIN, paper="ruled", askew=True),
    "circled": replace(PLAIN, circled=True),
    "far": replace(PLAIN, size="far"),
}
DEBIAN_HANDWRITING = ("/usr/share/fonts/truetype/fifthhorseman", "/usr/share/fonts/truetype/breip",
                      "/usr/share/fonts/truetype/femkeklaver", "/usr/share/fonts/truetype/rufscript",
                      "/usr/share/fonts/truetype/humor-sans", "/usr/share/fonts/opentype/comic-neue")
SEED = 2026  # training draws its photos from seed 0 (data.split_seed); --seed draws other photos


def held_out_faces() -> list[Path]:
    """Faces training never renders: matplotlib's non-DejaVu text faces, and Debian's
    handwriting faces where installed."""
    faces = [p for p in matplotlib_faces() if not p.name.startswith(TRAINING_FACE_PREFIX)]
    for folder in DEBIAN_HANDWRITING:
        faces += sorted(p for p in Path(folder).glob("*") if p.suffix.lower() in (".ttf", ".otf"))
    usable = []
    for face in faces:
        try:
            typeset_ink(8, face, 40, np.random.default_rng(0))
            usable.append(face)
        except (OSError, ValueError):
            continue
    return usable


def make_column(name: str, scene: Scene | None, count: int, digits: np.ndarray, labels: np.ndarray,
                faces: list[Path], seed: int = SEED) -> list[tuple[bytes, int]]:
    samples = []
    column = list(COLUMNS).index(name)
    for index in range(count):
        rng = np.random.default_rng([seed, column, index])
        chosen = scene if scene is not None else Scene.random(rng)
        framing = frame_for(chosen, rng)
        if index % 3 != 2:
            pick = int(rng.integers(len(labels)))
            samples.append((render_photo(None, chosen, rng, framing, handwritten=digits[pick]), int(labels[pick])))
        else:
            digit = int(rng.integers(10))
            ink = typeset_ink(digit, faces[index % len(faces)], framing.digit_height, rng)
            samples.append((render_photo(ink, chosen, rng, framing), digit))
    return samples


def score(model: ModelVersion, samples: list[tuple[bytes, int]]) -> dict:
    correct, failed = 0, 0
    for data, label in samples:
        [outcome] = model.classify([data])
        if outcome.probabilities is None:  # no digit found: counted as wrong
            failed += 1
            continue
        correct += int(outcome.probabilities.argmax()) == label
    return {"accuracy": round(correct / len(samples), 4), "images": len(samples), "no_digit_found": failed}


def photo_jpeg(width: int, height: int) -> bytes:
    """A phone-sized JPEG of a handwritten 7 on paper, as a camera writes it (quality 90)."""
    rng = np.random.default_rng(SEED)
    pixels = np.clip(225 + rng.normal(0, 4, (height, width)), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels).convert("RGB")
    stroke = max(4, width // 120)
    from PIL import ImageDraw

    draw = ImageDraw.Draw(image)
    cx, cy, size = width // 2, height // 2, height // 4
    draw.line([(cx - size // 2, cy - size), (cx + size // 2, cy - size), (cx - size // 6, cy + size)],
              fill=(30, 30, 40), width=stroke, joint="curve")
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def time_uploads(models_dir: Path, rounds: int) -> dict:
    """p50 of /predict for a 12 MP and a 1 MP JPEG, alternating, on a real server."""
    port = 8700 + os.getpid() % 200
    log = tempfile.NamedTemporaryFile(prefix="bench-photos-", suffix=".log", delete=False)
    env = {**os.environ, "APP_MODEL_DIR": str(models_dir), "APP_LOG_LEVEL": "warning"}
    server = subprocess.Popen([sys.executable, "-m", "app", "--port", str(port)], cwd=ROOT, env=env,
                              stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1/models/mnist-lenet/predict"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        uploads = {"12MP": photo_jpeg(4000, 3000), "1MP": photo_jpeg(1155, 866)}
        times: dict[str, list[float]] = {name: [] for name in uploads}
        answers: dict[str, str] = {}
        with httpx.Client(timeout=60) as client:
            for data in uploads.values():  # warm
                client.post(url, content=data, headers={"Content-Type": "image/jpeg"})
            for _ in range(rounds):
                for name, data in uploads.items():
                    started = time.perf_counter()
                    response = client.post(url, content=data, headers={"Content-Type": "image/jpeg"})
                    times[name].append((time.perf_counter() - started) * 1000)
                    answers[name] = response.json()["predictions"][0]["label"] if response.status_code == 200 \
                        else str(response.status_code)
    finally:
        server.terminate()
        server.wait(30)
    p50 = {name: round(statistics.median(values), 1) for name, values in times.items()}
    return {"p50_ms": p50, "ratio_12mp_to_1mp": round(p50["12MP"] / p50["1MP"], 2),
            "bytes": {name: len(data) for name, data in uploads.items()}, "answers": answers, "rounds": rounds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-column", type=int, default=150, help="photos per column")
    parser.add_argument("--models-dir", type=Path, default=ROOT / "models")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated model names")
    parser.add_argument("--seed", type=int, default=SEED, help="draws the photos (never 0: training's)")
    parser.add_argument("--upload-rounds", type=int, default=15,
                        help="12 MP / 1 MP uploads, alternating (0: not timed)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "digit-photos-results.json")
    args = parser.parse_args()

    from tests.conftest import MNIST_CACHE
    from training.data.mnist import load_mnist

    test = load_mnist(MNIST_CACHE).test
    faces = held_out_faces()
    columns = {name: make_column(name, scene, args.per_column, test.images, test.labels, faces, args.seed)
               for name, scene in COLUMNS.items()}
    results: dict = {"faces": [p.stem for p in faces], "per_column": args.per_column, "seed": args.seed, "models": {}}
    for name in args.models.split(","):
        version = max((p for p in (args.models_dir / name).iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
        model = ModelVersion.load(version, LoadOptions(BackendOptions("cpu", 2), 1, 40_000_000, isolation="thread"))
        scores = {column: score(model, samples) for column, samples in columns.items()}
        mnist = model.manifest.metrics.get("test_accuracy")
        results["models"][name] = {"mnist_test_accuracy": mnist, "columns": scores}
        model.close()
        print(f"{name}: MNIST {mnist:.2%}; " + ", ".join(f"{c} {r['accuracy']:.1%}" for c, r in scores.items()),
              flush=True)
    if args.upload_rounds > 0:
        results["uploads"] = time_uploads(args.models_dir, args.upload_rounds)
        print(f"/predict p50: 12 MP JPEG {results['uploads']['p50_ms']['12MP']} ms, 1 MP JPEG "
              f"{results['uploads']['p50_ms']['1MP']} ms (x{results['uploads']['ratio_12mp_to_1mp']})")
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"full results: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
