"""One compile of a CUDA program for one architecture by one tool, and its cache entry.

Both CUDA tools (nvcc, NVRTC) produce the same three things from a :class:`tunekit.cuda.CudaProgram`:
a cubin, the PTX it was assembled from and ptxas's ``-v`` log. :func:`cached_build` keys them by
(name, source + headers digest, arch, tool, tool version) in a :class:`CompileCache`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tunekit.compilers.cache import CompileCache, b64decode, b64encode
from tunekit.compilers.tools import headers_digest

__all__ = ["SUPPORTED_ARCHS", "Build", "CompileError", "cached_build", "check_arch"]

# Architectures whose resource limits tunekit models (DESIGN §5): A100, GA10x, AD10x, H100.
SUPPORTED_ARCHS = (80, 86, 89, 90)


class CompileError(RuntimeError):
    """A compiler rejected a kernel (the message carries the tool, the arch and the log's tail)."""


def check_arch(arch: object) -> int:
    """``80``, ``"80"``, ``"sm_80"`` or ``"sm80"`` -> 80; ValueError naming the supported ones."""
    text = str(arch).strip().lower().removeprefix("sm_").removeprefix("sm")
    if isinstance(arch, bool) or not text.isdigit() or int(text) not in SUPPORTED_ARCHS:
        known = ", ".join(f"sm_{a}" for a in SUPPORTED_ARCHS)
        raise ValueError(f"arch: got {arch!r}, expected one of {known}")
    return int(text)


@dataclass(frozen=True)
class Build:
    """What one tool made of one program for one architecture."""

    name: str  # the program's canonical name
    arch: int
    tool: str  # "nvcc" | "nvrtc"
    tool_version: str
    cubin: bytes = field(repr=False)
    ptx: str = field(repr=False)
    log: str = field(repr=False)  # ptxas -v (and compiler warnings)
    seconds: float  # wall time of the compile that made it (also when read from the cache)
    cached: bool = False  # read from the cache rather than compiled now


def cached_build(
    program: Any,
    arch: int,
    tool: str,
    tool_version: str,
    compile_fn: Callable[[], tuple[bytes, str, str]],
    cache: CompileCache | None,
) -> Build:
    """The cached build of ``program``, or ``compile_fn()`` -> (cubin, ptx, log) run now and stored."""
    key = {
        "name": program.name,
        "digest": program.digest,
        "headers": headers_digest(),
        "arch": arch,
        "tool": tool,
        "tool_version": tool_version,
    }
    if cache is not None:
        payload = cache.get(key)
        if payload is not None:
            try:
                cubin, seconds = b64decode(payload["cubin"]), float(payload["seconds"])
                return Build(program.name, arch, tool, tool_version, cubin, payload["ptx"], payload["log"],
                             seconds, cached=True)  # fmt: skip
            except (KeyError, TypeError, ValueError):
                pass  # a malformed payload is a miss: rebuilt and overwritten below
    start = time.perf_counter()
    cubin, ptx, log = compile_fn()
    seconds = time.perf_counter() - start
    if cache is not None:
        cache.put(key, {"cubin": b64encode(cubin), "ptx": ptx, "log": log, "seconds": seconds})
    return Build(program.name, arch, tool, tool_version, cubin, ptx, log, seconds)
