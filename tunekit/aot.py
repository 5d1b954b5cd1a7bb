"""Ahead-of-time compilation of Triton kernels without a GPU, and what the compiler says about them.

``triton.compile`` lowers a ``@triton.jit`` function for a named architecture (``GPUTarget``) with
no device present; it returns PTX, a cubin and ``metadata.shared`` (the dynamic shared memory the
kernel asks at launch). Registers and spills are not in the metadata: Triton runs its bundled ptxas
under ``-v`` and, with ``knobs.nvidia.dump_ptxas_log``, prints that log, which is captured and parsed
here. When Triton's on-disk cache skips its own ptxas run, the PTX is assembled once more with the
same ptxas and flags (:func:`run_ptxas`).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Architectures whose resource limits tunekit models (DESIGN §5): A100, GA10x, AD10x, H100.
SUPPORTED_ARCHS = (80, 86, 89, 90)

_ENTRY = re.compile(r"Compiling entry function '(?P<name>[^']+)' for '(?P<arch>sm_\w+)'")
_FRAME = re.compile(
    r"(?P<stack>\d+) bytes stack frame, (?P<stores>\d+) bytes spill stores, (?P<loads>\d+) bytes spill loads"
)
_USED = re.compile(r"Used (?P<regs>\d+) registers")
_SMEM = re.compile(r"(?P<smem>\d+) bytes smem")
_LMEM = re.compile(r"(?P<lmem>\d+) bytes lmem")


@dataclass(frozen=True)
class PtxasUsage:
    """Resource usage of one entry function, as ``ptxas -v`` reports it."""

    function: str
    arch: str  # e.g. "sm_80", "sm_90a"
    registers: int  # per thread
    spill_stores_bytes: int
    spill_loads_bytes: int
    stack_frame_bytes: int  # local memory per thread for the stack (spills live here)
    static_shared_bytes: int  # Triton kernels use dynamic shared memory, so usually 0
    local_bytes: int  # local memory per thread: max(stack frame, reported lmem)


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

    @property
    def spills(self) -> bool:
        """True when ptxas moved values to local memory (slow, and what the model must avoid)."""
        return self.spill_stores_bytes > 0 or self.spill_loads_bytes > 0


def parse_ptxas_log(text: str, function: str | None = None) -> PtxasUsage:
    """Parse the ``ptxas -v`` log of one entry function (the first one, or ``function`` if given).

    The log has, per entry function, a "Compiling entry function" line, a "Function properties"
    block with stack frame and spill bytes, and a "Used N registers, ... bytes smem" line. Lines
    from other functions are ignored. Raises ValueError when the function is not in the log.
    """
    if not isinstance(text, str):
        raise ValueError(f"text: expected the ptxas log as str, received {type(text).__name__}")
    blocks: list[tuple[str, str, list[str]]] = []
    for line in text.splitlines():
        m = _ENTRY.search(line)
        if m:
            blocks.append((m["name"], m["arch"], []))
        elif blocks:
            blocks[-1][2].append(line)
    if not blocks:
        raise ValueError("text: no 'Compiling entry function' line in the ptxas log; was ptxas run with -v?")
    chosen = [b for b in blocks if function is None or b[0] == function]
    if not chosen:
        names = ", ".join(b[0] for b in blocks)
        raise ValueError(f"function: {function!r} is not in the ptxas log; it has {names}")
    name, arch, lines = chosen[0]
    body = "\n".join(lines)
    used = _USED.search(body)
    if used is None:
        raise ValueError(f"text: no 'Used N registers' line for {name!r} in the ptxas log")
    frame = _FRAME.search(body)
    smem = _SMEM.search(body)
    lmem = _LMEM.search(body)
    stack = int(frame["stack"]) if frame else 0
    return PtxasUsage(
        function=name,
        arch=arch,
        registers=int(used["regs"]),
        spill_stores_bytes=int(frame["stores"]) if frame else 0,
        spill_loads_bytes=int(frame["loads"]) if frame else 0,
        stack_frame_bytes=stack,
        static_shared_bytes=int(smem["smem"]) if smem else 0,
        local_bytes=max(stack, int(lmem["lmem"]) if lmem else 0),
    )


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
        raise RuntimeError(f"ptxas failed for sm_{arch} (exit {done.returncode}):\n{done.stderr}")
    return done.stderr + done.stdout


def _compilable(kernel: Any) -> Any:
    """A JITFunction for ``kernel``; one decorated under TRITON_INTERPRET=1 is re-wrapped from its source.

    (The re-wrap covers kernels that call only ``tl`` builtins; helpers decorated in interpreter
    mode are InterpretedFunctions too and cannot be compiled.)
    """
    from triton.runtime.interpreter import InterpretedFunction
    from triton.runtime.jit import JITFunction

    if isinstance(kernel, JITFunction):
        return kernel
    if isinstance(kernel, InterpretedFunction):
        return JITFunction(kernel.fn)
    raise ValueError(f"kernel: expected a @triton.jit function, received {type(kernel).__name__}")


def _interpreting() -> bool:
    """True when this process runs Triton's interpreter: triton.language's own @jit functions are then
    InterpretedFunctions, and a fresh compile that reaches them fails (a cached one would not notice)."""
    import triton

    return bool(triton.knobs.runtime.interpret) or os.environ.get("TRITON_INTERPRET") == "1"


_CHILD = """
import importlib.util, json, sys
from dataclasses import asdict
from tunekit.aot import compile_triton_kernel
job = json.load(sys.stdin)
spec = importlib.util.spec_from_file_location("tunekit_aot_child_module", job["file"])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
attrs = {tuple(k): v for k, v in job["attrs"]} if job["attrs"] is not None else None
report = compile_triton_kernel(getattr(module, job["name"]), job["signature"], job["constexprs"],
                               job["arch"], job["num_warps"], job["num_stages"], attrs)
json.dump(asdict(report), sys.stdout)
"""


def _compile_in_child(
    kernel: Any,
    signature: Mapping[str, str],
    constexprs: Mapping[str, Any],
    arch: int,
    num_warps: int,
    num_stages: int,
    attrs: Mapping[Any, Any] | None,
) -> CompileReport:
    """Compile in a fresh Python process without TRITON_INTERPRET, importing the kernel from its file."""
    import inspect
    import json
    import sys

    source_file = inspect.getsourcefile(kernel.fn)
    if source_file is None:
        raise ValueError(
            "kernel: its source file is unknown, so it cannot be compiled outside the interpreter"
        )
    job = {
        "file": source_file,
        "name": kernel.fn.__name__,
        "signature": dict(signature),
        "constexprs": dict(constexprs),
        "arch": arch,
        "num_warps": num_warps,
        "num_stages": num_stages,
        "attrs": None if attrs is None else [[list(k), v] for k, v in attrs.items()],
    }
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"compiling {job['name']} in a child process failed:\n{done.stderr[-3000:]}")
    return CompileReport(**json.loads(done.stdout))


def compile_triton_kernel(
    kernel: Any,
    signature: Mapping[str, str],
    constexprs: Mapping[str, Any],
    arch: int,
    num_warps: int = 4,
    num_stages: int = 1,
    attrs: Mapping[Any, Any] | None = None,
) -> CompileReport:
    """Compile a ``@triton.jit`` kernel for ``sm_<arch>`` without a GPU and read its resources.

    ``signature`` maps every argument name to its Triton type ("*bf16", "i32", ...) and every
    constexpr to "constexpr"; ``constexprs`` gives the constexpr values by name. ``attrs`` defaults
    to 16-byte divisibility of every pointer (what the JIT infers for torch's aligned tensors).
    In a process that runs Triton's interpreter, the compile runs in a child process without it.
    """
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    _check_launch(arch, num_warps, num_stages)
    kernel = _compilable(kernel)
    names = list(getattr(kernel, "arg_names", []))
    missing = [n for n in names if n not in signature]
    if missing:
        raise ValueError(f"signature: no type for argument(s) {missing}; expected one per kernel argument")
    for key in constexprs:
        if signature.get(key) != "constexpr":
            got = signature.get(key)
            raise ValueError(f"constexprs: {key!r} must be typed 'constexpr' in signature, received {got!r}")
    if _interpreting():
        return _compile_in_child(kernel, signature, constexprs, arch, num_warps, num_stages, attrs)
    if attrs is None:
        # tt.divisibility=16 on pointers: the JIT specialises 16-byte aligned pointer arguments so.
        pointers = [n for n, t in signature.items() if t.startswith("*")]
        attrs = {(names.index(n),): [["tt.divisibility", 16]] for n in pointers}
    start = time.perf_counter()
    src = ASTSource(fn=kernel, signature=dict(signature), constexprs=dict(constexprs), attrs=dict(attrs))
    # FP fusion (fma) on, as the JIT does by default in 3.9; run_ptxas assumes it (no --fmad=false).
    options = {"num_warps": num_warps, "num_stages": num_stages, "enable_fp_fusion": True}
    printed = io.StringIO()
    # Triton's make_cubin prints its ptxas -v log when dump_ptxas_log is set: capture it rather than
    # assemble the PTX twice (ptxas is most of the time of a large or spilling kernel).
    with triton.knobs.nvidia.scope(), contextlib.redirect_stdout(printed):
        triton.knobs.nvidia.dump_ptxas_log = True
        compiled = triton.compile(src, target=GPUTarget("cuda", arch, 32), options=options)
    log = printed.getvalue()
    if f"Compiling entry function '{compiled.metadata.name}'" not in log:  # cache hit: no ptxas ran
        log = run_ptxas(compiled.asm["ptx"], arch)
    seconds = time.perf_counter() - start
    usage = parse_ptxas_log(log, compiled.metadata.name)
    return CompileReport(
        kernel=compiled.metadata.name,
        arch=arch,
        num_warps=num_warps,
        num_stages=num_stages,
        registers=usage.registers,
        spill_stores_bytes=usage.spill_stores_bytes,
        spill_loads_bytes=usage.spill_loads_bytes,
        shared_bytes=int(compiled.metadata.shared),
        local_bytes=usage.local_bytes,
        ptxas_log=log,
        seconds=seconds,
    )
