"""Deprecated home of Triton's ahead-of-time compile: everything now lives in :mod:`tunekit.compilers`.

Kept as a re-export while other modules still import it; import from ``tunekit.compilers`` (and
``tunekit.compilers.triton``) instead.
"""

from __future__ import annotations

from tunekit.compilers.build import SUPPORTED_ARCHS
from tunekit.compilers.ptxas import PtxasUsage, parse_ptxas_log
from tunekit.compilers.triton import CompileReport, TritonJob, compile_triton_kernel, ptxas_for, run_ptxas

__all__ = [
    "SUPPORTED_ARCHS",
    "CompileReport",
    "PtxasUsage",
    "TritonJob",
    "compile_triton_kernel",
    "parse_ptxas_log",
    "ptxas_for",
    "run_ptxas",
]
