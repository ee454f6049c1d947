"""`python -m training eda`: images per class and split, printed and drawn as a histogram."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.config import TrainConfig
from training.data.dataset import Dataset, load_dataset


def describe_classes(data: Dataset) -> dict[str, dict[str, int]]:
    splits = {"train": data.train, "val": data.val, **({"test": data.test} if data.test is not None else {})}
    return {name: {c: int((split.labels == i).sum()) for i, c in enumerate(data.classes)} for name, split in splits.items()}


def run_eda(config: TrainConfig, out: Path) -> None:
    from training.report import plt  # matplotlib, already set to files only

    data = load_dataset(config.data)
    counts = describe_classes(data)
    width = max(8, *(len(c) for c in data.classes))
    print(f"{'class':<{width}}  " + "  ".join(f"{s:>7}" for s in counts))
    for name in data.classes:
        print(f"{name:<{width}}  " + "  ".join(f"{counts[s][name]:7d}" for s in counts))
    if data.skipped:
        print(f"skipped {len(data.skipped)} file(s):\n  " + "\n  ".join(data.skipped))
    figure, axis = plt.subplots(figsize=(max(5, 0.6 * len(data.classes) + 2), 4))
    positions = np.arange(len(data.classes))
    bar = 0.8 / len(counts)
    for offset, (split, values) in enumerate(counts.items()):
        axis.bar(positions + offset * bar, [values[c] for c in data.classes], bar, label=split)
    axis.set_xticks(positions + bar * (len(counts) - 1) / 2, data.classes, rotation=45, ha="right")
    axis.set_ylabel("images")
    axis.set_title(f"{data.name}: images per class")
    axis.legend()
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=100)
    plt.close(figure)
    print(f"histogram: {out}")
