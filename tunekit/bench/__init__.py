"""Benchmarks (``tunekit bench``): slow sweeps that print ratios measured side by side in one run
and write their results under ``reports/``. Never part of the test suite."""
