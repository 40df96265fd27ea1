"""The one way images go through a model: decoded ahead, segmented in batches, written behind.

Every command that runs a model on images goes through here with its `Segmenter` (the one
engine: precision, tiles, test-time augmentation, border reuse): ``segment`` writing label
files, ``evaluate`` and training's validation scoring against the truth, the demo drawing
its report, the service answering a request, `fcnxs.segment_paths` yielding label maps.
They differ only in what an input is (``read``) and where its labels go (a `Sink`).

Decoding runs ahead in threads and writing behind in others, so the model is kept busy; a
bad input is one `FcnxsError` collected with its item, and the others go on. A full disk
stops the run at once rather than segmenting images that cannot be written.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from fcnxs.core.errors import FcnxsError, OutputError
from fcnxs.core.progress import progress
from fcnxs.inference.segmenter import Segmenter, labels_of

PREFETCH = 2
"""Images decoded ahead of the one being segmented (at least; a batch's worth with batches)."""
GPU_BATCH = 8
"""Images of one size run together on a GPU by default (on a CPU one at a time, where
border reuse works per image)."""

ScoreBand = Callable[[int, int, torch.Tensor], None]
"""Takes the scores of rows y0..y1 as (C, y1 - y0, W), band after band."""


class Sink(Protocol):
    """Where an input's labels go. ``write`` runs in a writer thread; on any error it must
    leave nothing of the input's outputs (``discard`` is called too)."""

    def scores(
        self, item: Any, shape: tuple[int, int, int]
    ) -> AbstractContextManager[ScoreBand] | None:
        """A context giving a `ScoreBand` for the input's (C, H, W) scores, or None when the
        sink wants labels only (then images may run in batches)."""

    def write(self, item: Any, rgb: np.ndarray, labels: np.ndarray) -> None: ...

    def discard(self, item: Any) -> None: ...


@dataclass
class Summary:
    """What a run did: how many inputs were written, and each failure with its item."""

    total: int
    written: int = 0
    failures: list[tuple[Any, FcnxsError]] = field(default_factory=list)
    out_of_space: OutputError | None = None
    """The write error that stopped the run, when the outputs' disk was full."""


def default_batch_size(segmenter: Segmenter) -> int:
    return GPU_BATCH if segmenter.device.type != "cpu" else 1


def _threads(segmenter: Segmenter) -> int:
    """Threads for decoding or writing: a CPU's cores run the network, a GPU leaves them free."""
    return 1 if segmenter.device.type == "cpu" else min(os.cpu_count() or 2, 8)


def segment_stream(
    segmenter: Segmenter,
    items: Sequence[Any],
    *,
    read: Callable[[Any], Any] | None = None,
    batch_size: int | None = None,
    scores: Callable[[Any, tuple[int, int, int]], AbstractContextManager | None] | None = None,
    decoders: int | None = None,
    desc: str = "segment",
    show_progress: bool = True,
) -> Iterator[tuple[Any, np.ndarray | None, np.ndarray | FcnxsError]]:
    """(item, its RGB array, its labels) for every item, or (item, None, the error).

    ``read`` turns an item into anything `Segmenter.load` takes (default: the item itself,
    a path or an image). Images of one size run ``batch_size`` at a time (default: 8 on a
    GPU, 1 on a CPU); an item whose ``scores`` context is not None runs alone, its scores
    handed over band by band (a 6000×4000 image never holds all of them). ``decoders``
    threads decode (default: 2 on a CPU, whose cores run the network)."""
    read = read or (lambda item: item)
    batch_size = batch_size or default_batch_size(segmenter)
    ahead = max(PREFETCH, 2 * batch_size)
    batch: list[tuple[Any, np.ndarray | FcnxsError]] = []  # in input order, failures too

    def load(item: Any) -> np.ndarray:
        return segmenter.load(read(item))

    def flush() -> Iterator[tuple[Any, np.ndarray | None, np.ndarray | FcnxsError]]:
        """The images gathered (of one size), segmented at once, in order with failures."""
        gathered = list(batch)
        batch.clear()
        rgbs = [rgb for _, rgb in gathered if not isinstance(rgb, FcnxsError)]
        try:
            found = iter(segmenter.labels_batch(rgbs) if rgbs else [])
        except FcnxsError as exc:
            found = iter([exc] * len(rgbs))
        for item, rgb in gathered:
            if isinstance(rgb, FcnxsError):
                yield item, None, rgb
                continue
            labels = next(found)
            yield (item, None, labels) if isinstance(labels, FcnxsError) else (item, rgb, labels)

    def batched_shape() -> tuple | None:
        return next((rgb.shape for _, rgb in batch if not isinstance(rgb, FcnxsError)), None)

    threads = max(1, decoders) if decoders is not None else max(PREFETCH, _threads(segmenter))
    with ThreadPoolExecutor(threads) as decoder:
        loads = deque(decoder.submit(load, item) for item in items[:ahead])
        try:
            shown = progress(items, len(items), desc, unit="img", show=show_progress)
            for i, item in enumerate(shown):
                if i + ahead < len(items):
                    loads.append(decoder.submit(load, items[i + ahead]))
                try:
                    rgb = loads.popleft().result()
                except FcnxsError as exc:
                    batch.append((item, exc))
                    continue
                context = scores(item, (segmenter.classes, *rgb.shape[:2])) if scores else None
                if context is not None:
                    yield from flush()
                    try:
                        yield item, rgb, _streamed(segmenter, rgb, context)
                    except FcnxsError as exc:
                        yield item, None, exc
                    continue
                if batched_shape() not in (None, rgb.shape):
                    yield from flush()
                batch.append((item, rgb))
                if sum(not isinstance(r, FcnxsError) for _, r in batch) == batch_size:
                    yield from flush()
            yield from flush()
        finally:
            for pending in loads:
                pending.cancel()


def _streamed(segmenter: Segmenter, rgb: np.ndarray, context: AbstractContextManager) -> np.ndarray:
    """Labels of one image, its scores handed to ``context``'s band taker as they come."""
    labels = np.zeros(rgb.shape[:2], np.uint8)
    with context as take:
        for y0, y1, band in segmenter.score_bands(rgb):
            labels[y0:y1] = labels_of(band)
            take(y0, y1, band)
    return labels


def segment_files(
    segmenter: Segmenter,
    items: Sequence[Any],
    sink: Sink,
    *,
    read: Callable[[Any], Any] | None = None,
    batch_size: int | None = None,
    on_failure: Callable[[Any, FcnxsError], None] | None = None,
    decoders: int | None = None,
    desc: str = "segment",
    show_progress: bool = True,
) -> Summary:
    """Segment every item and hand its labels to ``sink`` (in writer threads), collecting
    failures (``on_failure`` hears of each as it happens). Stops early, with
    `Summary.out_of_space` set, when a write finds the disk full."""
    summary = Summary(len(items))
    pending: deque[tuple[Any, Future]] = deque()

    def failed(item: Any, exc: FcnxsError) -> None:
        summary.failures.append((item, exc))
        if on_failure is not None:
            on_failure(item, exc)
        if isinstance(exc, OutputError) and exc.out_of_space:
            summary.out_of_space = exc

    def collect(wait: bool) -> None:
        while pending and (wait or pending[0][1].done()):
            item, future = pending.popleft()
            try:
                future.result()
                summary.written += 1
            except FcnxsError as exc:
                failed(item, exc)

    with ThreadPoolExecutor(_threads(segmenter)) as writer:
        stream = segment_stream(
            segmenter,
            items,
            read=read,
            batch_size=batch_size,
            scores=sink.scores,
            decoders=decoders,
            desc=desc,
            show_progress=show_progress,
        )
        try:
            for item, rgb, outcome in stream:
                collect(wait=False)
                if summary.out_of_space is not None:
                    break
                if isinstance(outcome, FcnxsError):
                    sink.discard(item)
                    failed(item, outcome)
                    continue
                pending.append((item, writer.submit(_write, sink, item, rgb, outcome)))
        finally:
            stream.close()
            collect(wait=True)
    return summary


def _write(sink: Sink, item: Any, rgb: np.ndarray, labels: np.ndarray) -> None:
    try:
        sink.write(item, rgb, labels)
    except BaseException:
        sink.discard(item)
        raise


def segment_all(
    segmenter: Segmenter, items: Iterable[Any], *, read: Callable[[Any], Any] | None = None
) -> list[tuple[np.ndarray, np.ndarray] | FcnxsError]:
    """(RGB array, labels) or the error of every item, in order, with no progress shown:
    for a handful of images (a request, a few pictures)."""
    items = list(items)
    read = read or (lambda item: item)
    found: dict[int, tuple[np.ndarray, np.ndarray] | FcnxsError] = {}
    for index, rgb, outcome in segment_stream(
        segmenter, range(len(items)), read=lambda i: read(items[i]), show_progress=False
    ):
        found[index] = outcome if rgb is None else (rgb, outcome)
    return [found[i] for i in range(len(items))]
