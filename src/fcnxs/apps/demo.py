"""``fcnxs demo``: the whole system on built-in data, in minutes, with a report.

A synthetic VOC-layout dataset is written, FCN-32s → FCN-16s → FCN-8s are trained through
the pipeline's own code, each stage's best model is scored on held-out images, held-out
images are segmented, and everything lands in DIR/index.html.

The recipe is chosen for a 2-core CPU and a five-minute budget: the full VGG16 trunk from a
random start (no pretrained weights may be downloaded), small images, Adam instead of the
tutorial's SGD (which needs ImageNet weights and hours), no dropout, batches of four (a
step's optimiser update of 134 M parameters is shared by four samples), and bf16 where the
CPU computes it natively (0.64 s a sample against 1.8 s for fp32 batches of one).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from fcnxs.apps.html_report import write_demo_report
from fcnxs.core.atomic import exchange, save_figure, save_image, write_text
from fcnxs.core.distributed import Context, pick_device
from fcnxs.core.errors import file_error
from fcnxs.core.precision import check_precision, fast_precision
from fcnxs.data.dataset import Dataset, read_truth
from fcnxs.data.images import label_image
from fcnxs.data.layouts import open_dataset
from fcnxs.data.synth import write_synthetic_voc
from fcnxs.evaluation.evaluate import evaluate_model
from fcnxs.evaluation.report import report_dict
from fcnxs.inference.file_pipeline import segment_files
from fcnxs.inference.outputs import overlay_image, write_overlay
from fcnxs.inference.segmenter import Segmenter
from fcnxs.model.config import ModelConfig
from fcnxs.model.loading import load_model
from fcnxs.training.checkpoints import BEST, METRICS, RUN_SETTINGS
from fcnxs.training.pipeline import STAGES, run_pipeline
from fcnxs.training.settings import TrainSettings

log = logging.getLogger(__name__)


class _Pictures:
    """The pipeline's sink for the report's pictures of a held-out sample (its index): the
    input, the truth, the prediction and the overlay."""

    def __init__(self, out: Path, dataset: Dataset, config: ModelConfig) -> None:
        self.out, self.dataset, self.config = out, dataset, config

    def names(self, index: int) -> dict[str, str]:
        stem = f"images/{self.dataset.samples[index].id}"
        names = {k: f"{stem}_{k}.png" for k in ("input", "truth", "prediction")}
        return names | {"overlay": f"{stem}_overlay.jpg"}

    def scores(self, index: int, shape: tuple[int, int, int]) -> None:
        return None

    def write(self, index: int, rgb: np.ndarray, labels: np.ndarray) -> None:
        out, config, names = self.out, self.config, self.names(index)
        truth = read_truth(self.dataset, index, labels.shape)
        save_image(Image.fromarray(rgb), out / names["input"], "PNG")
        save_image(label_image(truth, self.dataset.classes.colors), out / names["truth"], "PNG")
        save_image(label_image(labels, config.colors), out / names["prediction"], "PNG")
        picture = overlay_image(rgb, labels, config.colors, config.class_names)
        write_overlay(picture, out / names["overlay"])

    def discard(self, index: int) -> None:
        for name in self.names(index).values():
            (self.out / name).unlink(missing_ok=True)


@dataclass(frozen=True)
class DemoRecipe:
    train_images: int = 40
    heldout_images: int = 12
    height: int = 64
    width: int = 64
    epochs: tuple[int, int, int] = (1, 1, 7)
    lr: float = 6e-4
    warmup: int = 10
    """Steps of each stage over which Adam's rate rises to `lr`: without it, runs diverged or
    lost ten points of IoU by the seed and the device's rounding (docs/design.md §9)."""
    batch_size: int = 4
    precision: str = dataclasses.field(default_factory=lambda: fast_precision(pick_device()))
    """Decided by the device that trains (the GPU when there is one), not the host CPU."""
    seed: int = 0
    show: int = 6

    def describe(self) -> str:
        return (
            f"{self.train_images} training and {self.heldout_images} held-out synthetic "
            f"{self.width}×{self.height} images; FCN-32s/16s/8s for "
            f"{'/'.join(map(str, self.epochs))} epochs; Adam lr {self.lr:g} after {self.warmup} "
            "warm-up steps, no weight decay, "
            f"no dropout, batch {self.batch_size}, {self.precision}; random VGG16 trunk "
            f"(seed {self.seed})"
        )


def _curves(runs: Path, path: Path) -> None:
    from matplotlib.figure import Figure  # no pyplot: its backend is the caller's choice

    fig = Figure(figsize=(10, 3.6))
    loss_ax, iou_ax = fig.subplots(1, 2)
    offset = 0
    for arch in STAGES:
        records = [json.loads(line) for line in (runs / arch / METRICS).read_text().splitlines()]
        steps = [r for r in records if r["kind"] == "train"]
        epochs = [r for r in records if r["kind"] == "epoch"]
        loss_ax.plot(
            [offset + r["global_step"] for r in steps], [r["loss"] for r in steps], label=arch
        )
        iou_ax.plot(
            [offset + r["global_step"] for r in epochs],
            [r.get("val_mean_iou") for r in epochs],
            marker="o",
            label=arch,
        )
        offset += steps[-1]["global_step"] if steps else 0
    loss_ax.set(title="training loss (running mean per epoch)", xlabel="step", ylabel="loss")
    iou_ax.set(title="held-out mean IoU", xlabel="step", ylabel="mean IoU", ylim=(0, 1))
    loss_ax.legend()
    iou_ax.legend()
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


DEMO_FILES = ("data", "runs", "images", "curves.png", "index.html", "summary.json")
"""Everything a demo writes in its folder: a folder holding anything else is not a demo's."""


def check_demo_folder(out: Path) -> None:
    """``out`` must be new, empty, or an earlier demo's (whose files are then replaced)."""
    if not out.exists():
        return
    if not out.is_dir():
        raise file_error(out, "is a file, not a folder")
    foreign = sorted(p.name for p in out.iterdir() if p.name not in DEMO_FILES)
    if foreign:
        raise file_error(
            out,
            f"holds {foreign[0]}, which is not a demo's; the demo writes into a new or empty "
            "folder, or replaces an earlier demo",
        )


def run_demo(out: Path, recipe: DemoRecipe = DemoRecipe()) -> dict:
    """Run the demo into ``out``; returns its summary. The new demo is built in a folder
    beside ``out`` and takes its place only when complete (an earlier demo there stays
    whole until then, whenever the run is interrupted). It keeps what the report shows and
    the final model, not each stage's resume state (1 GB a stage)."""
    check_demo_folder(out)
    check_precision(recipe.precision, pick_device())
    out.parent.mkdir(parents=True, exist_ok=True)
    for unfinished in out.parent.glob(f".{out.name}.new-*"):  # an interrupted run's
        shutil.rmtree(unfinished, ignore_errors=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.new-", dir=out.parent))
    try:
        summary = _build(work, recipe)
        _slim(work / "runs")
        os.chmod(work, 0o755)  # mkdtemp's 0700 would make the demo private
        exchange(work, out)  # the old demo, if any, is now in `work`
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return summary


def _slim(runs: Path) -> None:
    """Keep each stage's settings and metrics (the report's curves) and the final model."""
    for stage in runs.iterdir():
        for path in stage.iterdir():
            if path.name in (RUN_SETTINGS, METRICS) or (
                stage.name == STAGES[-1] and path.name == BEST
            ):
                continue
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def _build(out: Path, recipe: DemoRecipe) -> dict:
    """The whole demo, written into the new folder ``out``."""
    start = time.monotonic()
    total = recipe.train_images + recipe.heldout_images
    data = write_synthetic_voc(
        out / "data",
        total,
        height=recipe.height,
        width=recipe.width,
        val_fraction=recipe.heldout_images / total,
        seed=recipe.seed,
    )
    log.info("demo: recipe: %s", recipe.describe())
    base = TrainSettings(
        arch=STAGES[0],
        train_data={"root": str(data), "split": "train"},
        val_data={"root": str(data), "split": "val"},
        optimizer="adam",
        warmup=recipe.warmup,
        weight_decay=0.0,
        dropout=0.0,
        batch_size=recipe.batch_size,
        precision=recipe.precision,
        workers=0,
        seed=recipe.seed,
        log_every=5,
    )
    runs = out / "runs"
    context = Context(device=pick_device())  # the GPU when there is one, as the precision
    epochs, lrs = list(recipe.epochs), [recipe.lr] * 3
    run_pipeline(base, runs, vgg16=None, epochs=epochs, lrs=lrs, context=context)

    heldout = open_dataset(root=data, split="val")
    stage_reports = {}
    for arch in STAGES:
        model = load_model(runs / arch / BEST, device=context.device)
        result = evaluate_model(model, heldout, context=context)
        stage_reports[arch] = report_dict(result.hist, heldout.classes.names, result.num_images)
        log.info("demo: %s held-out mean IoU %.3f", arch, stage_reports[arch]["mean_iou"])

    images = out / "images"
    images.mkdir(parents=True)
    segmenter = Segmenter(load_model(runs / "fcn8s" / BEST, device=context.device), tile=None)
    shown = range(min(recipe.show, len(heldout)))
    pictures = _Pictures(out, heldout, segmenter.model.config)
    summary = segment_files(
        segmenter,
        shown,
        pictures,
        read=lambda index: heldout.samples[index].image,
        desc="demo: pictures",
    )
    if summary.failures:
        raise summary.failures[0][1]
    samples = [pictures.names(index) for index in shown]
    _curves(runs, out / "curves.png")
    elapsed = time.monotonic() - start
    final = stage_reports["fcn8s"]["mean_iou"]
    write_demo_report(
        out / "index.html",
        title="fcnxs demo: FCN-32s → FCN-16s → FCN-8s on synthetic shapes",
        subtitle=f"held-out FCN-8s mean IoU {final:.3f}; {elapsed:.0f} s on this machine",
        stage_reports=stage_reports,
        samples=samples,
        curves="curves.png",
        recipe=recipe.describe(),
    )
    summary = {
        "mean_iou": {a: r["mean_iou"] for a, r in stage_reports.items()},
        "seconds": elapsed,
        "recipe": dataclasses.asdict(recipe),
    }
    write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary
