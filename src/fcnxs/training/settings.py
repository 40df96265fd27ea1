"""What a training run is asked to do, as data: `TrainSettings`, stored as the run's
run.json, so that ``--resume RUN_DIR`` needs nothing else; its checks; and which settings a
resumed run may change.

Defaults follow the fcn-xs tutorial: SGD, momentum 0.99, weight decay 5e-4, whole images
one at a time, a per-pixel mean loss at 1e-4 / 1e-5 / 1e-6 for FCN-32s / 16s / 8s.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fcnxs.core import ranges
from fcnxs.core.errors import FcnxsError, file_error
from fcnxs.data.transforms import Augmentation
from fcnxs.model.architecture import ARCHS
from fcnxs.training.checkpoints import RUN_SETTINGS, read_settings

DEFAULT_LR = dict(zip(ARCHS, (1e-4, 1e-5, 1e-6), strict=True))
"""The tutorial's learning rates with the per-pixel mean loss, coarse to fine."""
TRAINING_PRECISIONS = ("fp32", "tf32", "bf16")
LOSS_REDUCTIONS = {
    "mean": "per non-void pixel of the batch (every process's together): the rate does not "
    "depend on image sizes or void; the tutorial's 1e-4 / 1e-5 / 1e-6",
    "sum": "summed over every pixel, as MXNet's fcn-xs example with the original recipe: "
    "1e-10 / 1e-12 / 1e-14",
    "pixels": "each image's sum divided by its H·W, void pixels counted but giving no "
    "gradient, as MXNet 1.x's SoftmaxOutput(multi_output, normalization='null'): the "
    "tutorial's 'newest MXNet' 1e-4 / 1e-5 / 1e-6",
}
"""How the per-pixel losses become the loss, and the learning rates each goes with."""
RANGES = {
    "epochs": ranges.POSITIVE,
    "lr": ranges.POSITIVE_REAL,
    "momentum": ranges.FRACTION,
    "warmup": ranges.NON_NEGATIVE,
    "weight_decay": ranges.NON_NEGATIVE_REAL,
    "batch_size": ranges.POSITIVE,
    "cut_off_size": ranges.POSITIVE,
    "crop_size": ranges.POSITIVE,
    "dropout": ranges.FRACTION,
    "workers": ranges.NON_NEGATIVE,
    "save_every": ranges.POSITIVE,
    "log_every": ranges.POSITIVE,
}
"""Each numeric setting's range (None, where allowed, means "not asked for"); the command
line's options take the same ranges."""
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
    warmup: int = 0
    """Steps over which the learning rate rises linearly to `lr` (0: from the first step, as
    the tutorial). Adam's first step moves every parameter by ±lr whatever its gradient; on a
    network without normalisation that lifted the demo's logits from 0 to 45 in one step, and
    some runs then diverged (docs/design.md §9)."""
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
    class_weights: str | None = None
    """How classes are weighted in the loss: a weighting of `WEIGHTINGS` or a file."""
    class_weight_values: list[float] | None = None
    """The weights that gave, computed once over the training set when the run started."""

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.arch]

    def learning_rate_at(self, step: int) -> float:
        """The rate of the run's ``step``-th step (from 0): a function of the step alone, so
        a resumed run needs no scheduler state to continue exactly."""
        return self.learning_rate * (min(1.0, (step + 1) / self.warmup) if self.warmup else 1.0)

    def augmentation(self) -> Augmentation:
        scale = tuple(self.scale) if self.scale else None
        return Augmentation(self.cut_off_size, scale, self.flip, self.crop_size)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrainSettings:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in names})

    @classmethod
    def of_run(cls, run_dir: Path, given: dict[str, Any] | None = None) -> TrainSettings:
        """The settings a run folder's run.json records, read and checked once, with the
        values ``given`` for a resumed run: those of `ON_RESUME` replace the recorded ones,
        any other must equal its recorded value (so the command line that started a run,
        plus ``--resume``, continues it). A hand-edited or foreign file is one line naming
        it, not a traceback."""
        path = run_dir / RUN_SETTINGS
        raw = read_settings(run_dir)  # its errors name the file already
        try:
            recorded = cls.from_dict(raw)
        except TypeError as exc:
            raise file_error(path, f"holds settings fcnxs cannot use ({exc})") from None
        changes = {}
        for name, value in (given or {}).items():
            if name in ON_RESUME:
                changes[name] = value
            elif name == "class_weight_values" and value is None:
                continue  # derived: computed when the run started
            else:
                differs = _difference(name, value, getattr(recorded, name))
                if differs is not None:
                    option, theirs, ours = differs
                    may = ", ".join(f"`{n}`" for n in ON_RESUME)
                    raise FcnxsError(
                        f"`{option}`: {path} records {theirs!r}, not {ours!r}; a resumed run "
                        f"keeps its recipe and data (only {may} may change)"
                    )
        settings = dataclasses.replace(recorded, **changes)
        try:
            settings.validate()
        except (TypeError, KeyError, ValueError, AttributeError) as exc:
            raise file_error(path, f"holds settings fcnxs cannot use ({exc})") from None
        except FcnxsError as exc:
            raise (exc if changes else file_error(path, str(exc))) from None
        return settings

    def validate(self) -> None:
        """Every value in its range, before anything is read or written."""
        if self.arch not in ARCHS:
            raise FcnxsError(f"`arch` is one of {', '.join(ARCHS)}, not {self.arch!r}")
        low, high = self.scale or (1.0, 1.0)
        checks = [
            (isinstance(self.train_data, dict), "`train_data` names a dataset"),
            (
                self.loss_reduction in LOSS_REDUCTIONS,
                f"`loss_reduction` is one of {', '.join(LOSS_REDUCTIONS)}",
            ),
            (
                self.precision in TRAINING_PRECISIONS,
                f"`precision` is one of {', '.join(TRAINING_PRECISIONS)}",
            ),
            (self.optimizer in ("sgd", "adam"), "`optimizer` is sgd or adam"),
            (0 < low <= high, "`scale` takes LOW HIGH with 0 < LOW ≤ HIGH"),
        ]
        for ok, message in checks:
            if not ok:
                raise FcnxsError(message)
        for name, allowed in RANGES.items():
            value = getattr(self, name)
            problem = None if value is None else allowed.problem(value)
            if problem is not None:
                raise FcnxsError(f"`{name}` {problem}")


VAL_PARAMETERS = {"split": "val_split", "list_file": "val_list", "images": "val_images",
                  "masks": "val_masks"}  # fmt: skip
"""The parameters that set the validation set's own options."""


def _difference(name: str, given: Any, recorded: Any) -> tuple[str, Any, Any] | None:
    """(the parameter, the recorded value, the given one) where ``given`` differs from the
    recorded value: a dataset's options where given, values equal once JSON has made tuples
    lists; None where they agree."""
    if isinstance(given, dict) and isinstance(recorded, dict):
        for key, value in given.items():
            if value is not None and _plain(value) != _plain(recorded.get(key)):
                option = VAL_PARAMETERS.get(key, key) if name == "val_data" else key
                return option, recorded.get(key), value
        return None
    return None if _plain(given) == _plain(recorded) else (name, recorded, given)


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value))
