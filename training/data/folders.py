"""Image files with labels: ImageFolder trees (`root/<class>/*`) and CSV-labelled folders
(`id,label` or `id,class_num` plus a directory of images), as the course's exercises lay them out.

Only listing happens here; decoding (and skipping what does not decode) is the dataset's job."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class FileSamples:
    paths: list[Path]
    labels: np.ndarray  # int64 indices into classes
    classes: list[str]
    skipped: list[str] = field(default_factory=list)  # "path: why", for files that cannot be used

    def subset(self, indices: np.ndarray) -> FileSamples:
        return FileSamples([self.paths[i] for i in indices], self.labels[indices], self.classes, self.skipped)


def list_class_dirs(root: Path) -> list[str]:
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise ValueError(f"{root}: an image folder needs at least two class subdirectories, found {classes}")
    return classes


def scan_image_folder(root: Path, classes: list[str] | None = None) -> FileSamples:
    """root/<class>/<file>; `classes` fixes the order (e.g. the train split's) for a val split."""
    classes = classes or list_class_dirs(root)
    paths, labels, skipped = [], [], []
    for index, name in enumerate(classes):
        directory = root / name
        if not directory.is_dir():
            continue
        for path in sorted(directory.rglob("*")):
            if path.is_file() and not path.name.startswith("."):
                paths.append(path)
                labels.append(index)
    unknown = [p.name for p in root.iterdir() if p.is_dir() and p.name not in classes and not p.name.startswith(".")]
    skipped += [f"{root / name}: class not in the training classes" for name in unknown]
    return FileSamples(paths, np.asarray(labels, dtype=np.int64), list(classes), skipped)


def scan_csv_folder(table: Path, images: Path, id_column: str = "id", label_column: str = "label",
                    class_names: list[str] | None = None) -> FileSamples:
    """A CSV of (file id, class) rows; ids may omit the extension. Labels are class names, or
    integers that index `class_names` (names default to the integers themselves)."""
    with table.open(newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or id_column not in rows[0] or label_column not in rows[0]:
        found = list(rows[0]) if rows else []
        raise ValueError(f"{table}: needs columns {id_column!r} and {label_column!r}, found {found}")
    by_stem = {p.stem: p for p in images.iterdir() if p.is_file()}
    raw_labels = [row[label_column].strip() for row in rows]
    numeric = all(label.lstrip("-").isdigit() for label in raw_labels)
    if numeric:
        top = max(int(label) for label in raw_labels)
        classes = list(class_names) if class_names else [str(i) for i in range(top + 1)]
        if top >= len(classes):
            raise ValueError(f"{table}: label {top} but only {len(classes)} class names")
    else:
        classes = list(class_names) if class_names else sorted(set(raw_labels))
    paths, labels, skipped = [], [], []
    for row, label in zip(rows, raw_labels):
        file_id = row[id_column].strip()
        path = images / file_id if (images / file_id).is_file() else by_stem.get(Path(file_id).stem)
        if path is None:
            skipped.append(f"{images / file_id}: listed in {table.name} but not found")
            continue
        if not numeric and label not in classes:
            skipped.append(f"{path}: label {label!r} is not one of the class names")
            continue
        paths.append(path)
        labels.append(int(label) if numeric else classes.index(label))
    return FileSamples(paths, np.asarray(labels, dtype=np.int64), classes, skipped)
