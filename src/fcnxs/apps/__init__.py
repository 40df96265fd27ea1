"""Whole programs built on the library: the demo and its HTML report, ONNX export, and
the HTTP service."""
