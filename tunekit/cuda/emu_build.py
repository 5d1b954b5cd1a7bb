"""Building the CUDA emulator's binaries with the system g++, cached by content hash.

Three kinds of file, each compiled once per content and kept in :func:`cache_dir`:

* ``rt-<hash>.o``: the emulator runtime (``templates/cuda/emu/tk_emu_{sched,warp,launch}.cpp``:
  fibers, scheduler, collectives, faults), compiled once and linked into every program;
* ``server-<hash>``: the helper process that forks a child per launch (``tk_emu_server.cpp``);
* ``<program>-<hash>.so``: a kernel program, its source byte-identical with the GPU build, plus a
  generated shim translation unit that ``#include``s it and exports one entry per KernelEntry
  (``tk_emu_shim.h``; the shim's static_asserts check the kernel's C++ parameter types against the
  entry's kinds).

A hash covers the sources, every emulator header, the flags and the compiler's version. Files are
written under a temporary name and renamed into place, so a second process building the same hash
at the same time never sees half a file, and each keeps its SHA-256 in a ``.sha256`` sidecar (the
binary-entry format of tunekit.cache): a damaged or altered file is rebuilt, never loaded.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from tunekit.cache import read_binary_entry, write_binary_entry
from tunekit.cuda import CudaProgram

__all__ = ["Build", "EmulatorBuildError", "build_program", "build_server", "cache_dir", "compiler"]

# -O1: a kernel program compiles in ~0.8 s and runs within 1.3x of -O2 (measured in the module
# docstring of tunekit.cuda.emulator); the runtime, compiled once, gets -O2.
PROGRAM_FLAGS = ("-std=c++20", "-O1", "-fPIC", "-shared", "-fvisibility=hidden", "-fstack-clash-protection")
RUNTIME_FLAGS = ("-std=c++20", "-O2", "-fPIC", "-fvisibility=hidden", "-fno-strict-aliasing")
SERVER_FLAGS = ("-std=c++20", "-O2")
# Common to all: no exceptions or RTTI (nothing uses them; faster to compile); no FMA contraction
# (the kernel's arithmetic as written; the mma model uses explicit fmaf); no CET (the fibers' stack
# switch returns into a fresh stack, which a shadow stack would refuse).
COMMON_FLAGS = ("-fno-exceptions", "-fno-rtti", "-ffp-contract=off", "-fcf-protection=none")
MIN_GCC = 12
# The fibers' context switch: hand-written x86-64 (40-70 ns), or ucontext's swapcontext (about 4x
# slower: it saves the signal mask with a system call), the fallback for other CPUs
SWITCHES = {"asm": (), "ucontext": ("-DTK_EMU_UCONTEXT",)}
_KIND_CHAR = {"ptr": ("p", "a tk::ptr<T>"), "i32": ("i", "an int"), "u32": ("u", "an unsigned"),
              "i64": ("l", "a long long (int64)"), "f32": ("f", "a float")}  # fmt: skip


class EmulatorBuildError(RuntimeError):
    """g++ is missing or too old, or it rejected a kernel program (the message has its errors)."""


@dataclass(frozen=True)
class Build:
    """A built program: the shared library and how long the build took (0 when cached)."""

    library: Path
    seconds: float
    cached: bool


def _templates() -> Path:
    return Path(str(resources.files("tunekit.templates").joinpath("cuda")))


@functools.cache
def _emu_sources() -> dict[str, bytes]:
    root = _templates()
    files = {"tk_cuda.cuh": (root / "tk_cuda.cuh").read_bytes()}
    for path in sorted((root / "emu").iterdir()):
        if path.suffix in (".h", ".cpp"):
            files[f"emu/{path.name}"] = path.read_bytes()
    return files


@functools.cache
def compiler() -> tuple[str, str]:
    """(path, version line) of g++ >= 12; EmulatorBuildError naming what was found otherwise."""
    path = shutil.which("g++")
    if path is None:
        raise EmulatorBuildError(
            "the CUDA emulator needs g++ >= 12 (C++20) on PATH; none found (apt install g++)"
        )
    out = subprocess.run(
        [path, "-dumpfullversion"], capture_output=True, text=True, check=False
    ).stdout.strip()
    major = int(out.split(".")[0]) if out[:1].isdigit() else 0
    if major < MIN_GCC:
        raise EmulatorBuildError(
            f"the CUDA emulator needs g++ >= {MIN_GCC} (C++20); {path} is version {out or '?'}"
        )
    return path, out


@functools.cache
def _cpu_flags() -> tuple[str, ...]:
    """-mfma where the CPU has FMA (the mma model's fmaf is then one instruction, not a libm call)."""
    try:
        info = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return ()
    return ("-mfma",) if re.search(r"^flags\s*:.*\bfma\b", info, re.M) else ()


def cache_dir() -> Path:
    """Per-user private directory of the emulator's binaries (loaded as code, so never shared):
    ``tunekit.cache.cache_dir("cuda-emu")``, the one home of tunekit's caches."""
    from tunekit.cache import cache_dir as shared_cache_dir

    return shared_cache_dir("cuda-emu")


def _verified(path: Path) -> bool:
    """The cached binary and its ``.sha256`` sidecar agree (tunekit.cache's binary-entry format)."""
    return read_binary_entry(path) is not None


def _digest(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()[:24]


def _run(cmd: list[str], what: str, cwd: Path) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, check=False)
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        shown = "\n".join(lines[:60]) + (f"\n... ({len(lines) - 60} more lines)" if len(lines) > 60 else "")
        raise EmulatorBuildError(f"g++ failed to build {what}:\n{shown}")


def _build_once(target: Path, compile_to: Callable[[Path], None]) -> float:
    """Run ``compile_to(tmp_path)`` unless ``target`` is there and verified; rename it into place
    and write its sidecar hash. Seconds taken (0 when cached)."""
    if _verified(target):
        return 0.0
    t0 = time.perf_counter()
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        compile_to(Path(tmp))
        write_binary_entry(target, Path(tmp).read_bytes())
    finally:
        Path(tmp).unlink(missing_ok=True)
    return time.perf_counter() - t0


def _flags(*groups: tuple[str, ...]) -> list[str]:
    return [f for group in groups for f in group]


RUNTIME_SOURCES = ("tk_emu_sched.cpp", "tk_emu_warp.cpp", "tk_emu_launch.cpp")


@functools.cache
def _runtime_object(switch: str) -> Path:
    """The runtime's three sources compiled and combined into one relocatable object."""
    gxx, version = compiler()
    sources = _emu_sources()
    flags = _flags(RUNTIME_FLAGS, COMMON_FLAGS, _cpu_flags(), SWITCHES[switch])
    key = _digest(version, " ".join(flags), *(name.encode() + data for name, data in sources.items()))
    target = cache_dir() / f"rt-{key}.o"

    def compile_to(out: Path) -> None:
        with tempfile.TemporaryDirectory(prefix="build-rt-", dir=cache_dir()) as tmp:
            srcs = [str(_templates() / "emu" / name) for name in RUNTIME_SOURCES]
            _run([gxx, *flags, "-I", str(_templates()), "-c", *srcs], "the emulator runtime", Path(tmp))
            objs = [str(Path(tmp) / name.replace(".cpp", ".o")) for name in RUNTIME_SOURCES]
            _run([gxx, "-r", "-nostdlib", *objs, "-o", str(out)], "the emulator runtime", Path(tmp))

    _build_once(target, compile_to)
    return target


@functools.cache
def build_server() -> Path:
    """The helper process's executable (built once per content)."""
    gxx, version = compiler()
    sources = _emu_sources()
    flags = _flags(SERVER_FLAGS, COMMON_FLAGS)
    key = _digest(
        version, " ".join(flags), sources["emu/tk_emu_server.cpp"], sources["emu/tk_emu_protocol.h"]
    )
    target = cache_dir() / f"server-{key}"
    src = _templates() / "emu" / "tk_emu_server.cpp"
    _build_once(
        target, lambda out: _run([gxx, *flags, str(src), "-o", str(out)], "the emulator server", cache_dir())
    )
    return target


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:80] or "program"


def shim_source(program: CudaProgram, source_name: str) -> str:
    """The generated translation unit: the kernel's source, then one checked export per entry."""
    lines = [
        f"// tunekit CUDA emulator: exports of program {program.name!r} (generated; do not edit)",
        f'#include "{source_name}"',
        '#include "emu/tk_emu_shim.h"',
    ]
    for entry in program.entries:
        fn, n = entry.name, len(entry.params)
        names = ", ".join(p for p, _ in entry.params)
        lines.append(
            f'static_assert(::tk_emu::param_count(&{fn}) == {n}, "{fn}: the KernelEntry lists {n} parameters '
            f'({names}); the kernel takes a different number");'
        )
        for i, (pname, kind) in enumerate(entry.params):
            char, text = _KIND_CHAR[kind]
            lines.append(
                f"static_assert(::tk_emu::param_kind<{i}>(&{fn}) == '{char}', \"{fn} parameter {i} "
                f"'{pname}': the KernelEntry says {kind}, so the kernel must take {text}\");"
            )
        lines.append(f"TK_EMU_ENTRY({fn})")
    return "\n".join(lines) + "\n"


def build_program(program: CudaProgram, *, switch: str = "asm") -> Build:
    """The program's shared library, built (or found) in the cache. ``switch``: the fibers' context
    switch, ``"asm"`` (x86-64; elsewhere it falls back to ucontext by itself) or ``"ucontext"``."""
    if switch not in SWITCHES:
        raise ValueError(f"switch: got {switch!r}, expected one of {sorted(SWITCHES)}")
    gxx, version = compiler()
    runtime = _runtime_object(switch)
    sources = _emu_sources()
    source_name = f"{_safe(program.name)}.cu"
    shim = shim_source(program, source_name)
    flags = _flags(PROGRAM_FLAGS, COMMON_FLAGS)
    key = _digest(version, " ".join(flags), program.source, shim, runtime.name,
                  *(name.encode() + data for name, data in sources.items()))  # fmt: skip
    target = cache_dir() / f"{_safe(program.name)}-{key}.so"
    if _verified(target):
        return Build(target, 0.0, True)

    def compile_to(out: Path) -> None:
        with tempfile.TemporaryDirectory(prefix="build-", dir=cache_dir()) as tmp:
            work = Path(tmp)
            (work / source_name).write_text(program.source, encoding="utf-8")
            (work / "shim.cpp").write_text(shim, encoding="utf-8")
            cmd = [
                gxx,
                *flags,
                "-I",
                str(_templates()),
                "-I",
                str(work),
                "shim.cpp",
                str(runtime),
                "-o",
                str(out),
            ]
            _run(cmd, f"program {program.name!r}", work)

    seconds = _build_once(target, compile_to)
    return Build(target, seconds, False)
