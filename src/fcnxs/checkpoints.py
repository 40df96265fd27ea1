"""What a training run keeps in its folder, each file written atomically:

- ``weights-<step>.safetensors``: the model at a save (native model file);
- ``checkpoint.pt``: optimiser, position (epoch, step), best score, RNG states and the name
  of its weights file, read with ``weights_only``. Written last, it is the commit point: a
  resumed run always sees a weights file and an optimiser state of the same step;
- ``model.safetensors``: the latest model; ``best.safetensors``: the best by validation
  mean IoU (the latest when there is no validation data); both are hard links to weights
  files, so a save writes the 540 MB of weights once;
- ``run.json``: the run's settings, so ``--resume RUN_DIR`` needs nothing else;
- ``metrics.jsonl``: one JSON object per log interval and per epoch (and TensorBoard events
  in ``tensorboard/`` when the tensorboard package is installed).
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import zipfile
from pathlib import Path
from typing import Any

import torch

from fcnxs.atomic import atomic_path
from fcnxs.errors import file_error
from fcnxs.model import FCN
from fcnxs.modelfile import load_model, save_model

CHECKPOINT = "checkpoint.pt"
RUN_SETTINGS = "run.json"
LATEST = "model.safetensors"
BEST = "best.safetensors"
METRICS = "metrics.jsonl"


def save_checkpoint(
    run_dir: Path, model: FCN, state: dict[str, Any], step: int, *, best: bool = False
) -> None:
    """Save a complete, consistent set; a kill at any point leaves the previous one usable.

    Order: the weights file, the published names, then ``checkpoint.pt`` (the commit
    point), then the weights files nothing refers to any more. A resumed run redoes what
    came after its checkpoint, deterministically, so names published before a kill are
    published again with the same content.
    """
    weights = f"weights-{step:08d}.safetensors"
    save_model(model, run_dir / weights)
    publish(run_dir, weights, LATEST)
    if best:
        publish(run_dir, weights, BEST)
    with atomic_path(run_dir / CHECKPOINT) as tmp:
        torch.save({**state, "weights": weights}, tmp)
    keep = {weights, _linked_weights(run_dir / BEST)}
    for old in run_dir.glob("weights-*.safetensors"):
        if old.name not in keep:
            old.unlink(missing_ok=True)


def _linked_weights(name: Path) -> str | None:
    """The weights file that a published name shares its data with, if any."""
    if name.exists():
        for candidate in name.parent.glob("weights-*.safetensors"):
            if candidate.samefile(name):
                return candidate.name
    return None


def publish(run_dir: Path, weights: str, name: str) -> None:
    """Make ``name`` refer to the weights file ``weights``, atomically, by a hard link (a
    copy where the file system has none)."""
    with atomic_path(run_dir / name) as tmp:
        tmp.unlink()
        try:
            os.link(run_dir / weights, tmp)
        except OSError:
            shutil.copyfile(run_dir / weights, tmp)


def load_checkpoint(run_dir: Path) -> tuple[FCN, dict[str, Any]]:
    """The model and the training state of the last complete save."""
    path = run_dir / CHECKPOINT
    if not path.is_file():
        raise file_error(path, "no checkpoint to resume from (did the first save happen?)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, zipfile.BadZipFile, EOFError) as exc:
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise file_error(path, f"unreadable checkpoint ({reason})") from None
    return load_model(run_dir / state["weights"]), state


def remove_partial_files(run_dir: Path) -> None:
    """Temporary files left by a write that was killed (the finished files are intact)."""
    for tmp in run_dir.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)


def write_settings(run_dir: Path, settings: dict[str, Any]) -> None:
    with atomic_path(run_dir / RUN_SETTINGS) as tmp:
        tmp.write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")


def read_settings(run_dir: Path) -> dict[str, Any]:
    path = run_dir / RUN_SETTINGS
    if not path.is_file():
        raise file_error(path, "no run settings: is this a training run folder?")
    return json.loads(path.read_text())


class MetricsLog:
    """Appends JSON lines (flushed at once) and mirrors scalars to TensorBoard if present."""

    def __init__(self, run_dir: Path, enabled: bool = True) -> None:
        self.enabled = enabled
        self.path = run_dir / METRICS
        self.tensorboard = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tensorboard = SummaryWriter(str(run_dir / "tensorboard"))
            except ImportError:
                pass

    def write(self, record: dict[str, Any], step: int) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tensorboard is not None:
            for key, value in record.items():
                if isinstance(value, float):
                    self.tensorboard.add_scalar(f"{record.get('kind', 'train')}/{key}", value, step)
            self.tensorboard.flush()

    def truncate_after(self, step: int) -> None:
        """Drop records of steps past ``step``: a resumed run writes them again."""
        if not self.enabled or not self.path.exists():
            return
        kept = [
            ln
            for ln in self.path.read_text().splitlines()
            if ln.strip() and json.loads(ln).get("global_step", 0) <= step
        ]
        with atomic_path(self.path) as tmp:
            tmp.write_text("".join(f"{ln}\n" for ln in kept))
