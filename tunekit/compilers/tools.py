"""Where the compilers and binary tools are, their versions, and the headers kernels include.

* nvcc: on PATH (a CUDA toolkit); its version from ``nvcc --version``.
* cuobjdump (SASS): on PATH, beside nvcc's real binary, or the copy Triton bundles
  (``triton.knobs.nvidia.cuobjdump``); :func:`sass_tool` says which, or why none.
* kernel headers: ``templates/cuda`` (tk_cuda.cuh) through importlib.resources; their digest is
  part of every compile key, so a header change recompiles.
"""

from __future__ import annotations

import functools
import hashlib
import re
import shutil
import subprocess
from importlib import resources
from pathlib import Path

__all__ = ["header_dir", "headers_digest", "nvcc_path", "nvcc_version", "sass_tool"]


def header_dir() -> Path:
    """The directory of tk_cuda.cuh (package data ``tunekit.templates/cuda``)."""
    path = Path(str(resources.files("tunekit.templates").joinpath("cuda")))
    if not (path / "tk_cuda.cuh").is_file():
        raise RuntimeError(f"kernel headers: {path / 'tk_cuda.cuh'} is missing; reinstall tunekit")
    return path


def headers_digest() -> str:
    """sha256 over every header a kernel may include (templates/cuda/*.cuh), names and contents."""
    digest = hashlib.sha256()
    for header in sorted(header_dir().glob("*.cuh")):
        digest.update(header.name.encode() + b"\0" + header.read_bytes() + b"\0")
    return digest.hexdigest()


def nvcc_path() -> str | None:
    """nvcc on PATH, or None."""
    return shutil.which("nvcc")


@functools.cache
def nvcc_version(nvcc: str) -> str:
    """``"13.0.88"`` from ``nvcc --version`` (its "V13.0.88" token); RuntimeError when it does not run."""
    try:
        done = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=60, check=False)
    except OSError as error:
        raise RuntimeError(f"nvcc: {nvcc} does not run ({error})") from error
    found = re.search(r"\bV(\d+\.\d+\.\d+)", done.stdout)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"nvcc: `{nvcc} --version` printed no version:\n{done.stdout}{done.stderr}")
    return found[1]


@functools.cache
def sass_tool() -> tuple[str | None, str]:
    """(path of cuobjdump, where it came from) or (None, why there is none)."""
    found = shutil.which("cuobjdump")
    if found:
        return found, "PATH"
    nvcc = nvcc_path()
    if nvcc:
        beside = Path(nvcc).resolve().parent / "cuobjdump"
        if beside.is_file():
            return str(beside), "nvcc's toolkit"
    try:
        import triton

        bundled = triton.knobs.nvidia.cuobjdump.path
    except Exception:  # no triton, or a triton without a bundled cuobjdump
        bundled = None
    if bundled and Path(bundled).is_file():
        return str(bundled), "Triton's bundled CUDA tools"
    return None, "no cuobjdump on PATH, beside nvcc, or bundled with Triton: SASS unavailable"
