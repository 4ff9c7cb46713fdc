"""Benchmarks of the export pipeline against peers and ceilings, measured side by side in one run.

Run ``python -m benchmarks.run`` from the repository root (``--quick`` for a short pass).
"""
