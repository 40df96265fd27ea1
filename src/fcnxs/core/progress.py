"""Progress for long work: a bar on a terminal, log records (logger ``fcnxs.core.progress``,
which the command line sends to stderr) otherwise."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")
log = logging.getLogger(__name__)


def progress(
    items: Iterable[T],
    total: int | None,
    desc: str,
    unit: str = "it",
    log_every: float = 10.0,
    show: bool = True,
) -> Iterator[T]:
    """Iterate over ``items`` showing progress on stderr (nothing when not ``show``: the
    other processes under torchrun).

    On a terminal this is a tqdm bar with the rate; in logs (not a TTY) it is a line
    ``desc: done/total (rate unit/s)`` at most every ``log_every`` seconds and at the end.
    """
    if not show:
        yield from items
        return
    if sys.stderr.isatty():
        yield from tqdm(items, total=total, desc=desc, unit=unit, dynamic_ncols=True)
        return
    start = last = time.monotonic()
    for done, item in enumerate(items, start=1):
        yield item
        now = time.monotonic()
        if now - last >= log_every or done == total:
            rate = done / max(now - start, 1e-9)
            of = f"/{total}" if total is not None else ""
            log.info("%s: %d%s (%.2f %s/s)", desc, done, of, rate, unit)
            last = now
