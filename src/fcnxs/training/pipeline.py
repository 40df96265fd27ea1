"""The staged recipe end to end: FCN-32s from a VGG16, FCN-16s from the best FCN-32s,
FCN-8s from the best FCN-16s, each in its own run folder under one directory."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from fcnxs.core.distributed import Context
from fcnxs.data.layouts import open_dataset
from fcnxs.model.architecture import ARCHS
from fcnxs.training.checkpoints import BEST, CHECKPOINT, epochs_done
from fcnxs.training.loop import TrainResult, class_weights, train
from fcnxs.training.settings import DEFAULT_LR, TrainSettings

log = logging.getLogger(__name__)
STAGES = ARCHS
"""The staged recipe trains the architectures coarse to fine, each from the previous."""


def run_pipeline(
    base: TrainSettings,
    out: Path,
    *,
    vgg16: str | None,
    epochs: list[int],
    lrs: list[float | None],
    context: Context | None = None,
) -> dict[str, TrainResult]:
    """Train the three stages; a finished stage is skipped, an interrupted one resumed."""
    context = context or Context()
    train_set = open_dataset(**base.train_data)  # a wrong dataset fails now, not later
    if base.val_data:
        open_dataset(**base.val_data)
    if base.class_weights is not None and base.class_weight_values is None:
        # once for the three stages, which train on the same set
        values = class_weights(base.class_weights, train_set)
        base = dataclasses.replace(base, class_weight_values=values)
    results = {}
    init = vgg16
    for arch, stage_epochs, lr in zip(STAGES, epochs, lrs, strict=True):
        run_dir = out / arch
        settings = dataclasses.replace(base, arch=arch, init=init, epochs=stage_epochs, lr=lr)
        resume = (run_dir / CHECKPOINT).is_file()
        if resume:
            settings = TrainSettings.of_run(run_dir, settings.to_dict())
        if context.is_main:
            finished = resume and epochs_done(run_dir) >= stage_epochs
            state = "done, skipped" if finished else "resuming" if resume else "starting"
            rate = lr if lr is not None else DEFAULT_LR[arch]
            count = f"{stage_epochs} epoch{'s' if stage_epochs != 1 else ''}"
            log.info("== %s: %s, %s at lr %g", arch, state, count, rate)
        results[arch] = train(settings, run_dir, resume=resume, context=context)
        if context.is_main:
            log.info("== %s: %s", arch, results[arch].best_line)
        init = str(run_dir / BEST)
    return results
