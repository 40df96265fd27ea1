"""Evaluation reports: the printed table, the JSON file and the confusion-matrix picture."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from fcnxs.core.atomic import save_figure, write_text
from fcnxs.evaluation.metrics import compute_scores


def _value(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


def report_dict(
    hist: np.ndarray, class_names: tuple[str, ...], num_images: int, **extra: Any
) -> dict:
    """Every figure of the table, as fractions in [0, 1] (null where undefined)."""
    s = compute_scores(hist)
    return {
        "pixel_accuracy": _value(s.pixel_accuracy),
        "mean_accuracy": _value(s.mean_accuracy),
        "mean_iou": _value(s.mean_iou),
        "frequency_weighted_iou": _value(s.frequency_weighted_iou),
        "per_class_iou": {n: _value(v) for n, v in zip(class_names, s.per_class_iou, strict=True)},
        "per_class_accuracy": {
            n: _value(v) for n, v in zip(class_names, s.per_class_accuracy, strict=True)
        },
        "class_pixels": dict(zip(class_names, hist.sum(1).tolist(), strict=True)),
        "confusion_matrix": hist.tolist(),
        "num_images": num_images,
        **extra,
    }


SUMMARY = {
    "pixel_accuracy": "pixel accuracy",
    "mean_accuracy": "mean accuracy",
    "mean_iou": "mean IoU",
    "frequency_weighted_iou": "f.w. IoU",
}


def format_table(report: dict) -> str:
    def pct(v: float | None) -> str:
        return "     -" if v is None else f"{100 * v:6.2f}"

    width = max(12, *(len(n) for n in report["per_class_iou"]))
    lines = [f"{'class':<{width}}  {'IoU %':>6}  {'acc %':>6}"]
    for name, iou in report["per_class_iou"].items():
        lines.append(f"{name:<{width}}  {pct(iou)}  {pct(report['per_class_accuracy'][name])}")
    lines.append("")
    lines.append(f"images                  {report['num_images']}")
    for key, label in SUMMARY.items():
        lines.append(f"{label:<22} {pct(report[key])} %")
    return "\n".join(lines)


def save_confusion_png(
    hist: np.ndarray, class_names: tuple[str, ...], path: Path, title: str = ""
) -> None:
    """Rows (truth) normalised to 1, class names on both axes."""
    from matplotlib.figure import Figure  # no pyplot: its backend is the caller's choice

    rows = hist.sum(1, keepdims=True)
    normalised = np.divide(hist, rows, out=np.zeros(hist.shape, float), where=rows > 0)
    n = len(class_names)
    size = max(4.0, 0.38 * n + 2)
    fig = Figure(figsize=(size + 1, size))
    ax = fig.subplots()
    image = ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), class_names, rotation=90)
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if normalised[i, j] >= 0.01:
                    color = "white" if normalised[i, j] > 0.5 else "black"
                    ax.text(
                        j,
                        i,
                        f"{normalised[i, j]:.2f}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color=color,
                    )
    ax.set_title(title or "confusion matrix (rows normalised)")
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def confusion_path(json_path: Path) -> Path:
    """Where the confusion-matrix picture of a JSON report goes: beside it."""
    return json_path.with_name(f"{json_path.stem}_confusion.png")


def write_report(report: dict, class_names: tuple[str, ...], json_path: Path) -> Path:
    """Write the JSON report and, beside it, ``<stem>_confusion.png``; returns the PNG's path."""
    write_text(json_path, json.dumps(report, indent=2) + "\n")
    png = confusion_path(json_path)
    save_confusion_png(np.array(report["confusion_matrix"]), class_names, png)
    return png
