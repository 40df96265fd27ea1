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
import shutil
from pathlib import Path
from typing import Any

import torch

from fcnxs.core.atomic import atomic_file, atomic_path, write_text
from fcnxs.core.errors import OutputError, file_error, read_text
from fcnxs.formats.torch_file import load_weights_only
from fcnxs.model.fcn import FCN
from fcnxs.model.modelfile import read_model, save_model

CHECKPOINT = "checkpoint.pt"
RUN_SETTINGS = "run.json"
LATEST = "model.safetensors"
BEST = "best.safetensors"
METRICS = "metrics.jsonl"
TENSORBOARD = "tensorboard"


def save_checkpoint(
    run_dir: Path, model: FCN, state: dict[str, Any], step: int, *, best: bool = False
) -> None:
    """Save a complete, consistent set; a kill or a full disk at any point leaves the
    previous one usable, and a failed save leaves nothing of itself behind.

    Order: the weights file, then ``checkpoint.pt`` under a temporary name, then the
    published names (links, which take no space), then the rename of ``checkpoint.pt`` (the
    commit point), then the weights files nothing refers to any more. A resumed run redoes
    what came after its checkpoint, deterministically, so names published before a kill
    are published again with the same content.
    """
    weights = f"weights-{step:08d}.safetensors"
    save_model(model, run_dir / weights)
    try:
        with atomic_file(run_dir / CHECKPOINT) as f:
            torch.save({**state, "weights": weights}, f)
            publish(run_dir, weights, LATEST)
            if best:
                publish(run_dir, weights, BEST)
    except BaseException:
        if (
            _linked_weights(run_dir / LATEST) != weights
            and _linked_weights(run_dir / BEST) != weights
        ):
            (run_dir / weights).unlink(missing_ok=True)
        raise
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
    state = load_weights_only(path, "a training checkpoint")
    return read_model(run_dir / state["weights"]), state


def _is_run_file(name: str) -> bool:
    return (
        name in (CHECKPOINT, RUN_SETTINGS, LATEST, BEST, METRICS, TENSORBOARD)
        or (name.startswith("weights-") and name.endswith(".safetensors"))
        or (name.startswith(".") and name.endswith(".tmp"))
    )


def check_new_run(run_dir: Path, overwrite: bool = False) -> None:
    """Refuse to start a run in ``run_dir`` where that would lose something: a folder
    holding other files, or a run with a checkpoint (unless ``overwrite``). A run that
    never reached its first save may be started again."""
    if not run_dir.exists():
        return
    if not run_dir.is_dir():
        raise file_error(run_dir, "is a file, not a run folder")
    names = sorted(p.name for p in run_dir.iterdir())
    foreign = [n for n in names if not _is_run_file(n)]
    if foreign:
        raise file_error(
            run_dir, f"is not empty (it holds {foreign[0]}); train into a new or empty folder"
        )
    if CHECKPOINT in names and not overwrite:
        raise file_error(
            run_dir,
            f"holds a training run; continue it with `resume` {run_dir}, or start it again "
            "with `overwrite`",
        )


def clear_run(run_dir: Path) -> None:
    """Remove the files of an earlier run (after `check_new_run` allowed it)."""
    if not run_dir.is_dir():
        return
    for path in run_dir.iterdir():
        if path.name == TENSORBOARD and path.is_dir():
            shutil.rmtree(path)
        elif _is_run_file(path.name):
            path.unlink()


def remove_partial_files(run_dir: Path) -> None:
    """Temporary files left by a write that was killed (the finished files are intact)."""
    for tmp in run_dir.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)


def write_settings(run_dir: Path, settings: dict[str, Any]) -> None:
    write_text(run_dir / RUN_SETTINGS, json.dumps(settings, indent=2, sort_keys=True) + "\n")


def read_settings(run_dir: Path) -> dict[str, Any]:
    path = run_dir / RUN_SETTINGS
    if not path.is_file():
        raise file_error(path, "no run settings: is this a training run folder?")
    try:
        settings = json.loads(read_text(path, "run settings file"))
    except json.JSONDecodeError as exc:
        raise file_error(path, f"not a run settings file ({exc})") from None
    if not isinstance(settings, dict):
        raise file_error(path, "not a run settings file (not a JSON object)")
    return settings


def epochs_done(run_dir: Path) -> int:
    """How many epochs a run has finished, by its metrics (no checkpoint read)."""
    path = run_dir / METRICS
    if not path.exists():
        return 0
    lines = path.read_text().splitlines()
    return sum(1 for ln in lines if ln.strip() and json.loads(ln).get("kind") == "epoch")


class MetricsLog:
    """Appends JSON lines (flushed at once) and mirrors scalars to TensorBoard if present."""

    def __init__(self, run_dir: Path, enabled: bool = True) -> None:
        self.enabled = enabled
        self.path = run_dir / METRICS
        self.tensorboard = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tensorboard = SummaryWriter(str(run_dir / TENSORBOARD))
            except ImportError:
                pass

    def write(self, record: dict[str, Any], step: int) -> None:
        if not self.enabled:
            return
        try:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as exc:
            raise OutputError.of(self.path, exc) from None
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
        write_text(self.path, "".join(f"{ln}\n" for ln in kept))
