"""Compiler checks of the triton-fused resource model: the model's prediction beside ptxas's.

A :class:`TritonCase` is one triton-fused kernel (cell, direction, dtype, head dim) at one
configuration (block_b, warps, stages). :func:`predict` evaluates the triton_resources formulas
against a GPU profile's limits; :func:`compile_kernels` renders and compiles cases ahead of time
through :mod:`tunekit.compilers.triton` (one child process when Triton interprets here);
:func:`judge` says whether the model was right. The tuned-configuration checks that ``tunekit
validate --compile`` runs build on these (:mod:`tunekit.validation.tuned`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tunekit.constraints.triton_resources import triton_fused_registers_per_thread, triton_fused_shared_bytes
from tunekit.dtypes import DTYPE_BYTES, DTYPE_SHORT
from tunekit.intmath import next_pow2

__all__ = [
    "DEFAULT_PROFILE",
    "SHARED_TOLERANCE",
    "CompileCheck",
    "Prediction",
    "TritonCase",
    "compile_case",
    "compile_kernel",
    "compile_kernels",
    "default_cases",
    "judge",
    "predict",
    "register_limit",
    "triton_job",
    "validate_compile",
]

_DIR = {"forward": "fwd", "backward": "bwd"}

# Architecture -> profile whose limits judge a compile when --gpu is not given.
DEFAULT_PROFILE = {80: "a100", 86: "a10", 89: "l4", 90: "h100"}
# The shared-memory prediction must be an upper bound within this fraction of metadata.shared.
SHARED_TOLERANCE = 0.05


@dataclass(frozen=True)
class TritonCase:
    """One triton-fused kernel to compile: a problem and the tunables of one configuration."""

    cell: str
    direction: str  # "forward" | "backward"
    dtype: str  # "float32" | "float16" | "bfloat16"
    head_dim: int
    block_b: int = 16
    num_warps: int = 4
    num_stages: int = 1
    batch: int = 16

    @property
    def d_pad(self) -> int:
        """Head dim rounded up to the power-of-two tile, at least 16 (tl.dot's smallest on a GPU)."""
        return next_pow2(self.head_dim, 16)

    def name(self, arch: int) -> str:
        """Canonical configuration name, e.g. ``lstm-fwd-tritonfused-D64-B16-bf16-sm80-bb16-w4-s1``."""
        return (
            f"{self.cell}-{_DIR[self.direction]}-tritonfused-D{self.head_dim}-B{self.batch}-"
            f"{DTYPE_SHORT[self.dtype]}-sm{arch}-bb{self.block_b}-w{self.num_warps}-s{self.num_stages}"
        )

    @classmethod
    def from_config(cls, config: Any, direction: str) -> TritonCase:
        """The ``direction`` kernel of a triton-fused KernelConfig."""
        p, params = config.problem, config.params
        return cls(p.cell, direction, p.dtype, p.head_dim, params["block_b"], params["num_warps"],
                   params["num_stages"], p.batch)  # fmt: skip


@dataclass(frozen=True)
class Prediction:
    """What the resource model says about one case on one GPU, and the limits it is judged by."""

    registers: int
    shared_bytes: int
    register_limit: int  # per thread: min(255, what the 64K-register file gives 32 * num_warps threads)
    shared_limit: int  # opt-in shared memory per block

    @property
    def violations(self) -> tuple[str, ...]:
        """Names of the violated constraints (as in tunekit.constraints.occupancy)."""
        out = []
        if self.registers > self.register_limit:
            out.append("registers_per_thread")
        if self.shared_bytes > self.shared_limit:
            out.append("shared_memory_per_block")
        return tuple(out)

    @property
    def accepted(self) -> bool:
        """The model's verdict: fits the registers without spills and the opt-in shared memory."""
        return not self.violations


def register_limit(num_warps: int, gpu: Any) -> int:
    """Registers per thread ptxas may use: <= 255, and 32 * num_warps threads share the block's 64K
    registers, allocated per warp in units of 256 (8 per thread): 128 at 16 warps, 64 at 32."""
    per_warp = gpu.registers_per_block // num_warps
    per_thread = per_warp // gpu.register_allocation_unit * gpu.register_allocation_unit // gpu.warp_size
    return min(gpu.max_registers_per_thread, per_thread)


def predict(case: TritonCase, gpu: Any) -> Prediction:
    """Evaluate the triton_resources formulas for ``case`` against the limits of ``gpu`` (a GPUProfile)."""
    from tunekit.cells import get_cell

    cell = get_cell(case.cell)
    args = (len(cell.r_gates), len(cell.states), case.d_pad, case.block_b, case.num_warps, case.num_stages)
    size = DTYPE_BYTES[case.dtype]
    regs = int(triton_fused_registers_per_thread(*args, size, case.direction))
    shared = int(triton_fused_shared_bytes(*args, size, case.direction, arch=gpu.arch))
    return Prediction(regs, shared, register_limit(case.num_warps, gpu), gpu.shared_memory_per_block_optin)


@dataclass(frozen=True)
class CompileCheck:
    """The model next to the compiler for one kernel at one architecture."""

    name: str
    arch: int
    predicted_registers: int
    registers: int
    predicted_shared: int
    shared: int
    shared_limit: int
    spill_bytes: int
    accepted: bool  # by the model
    verdict: str
    passed: bool
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def judge(
    prediction: Prediction, registers: int, spill_bytes: int, shared: int, stack_frame_bytes: int = 0
) -> tuple[str, bool]:
    """(verdict, passed). A failure is the model accepting what the compiler cannot run spill-free
    (spills, a stack frame, registers or shared memory over the limits), or a shared-memory
    prediction below the compiler's or more than SHARED_TOLERANCE above it."""
    clean = spill_bytes == 0 and stack_frame_bytes == 0 and registers <= prediction.register_limit
    runs = clean and shared <= prediction.shared_limit
    if prediction.accepted and not runs:
        if spill_bytes or registers > prediction.register_limit:
            why = "spills"
        elif stack_frame_bytes:
            why = f"uses a {stack_frame_bytes} B stack frame"
        else:
            why = "shared over the limit"
        return f"MODEL WRONG: accepted, but {why}", False
    if not shared <= prediction.shared_bytes <= (1 + SHARED_TOLERANCE) * shared:
        return f"MODEL WRONG: shared memory off by more than {SHARED_TOLERANCE:.0%}", False
    if prediction.accepted:
        return "ok", True
    return ("rejected (compiler agrees)" if not runs else "rejected (conservative)"), True


def triton_job(case: TritonCase, arch: int, directory: Path | None = None, config: Any = None) -> Any:
    """(TritonJob, source path) for ``case``: its kernel rendered (for ``config``, default a
    configuration named ``case.name(arch)``) and written under ``directory`` (default: the cache)."""
    from tunekit.cells import get_cell
    from tunekit.codegen import KERNEL_NAMES, KernelSpec, render
    from tunekit.compilers.cache import cache_dir
    from tunekit.compilers.triton import TritonJob
    from tunekit.kernels.triton_fused import kernel_signature
    from tunekit.validation.records import write_source

    config = config if config is not None else {"name": case.name(arch), "profile": f"sm{arch}"}
    name = config.name if hasattr(config, "name") else config["name"]
    source = render(KernelSpec(get_cell(case.cell), case.direction), config)
    path = write_source(directory or cache_dir("sources"), f"{name}-{case.direction}", ".py", source)
    signature, constexprs = kernel_signature(
        case.direction, case.cell, case.dtype, head_dim=case.head_dim, block_b=case.block_b, d_pad=case.d_pad
    )
    job = TritonJob(str(path), KERNEL_NAMES[case.direction], signature, constexprs, arch, case.num_warps,
                    case.num_stages)  # fmt: skip
    return job, path


def compile_kernels(jobs: Sequence[tuple[TritonCase, int]]) -> list[Any]:
    """Render and compile (case, arch) jobs: tunekit.compilers.triton.CompileReport each (cached)."""
    from tunekit.compilers.triton import compile_triton_jobs

    return compile_triton_jobs([triton_job(case, arch)[0] for case, arch in jobs])


def compile_kernel(case: TritonCase, arch: int) -> Any:
    """Render the case's kernel and compile it for ``sm_<arch>``: a CompileReport."""
    return compile_kernels([(case, arch)])[0]


def compile_case(case: TritonCase, arch: int, gpu: Any) -> CompileCheck:
    """Compile the case for ``sm_<arch>`` and judge the model (limits of ``gpu``) against it."""
    return _check(case, arch, gpu, compile_kernel(case, arch))


def _check(case: TritonCase, arch: int, gpu: Any, report: Any) -> CompileCheck:
    prediction = predict(case, gpu)
    spills = report.spill_stores_bytes + report.spill_loads_bytes
    shared = report.shared_bytes + report.static_shared_bytes
    verdict, passed = judge(prediction, report.registers, spills, shared, report.stack_frame_bytes)
    return CompileCheck(
        name=case.name(arch),
        arch=arch,
        predicted_registers=prediction.registers,
        registers=report.registers,
        predicted_shared=prediction.shared_bytes,
        shared=shared,
        shared_limit=prediction.shared_limit,
        spill_bytes=spills,
        accepted=prediction.accepted,
        verdict=verdict,
        passed=passed,
        seconds=report.seconds,
    )


def default_cases(cells: Iterable[str], head_dim: int = 64, dtype: str = "bfloat16") -> list[TritonCase]:
    """Each cell's forward and backward kernel at the runtime's default configuration (bb16, 4 warps)."""
    return [TritonCase(cell, d, dtype, head_dim) for cell in cells for d in ("forward", "backward")]


def validate_compile(
    archs: Sequence[int], gpus: dict[int, Any], cases: Sequence[TritonCase]
) -> list[CompileCheck]:
    """Compile every case for every architecture; ``gpus`` maps arch -> the GPUProfile that judges it."""
    jobs = [(case, arch) for arch in archs for case in cases]
    reports = compile_kernels(jobs)
    return [
        _check(case, arch, gpus[arch], report) for (case, arch), report in zip(jobs, reports, strict=True)
    ]
