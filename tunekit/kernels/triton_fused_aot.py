"""Ahead-of-time compiles of the triton-fused kernels exactly as a launch compiles them, without a GPU.

A launch compiles with :func:`tunekit.kernels.triton_fused.compile_options` (``maxnreg`` = the
block's register cap) and the constexprs of :func:`~tunekit.kernels.triton_fused.kernel_signature`
(the backward's dot forms depend on the architecture). :func:`compile_job` does the same through
``triton.compile`` for a named architecture and reads registers and spills from ptxas's log
(:mod:`tunekit.compilers.triton`) and the dynamic shared memory from Triton's metadata.

:func:`kernel_source_hash` names what a measurement is valid for: the rendered kernel (template and
cell), the Triton version and the compile rule. The measured register table
(:mod:`tunekit.constraints.triton_registers`) and the compile caches key their entries by it, so an
edit of a template or a cell makes their entries stale instead of silently wrong.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import hashlib
import io
import time
from dataclasses import asdict, dataclass
from typing import Any

from tunekit.codegen import KERNEL_NAMES, KernelSpec, render
from tunekit.constraints.triton_kernel import COMPILE_RULE

# Architectures ptxas is run for, and the profile whose register file sets the cap (every profile
# has a 64K-register file per block, 255 registers per thread, 256-register warp allocation units).
ARCH_PROFILES = {80: "a100", 86: "a10", 89: "l4", 90: "h100"}


@dataclass(frozen=True)
class CompileJob:
    """One kernel to compile: cell, role, dtype, the D it runs with, the tunables, the architecture."""

    cell: str
    direction: str  # "forward" | "backward" (the kernel's role)
    dtype: str  # "float32" | "float16" | "bfloat16"
    head_dim: int  # the D the kernel runs with (a multiple of 8, see kernel_head_dim)
    block_b: int
    num_warps: int
    num_stages: int
    r_once: int  # backward, 16-bit: both products read one copy of R
    arch: int

    @property
    def d_pad(self) -> int:
        return max(16, 1 << (self.head_dim - 1).bit_length())

    @property
    def key(self) -> str:
        """Canonical name of the compile, with the source hash of its kernel (a cache key)."""
        short = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}[self.dtype]
        role = {"forward": "fwd", "backward": "bwd"}[self.direction]
        return (
            f"{self.cell}-{role}-{kernel_source_hash(self.cell, self.direction)}-{short}-sm{self.arch}-"
            f"D{self.head_dim}-bb{self.block_b}-w{self.num_warps}-s{self.num_stages}-ro{self.r_once}"
        )


@dataclass(frozen=True)
class Compiled:
    """What the compiler said about one job (or why it said nothing)."""

    registers: int = 0
    spill_bytes: int = 0  # spill stores + loads
    shared: int = 0  # Triton's metadata.shared: dynamic shared memory per block
    maxnreg: int = 0  # the register cap it was compiled with
    seconds: float = 0.0
    error: str = ""  # "timeout after N s" or the exception; empty when the compile succeeded

    @property
    def clean(self) -> bool:
        """Compiled without spilling (registers within the cap it was compiled with)."""
        return not self.error and self.spill_bytes == 0


@functools.cache
def kernel_source_hash(cell: str, role: str) -> str:
    """12 hex digits over the rendered kernel's code, Triton's version and COMPILE_RULE.

    The code is the module's syntax tree without comments, docstrings or the header (which names a
    configuration and tunekit's version): what the compiler sees, so rewording a comment in a
    template keeps the measurements."""
    import triton

    from tunekit.cells import get_cell

    if role not in KERNEL_NAMES:
        raise ValueError(f"role: got {role!r}, expected one of {sorted(KERNEL_NAMES)}")
    tree = ast.parse(render(KernelSpec(get_cell(cell), role), None))
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and _is_docstring(body[0]):
            node.body = body[1:] or [ast.Pass()]
    digest = hashlib.sha256(f"{ast.dump(tree)}\n{triton.__version__}\n{COMPILE_RULE}".encode())
    return digest.hexdigest()[:12]


def _is_docstring(statement: ast.stmt) -> bool:
    return (
        isinstance(statement, ast.Expr)
        and isinstance(statement.value, ast.Constant)
        and isinstance(statement.value.value, str)
    )


def compile_job(job: CompileJob) -> Compiled:
    """Compile ``job`` for ``sm_<arch>`` as a launch would, in this process (it must not interpret)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from tunekit.compilers.ptxas import parse_ptxas_log
    from tunekit.compilers.triton import run_ptxas
    from tunekit.hardware import load_profile
    from tunekit.kernels.triton_fused import compile_options, kernel_signature, load_kernels

    if triton.knobs.runtime.interpret:
        raise RuntimeError(
            "compile_job: this process runs Triton's interpreter; compile in a worker without it"
        )
    if job.arch not in ARCH_PROFILES:
        raise ValueError(f"arch: got {job.arch!r}, expected one of {sorted(ARCH_PROFILES)}")
    start = time.perf_counter()
    name = job.key.replace(kernel_source_hash(job.cell, job.direction), "aot")
    forward, backward = load_kernels(job.cell, {"name": name, "profile": f"sm{job.arch}"}, job.dtype, False)
    kernel = forward if job.direction == "forward" else backward
    signature, constexprs = kernel_signature(
        job.direction, job.cell, job.dtype, head_dim=job.head_dim, block_b=job.block_b,
        arch=job.arch, num_warps=job.num_warps, r_once=job.r_once,
    )  # fmt: skip
    names = list(kernel.arg_names)
    # the JIT specializes torch's 16-byte aligned pointers so; the ints are never specialized
    attrs = {(names.index(n),): [["tt.divisibility", 16]] for n, t in signature.items() if t.startswith("*")}
    source = ASTSource(fn=kernel, signature=signature, constexprs=constexprs, attrs=attrs)
    options = compile_options(job.num_warps, job.num_stages, load_profile(ARCH_PROFILES[job.arch]))
    printed = io.StringIO()
    with triton.knobs.nvidia.scope(), contextlib.redirect_stdout(printed):
        triton.knobs.nvidia.dump_ptxas_log = True  # Triton prints the log of the ptxas run it makes
        compiled = triton.compile(source, target=GPUTarget("cuda", job.arch, 32), options=options)
    log = printed.getvalue()
    if f"Compiling entry function '{compiled.metadata.name}'" not in log:  # Triton's cache: no ptxas ran
        log = run_ptxas(compiled.asm["ptx"], job.arch)
    if f".maxnreg {options['maxnreg']}" not in compiled.asm["ptx"]:
        raise RuntimeError(f"compile_job: the PTX lacks '.maxnreg {options['maxnreg']}'")
    usage = parse_ptxas_log(log, compiled.metadata.name)
    return Compiled(
        registers=usage.registers,
        spill_bytes=usage.spill_stores_bytes + usage.spill_loads_bytes,
        shared=int(compiled.metadata.shared),
        maxnreg=options["maxnreg"],
        seconds=round(time.perf_counter() - start, 2),
    )


def job_fields(job: CompileJob) -> dict[str, Any]:
    return asdict(job)


def launch_compile_job(config: Any, role: str, gpu: Any, directory: Any) -> tuple[Any, Any]:
    """(TritonJob, source path) compiling the ``role`` kernel of a triton-fused KernelConfig exactly
    as a launch on ``gpu`` does: the D it runs with (rows 16-byte aligned), the backward's dot forms
    for ``gpu.arch``, the fp32 precision, and ``maxnreg`` = the block's register cap. The rendered
    kernel is written under ``directory`` (for ``tunekit validate --compile``)."""
    from tunekit.cells import get_cell
    from tunekit.compilers.triton import TritonJob
    from tunekit.constraints.triton_kernel import kernel_head_dim, register_cap
    from tunekit.kernels.triton_fused import kernel_signature, launch_params
    from tunekit.validation.records import write_source

    p = config.problem
    params = launch_params(config, p.cell, p.head_dim, p.dtype, batch=p.batch, heads=p.heads,
                           training=p.direction == "both", arch=gpu.arch)  # fmt: skip
    source = render(KernelSpec(get_cell(p.cell), role), config)
    path = write_source(directory, f"{config.name}-{gpu.sm}-{role}", ".py", source)
    signature, constexprs = kernel_signature(
        role, p.cell, p.dtype, head_dim=kernel_head_dim(p.head_dim), block_b=params.block_b,
        d_pad=params.d_pad, dot_precision=params.dot_precision, arch=gpu.arch,
        num_warps=params.num_warps, r_once=params.r_once,
    )  # fmt: skip
    job = TritonJob(str(path), KERNEL_NAMES[role], signature, constexprs, gpu.arch, params.num_warps,
                    params.num_stages, maxnreg=register_cap(params.num_warps, gpu))  # fmt: skip
    return job, path
