"""Kernel runtimes: render, compile or interpret, and launch generated kernels."""
