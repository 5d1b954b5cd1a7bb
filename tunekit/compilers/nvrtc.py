"""NVRTC through cuda.core: CUDA source -> cubin (+ PTX and ptxas's log) for any arch, no GPU needed.

The headers come from the ``nvidia-cuda-runtime`` wheel (``nvidia/cu13/include``: cuda_runtime,
cooperative_groups, cuda_bf16) and the ``nvidia-cuda-cccl`` wheel (``nvidia/cu13/include/cccl``:
``cuda/std``), found through the ``nvidia`` namespace package rather than a site-packages path,
plus ``templates/cuda`` (tk_cuda.cuh). Options are the ones every caller shares (the runner, the
validator, ``tunekit generate``): ``-arch=sm_XX -std=c++17 --ptxas-options=-v``, so the cubin a GPU
launches is the one whose registers were checked. Measured here (2 shared cores, NVRTC 13.5): a
small kernel including tk_cuda.cuh compiles in about 1.8 s per arch.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Any

from tunekit.compilers.build import Build, CompileError, cached_build, check_arch
from tunekit.compilers.cache import CompileCache
from tunekit.compilers.tools import header_dir
from tunekit.cuda import CudaProgram, CudaUnavailableError

__all__ = ["INSTALL_HINT", "compile_cubin", "include_dirs", "nvrtc_options", "nvrtc_version"]

INSTALL_HINT = "pip install 'tunekit[cuda]'"
# (wheel, directory under a root of the `nvidia` namespace package, a file that must be there)
_WHEEL_DIRS = (
    ("nvidia-cuda-runtime", "cu13/include", "cooperative_groups.h"),
    ("nvidia-cuda-cccl", "cu13/include/cccl", "cuda/std/version"),
)


def _nvidia_roots() -> list[Path]:
    """Directories of the ``nvidia`` namespace package (one per site-packages that has NVIDIA wheels)."""
    try:
        spec = importlib.util.find_spec("nvidia")
    except (ImportError, ValueError):
        return []
    return [Path(p) for p in (spec.submodule_search_locations or [])] if spec else []


def include_dirs() -> list[str]:
    """The wheels' include directories, runtime first; CudaUnavailableError names a missing wheel."""
    roots = _nvidia_roots()
    found = []
    for wheel, sub, probe in _WHEEL_DIRS:
        hits = [root / sub for root in roots if (root / sub / probe).is_file()]
        if not hits:
            where = ", ".join(str(r) for r in roots) or "no `nvidia` package on sys.path"
            raise CudaUnavailableError(
                f"NVRTC headers: no {sub}/{probe} from the {wheel} wheel (searched {where}); {INSTALL_HINT}"
            )
        found.append(str(hits[0]))
    return found


def _cuda_core() -> tuple[Any, Any]:
    """(cuda.core, cuda.bindings.nvrtc), or CudaUnavailableError naming the extra."""
    try:
        import cuda.core as core
        from cuda.bindings import nvrtc
    except ImportError as error:
        raise CudaUnavailableError(
            f"NVRTC needs cuda-core and the NVIDIA wheels ({error}); {INSTALL_HINT}"
        ) from error
    return core, nvrtc


@functools.cache
def nvrtc_version() -> str:
    """NVRTC's version, e.g. "13.5" (part of every cubin's cache key)."""
    _, nvrtc = _cuda_core()
    try:
        result, major, minor = nvrtc.nvrtcVersion()
    except RuntimeError as error:  # the bindings could not load libnvrtc
        raise CudaUnavailableError(f"NVRTC: the library does not load ({error}); {INSTALL_HINT}") from error
    return f"{major}.{minor}"


def nvrtc_options(program: CudaProgram, arch: int) -> Any:
    """The cuda.core ProgramOptions of every NVRTC compile: arch, C++17, ptxas -v, the include path."""
    core, _ = _cuda_core()
    return core.ProgramOptions(
        name=f"{program.name}.cu",  # a label in diagnostics only; nothing is written under it
        arch=f"sm_{check_arch(arch)}",
        std="c++17",
        ptxas_options=["-v"],
        include_path=[str(header_dir()), *include_dirs()],
    )


class _Log:
    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: Any) -> None:
        self.parts.append(text.decode() if isinstance(text, bytes) else str(text))


def _ptx_of(nvrtc: Any, handle: Any) -> str:
    """The PTX NVRTC kept beside the cubin of a ``-arch=sm_XX`` compile."""
    result, size = nvrtc.nvrtcGetPTXSize(handle)
    buffer = b" " * size
    (result,) = nvrtc.nvrtcGetPTX(handle, buffer)
    if result != nvrtc.nvrtcResult.NVRTC_SUCCESS:
        raise CompileError(f"NVRTC: nvrtcGetPTX failed ({result})")
    return buffer.rstrip(b"\0").decode("utf-8", "replace")


def _compile(program: CudaProgram, arch: int) -> tuple[bytes, str, str]:
    core, nvrtc = _cuda_core()
    options = nvrtc_options(program, arch)
    compiler = core.Program(program.source, "c++", options)
    log, failure = _Log(), None
    try:
        cubin = bytes(compiler.compile("cubin", logs=log).code)
        ptx = _ptx_of(nvrtc, compiler.handle)
    except Exception as error:  # NVRTCError carries the compile log
        failure = str(error).replace("\0", "").strip()[-4000:]
    finally:
        compiler.close()
    # Raised with no reference left to the Program: cuda.core 1.2's Program.__dealloc__ fails when
    # a traceback keeps a closed Program alive until interpreter shutdown.
    del compiler
    if failure is not None:
        raise CompileError(f"NVRTC {nvrtc_version()} failed on {program.name} for sm_{arch}:\n{failure}")
    return cubin, ptx, "".join(log.parts)


def _cache(cache: CompileCache | bool) -> CompileCache | None:
    if cache is True:
        return CompileCache()
    return cache or None


def compile_cubin(program: CudaProgram, arch: int | str, cache: CompileCache | bool = True) -> Build:
    """Compile ``program`` with NVRTC for ``sm_<arch>`` (no GPU needed): cubin bytes, PTX and log.

    Cached on disk by name, source + header digest, arch and NVRTC version (``cache=False``: always
    compile; or a CompileCache of your own). Raises CudaUnavailableError without the wheels
    (``pip install 'tunekit[cuda]'``), CompileError when NVRTC rejects the source.

    Example: ``compile_cubin(program, "sm_90").cubin`` is what ``tunekit generate`` ships.
    """
    arch = check_arch(arch)
    if not isinstance(program, CudaProgram):
        raise ValueError(f"program: got {type(program).__name__}, expected a tunekit.cuda.CudaProgram")
    version = nvrtc_version()
    return cached_build(program, arch, "nvrtc", version, lambda: _compile(program, arch), _cache(cache))
