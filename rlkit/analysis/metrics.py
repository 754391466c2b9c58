"""Classification reports from per-video (or per-image) scores: top-k accuracy, the confusion matrix, the best and
worst classes, the most confused pairs, and a heat-map image of the matrix (assignment 6's report).

Everything takes NumPy arrays: ``scores`` ``(N, K)`` (log-probabilities, logits, any score where higher means
more likely) and ``labels`` ``(N,)`` in ``0..K-1``. The confusion matrix has true classes in rows and
predicted ones in columns.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


def _check(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores, labels = np.asarray(scores), np.asarray(labels)
    if scores.ndim != 2 or labels.shape != (len(scores),):
        raise ValueError(f"expected scores (N, K) and labels (N,), got {scores.shape} and {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= scores.shape[1]):
        raise ValueError(f"labels run from {labels.min()} to {labels.max()}, outside 0..{scores.shape[1] - 1}")
    return scores, labels.astype(np.int64)


def ranked(scores: np.ndarray) -> np.ndarray:
    """Class indices by decreasing score ``(N, K)``; equal scores keep the lower class first."""
    return np.argsort(-np.asarray(scores), axis=1, kind="stable")


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, ks: Sequence[int] = (1, 5, 10)) -> dict[int, float]:
    """The fraction of rows whose label is among the ``k`` highest scores, for each k (a k of K or more is 1)."""
    scores, labels = _check(scores, labels)
    if not len(labels):
        raise ValueError("no scores to measure")
    rank = (ranked(scores) == labels[:, None]).argmax(axis=1)  # 0: the label scored highest
    return {k: float((rank < k).mean()) for k in ks}


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """``matrix[t, p]``: how many rows of true class ``t`` were predicted ``p``; int64 ``(K, K)``."""
    labels, predictions = np.asarray(labels, dtype=np.int64), np.asarray(predictions, dtype=np.int64)
    if labels.shape != predictions.shape:
        raise ValueError(f"labels {labels.shape} and predictions {predictions.shape} differ in shape")
    return np.bincount(labels * num_classes + predictions, minlength=num_classes**2).reshape(num_classes, num_classes)


def per_class_accuracy(matrix: np.ndarray) -> np.ndarray:
    """Recall of each class: its diagonal count over its row total; NaN for a class with no rows."""
    matrix = np.asarray(matrix, dtype=np.float64)
    totals = matrix.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(matrix) / totals, np.nan)


def best_and_worst(matrix: np.ndarray, class_names: Sequence[str], n: int = 10
                   ) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """The ``n`` classes with the highest per-class accuracy (best first) and the ``n`` with the lowest (worst
    first), as (name, accuracy). Ties go to the lower class index; classes without rows are left out."""
    accuracy = per_class_accuracy(matrix)
    present = [k for k in range(len(accuracy)) if not np.isnan(accuracy[k])]
    best = sorted(present, key=lambda k: (-accuracy[k], k))[:n]
    worst = sorted(present, key=lambda k: (accuracy[k], k))[:n]
    return ([(class_names[k], float(accuracy[k])) for k in best], [(class_names[k], float(accuracy[k])) for k in worst])


def most_confused(matrix: np.ndarray, class_names: Sequence[str], n: int = 10) -> list[tuple[str, str, float, int]]:
    """The ``n`` off-diagonal cells with the largest share of their true class's rows, as (true name, predicted
    name, share, count); pairs never confused are left out.

    Ranked by share rather than count because UCF-101's test classes differ in size (about 30 to 50 videos); ties
    go to the larger count, then the lower (true, predicted) indices.
    """
    matrix = np.asarray(matrix)
    totals = matrix.sum(axis=1)
    cells = [(t, p) for t, p in zip(*np.nonzero(matrix)) if t != p]
    cells.sort(key=lambda c: (-matrix[c] / totals[c[0]], -matrix[c], c[0], c[1]))
    return [(class_names[t], class_names[p], float(matrix[t, p] / totals[t]), int(matrix[t, p])) for t, p in cells[:n]]


@dataclass
class ClassificationReport:
    """What :func:`classification_report` computes."""

    accuracy: dict[int, float]
    """k -> top-k accuracy."""
    matrix: np.ndarray
    """Confusion counts, true classes in rows."""
    class_names: tuple[str, ...]
    best: list[tuple[str, float]] = field(default_factory=list)
    worst: list[tuple[str, float]] = field(default_factory=list)
    confused: list[tuple[str, str, float, int]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON (the matrix as nested lists)."""
        return {"accuracy": {f"top{k}": v for k, v in self.accuracy.items()}, "class_names": list(self.class_names),
                "per_class_accuracy": [None if np.isnan(a) else float(a) for a in per_class_accuracy(self.matrix)],
                "best": self.best, "worst": self.worst,
                "most_confused": [{"true": t, "predicted": p, "share": s, "count": c} for t, p, s, c in self.confused],
                "confusion_matrix": self.matrix.tolist()}

    def format(self) -> str:
        """A few lines for the terminal."""
        lines = ["accuracy: " + ", ".join(f"top-{k} {v:.2%}" for k, v in self.accuracy.items())]
        lines.append("best classes: " + ", ".join(f"{name} {acc:.0%}" for name, acc in self.best))
        lines.append("worst classes: " + ", ".join(f"{name} {acc:.0%}" for name, acc in self.worst))
        lines.append("most confused (true -> predicted): " + ", ".join(
            f"{t} -> {p} {share:.0%} ({count})" for t, p, share, count in self.confused))
        return "\n".join(lines)


def classification_report(scores: np.ndarray, labels: np.ndarray, class_names: Sequence[str],
                          ks: Sequence[int] = (1, 5, 10), n: int = 10) -> ClassificationReport:
    """Top-k accuracies, the confusion matrix of the top-1 predictions, the ``n`` best and worst classes and the
    ``n`` most confused pairs."""
    scores, labels = _check(scores, labels)
    if len(class_names) != scores.shape[1]:
        raise ValueError(f"{len(class_names)} class names for {scores.shape[1]} score columns")
    matrix = confusion_matrix(labels, ranked(scores)[:, 0], scores.shape[1])
    best, worst = best_and_worst(matrix, class_names, n)
    return ClassificationReport(topk_accuracy(scores, labels, ks), matrix, tuple(class_names), best, worst,
                                most_confused(matrix, class_names, n))


# ---------------------------------------------------------------------------------------------------- heat map
# A perceptually ordered ramp (white -> yellow -> orange -> red -> dark purple): light cells read as "rare".
_RAMP = np.array([[255, 255, 255], [255, 237, 160], [254, 178, 76], [240, 59, 32], [128, 0, 38], [40, 0, 40]],
                 dtype=np.float64)


def heat_colours(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> uint8 RGB ``(*values.shape, 3)`` along the ramp (NaN as light grey)."""
    values = np.asarray(values, dtype=np.float64)
    position = np.clip(np.nan_to_num(values, nan=0.0), 0, 1) * (len(_RAMP) - 1)
    low = np.minimum(position.astype(np.int64), len(_RAMP) - 2)
    fraction = (position - low)[..., None]
    colours = _RAMP[low] * (1 - fraction) + _RAMP[low + 1] * fraction
    colours[np.isnan(values)] = 220
    return np.rint(colours).astype(np.uint8)


def confusion_image(matrix: np.ndarray, class_names: Sequence[str] = (), cell: int = 0) -> Any:
    """The row-normalized confusion matrix as a Pillow image: one square cell per (true, predicted) pair, true
    classes down the left, predicted ones along the top (names written when given and the cells are tall enough)."""
    from PIL import Image, ImageDraw, ImageFont

    matrix = np.asarray(matrix, dtype=np.float64)
    classes = len(matrix)
    if matrix.shape != (classes, classes) or (class_names and len(class_names) != classes):
        raise ValueError(f"expected a square matrix and one name per row, got {matrix.shape} and "
                         f"{len(class_names)} names")
    cell = cell or int(np.clip(1000 // max(classes, 1), 4, 40))  # about 1000 pixels wide for UCF-101's 101 classes
    totals = matrix.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = np.where(totals > 0, matrix / totals, np.nan)
    grid = np.repeat(np.repeat(heat_colours(shares), cell, axis=0), cell, axis=1)
    font = ImageFont.load_default()
    draw_names = bool(class_names) and cell >= 9
    margin = 0
    if draw_names:
        margin = 6 + max(int(np.ceil(font.getlength(str(name)))) for name in class_names)
    image = Image.new("RGB", (margin + grid.shape[1], margin + grid.shape[0]), "white")
    image.paste(Image.fromarray(grid), (margin, margin))
    if draw_names:
        rows, columns = ImageDraw.Draw(image), Image.new("RGB", (margin, grid.shape[1]), "white")
        column_draw = ImageDraw.Draw(columns)
        for k, name in enumerate(map(str, class_names)):
            left, top, _, bottom = font.getbbox(name)
            y = k * cell + (cell - (bottom - top)) // 2 - top
            rows.text((margin - 3 - font.getlength(name), margin + y), name, fill="black", font=font)
            column_draw.text((3, y), name, fill="black", font=font)
        # Drawn left-aligned as rows, then turned a quarter counter-clockwise: each name reads upwards from just
        # above its column.
        image.paste(columns.rotate(90, expand=True), (margin, 0))
    return image


def save_confusion_png(path: str | Path, matrix: np.ndarray, class_names: Sequence[str] = (), cell: int = 0) -> Path:
    """Write :func:`confusion_image` as a PNG file, atomically (a temporary file renamed into place); returns the
    path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = confusion_image(matrix, class_names, cell)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".png")
    os.close(handle)
    try:
        image.save(temp, format="PNG")
        os.replace(temp, path)
    finally:
        Path(temp).unlink(missing_ok=True)
    return path
