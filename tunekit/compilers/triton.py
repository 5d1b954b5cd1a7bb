"""Ahead-of-time compilation of Triton kernels without a GPU, and what the compiler says about them.

``triton.compile`` lowers a ``@triton.jit`` function for a named architecture (``GPUTarget``) with
no device present; it returns PTX, a cubin and ``metadata.shared`` (the dynamic shared memory the
kernel asks at launch). Registers and spills are not in the metadata: Triton runs its bundled ptxas
under ``-v`` and, with ``knobs.nvidia.dump_ptxas_log``, prints that log, which is captured and parsed
here. When Triton's on-disk cache skips its own ptxas run, the PTX is assembled once more with the
same ptxas and flags (:func:`run_ptxas`).

A kernel is named by its source file and function (:class:`TritonJob`), so the one path that
compiles outside this process (when Triton's interpreter is on here, see
:mod:`tunekit.triton_interpreter`) imports it from that file in one child process for all jobs.
Reports are cached (:mod:`tunekit.compilers.cache`) by the file's digest, the function, signature,
constexprs, launch shape, arch and the Triton version.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from tunekit.compilers.build import SUPPORTED_ARCHS, CompileError
from tunekit.compilers.cache import CompileCache
from tunekit.compilers.ptxas import parse_ptxas_log
from tunekit.triton_interpreter import environment_without_interpreter, interpreting, library_interpreted

__all__ = [
    "CompileReport",
    "TritonJob",
    "compile_triton_jobs",
    "compile_triton_kernel",
    "ptxas_for",
    "run_ptxas",
]


@dataclass(frozen=True)
class CompileReport:
    """What the compiler decided for one kernel at one architecture and launch shape."""

    kernel: str
    arch: int
    num_warps: int
    num_stages: int
    registers: int  # per thread, from ptxas
    spill_stores_bytes: int
    spill_loads_bytes: int
    shared_bytes: int  # Triton's metadata.shared: dynamic shared memory per block at launch
    local_bytes: int
    ptxas_log: str
    seconds: float  # wall time of triton.compile + ptxas
    static_shared_bytes: int = 0  # ptxas's static smem (Triton kernels allocate none)
    stack_frame_bytes: int = 0
    cached: bool = False  # read from tunekit's compile cache rather than compiled now

    @property
    def spills(self) -> bool:
        """True when ptxas moved values to local memory (slow, and what the model must avoid)."""
        return self.spill_stores_bytes > 0 or self.spill_loads_bytes > 0


@dataclass(frozen=True)
class TritonJob:
    """One compile: the ``@triton.jit`` function ``function`` defined in ``file``, its argument
    types (``signature``: Triton type per argument, "constexpr" for constexprs), constexpr values,
    architecture and launch shape. ``attrs`` default to 16-byte divisibility of every pointer."""

    file: str
    function: str
    signature: Mapping[str, str]
    constexprs: Mapping[str, Any]
    arch: int
    num_warps: int = 4
    num_stages: int = 1
    attrs: tuple[tuple[tuple[int, ...], tuple[tuple[str, int], ...]], ...] | None = field(default=None)
    maxnreg: int | None = None  # ptxas's register cap (.maxnreg); None: ptxas chooses

    def key(self) -> dict[str, Any]:
        import triton

        digest = hashlib.sha256(Path(self.file).read_bytes()).hexdigest()
        fields = asdict(self) | {"file": digest, "tool": "triton", "tool_version": triton.__version__}
        if self.maxnreg is None:  # the keys of jobs without a cap, as before the field existed
            del fields["maxnreg"]
        return json.loads(json.dumps(fields, sort_keys=True))  # tuples -> lists: the stored form


def _check_launch(arch: int, num_warps: int, num_stages: int) -> None:
    if arch not in SUPPORTED_ARCHS:
        raise ValueError(f"arch: expected one of {SUPPORTED_ARCHS}, received {arch!r}")
    # A block has at most 1024 threads = 32 warps; Triton requires a power of two.
    if not isinstance(num_warps, int) or num_warps not in (1, 2, 4, 8, 16, 32):
        raise ValueError(f"num_warps: expected a power of two in 1..32, received {num_warps!r}")
    if not isinstance(num_stages, int) or num_stages < 1:
        raise ValueError(f"num_stages: expected an int >= 1, received {num_stages!r}")


def ptxas_for(arch: int) -> tuple[str, str]:
    """The ptxas binary Triton uses for ``arch`` and the ``--gpu-name`` it passes (sm_90 → sm_90a)."""
    from triton.backends.nvidia.compiler import get_ptxas, sm_arch_from_capability

    return get_ptxas(arch).path, sm_arch_from_capability(arch)


def run_ptxas(ptx: str, arch: int) -> str:
    """Assemble ``ptx`` for ``arch`` with Triton's ptxas and flags plus ``-v``; return the log."""
    binary, gpu_name = ptxas_for(arch)
    with tempfile.TemporaryDirectory(prefix="tunekit-ptxas-") as tmp:
        src = Path(tmp) / "kernel.ptx"
        src.write_text(ptx)
        # The same flags as triton/backends/nvidia/compiler.py make_cubin (3.9): line info only,
        # --regAllocOptLevel=2 (a ptxas 13.x workaround there), so the registers match its cubin.
        cmd = [binary, "-lineinfo", "-v", "--regAllocOptLevel=2", f"--gpu-name={gpu_name}", str(src)]
        cmd += ["-o", str(Path(tmp) / "kernel.cubin")]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise CompileError(f"ptxas failed for sm_{arch} (exit {done.returncode}):\n{done.stderr}")
    return done.stderr + done.stdout


def _jit_function(kernel: Any) -> Any:
    """The JITFunction of ``kernel``; one decorated under the interpreter is re-wrapped from its
    Python function (this covers kernels that call only ``tl`` builtins)."""
    from triton.runtime.interpreter import InterpretedFunction
    from triton.runtime.jit import JITFunction

    if isinstance(kernel, JITFunction):
        return kernel
    if isinstance(kernel, InterpretedFunction):
        return JITFunction(kernel.fn)
    raise ValueError(f"kernel: expected a @triton.jit function, received {type(kernel).__name__}")


def _load(job: TritonJob) -> Any:
    """Import ``job.function`` from ``job.file`` with @triton.jit compiling (not interpreting)."""
    import triton

    digest = hashlib.sha256(Path(job.file).read_bytes()).hexdigest()[:16]
    spec = importlib.util.spec_from_file_location(f"tunekit_aot_{digest}", job.file)
    if spec is None or spec.loader is None:
        raise ValueError(f"file: {job.file!r} is not an importable Python file")
    module = importlib.util.module_from_spec(spec)
    with triton.knobs.runtime.scope():
        triton.knobs.runtime.interpret = False
        spec.loader.exec_module(module)
    if not hasattr(module, job.function):
        raise ValueError(f"function: {job.file} defines no {job.function!r}")
    return _jit_function(getattr(module, job.function))


def _check_signature(kernel: Any, signature: Mapping[str, str], constexprs: Mapping[str, Any]) -> None:
    names = list(getattr(kernel, "arg_names", []))
    missing = [n for n in names if n not in signature]
    if missing:
        raise ValueError(f"signature: no type for argument(s) {missing}; expected one per kernel argument")
    for key in constexprs:
        if signature.get(key) != "constexpr":
            got = signature.get(key)
            raise ValueError(f"constexprs: {key!r} must be typed 'constexpr' in signature, received {got!r}")


def _compile_now(kernel: Any, job: TritonJob) -> CompileReport:
    """Compile in this process (Triton's own library must not be interpreted here)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    names = list(kernel.arg_names)
    if job.attrs is None:
        # tt.divisibility=16 on pointers: the JIT specialises 16-byte aligned pointer arguments so.
        pointers = [n for n, t in job.signature.items() if t.startswith("*")]
        attrs = {(names.index(n),): [["tt.divisibility", 16]] for n in pointers}
    else:
        attrs = {tuple(k): [list(a) for a in v] for k, v in job.attrs}
    start = time.perf_counter()
    src = ASTSource(fn=kernel, signature=dict(job.signature), constexprs=dict(job.constexprs), attrs=attrs)
    # FP fusion (fma) on, as the JIT does by default in 3.9; run_ptxas assumes it (no --fmad=false).
    options = {"num_warps": job.num_warps, "num_stages": job.num_stages, "enable_fp_fusion": True}
    if job.maxnreg is not None:
        options["maxnreg"] = job.maxnreg
    printed = io.StringIO()
    # Triton's make_cubin prints its ptxas -v log when dump_ptxas_log is set: capture it rather than
    # assemble the PTX twice (ptxas is most of the time of a large or spilling kernel).
    with triton.knobs.nvidia.scope(), contextlib.redirect_stdout(printed):
        triton.knobs.nvidia.dump_ptxas_log = True
        compiled = triton.compile(src, target=GPUTarget("cuda", job.arch, 32), options=options)
    log = printed.getvalue()
    if f"Compiling entry function '{compiled.metadata.name}'" not in log:  # cache hit: no ptxas ran
        log = run_ptxas(compiled.asm["ptx"], job.arch)
    usage = parse_ptxas_log(log, compiled.metadata.name)
    return CompileReport(
        kernel=compiled.metadata.name,
        arch=job.arch,
        num_warps=job.num_warps,
        num_stages=job.num_stages,
        registers=usage.registers,
        spill_stores_bytes=usage.spill_stores_bytes,
        spill_loads_bytes=usage.spill_loads_bytes,
        shared_bytes=int(compiled.metadata.shared),
        local_bytes=usage.local_bytes,
        ptxas_log=log,
        seconds=time.perf_counter() - start,
        static_shared_bytes=usage.static_shared_bytes,
        stack_frame_bytes=usage.stack_frame_bytes,
    )


_CHILD = """
import json, sys
from dataclasses import asdict
from tunekit.compilers.triton import TritonJob, compile_triton_jobs
jobs = [TritonJob(**fields) for fields in json.load(sys.stdin)]
json.dump([asdict(report) for report in compile_triton_jobs(jobs, cache=False)], sys.stdout)
"""


def _compile_in_child(jobs: Sequence[TritonJob]) -> list[CompileReport]:
    """Compile every job in one fresh Python process without TRITON_INTERPRET."""
    payload = json.dumps([asdict(job) for job in jobs])
    done = subprocess.run([sys.executable, "-c", _CHILD], input=payload, capture_output=True, text=True,
                          env=environment_without_interpreter(), check=False)  # fmt: skip
    if done.returncode != 0:
        names = ", ".join(job.function for job in jobs)
        raise CompileError(f"compiling {names} in a child process failed:\n{done.stderr[-3000:]}")
    return [CompileReport(**fields) for fields in json.loads(done.stdout)]


def compile_triton_jobs(jobs: Sequence[TritonJob], cache: CompileCache | bool = True) -> list[CompileReport]:
    """Compile every job (cached); in a process that interprets Triton, in one child process."""
    return _compile_jobs(jobs, [None] * len(jobs), cache)


def _compile_jobs(
    jobs: Sequence[TritonJob], kernels: Sequence[Any], cache: CompileCache | bool
) -> list[CompileReport]:
    """``kernels[i]``: job i's JITFunction when the caller has it (else it is imported from its file)."""
    cache = CompileCache() if cache is True else (cache or None)
    for job in jobs:
        _check_launch(job.arch, job.num_warps, job.num_stages)
    reports: dict[int, CompileReport] = {}
    keys = [job.key() for job in jobs] if cache is not None else [None] * len(jobs)
    if cache is not None:
        for i, key in enumerate(keys):
            payload = cache.get(key)
            if payload is not None:
                with contextlib.suppress(TypeError):
                    reports[i] = replace(CompileReport(**payload), cached=True)
    todo = [i for i in range(len(jobs)) if i not in reports]
    if todo and (interpreting() or library_interpreted()):
        fresh = _compile_in_child([jobs[i] for i in todo])
    else:
        fresh = []
        for i in todo:
            kernel = kernels[i] if kernels[i] is not None else _load(jobs[i])
            _check_signature(kernel, jobs[i].signature, jobs[i].constexprs)
            fresh.append(_compile_now(kernel, jobs[i]))
    for i, report in zip(todo, fresh, strict=True):
        reports[i] = report
        if cache is not None:
            cache.put(keys[i], asdict(report))
    return [reports[i] for i in range(len(jobs))]


def compile_triton_kernel(
    kernel: Any,
    signature: Mapping[str, str],
    constexprs: Mapping[str, Any],
    arch: int,
    num_warps: int = 4,
    num_stages: int = 1,
    attrs: Mapping[Any, Any] | None = None,
    cache: CompileCache | bool = True,
) -> CompileReport:
    """Compile a ``@triton.jit`` kernel for ``sm_<arch>`` without a GPU and read its resources.

    ``signature`` maps every argument name to its Triton type ("*bf16", "i32", ...) and every
    constexpr to "constexpr"; ``constexprs`` gives the constexpr values by name. ``attrs`` defaults
    to 16-byte divisibility of every pointer (what the JIT infers for torch's aligned tensors).
    The kernel is recompiled from its source file (:class:`TritonJob`).
    """
    import inspect

    _check_launch(arch, num_warps, num_stages)
    kernel = _jit_function(kernel)
    _check_signature(kernel, signature, constexprs)
    source_file = inspect.getsourcefile(kernel.fn)
    if source_file is None:
        raise ValueError("kernel: its source file is unknown, so it cannot be compiled ahead of time")
    frozen = None
    if attrs is not None:
        frozen = tuple((tuple(k), tuple(tuple(a) for a in v)) for k, v in attrs.items())
    job = TritonJob(source_file, kernel.fn.__name__, dict(signature), dict(constexprs), arch, num_warps,
                    num_stages, frozen)  # fmt: skip
    return _compile_jobs([job], [kernel], cache)[0]
