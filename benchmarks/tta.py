"""What test-time augmentation does to held-out mean IoU and time, on the demo's model.

    .venv/bin/fcnxs demo --out demo-out          # once: trains the model, keeps its data
    .venv/bin/python benchmarks/tta.py [--model demo-out/runs/fcn8s/best.safetensors]
                                       [--data demo-out/data --split val]

Each row evaluates the same model on the same split (one confusion matrix over the split,
void ignored), averaging class probabilities over the views the row names. Its time includes
border reuse learning each view's size (the first two images of a size run dense), as an
`fcnxs evaluate` run does.
"""

from __future__ import annotations

import argparse
import time

import torch
from machine import describe_machine

from fcnxs.data.layouts import open_dataset
from fcnxs.evaluation.evaluate import evaluate_model
from fcnxs.evaluation.metrics import compute_scores
from fcnxs.inference.tta import TTA
from fcnxs.model.loading import load_model

SETTINGS = {
    "none": TTA(),
    "--tta flip": TTA(flip=True),
    "--scales 0.75 1 1.25": TTA(scales=(0.75, 1.0, 1.25)),
    "--tta flip --scales 0.75 1 1.25": TTA(flip=True, scales=(0.75, 1.0, 1.25)),
    "--tta flip --scales 0.5 0.75 1 1.25 1.5": TTA(flip=True, scales=(0.5, 0.75, 1, 1.25, 1.5)),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo-out/runs/fcn8s/best.safetensors")
    parser.add_argument("--data", default="demo-out/data")
    parser.add_argument("--split", default="val")
    args = parser.parse_args()
    model = load_model(args.model).to(memory_format=torch.channels_last)
    dataset = open_dataset(root=args.data, split=args.split)
    print(describe_machine())
    print(f"{args.model} on {dataset.name}: {len(dataset)} images\n")
    print("| TTA | views | mean IoU | pixel accuracy | s/image |")
    print("|---|---:|---:|---:|---:|")
    for name, tta in SETTINGS.items():
        start = time.perf_counter()
        result = evaluate_model(model, dataset, tta=tta)
        seconds = (time.perf_counter() - start) / len(dataset)
        metrics = compute_scores(result.hist)
        views = len(tta.scales) * (2 if tta.flip else 1)
        print(f"| {name} | {views} | {metrics.mean_iou:.3f} | "
              f"{metrics.pixel_accuracy:.3f} | {seconds:.3f} |")  # fmt: skip


if __name__ == "__main__":
    main()
