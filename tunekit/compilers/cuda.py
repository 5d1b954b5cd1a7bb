"""Compile a CUDA program for an arch with nvcc or NVRTC and read, per entry, what ptxas decided.

:func:`compile_program` gives a :class:`ProgramCompile`: per entry point its registers, static
shared bytes, spill stores/loads, stack frame and local bytes (ptxas ``-v``), its PTX and, where a
cuobjdump exists, its SASS (:func:`tunekit.compilers.tools.sass_tool` says where it came from or
why there is none). nvcc runs ``-cubin -arch=sm_XX -std=c++17 -Xptxas -v --keep`` (the kept .ptx is
the PTX); NVRTC runs through :func:`tunekit.compilers.nvrtc.compile_cubin`. Builds are cached on
disk (:mod:`tunekit.compilers.cache`); :func:`compile_programs` runs many in a small thread pool
(each compile is a child process or NVRTC's own native code).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tunekit.compilers.build import Build, CompileError, cached_build, check_arch
from tunekit.compilers.cache import CompileCache
from tunekit.compilers.ptxas import PtxasUsage, parse_ptxas_log_all, ptx_function, sass_function
from tunekit.compilers.tools import header_dir, nvcc_path, nvcc_version, sass_tool
from tunekit.cuda import CudaProgram

__all__ = ["CUDA_TOOLS", "EntryCompile", "ProgramCompile", "available_tools", "compile_program",
           "compile_programs", "nvcc_build"]  # fmt: skip

CUDA_TOOLS = ("nvcc", "nvrtc")
# ptxas on a large kernel takes tens of seconds on the shared 2-core machine; past this it is stuck.
NVCC_TIMEOUT_S = 600


@dataclass(frozen=True)
class EntryCompile:
    """One entry point as compiled: ptxas's figures and its PTX and SASS text."""

    entry: str
    usage: PtxasUsage
    ptx: str = field(repr=False)
    sass: str | None = field(repr=False)  # None where no cuobjdump exists (see ProgramCompile.sass_note)

    @property
    def registers(self) -> int:
        return self.usage.registers

    @property
    def static_shared_bytes(self) -> int:
        return self.usage.static_shared_bytes

    @property
    def spill_bytes(self) -> int:
        return self.usage.spill_bytes

    @property
    def stack_frame_bytes(self) -> int:
        return self.usage.stack_frame_bytes


@dataclass(frozen=True)
class ProgramCompile:
    """A program compiled for one arch by one tool: every entry's resources, PTX and SASS."""

    build: Build
    entries: tuple[EntryCompile, ...]
    sass: str | None = field(repr=False)
    sass_note: str = ""  # where the SASS came from, or why there is none

    def entry(self, name: str) -> EntryCompile:
        for entry in self.entries:
            if entry.entry == name:
                return entry
        raise ValueError(f"entry: got {name!r}, expected one of {[e.entry for e in self.entries]}")

    @property
    def tool(self) -> str:
        return f"{self.build.tool} {self.build.tool_version}"


def available_tools() -> dict[str, str]:
    """Each CUDA tool usable here -> its version; a missing one is absent (see :func:`tool_problem`)."""
    found = {}
    for tool in CUDA_TOOLS:
        if tool_problem(tool) is None:
            found[tool] = nvcc_version(nvcc_path()) if tool == "nvcc" else _nvrtc_version()
    return found


def tool_problem(tool: str) -> str | None:
    """Why ``tool`` cannot compile here (None when it can)."""
    if tool not in CUDA_TOOLS:
        raise ValueError(f"tool: got {tool!r}, expected one of {CUDA_TOOLS}")
    if tool == "nvcc":
        if nvcc_path() is None:
            return "nvcc is not on PATH (install a CUDA toolkit)"
        try:
            nvcc_version(nvcc_path())
        except RuntimeError as error:
            return str(error)
        return None
    from tunekit.cuda import CudaUnavailableError

    try:
        _nvrtc_version()
        from tunekit.compilers.nvrtc import include_dirs

        include_dirs()
    except CudaUnavailableError as error:
        return str(error)
    return None


def _nvrtc_version() -> str:
    from tunekit.compilers.nvrtc import nvrtc_version

    return nvrtc_version()


def _nvcc_compile(program: CudaProgram, arch: int, nvcc: str) -> tuple[bytes, str, str]:
    with tempfile.TemporaryDirectory(prefix="tunekit-nvcc-") as tmp:
        src, out = Path(tmp) / "kernel.cu", Path(tmp) / "kernel.cubin"
        src.write_text(program.source, encoding="utf-8")
        cmd = [nvcc, "-cubin", f"-arch=sm_{arch}", "-std=c++17", "-Xptxas", "-v", "--keep", "--keep-dir", tmp,
               "-I", str(header_dir()), "-o", str(out), str(src)]  # fmt: skip
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=NVCC_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired as error:
            raise CompileError(f"nvcc: {program.name} for sm_{arch} took over {NVCC_TIMEOUT_S} s") from error
        log = done.stderr + done.stdout
        if done.returncode != 0 or not out.is_file():
            raise CompileError(
                f"nvcc failed on {program.name} for sm_{arch} (exit {done.returncode}):\n{log[-4000:]}"
            )
        ptx = (Path(tmp) / "kernel.ptx").read_text(encoding="utf-8")
        return out.read_bytes(), ptx, log


def nvcc_build(program: CudaProgram, arch: int | str, cache: CompileCache | bool = True) -> Build:
    """Compile ``program`` with nvcc for ``sm_<arch>``: cubin, PTX and ptxas log (cached)."""
    arch = check_arch(arch)
    problem = tool_problem("nvcc")
    if problem:
        raise CompileError(problem)
    nvcc = nvcc_path()
    cache = CompileCache() if cache is True else (cache or None)
    return cached_build(
        program, arch, "nvcc", nvcc_version(nvcc), lambda: _nvcc_compile(program, arch, nvcc), cache
    )


def _sass(cubin: bytes) -> tuple[str | None, str]:
    tool, where = sass_tool()
    if tool is None:
        return None, where
    with tempfile.TemporaryDirectory(prefix="tunekit-sass-") as tmp:
        path = Path(tmp) / "kernel.cubin"
        path.write_bytes(cubin)
        done = subprocess.run(
            [tool, "-sass", str(path)], capture_output=True, text=True, timeout=120, check=False
        )
    if done.returncode != 0:
        return None, f"{tool} -sass failed (exit {done.returncode}): {done.stderr.strip()[:300]}"
    return done.stdout, f"cuobjdump -sass ({where}: {tool})"


def compile_program(
    program: CudaProgram,
    arch: int | str,
    tool: str = "nvrtc",
    *,
    cache: CompileCache | bool = True,
    sass: bool = True,
) -> ProgramCompile:
    """Compile ``program`` for ``sm_<arch>`` with ``tool`` ("nvcc" or "nvrtc") and read every entry.

    Raises CompileError when the tool rejects the source or is missing, ValueError when ptxas's log
    lacks one of the program's entries. ``sass=False`` skips the disassembly.
    """
    arch = check_arch(arch)
    if tool not in CUDA_TOOLS:
        raise ValueError(f"tool: got {tool!r}, expected one of {CUDA_TOOLS}")
    if tool == "nvcc":
        build = nvcc_build(program, arch, cache)
    else:
        from tunekit.compilers.nvrtc import compile_cubin

        build = compile_cubin(program, arch, cache)
    usages = parse_ptxas_log_all(build.log)
    missing = [e.name for e in program.entries if e.name not in usages]
    if missing:
        raise ValueError(
            f"{program.name}: ptxas reported no entry {missing}; it has {sorted(usages)} (TK_KERNEL?)"
        )
    text, note = _sass(build.cubin) if sass else (None, "not disassembled (sass=False)")
    entries = tuple(
        EntryCompile(
            e.name,
            usages[e.name],
            ptx_function(build.ptx, e.name),
            sass_function(text, e.name) if text is not None else None,
        )  # fmt: skip
        for e in program.entries
    )
    return ProgramCompile(build, entries, text, note)


def compile_programs(
    jobs: Sequence[tuple[CudaProgram, int, str]],
    *,
    workers: int | None = None,
    cache: CompileCache | bool = True,
    sass: bool = True,
) -> list[ProgramCompile | CompileError]:
    """Compile (program, arch, tool) jobs in a thread pool; a failed job gives its CompileError in
    its place, so one bad kernel does not hide the others' results. ``workers`` defaults to the
    CPU count, at most 4 (2 on the shared CI machine)."""
    cache = CompileCache() if cache is True else cache
    workers = workers or min(4, os.cpu_count() or 1)

    def one(job: tuple[CudaProgram, int, str]) -> ProgramCompile | CompileError:
        try:
            return compile_program(job[0], job[1], job[2], cache=cache, sass=sass)
        except CompileError as error:
            return error
        except ValueError as error:  # the compiled program lacks an entry it declares
            return CompileError(str(error))

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, jobs))
