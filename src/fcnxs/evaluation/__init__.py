"""Scoring segmentations: the reference metrics over one confusion matrix
(docs/design.md §5), evaluation of a model or of saved label maps, and the reports."""
