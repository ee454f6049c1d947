"""`python -m training predict`: classify a folder of images into a CSV (`id,label,score`) with an
exported model, through the service's own loading and handler (decode, preprocess, predict,
postprocess)."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

from app.inference.backends import BackendOptions
from app.inference.model_version import LoadOptions, ModelVersion
from app.inference.registry import read_pinned_version

log = logging.getLogger(__name__)
BATCH = 64


def resolve_version_dir(model: Path) -> Path:
    """models/<name>/<version> as given, or the service's default version of models/<name>:
    the one model.json pins, else the highest numbered one."""
    if (model / "manifest.json").is_file():
        return model
    pinned = read_pinned_version(model)
    versions = sorted(int(p.name) for p in model.iterdir() if p.is_dir() and p.name.isdigit()) if model.is_dir() else []
    if pinned is not None:
        return model / str(pinned)
    if not versions:
        raise FileNotFoundError(f"{model}: neither a model version (manifest.json) nor a model with versions")
    return model / str(versions[-1])


def predict_folder(model_dir: Path, images: Path, out: Path, id_style: str = "name") -> tuple[int, list[str]]:
    """Writes the CSV; returns (rows written, files skipped with the reason)."""
    # Subfolders too (a folder of class folders, say); the id is the path below `images`.
    files = sorted(p for p in images.rglob("*") if p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(images).parts))
    if not files:
        raise FileNotFoundError(f"{images}: no files to classify")
    model = ModelVersion.load(resolve_version_dir(model_dir), LoadOptions(BackendOptions("cpu", 2), 1, 40_000_000))
    rows, skipped = [], []
    try:
        for start in range(0, len(files), BATCH):
            chunk = files[start : start + BATCH]
            for path, outcome in zip(chunk, model.classify([path.read_bytes() for path in chunk])):
                if outcome.error is not None or outcome.probabilities is None:
                    # a bad file is reported, the rest are classified
                    skipped.append(f"{path}: {type(outcome.error).__name__}: {outcome.error}")
                    continue
                relative = path.relative_to(images)
                [best] = model.handler.top_k(outcome.probabilities, 1)
                rows.append((str(relative if id_style == "name" else relative.with_suffix("")), best.label,
                             f"{best.score:.6f}"))
    finally:
        model.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "label", "score"])
        writer.writerows(rows)
    for line in skipped:
        log.warning("skipped %s", line)
    return len(rows), skipped
