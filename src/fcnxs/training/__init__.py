"""Training a stage (settings, the loop, checkpoints) and the staged pipeline
FCN-32s → 16s → 8s."""
