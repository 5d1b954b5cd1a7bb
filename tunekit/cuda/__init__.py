"""CUDA kernels as data, and the runners that launch them: NVRTC on a GPU, the emulator on a CPU.

A rendered kernel source (``templates/cuda/*.cu.j2`` through :mod:`tunekit.codegen`) becomes a
:class:`CudaProgram`: its canonical name (the cache key), the source text and the entry points
with their parameters. A :class:`CudaRunner` launches an entry with :class:`LaunchDims` and
arguments (tensors by pointer, Python ints and floats by value, typed by the entry's parameter
kinds). :func:`runner_for` picks the runner for the tensors' device:

* CUDA tensors: :class:`tunekit.cuda.nvrtc.NvrtcRunner` (``cuda.core``: NVRTC -> cubin, cached by
  name, source hash and arch; launched on torch's current stream; cooperative where the entry
  says so). Needs the optional extra ``tunekit[cuda]``; no host compiler, no torch extension.
* CPU tensors with ``TUNEKIT_CUDA_EMULATOR=1``: :class:`tunekit.cuda.emulator.EmulatorRunner`, the
  same source compiled by g++ against the emulator side of ``tk_cuda.cuh`` (DESIGN §4).
* anything else: :class:`CudaUnavailableError` naming both ways.

docs/cuda.md is the contract kernels are written against.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = [
    "EMULATOR_ENV",
    "PARAM_KINDS",
    "CudaProgram",
    "CudaRunner",
    "CudaUnavailableError",
    "KernelEntry",
    "KernelFault",
    "LaunchDims",
    "LaunchRefused",
    "emulator_enabled",
    "runner_for",
]

EMULATOR_ENV = "TUNEKIT_CUDA_EMULATOR"
# Parameter kinds an entry point may take: a device pointer (a tensor's data_ptr), or a scalar by
# value (32-bit signed/unsigned int, 64-bit signed int, 32-bit float).
PARAM_KINDS = ("ptr", "i32", "u32", "i64", "f32")


class CudaUnavailableError(RuntimeError):
    """No way to run CUDA kernels for these tensors here (no GPU, emulator not enabled, no wheels)."""


class LaunchRefused(ValueError):
    """A launch over the limits (threads per block, shared memory, co-resident cooperative grid)."""


class KernelFault(RuntimeError):
    """The kernel did something wrong at run time: an out-of-bounds or misaligned access, a
    divergent barrier or shuffle, a deadlock, a crash. The message names what, where (block,
    thread) and, for memory, which buffer."""


@dataclass(frozen=True)
class KernelEntry:
    """One ``TK_KERNEL`` entry point: its name and its parameters (name, kind) in order."""

    name: str
    params: tuple[tuple[str, str], ...]
    cooperative: bool = False  # launched cooperatively: the kernel calls tk::grid_sync()

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"name: got {self.name!r}, expected a C identifier")
        params = tuple(tuple(p) for p in self.params)
        bad = [p for p in params if len(p) != 2 or not str(p[0]).isidentifier() or p[1] not in PARAM_KINDS]
        if bad:
            raise ValueError(f"params: got {bad}, expected (identifier, kind) pairs, kind in {PARAM_KINDS}")
        object.__setattr__(self, "params", params)


@dataclass(frozen=True)
class CudaProgram:
    """A rendered CUDA source and its entry points; ``name`` is the configuration's canonical name."""

    name: str
    source: str
    entries: tuple[KernelEntry, ...]

    def entry(self, name: str) -> KernelEntry:
        """The entry point called ``name`` (ValueError listing the entries otherwise)."""
        for entry in self.entries:
            if entry.name == name:
                return entry
        raise ValueError(f"entry: got {name!r}, expected one of {[e.name for e in self.entries]}")

    @property
    def digest(self) -> str:
        """sha256 of the source: part of every cache key built from this program."""
        return hashlib.sha256(self.source.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class LaunchDims:
    """Grid and block shape of a launch, and the dynamic shared memory it requests (bytes)."""

    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    shared_bytes: int = 0

    def __post_init__(self) -> None:
        for name in ("grid", "block"):
            value = tuple(int(v) for v in getattr(self, name))
            if len(value) != 3 or min(value) < 1:
                raise ValueError(f"{name}: got {getattr(self, name)!r}, expected three positive ints")
            object.__setattr__(self, name, value)
        if self.shared_bytes < 0:
            raise ValueError(f"shared_bytes: got {self.shared_bytes}, expected >= 0")

    @property
    def threads_per_block(self) -> int:
        return self.block[0] * self.block[1] * self.block[2]

    @property
    def blocks(self) -> int:
        return self.grid[0] * self.grid[1] * self.grid[2]


class CudaRunner(Protocol):
    """Launches entry points of CUDA programs on one kind of device."""

    def launch(self, program: CudaProgram, entry: str, dims: LaunchDims, args: Sequence[Any]) -> None:
        """Run ``program``'s ``entry`` with ``dims``; ``args``: tensors (pointers) and scalars, in
        the entry's parameter order. Returns when the results are in the tensors (the GPU runner
        enqueues on torch's current stream). Raises LaunchRefused before running anything over the
        limits, KernelFault when the kernel faults."""
        ...


def emulator_enabled() -> bool:
    """True when ``TUNEKIT_CUDA_EMULATOR=1``: CUDA kernels on CPU tensors run in the emulator."""
    return os.environ.get(EMULATOR_ENV) == "1"


def runner_for(device: Any, profile: Any = None) -> CudaRunner:
    """The runner for tensors on ``device``; ``profile`` (a GPUProfile) sets the emulator's limits
    (default: the a100 profile). CudaUnavailableError names both ways when neither applies."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        from tunekit.cuda.nvrtc import runner

        return runner(device)
    if emulator_enabled():
        from tunekit.cuda.emulator import EmulatorRunner

        return EmulatorRunner(profile)
    raise CudaUnavailableError(
        f"CUDA kernels got tensors on {device}: run on a CUDA GPU (pip install 'tunekit[cuda]'), or set "
        f"{EMULATOR_ENV}=1 to run the kernels' own source in tunekit's CPU emulator (slow; for validation)"
    )
