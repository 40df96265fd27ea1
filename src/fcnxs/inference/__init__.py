"""Segmenting images: `Segmenter` (any size, in tiles when needed), border reuse, Winograd
and packed weights for speed (docs/design.md §6), and what `fcnxs segment` reads and writes."""
