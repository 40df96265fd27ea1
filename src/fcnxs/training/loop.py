"""Training one stage of the staged recipe, resumable and multi-process.

Read top to bottom: `train` prepares the model, optimiser and data (fresh or from the
run's checkpoint), then runs epochs of `_train_epoch`; after every epoch it validates and
saves. Defaults follow the fcn-xs tutorial: SGD, momentum 0.99, weight decay 5e-4, whole
images one at a time, a per-pixel mean loss at 1e-4 / 1e-5 / 1e-6 for FCN-32s / 16s / 8s,
void pixels ignored, and the final upsampler (``bigscore``) never updated.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from fcnxs.core.distributed import Context, sum_over_processes
from fcnxs.core.errors import FcnxsError, OutputError, TrainingFailed
from fcnxs.core.palette import VOID_LABEL
from fcnxs.core.precision import emulation_warning
from fcnxs.data.dataset import SegmentationData, batches, make_loader, start_epoch
from fcnxs.data.layouts import Dataset, open_dataset
from fcnxs.data.transforms import Augmentation
from fcnxs.evaluation.evaluate import check_classes, evaluate_model
from fcnxs.evaluation.report import report_dict
from fcnxs.model.architecture import FINAL_UPSAMPLER
from fcnxs.model.config import ModelConfig
from fcnxs.model.fcn import FCN
from fcnxs.model.initialisation import build_model
from fcnxs.model.sources import start_model
from fcnxs.training import checkpoints

DEFAULT_LR = {"fcn32s": 1e-4, "fcn16s": 1e-5, "fcn8s": 1e-6}
TRAINING_PRECISIONS = ("fp32", "bf16")
ON_RESUME = ("epochs", "workers", "log_every", "save_every")
"""The settings a resumed run may change: how long it runs and how, not what it learns."""


@dataclass
class TrainSettings:
    """Everything a run needs; stored as run.json so that ``--resume`` needs nothing else."""

    arch: str
    train_data: dict[str, Any]
    """Keyword arguments of `open_dataset` (the DATASET-OPTIONS)."""
    val_data: dict[str, Any] | None = None
    init: str | None = None
    epochs: int = 1
    lr: float | None = None
    optimizer: str = "sgd"
    momentum: float = 0.99
    weight_decay: float = 5e-4
    loss_reduction: str = "mean"
    batch_size: int = 1
    cut_off_size: int | None = None
    scale: tuple[float, float] | None = None
    flip: bool = False
    crop_size: int | None = None
    dropout: float | None = None
    precision: str = "fp32"
    workers: int = 2
    seed: int = 0
    save_every: int | None = None
    log_every: int = 50
    skip_bad: bool = False

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.arch]

    def augmentation(self) -> Augmentation:
        scale = tuple(self.scale) if self.scale else None
        return Augmentation(self.cut_off_size, scale, self.flip, self.crop_size)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrainSettings:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in names})

    def validate(self) -> None:
        """Every value in its range, before anything is read or written."""
        low, high = self.scale or (1.0, 1.0)
        checks = [
            (self.epochs >= 1, "--epochs must be at least 1"),
            (self.batch_size >= 1, "--batch-size must be at least 1"),
            (self.learning_rate > 0, "--lr must be positive"),
            (self.loss_reduction in ("sum", "mean"), "--loss-reduction is sum or mean"),
            (self.precision in TRAINING_PRECISIONS, "--precision is fp32 or bf16"),
            (self.optimizer in ("sgd", "adam"), "--optimizer is sgd or adam"),
            (0 <= self.momentum < 1, "--momentum must be in [0, 1)"),
            (self.weight_decay >= 0, "--weight-decay must be at least 0"),
            (0 < low <= high, "--scale takes LOW HIGH with 0 < LOW ≤ HIGH"),
            (self.dropout is None or 0 <= self.dropout < 1, "--dropout must be in [0, 1)"),
            (self.workers >= 0, "--workers must be at least 0"),
            (self.log_every >= 1, "--log-every must be at least 1"),
        ]
        for name in ("cut_off_size", "crop_size", "save_every"):
            value = getattr(self, name)
            option = "--" + name.replace("_", "-")
            checks.append((value is None or value >= 1, f"{option} must be at least 1"))
        for ok, message in checks:
            if not ok:
                raise FcnxsError(message)


@dataclass
class Position:
    """Where a run stands: the next (epoch, batch) to train, and its history."""

    epoch: int = 0
    batch: int = 0
    global_step: int = 0
    best_miou: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    epoch_stats: dict[str, float] = field(default_factory=dict)


@dataclass
class TrainResult:
    run_dir: Path
    best_miou: float | None
    history: list[dict[str, Any]]


def _initial_model(settings: TrainSettings, dataset: Dataset, context: Context) -> FCN:
    classes = dataset.classes
    if settings.init is None:
        config = ModelConfig(
            settings.arch,
            len(classes),
            classes.names,
            classes.colors,
            provenance={"trained_on": dataset.name},
        )
        return build_model(config, seed=settings.seed)
    model, report = start_model(
        settings.arch, settings.init, num_classes=len(classes), seed=settings.seed
    )
    if context.is_main:
        print(report, flush=True)
    config = model.config.replace(class_names=classes.names, colors=classes.colors)
    model.config = config
    return model


def _optimizer(settings: TrainSettings, model: FCN) -> torch.optim.Optimizer:
    getattr(model, FINAL_UPSAMPLER).weight.requires_grad_(False)  # never updated (DESIGN §1)
    params = [p for p in model.parameters() if p.requires_grad]
    # The fused kernels update 134 M parameters 5-10x faster than the default on a CPU.
    common = {"lr": settings.learning_rate, "weight_decay": settings.weight_decay, "fused": True}
    if settings.optimizer == "adam":
        return torch.optim.Adam(params, **common)
    return torch.optim.SGD(params, momentum=settings.momentum, **common)


def _loss(logits: torch.Tensor, labels: torch.Tensor, settings: TrainSettings, context: Context):
    """Cross-entropy over non-void pixels, scaled so that averaging gradients over
    processes (DDP) gives exactly the one-process loss of the whole global batch."""
    total = F.cross_entropy(logits.float(), labels, ignore_index=VOID_LABEL, reduction="sum")
    if settings.loss_reduction == "sum":
        return total * context.world
    pixels = (labels != VOID_LABEL).sum()
    pixels = sum_over_processes(pixels.reshape(1), context)[0].to(total.device)
    return total * context.world / pixels.clamp(min=1)


def _save(
    run_dir: Path, model: FCN, optimizer, position: Position, settings: TrainSettings, best: bool
) -> None:
    state = {
        "optimizer": optimizer.state_dict(),
        "position": dataclasses.asdict(position),
        "rng": torch.get_rng_state(),
        "settings": settings.to_dict(),
    }
    _kept(checkpoints.save_checkpoint, run_dir)(
        run_dir, model, state, position.global_step, best=best
    )


def _kept(write, run_dir: Path):
    """``write`` with a failed write (a full disk) stopping the run as `TrainingFailed`."""

    def guarded(*args, **kwargs):
        try:
            return write(*args, **kwargs)
        except OutputError as exc:
            raise TrainingFailed(
                f"{exc}; the run stops, keeping its last complete checkpoint in {run_dir} "
                "(free some space, then --resume)"
            ) from None

    return guarded


def digest(model: FCN) -> str:
    """A short fingerprint of the weights, to compare replicas and runs."""
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _check_same_recipe(settings: TrainSettings, run_dir: Path) -> None:
    """A resumed run goes on as it started: only `ON_RESUME` settings may differ."""
    saved = TrainSettings.from_dict(checkpoints.read_settings(run_dir))
    for name in (f.name for f in dataclasses.fields(TrainSettings)):
        ours, theirs = getattr(settings, name), getattr(saved, name)
        if name in (*ON_RESUME, "init") or _same(ours, theirs):
            continue
        raise FcnxsError(
            f"{run_dir}: started with {name} {theirs!r}, not {ours!r}; a resumed run keeps "
            f"its recipe and data (only {', '.join(ON_RESUME)} may change)"
        )


def _same(a: Any, b: Any) -> bool:
    """Equal once JSON has made tuples lists."""
    return json.loads(json.dumps(a)) == json.loads(json.dumps(b))


def train(
    settings: TrainSettings,
    run_dir: Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    context: Context | None = None,
) -> TrainResult:
    """Train (or go on training) one stage into ``run_dir``.

    Everything is checked (settings, data, the starting model, what ``run_dir`` holds)
    before the first file is written. A new run refuses a ``run_dir`` that holds another
    run (unless ``overwrite``) or other files.
    """
    context = context or Context()
    settings.validate()
    train_set = open_dataset(**settings.train_data)
    val_set = open_dataset(**settings.val_data) if settings.val_data else None

    if resume:
        _check_same_recipe(settings, run_dir)
        model, saved = checkpoints.load_checkpoint(run_dir)
        position = Position(**saved["position"])
    else:
        checkpoints.check_new_run(run_dir, overwrite)
        model = _initial_model(settings, train_set, context)
        position = Position()
        torch.manual_seed(settings.seed)
    check_classes(model, train_set)
    if val_set is not None:
        check_classes(model, val_set)
    if context.is_main:
        if resume:
            checkpoints.remove_partial_files(run_dir)
        else:
            checkpoints.clear_run(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        checkpoints.write_settings(run_dir, settings.to_dict())
    warning = emulation_warning(settings.precision, context.device)
    if warning and context.is_main:
        print(warning, file=sys.stderr, flush=True)
    model.dropout = settings.dropout
    model.to(context.device)
    optimizer = _optimizer(settings, model)
    if resume:
        optimizer.load_state_dict(saved["optimizer"])
        torch.set_rng_state(saved["rng"])
    log = checkpoints.MetricsLog(run_dir, enabled=context.is_main)
    log.truncate_after(position.global_step)
    network = DistributedDataParallel(model) if context.world > 1 else model

    data = SegmentationData(
        train_set,
        model.config.preprocessing,
        settings.augmentation(),
        seed=settings.seed,
        skip_bad=settings.skip_bad,
    )
    loader = make_loader(
        data,
        batch_size=settings.batch_size,
        workers=settings.workers,
        rank=context.rank,
        world=context.world,
    )
    while position.epoch < settings.epochs:
        start_epoch(loader, position.epoch, skip_batches=position.batch)
        _train_epoch(network, model, loader, optimizer, position, settings, context, log, run_dir)
        record = {
            "kind": "epoch",
            "epoch": position.epoch,
            "global_step": position.global_step,
            **position.epoch_stats,
        }
        if val_set is not None:
            record |= _validate(model, val_set, settings, context)
        improved = (
            val_set is None
            or position.best_miou is None
            or record["val_mean_iou"] > position.best_miou
        )
        if improved and val_set is not None:
            position.best_miou = record["val_mean_iou"]
        position.history.append(record)
        position.epoch, position.batch, position.epoch_stats = position.epoch + 1, 0, {}
        if context.is_main:
            _save(run_dir, model, optimizer, position, settings, best=improved)
            _kept(log.write, run_dir)(record, position.global_step)
            print(_epoch_line(record), flush=True)
    if context.world > 1:
        print(f"fcnxs: rank {context.rank} final weights {digest(model)}", flush=True)
    return TrainResult(run_dir, position.best_miou, position.history)


def _train_epoch(
    network,
    model: FCN,
    loader,
    optimizer,
    position: Position,
    settings: TrainSettings,
    context: Context,
    log,
    run_dir: Path,
) -> None:
    model.train()
    stats = position.epoch_stats or {"loss_sum": 0.0, "correct": 0.0, "pixels": 0.0, "batches": 0.0}
    position.epoch_stats = stats
    use_bar = context.is_main and sys.stderr.isatty()
    bar = tqdm(
        total=len(loader),
        desc=f"epoch {position.epoch}",
        unit="batch",
        disable=not use_bar,
        initial=0,
        dynamic_ncols=True,
    )
    tick, tick_samples = time.perf_counter(), 0
    autocast = torch.autocast(
        context.device.type, dtype=torch.bfloat16, enabled=settings.precision == "bf16"
    )
    for images, labels, skipped in batches(loader):
        stats["skipped"] = stats.get("skipped", 0.0) + skipped
        if images is None:  # every sample of the batch was bad and skipped
            position.batch += 1
            continue
        images, labels = images.to(context.device), labels.to(context.device)
        with autocast:
            logits = network(images)
        loss = _loss(logits, labels, settings, context)
        if not torch.isfinite(loss):
            raise TrainingFailed(
                f"non-finite loss ({loss.item()}) at epoch {position.epoch} batch "
                f"{position.batch}; lower --lr? The last good checkpoint is kept in {run_dir}"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

        valid = labels != VOID_LABEL
        stats["correct"] += float((logits.argmax(1) == labels)[valid].sum())
        stats["pixels"] += float(valid.sum())
        stats["loss_sum"] += loss.item() / context.world
        stats["batches"] += 1
        stats["loss"] = stats["loss_sum"] / stats["batches"]
        stats["accuracy"] = stats["correct"] / max(stats["pixels"], 1.0)
        position.batch += 1
        position.global_step += 1
        tick_samples += len(images) * context.world
        bar.update(1)
        bar.set_postfix(loss=f"{stats['loss']:.4f}", acc=f"{stats['accuracy']:.4f}")
        if position.batch % settings.log_every == 0 and context.is_main:
            speed = tick_samples / (time.perf_counter() - tick)
            tick, tick_samples = time.perf_counter(), 0
            line = (
                f"Epoch[{position.epoch}] Batch [{position.batch}]\t"
                f"Speed: {speed:.2f} samples/sec\tTrain-accuracy={stats['accuracy']:.6f}"
            )
            tqdm.write(line, file=sys.stdout)
            _kept(log.write, run_dir)(
                {
                    "kind": "train",
                    "epoch": position.epoch,
                    "batch": position.batch,
                    "global_step": position.global_step,
                    "loss": stats["loss"],
                    "accuracy": stats["accuracy"],
                    "samples_per_sec": speed,
                },
                position.global_step,
            )
        due = settings.save_every and position.global_step % settings.save_every == 0
        if due and context.is_main:
            _save(run_dir, model, optimizer, position, settings, best=False)
    bar.close()


def _validate(model: FCN, dataset: Dataset, settings: TrainSettings, context: Context) -> dict:
    result = evaluate_model(model, dataset, context=context, workers=settings.workers)
    report = report_dict(result.hist, dataset.classes.names, result.num_images)
    model.train()
    return {
        f"val_{k}": report[k]
        for k in (
            "pixel_accuracy",
            "mean_accuracy",
            "mean_iou",
            "frequency_weighted_iou",
            "per_class_iou",
        )
    }


def _epoch_line(record: dict) -> str:
    parts = [
        f"Epoch[{record['epoch']}] Train-loss={record.get('loss', float('nan')):.6f}",
        f"Train-accuracy={record.get('accuracy', float('nan')):.6f}",
    ]
    if "val_mean_iou" in record:
        parts.append(f"Validation-mIoU={record['val_mean_iou']:.6f}")
        parts.append(f"Validation-pixel-accuracy={record['val_pixel_accuracy']:.6f}")
    return "\t".join(parts)
