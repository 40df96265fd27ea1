"""Shapes as pixel masks, exactly: a pixel belongs to a shape when its centre lies in the
shape, edges included, pixel (x, y) being centred on the point (x, y) (labelme's and
Pillow's coordinates). Each shape touches only the rows and columns of its bounding box.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

EPS = 1e-9
"""Slack for centres that lie exactly on an edge, computed in floating point."""


def _span(low: float, high: float, limit: int) -> range:
    return range(max(0, math.ceil(low - EPS)), min(limit, math.floor(high + EPS) + 1))


def polygon(points: list[tuple[float, float]], height: int, width: int) -> np.ndarray:
    """The pixels inside a polygon (even-odd rule) or on its outline, row by row."""
    mask = np.zeros((height, width), bool)
    xy = np.asarray(points, np.float64)
    rows = _span(xy[:, 1].min(), xy[:, 1].max(), height)
    if not rows:
        return mask
    y = np.arange(rows.start, rows.stop, dtype=np.float64)[:, None]
    (x0, y0), (x1, y1) = xy.T, np.roll(xy, -1, 0).T
    # an edge crosses row y when y0 <= y < y1 (or y1 <= y < y0): vertices count once
    crosses = (np.minimum(y0, y1) <= y) & (y < np.maximum(y0, y1))
    with np.errstate(divide="ignore", invalid="ignore"):
        x = np.where(crosses, x0 + (y - y0) * (x1 - x0) / (y1 - y0), np.nan)
    x = np.sort(x, axis=1)  # NaN last; crossings pair up left to right
    starts, ends = x[:, 0::2], x[:, 1::2]
    for r, row in enumerate(rows):
        for a, b in zip(starts[r], ends[r], strict=False):
            if not np.isnan(a):
                cols = _span(a, b, width)
                mask[row, cols.start : cols.stop] = True
    # the centres lying exactly on the outline, which the half-open rows leave out
    _paint_band(mask, [*points, points[0]], 0.0)
    return mask


def disc(cx: float, cy: float, radius: float, height: int, width: int) -> np.ndarray:
    mask = np.zeros((height, width), bool)
    rows, cols = _span(cy - radius, cy + radius, height), _span(cx - radius, cx + radius, width)
    yy, xx = np.ogrid[rows.start : rows.stop, cols.start : cols.stop]
    mask[rows.start : rows.stop, cols.start : cols.stop] = (xx - cx) ** 2 + (
        yy - cy
    ) ** 2 <= radius**2 + EPS
    return mask


def band(points: list[tuple[float, float]], width: float, height: int, w: int) -> np.ndarray:
    """The pixels within ``width``/2 of a polyline's segments, beside them (flat ends, as
    labelme's lines have)."""
    mask = np.zeros((height, w), bool)
    _paint_band(mask, points, width)
    return mask


def _paint_band(mask: np.ndarray, points: list[tuple[float, float]], width: float) -> None:
    """`band` painted into ``mask``, each segment within its own bounding box only."""
    height, w = mask.shape
    half = width / 2
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        rows = _span(min(y0, y1) - half, max(y0, y1) + half, height)
        cols = _span(min(x0, x1) - half, max(x0, x1) + half, w)
        yy, xx = np.ogrid[rows.start : rows.stop, cols.start : cols.stop]
        dx, dy = x1 - x0, y1 - y0
        length2 = dx * dx + dy * dy
        if length2 == 0:
            near = (xx - x0) ** 2 + (yy - y0) ** 2 <= half * half + EPS
        else:
            t = ((xx - x0) * dx + (yy - y0) * dy) / length2
            distance = np.abs((xx - x0) * dy - (yy - y0) * dx) / math.sqrt(length2)
            near = (t >= -EPS) & (t <= 1 + EPS) & (distance <= half + EPS)
        mask[rows.start : rows.stop, cols.start : cols.stop] |= near
