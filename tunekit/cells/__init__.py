"""Cells, each declared once; reference, Triton and CUDA code are derived from the declaration."""
