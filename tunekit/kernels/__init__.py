"""Kernel runtimes: render, compile or interpret, and launch generated kernels.

Each CUDA family (``cuda-alternating``, ``cuda-fused``) is a module here that satisfies
:class:`CudaFamily`: the validator (``tunekit validate --compile``), the compile benchmark and
``tunekit generate`` read a configuration's programs, launch shapes and predicted resources
through it, so what they check is what the runtime launches.
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol

__all__ = ["CUDA_FAMILIES", "CudaFamily", "cuda_family"]

# family name -> module implementing CudaFamily (imported on first use)
CUDA_FAMILIES: dict[str, str] = {
    "cuda-alternating": "tunekit.kernels.cuda_alternating",
    "cuda-fused": "tunekit.kernels.cuda_fused",
}


class CudaFamily(Protocol):
    """What a CUDA kernel family's runtime module exposes besides its ``rnn`` function."""

    FAMILY: str

    def programs(self, config: Any) -> tuple[Any, ...]:
        """Every tunekit.cuda.CudaProgram that a KernelConfig runs (all its directions), rendered."""
        ...

    def launch_dims(self, config: Any, entry: str) -> Any:
        """tunekit.cuda.LaunchDims of ``entry`` for ``config``: the code the runtime launches with."""
        ...

    def predicted(self, config: Any, entry: str) -> dict[str, int]:
        """The constraint model's ``registers_per_thread`` (an upper bound) and
        ``shared_memory_bytes_per_block`` (static + dynamic, exact) for ``entry``."""
        ...


def cuda_family(name: str) -> CudaFamily:
    """The module of CUDA family ``name`` (ValueError naming the known ones)."""
    if name not in CUDA_FAMILIES:
        raise ValueError(f"family: got {name!r}, expected one of {sorted(CUDA_FAMILIES)}")
    return importlib.import_module(CUDA_FAMILIES[name])  # type: ignore[return-value]
