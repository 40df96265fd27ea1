"""The demo's report: one self-contained HTML page with pictures beside it."""

from __future__ import annotations

import html
from pathlib import Path

from fcnxs.core.atomic import write_text

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { margin-bottom: 0.2em; } .muted { color: #666; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
td, th { border: 1px solid #ddd; padding: 4px 10px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.grid { display: grid; grid-template-columns: repeat(4, 1fr); gap: 6px; }
.grid img { width: 100%; image-rendering: pixelated; border: 1px solid #ccc; }
.grid div.h { font-weight: 600; text-align: center; }
.stages { display: flex; gap: 2em; flex-wrap: wrap; }
"""


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def stage_table(name: str, report: dict) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(cls)}</td><td>{_pct(iou)}</td></tr>"
        for cls, iou in report["per_class_iou"].items()
    )
    summary = (
        f"<tr><th>mean IoU</th><th>{_pct(report['mean_iou'])}</th></tr>"
        f"<tr><td>pixel accuracy</td><td>{_pct(report['pixel_accuracy'])}</td></tr>"
    )
    return (
        f"<div><h3>{html.escape(name)}</h3><table><tr><th>class</th><th>IoU %</th></tr>"
        f"{rows}{summary}</table></div>"
    )


def write_demo_report(
    path: Path,
    *,
    title: str,
    subtitle: str,
    stage_reports: dict[str, dict],
    samples: list[dict[str, str]],
    curves: str,
    recipe: str,
) -> None:
    """``samples``: rows of picture paths relative to ``path`` (input, truth, prediction,
    overlay); ``curves``: the loss/mIoU picture."""
    grid = "".join(
        f'<div class="h">{h}</div>' for h in ("input", "ground truth", "prediction", "overlay")
    )
    for row in samples:
        grid += "".join(
            f'<img src="{html.escape(row[k])}" alt="{k}">'
            for k in ("input", "truth", "prediction", "overlay")
        )
    tables = "".join(stage_table(name, report) for name, report in stage_reports.items())
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{STYLE}</style></head><body>
<h1>{html.escape(title)}</h1><p class="muted">{html.escape(subtitle)}</p>
<h2>Held-out images (FCN-8s)</h2><div class="grid">{grid}</div>
<h2>Per-class IoU on the held-out images, by stage</h2><div class="stages">{tables}</div>
<h2>Training</h2>
<img src="{html.escape(curves)}" alt="loss and mean IoU curves" style="max-width:100%">
<h2>Recipe</h2><pre>{html.escape(recipe)}</pre>
</body></html>
"""
    write_text(path, page)
