"""The report of a run: curves, confusion matrix, per-class precision / recall / F1, top-1 / top-5,
and a grid of misclassified images, written as PNG, JSON and a readable table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from app.inference.postprocess import rank, softmax  # noqa: E402


def top_k_accuracy(logits: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Share of rows whose label is among their k highest logits."""
    return float((rank(logits, k) == labels[:, None]).any(axis=1).mean())


def classification_metrics(logits: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict[str, Any]:
    predicted = logits.argmax(axis=1)
    k = min(5, len(classes))
    confusion = np.zeros((len(classes), len(classes)), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    per_class = {}
    for index, name in enumerate(classes):
        tp = int(confusion[index, index])
        precision = tp / max(1, int(confusion[:, index].sum()))
        recall = tp / max(1, int(confusion[index].sum()))
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"precision": precision, "recall": recall, "f1": f1, "support": int(confusion[index].sum())}
    return {
        "accuracy": top_k_accuracy(logits, labels, 1),
        f"top{k}_accuracy": top_k_accuracy(logits, labels, k),
        "macro_precision": float(np.mean([c["precision"] for c in per_class.values()])),
        "macro_recall": float(np.mean([c["recall"] for c in per_class.values()])),
        "macro_f1": float(np.mean([c["f1"] for c in per_class.values()])),
        "images": int(len(labels)),
        "per_class": per_class,
        "confusion": confusion.tolist(),
    }


def format_table(metrics: dict[str, Any], split: str) -> str:
    width = max(10, *(len(name) for name in metrics["per_class"]))
    lines = [f"{split}: {metrics['images']} images, accuracy {metrics['accuracy']:.4f}, "
             + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k.startswith("top")),
             "", f"{'class':<{width}}  precision  recall      f1  support"]
    for name, row in metrics["per_class"].items():
        lines.append(f"{name:<{width}}  {row['precision']:9.4f}  {row['recall']:6.4f}  {row['f1']:6.4f}  {row['support']:7d}")
    lines.append(f"{'macro avg':<{width}}  {metrics['macro_precision']:9.4f}  {metrics['macro_recall']:6.4f}  "
                 f"{metrics['macro_f1']:6.4f}  {metrics['images']:7d}")
    return "\n".join(lines) + "\n"


def plot_curves(history: list[dict[str, float | None]], path: Path) -> None:
    epochs = [h["epoch"] for h in history]
    figure, (loss, accuracy) = plt.subplots(1, 2, figsize=(10, 4))
    for axis, key, title in ((loss, "loss", "loss"), (accuracy, "accuracy", "accuracy")):
        axis.plot(epochs, [h[f"train_{key}"] for h in history], marker="o", label="train")
        if any(h[f"val_{key}"] is not None for h in history):  # a run on all of its data has no validation
            axis.plot(epochs, [h[f"val_{key}"] for h in history], marker="o", label="validation")
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))  # a one-epoch run has no half epochs
        axis.set_title(title)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_confusion(confusion: np.ndarray, classes: list[str], path: Path) -> None:
    size = max(4.0, 0.5 * len(classes) + 2)
    figure, axis = plt.subplots(figsize=(size, size))
    axis.imshow(confusion, cmap="Blues")
    axis.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    axis.set_yticks(range(len(classes)), classes)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    high = confusion.max() if confusion.size else 0
    for (row, col), count in np.ndenumerate(confusion):
        axis.text(col, row, str(count), ha="center", va="center", color="white" if count > high / 2 else "black")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_misclassified(inputs: np.ndarray, labels: np.ndarray, logits: np.ndarray, classes: list[str], path: Path,
                       limit: int = 25) -> int:
    """The most confidently wrong images, titled true -> predicted (score). Returns how many."""
    probs = softmax(logits)
    predicted = probs.argmax(1)
    wrong = np.flatnonzero(predicted != labels)
    wrong = wrong[np.argsort(-probs[wrong, predicted[wrong]])][:limit]
    columns = 5
    rows = max(1, -(-len(wrong) // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(2.2 * columns, 2.4 * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, index in zip(axes.flat, wrong):
        image = inputs[index].transpose(1, 2, 0)
        image = (image - image.min()) / max(1e-6, float(image.max() - image.min()))
        axis.imshow(image[:, :, 0] if image.shape[2] == 1 else image, cmap="gray" if image.shape[2] == 1 else None)
        axis.set_title(f"{classes[labels[index]]} -> {classes[predicted[index]]}\n{probs[index, predicted[index]]:.2f}",
                       fontsize=8)
    if not len(wrong):
        axes.flat[0].text(0.5, 0.5, "no misclassified images", ha="center")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return int(len(wrong))


def write_report(run_dir: Path, split: str, history: list[dict[str, float | None]], inputs: np.ndarray, labels: np.ndarray,
                 logits: np.ndarray, classes: list[str], metrics: dict[str, Any]) -> None:
    """Curves, confusion matrix, misclassified images and the metrics (classification_metrics of
    these logits), as PNG, JSON and a table."""
    plot_curves(history, run_dir / "curves.png")
    plot_confusion(np.asarray(metrics["confusion"]), classes, run_dir / "confusion.png")
    plot_misclassified(inputs, labels, logits, classes, run_dir / "misclassified.png")
    (run_dir / "report.json").write_text(json.dumps({"split": split, **metrics}, indent=2), encoding="utf-8")
    (run_dir / "report.txt").write_text(format_table(metrics, split), encoding="utf-8")
