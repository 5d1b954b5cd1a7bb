"""Compile truth: compile a kernel for an architecture and read what the compiler decided.

One home for every compile tunekit does without a GPU, Triton and CUDA alike:

* :mod:`.ptxas`: the ``ptxas -v`` log parser (registers, static shared memory, spills, stack frame
  per entry) and the local-memory instruction scan of PTX/SASS;
* :mod:`.triton`: Triton ahead-of-time compiles (:func:`compile_triton_kernel`, :class:`TritonJob`),
  in one child process when this process runs Triton's interpreter;
* :mod:`.cuda`: a :class:`tunekit.cuda.CudaProgram` compiled with nvcc or NVRTC
  (:func:`compile_program`, many at once with :func:`compile_programs`), per entry its ptxas
  figures, PTX and SASS; :mod:`.nvrtc`: the NVRTC compile the GPU runner also uses
  (:func:`compile_cubin`);
* :mod:`.cache`: results cached on disk by name, source digest, arch, tool and tool version.

Submodules load their compilers (triton, cuda.core) only when called.
"""

from __future__ import annotations

from tunekit.compilers.build import SUPPORTED_ARCHS, Build, CompileError, check_arch
from tunekit.compilers.cache import CompileCache, cache_dir
from tunekit.compilers.ptxas import (
    PtxasUsage,
    local_memory_instructions,
    parse_ptxas_log,
    parse_ptxas_log_all,
)

__all__ = [
    "SUPPORTED_ARCHS",
    "Build",
    "CompileCache",
    "CompileError",
    "PtxasUsage",
    "cache_dir",
    "check_arch",
    "local_memory_instructions",
    "parse_ptxas_log",
    "parse_ptxas_log_all",
]
