"""The FCN: its layers as data, the geometry derived from them, its configuration,
the network, its initialisation and preprocessing, the native model file, and loading
from any format (docs/design.md §2, §3)."""
