"""pytest-benchmark suite and the ratio script (``python -m benchmarks.ratios``)."""
