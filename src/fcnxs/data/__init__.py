"""Datasets: where samples are (layouts), how labels are stored (labels), what the classes
are (classes), how samples are augmented (transforms) and batched (dataset), plus a
built-in synthetic set (synth) and a checker (check); reading images and writing label
maps (images)."""
