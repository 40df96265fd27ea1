"""Samples per second of the training data path at VOC size (500×375), 0 and 2 workers.

    .venv/bin/python benchmarks/data_loading.py [--images 64]

Decoding, validation, augmentation and normalisation of a sample must stay far below a
training step (seconds on a CPU), so the loader is never the bottleneck.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from machine import describe_machine

from fcnxs.data.layouts import open_dataset
from fcnxs.data.loader import SegmentationData, make_loader, start_epoch
from fcnxs.data.synth import write_synthetic_voc
from fcnxs.data.transforms import Augmentation
from fcnxs.model.config import MXNET_PREPROCESSING

RECIPES = {
    "whole image (original)": Augmentation(),
    "cut_off_size 400": Augmentation(cut_off_size=400),
    "scale+flip+crop 320, batch 8": Augmentation(scale=(0.5, 2.0), flip=True, crop_size=320),
}


def measure(root: Path, augmentation: Augmentation, workers: int, batch_size: int) -> float:
    data = SegmentationData(open_dataset(root=root, split="trainval"), MXNET_PREPROCESSING,
                            augmentation, seed=0)  # fmt: skip
    loader = make_loader(data, batch_size=batch_size, workers=workers)
    start_epoch(loader, 0)
    start = time.perf_counter()
    count = sum(len(batch[0]) for batch in loader)
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = write_synthetic_voc(Path(tmp) / "voc", args.images, height=375, width=500)
        print(describe_machine())
        print(f"{args.images} synthetic 500×375 samples (JPEG + palette PNG)\n")
        print("| recipe | workers | samples/s |")
        print("|---|---:|---:|")
        for name, augmentation in RECIPES.items():
            batch = 8 if augmentation.crop_size else 1
            for workers in (0, 2):
                rate = measure(root, augmentation, workers, batch)
                print(f"| {name} | {workers} | {rate:.1f} |")


if __name__ == "__main__":
    main()
