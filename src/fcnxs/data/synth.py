"""A built-in synthetic dataset in the VOC layout, for tests, the demo and smoke runs.

Each image holds a few shapes of distinct classes (each class a shape drawn in a colour
family, with texture and noise) over a textured, noisy background; as in VOC, a void band
(255) separates every object from what surrounds it. Seeded and fast: a few milliseconds
an image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from fcnxs.core.atomic import save_image
from fcnxs.core.palette import VOID_LABEL, voc_colormap
from fcnxs.data.classes import ClassList
from fcnxs.data.images import write_label_png
from fcnxs.data.voc_writer import write_index

SHAPES = ("disc", "box", "triangle", "bar", "ring")
SYNTH_CLASSES = ClassList(("background", *SHAPES), tuple(voc_colormap(len(SHAPES) + 1)))
BASE_COLORS = np.array(
    [(220, 60, 50), (60, 110, 230), (240, 200, 40), (60, 190, 90), (200, 80, 210)]
)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = rng.uniform(60, 190, 3)
    tilt = rng.normal(0, 0.3, (2, 3))
    period, angle = rng.uniform(6, 20), rng.uniform(0, np.pi)
    stripes = 18 * np.sin((x * np.cos(angle) + y * np.sin(angle)) * 2 * np.pi / period)
    image = base + y[..., None] * tilt[0] + x[..., None] * tilt[1] + stripes[..., None]
    return image + rng.normal(0, 14, (h, w, 3))


def _draw(draw: ImageDraw.ImageDraw, shape: str, box: tuple[float, ...], fill: int, rng) -> None:
    x0, y0, x1, y1 = box
    if shape == "disc":
        draw.ellipse(box, fill=fill)
    elif shape == "box":
        draw.rectangle(box, fill=fill)
    elif shape == "triangle":
        draw.polygon([(x0, y1), (x1, y1), ((x0 + x1) / 2, y0)], fill=fill)
    elif shape == "bar":
        if rng.random() < 0.5:
            draw.rectangle(
                (x0, (y0 + y1) / 2 - (y1 - y0) / 6, x1, (y0 + y1) / 2 + (y1 - y0) / 6), fill=fill
            )
        else:
            draw.rectangle(
                ((x0 + x1) / 2 - (x1 - x0) / 6, y0, (x0 + x1) / 2 + (x1 - x0) / 6, y1), fill=fill
            )
    else:  # ring
        t = (x1 - x0) / 5
        draw.ellipse(box, outline=fill, width=max(2, int(t)))


def _void_borders(label: np.ndarray, radius: int) -> np.ndarray:
    """Pixels within ``radius`` of a pixel of another class become void, as VOC's borders."""
    out = label.copy()
    h, w = label.shape
    padded = np.pad(label, radius, mode="edge")
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            shifted = padded[radius + dy : radius + dy + h, radius + dx : radius + dx + w]
            out[shifted != label] = VOID_LABEL
    return out


def render(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic (image H×W×3 uint8, label H×W uint8) pair."""
    image = _background(rng, height, width)
    label = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(label)
    for _ in range(int(rng.integers(1, 4))):
        cls = int(rng.integers(1, len(SHAPES) + 1))
        side = rng.uniform(0.3, 0.6) * min(height, width)
        x0, y0 = rng.uniform(0, width - side), rng.uniform(0, height - side)
        _draw(draw, SHAPES[cls - 1], (x0, y0, x0 + side, y0 + side), cls, rng)
    label = np.asarray(label).copy()
    for cls in np.unique(label[label > 0]):
        mask = label == cls
        color = BASE_COLORS[cls - 1] + rng.normal(0, 20, 3)
        texture = rng.normal(0, 12, (int(mask.sum()), 3))
        image[mask] = color + texture
    image = np.clip(image, 0, 255).astype(np.uint8)
    return image, _void_borders(label, radius=max(1, min(height, width) // 60))


def write_synthetic_voc(
    root: str | Path,
    num_images: int,
    *,
    height: int = 120,
    width: int = 160,
    val_fraction: float = 0.25,
    seed: int = 0,
) -> Path:
    """Write a VOC-layout dataset: JPEGImages/, SegmentationClass/ (palette PNGs),
    ImageSets/Segmentation/{train,val,trainval}.txt and classes.txt."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    ids = [f"synth_{i:05d}" for i in range(num_images)]
    for sample_id in ids:
        image, label = render(rng, height, width)
        save_image(
            Image.fromarray(image), root / "JPEGImages" / f"{sample_id}.jpg", "JPEG", quality=92
        )
        write_label_png(
            label, SYNTH_CLASSES.colors, root / "SegmentationClass" / f"{sample_id}.png"
        )
    num_val = round(num_images * val_fraction)
    write_index(root, ids[num_val:], ids[:num_val], SYNTH_CLASSES)
    return root
