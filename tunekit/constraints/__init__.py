"""Constraint models of the kernel families (triton-fused, cuda-alternating, cuda-fused)."""
