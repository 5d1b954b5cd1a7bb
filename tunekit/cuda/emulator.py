"""The CPU emulator for tunekit's CUDA kernels: the kernels' own source, compiled by g++ against
the emulator side of ``tk_cuda.cuh``, one fiber per CUDA thread (docs/cuda.md §2, DESIGN §4).

    runner = EmulatorRunner(load_profile("a100"), timeout_s=60)
    runner.launch(program, "lstm_forward", LaunchDims((4, 1, 1), (128, 1, 1)), [wx, out, B, T])
    runner.last                        # LaunchStats: build, run and child seconds, switches, fibers
    tunekit.cuda.emulator.LAUNCHES     # every launch of every runner in the process

Each launch is checked against the profile's limits before anything runs (LaunchRefused names the
limit and the numbers), its tensors are copied into shared memory, and a helper process forks a
child that runs the kernel there (tunekit.cuda.emu_server): a crash, a fault or a time-out ends the
child and comes back as KernelFault with the message; results reach the tensors only when the
launch succeeds.

Measured on this machine (2 cores shared with up to 9 jobs, load average 5-10; g++ 12, Linux
6.18; best of 10-30 runs, median in brackets):

* a fiber switch with its barrier bookkeeping: 33-63 ns (80 ns); through a shuffle 25-90 ns;
* a program compiles in 0.7-0.9 s wall (-O1; 0.2 s of CPU for an empty kernel, the header's floor);
* an empty launch of 32 threads: 0.7 ms from Python and back (3 ms), 0.4 ms of it in the child;
* the persistent LSTM step loop of tests/cuda/emu_steploop.cu (4 blocks x 128 threads, D=32,
  B=16, T=8: 32 mma and two grid syncs a step, 16.7k switches): 1.9-2.1 ms running the kernel
  (2.2-4.6 ms), 7 ms per launch from Python (the fork, the stacks' first touch at ~3 us a page,
  the helper round trip);
* the largest cooperative grid of the a100 profile, 216 blocks x 1024 threads (221k fibers): 3.3 s;
* cuda-alternating's LSTM bf16 case (T=13, D=40, B=5, N=3, forward and backward): 55 launches,
  0.66 s in launches, 80 ms of it inside kernels.
"""

from __future__ import annotations

import ctypes
import json
import math
import numbers
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tunekit.constraints.occupancy import shared_alloc_per_block
from tunekit.cuda import CudaProgram, KernelEntry, KernelFault, LaunchDims, LaunchRefused
from tunekit.cuda.emu_build import SWITCHES, Build, EmulatorBuildError, build_program, build_server
from tunekit.cuda.emu_server import KINDS, MAGIC, MAX_PARAMS, Mapping, Request, Status, check_layout, server

__all__ = ["LAUNCHES", "EmulatorBuildError", "EmulatorRunner", "LaunchStats", "co_resident_blocks"]

# CUDA C++ Programming Guide, "Technical Specifications per Compute Capability" (all of 5.x-9.x):
# block dimensions x, y <= 1024 and z <= 64; grid dimensions x <= 2^31 - 1, y and z <= 65535.
MAX_BLOCK_DIM = (1024, 1024, 64)
MAX_GRID_DIM = (2**31 - 1, 65535, 65535)
_ALIGN = 4096  # each argument buffer starts on its own page of the mapping

# A ptr<T>'s element type (tk_emu::type_name) -> the tensor dtypes it accepts
_DTYPES = {
    "float": ("float32",),
    "double": ("float64",),
    "bf16": ("bfloat16",),
    "f16": ("float16",),
    "int": ("int32",),
    "u32": ("uint32", "int32"),
    "int64": ("int64",),
    "uint64": ("uint64",),
    "int16": ("int16",),
    "uint16": ("uint16",),
}  # void, char, unsigned char and structs: raw bytes of any tensor
_INT_RANGE = {"i32": (-(2**31), 2**31 - 1), "u32": (0, 2**32 - 1), "i64": (-(2**63), 2**63 - 1)}
_FLT_MAX = 3.4028234663852886e38


@dataclass(frozen=True)
class LaunchStats:
    """What one launch cost: the build (0 when cached), the kernel's run inside the child, the child
    from fork to exit, and the whole launch as Python saw it (copies and the helper round trip)."""

    program: str
    entry: str
    build_s: float
    run_s: float
    child_s: float
    total_s: float
    switches: int
    fibers: int
    guard_pages: bool

    @property
    def ns_per_switch(self) -> float:
        return self.run_s * 1e9 / self.switches if self.switches else math.nan


def co_resident_blocks(profile: Any, threads: int, shared_bytes: int) -> int:
    """Blocks of ``threads`` threads and ``shared_bytes`` of shared memory that fit on the GPU at once
    (the cooperative-launch limit): sm_count x the per-SM minimum over resident blocks, warps,
    threads and shared memory (allocated as tunekit.constraints.occupancy says). Registers are not
    counted: the emulator cannot know ptxas's allocation."""
    warps = -(-threads // profile.warp_size)
    per_sm = min(
        profile.max_blocks_per_sm,
        profile.max_warps_per_sm // warps,
        profile.max_threads_per_sm // threads,
        profile.shared_memory_per_sm // shared_alloc_per_block(shared_bytes, profile),
    )
    return profile.sm_count * per_sm


class _Program:
    """A built program loaded into this process (ctypes) for its description."""

    def __init__(self, build: Build) -> None:
        self.build = build
        self.library = ctypes.CDLL(str(build.library))
        check_layout(self.library)
        cap = 1 << 16
        while True:
            out = ctypes.create_string_buffer(cap)
            n = self.library.tk_emu_describe(out, ctypes.c_size_t(cap))
            if n >= 0:
                break
            cap = -n + 1
        info = json.loads(out.value.decode())
        self.entries = {e["name"]: e for e in info["entries"]}
        self.asm_switch = bool(info["asm_switch"])  # False: the ucontext fallback
        self.static_seen: dict[str, int] = {}  # static shared bytes found at run time (helpers' TK_SHARED)


# Every launch of every runner in this process (runner_for makes a runner a call), for figures:
# e.g. sum(s.total_s for s in LAUNCHES) after a test case
LAUNCHES: deque[LaunchStats] = deque(maxlen=100_000)
_LOADED: dict[tuple[str, str, str, str], _Program] = {}
_LOADED_LOCK = threading.Lock()


class EmulatorRunner:
    """Runs CUDA programs on CPU tensors in the emulator (a :class:`tunekit.cuda.CudaRunner`).

    Args:
        profile: the GPUProfile (or its name) whose limits launches are checked against; default a100.
        timeout_s: a launch running longer is ended and reported as KernelFault (0: no limit).
        stack_kib: each CUDA thread's fiber stack (a guard page below it reports an overflow).
        switch: the fibers' context switch: "asm" (x86-64, the default) or "ucontext" (portable).
    """

    def __init__(
        self, profile: Any = None, *, timeout_s: float = 120.0, stack_kib: int = 256, switch: str = "asm"
    ) -> None:
        from tunekit.hardware import load_profile

        self.profile = load_profile(profile if profile is not None else "a100")
        if timeout_s < 0:
            raise ValueError(f"timeout_s: got {timeout_s}, expected >= 0 (0: no limit)")
        if stack_kib < 16:
            raise ValueError(f"stack_kib: got {stack_kib}, expected >= 16")
        self.timeout_s = float(timeout_s)
        self.stack_kib = int(stack_kib)
        if switch not in SWITCHES:
            raise ValueError(f"switch: got {switch!r}, expected one of {sorted(SWITCHES)}")
        self.switch = switch
        self.stats: deque[LaunchStats] = deque(maxlen=100_000)

    @property
    def last(self) -> LaunchStats | None:
        """The most recent launch's figures."""
        return self.stats[-1] if self.stats else None

    def load(self, program: CudaProgram) -> tuple[_Program, float]:
        """The program built (or found in the cache) and loaded; seconds spent building it now.
        Loaded programs are kept for the process: every runner (runner_for makes one a call) shares them."""
        key = (self.switch, program.name, program.digest, repr(program.entries))
        with _LOADED_LOCK:
            if key in _LOADED:
                return _LOADED[key], 0.0
            build = build_program(program, switch=self.switch)
            loaded = _Program(build)
            missing = [e.name for e in program.entries if e.name not in loaded.entries]
            if missing:
                raise EmulatorBuildError(f"program {program.name!r}: no exported entries {missing}")
            _LOADED[key] = loaded
            return loaded, build.seconds

    def launch(self, program: CudaProgram, entry: str, dims: LaunchDims, args: Sequence[Any]) -> None:
        """Run ``program``'s ``entry`` with ``dims`` on ``args`` (CPU tensors and scalars in the
        entry's order); results are in the tensors on return. LaunchRefused over a limit,
        KernelFault for a fault, ValueError/TypeError for bad arguments."""
        t0 = time.perf_counter()
        spec = program.entry(entry)
        loaded, build_s = self.load(program)
        desc = loaded.entries[entry]
        values = _check_args(spec, desc, args)
        static = max(desc["static_shared"], loaded.static_seen.get(entry, 0))
        self._check_limits(spec, dims, static)
        executable = str(build_server())
        while True:
            figures, grow = self._run(loaded, spec, desc, dims, values, static, executable)
            if grow is None:
                break
            # a TK_SHARED in a device function, found when a block reached it: check again with it
            loaded.static_seen[entry] = static = grow
            self._check_limits(spec, dims, static)
        run_s, child_s, switches, fibers, guard = figures
        total_s = time.perf_counter() - t0
        stats = LaunchStats(program.name, entry, build_s, run_s, child_s, total_s, switches, fibers, guard)
        self.stats.append(stats)
        LAUNCHES.append(stats)

    # ---- limits ------------------------------------------------------------------------------

    def _check_limits(self, spec: KernelEntry, dims: LaunchDims, static: int) -> None:
        p = self.profile
        name = f"{spec.name} on {p.name}"
        for axis, (v, cap) in enumerate(zip(dims.block, MAX_BLOCK_DIM, strict=True)):
            if v > cap:
                raise LaunchRefused(f"{name}: block dimension {'xyz'[axis]} = {v} > {cap} (CUDA's limit)")
        for axis, (v, cap) in enumerate(zip(dims.grid, MAX_GRID_DIM, strict=True)):
            if v > cap:
                raise LaunchRefused(f"{name}: grid dimension {'xyz'[axis]} = {v} > {cap} (CUDA's limit)")
        threads = dims.threads_per_block
        if threads > p.max_threads_per_block:
            raise LaunchRefused(
                f"{name}: {threads} threads per block > {p.max_threads_per_block} (the profile's limit)"
            )
        if static > p.shared_memory_per_block_default:
            raise LaunchRefused(
                f"{name}: {static} B of static shared memory (TK_SHARED) > "
                f"{p.shared_memory_per_block_default} B, the most a block may declare statically "
                "(ptxas refuses more; use tk::dynamic_shared)"
            )
        shared = static + dims.shared_bytes
        if shared > p.shared_memory_per_block_optin:
            raise LaunchRefused(
                f"{name}: {static} B static + {dims.shared_bytes} B dynamic = {shared} B of shared memory "
                f"per block > {p.shared_memory_per_block_optin} B (the opt-in limit)"
            )
        if spec.cooperative:
            fit = co_resident_blocks(p, threads, shared)
            if dims.blocks > fit:
                raise LaunchRefused(
                    f"{name}: a cooperative grid of {dims.blocks} blocks > {fit} that fit co-resident "
                    f"({p.sm_count} SMs x {fit // p.sm_count} blocks of {threads} threads and {shared} B "
                    "shared memory per SM)"
                )

    # ---- one launch --------------------------------------------------------------------------

    def _run(self, loaded: _Program, spec: KernelEntry, desc: dict, dims: LaunchDims, values: list,
             static: int, executable: str) -> tuple[tuple, int | None]:  # fmt: skip
        groups, offsets, data_bytes = _layout(spec, values)
        header = -(-ctypes.sizeof(Request) // _ALIGN) * _ALIGN
        size = header + data_bytes
        mapping = Mapping(size)
        try:
            req = mapping.request()
            req.magic = MAGIC
            req.size = size
            req.library = str(loaded.build.library).encode()
            req.entry = spec.name.encode()
            req.grid[:] = dims.grid
            req.block[:] = dims.block
            req.dynamic_shared = dims.shared_bytes
            req.static_shared_checked = static
            req.stack_bytes = self.stack_kib * 1024
            req.timeout_s = self.timeout_s
            req.cooperative = int(spec.cooperative)
            req.nparams = len(spec.params)
            for i, ((pname, kind), value) in enumerate(zip(spec.params, values, strict=True)):
                prm = req.params[i]
                prm.kind = KINDS[kind]
                prm.name = pname.encode()[:63]
                if kind == "ptr":
                    g, delta, nbytes = offsets[i]
                    prm.offset = header + groups[g][3] + delta
                    prm.bytes = nbytes
                else:
                    prm.bits = value
            for addr, _, nbytes, off in groups:
                ctypes.memmove(mapping.address + header + off, addr, nbytes)
            server(executable).run(mapping, self.timeout_s)
            status = req.status
            message = req.message.decode(errors="replace")
            if status == Status.STATIC_GREW:
                return (), int(req.static_shared_used)
            if status == Status.REFUSED:
                raise LaunchRefused(message)
            if status != Status.OK:
                raise KernelFault(message or f"the launch ended with status {status}")
            writable = {offsets[i][0] for i, (_, kind) in enumerate(spec.params)
                        if kind == "ptr" and not desc["params"][i]["const"]}  # fmt: skip
            for g in writable:
                addr, _, nbytes, off = groups[g]
                ctypes.memmove(addr, mapping.address + header + off, nbytes)
            figures = (
                req.run_ns * 1e-9,
                req.child_ns * 1e-9,
                int(req.switches),
                int(req.fibers),
                bool(req.guard_pages),
            )
            del req
            return figures, None
        finally:
            mapping.close()


def _layout(spec: KernelEntry, values: list) -> tuple[list, dict, int]:
    """Group the ptr arguments by overlapping memory (aliases share one copy, so a write through one
    shows through the other): groups [(address, end, bytes, offset)], per param (group, delta, bytes),
    and the bytes all groups take (each on its own pages)."""
    spans = sorted(
        (v[0], v[0] + v[1], i)
        for i, ((_, k), v) in enumerate(zip(spec.params, values, strict=True))
        if k == "ptr"
    )
    groups: list[list[int]] = []
    member: dict[int, int] = {}
    for start, end, i in spans:
        if groups and start < groups[-1][1]:
            groups[-1][1] = max(groups[-1][1], end)
        else:
            groups.append([start, end])
        member[i] = len(groups) - 1
    out, offset = [], 0
    for start, end in groups:
        out.append((start, end, end - start, offset))
        offset += -(-(end - start) // _ALIGN) * _ALIGN or _ALIGN
    offsets = {i: (g, values[i][0] - groups[g][0], values[i][1]) for i, g in member.items()}
    return out, offsets, offset


def _dtype_name(tensor: Any) -> str:
    return str(tensor.dtype).removeprefix("torch.")


def _check_args(spec: KernelEntry, desc: dict, args: Sequence[Any]) -> list:
    """Per parameter: (address, bytes) of a tensor, or a scalar's bits; errors name the parameter."""
    import torch

    if len(args) != len(spec.params):
        names = [p for p, _ in spec.params]
        raise TypeError(f"{spec.name}: got {len(args)} arguments, expected {len(names)} ({', '.join(names)})")
    if len(args) > MAX_PARAMS:
        raise ValueError(f"{spec.name}: {len(args)} parameters, the emulator takes at most {MAX_PARAMS}")
    values = []
    for (pname, kind), arg, pdesc in zip(spec.params, args, desc["params"], strict=True):
        where = f"{spec.name} parameter '{pname}' ({kind})"
        if kind == "ptr":
            if not isinstance(arg, torch.Tensor):
                raise TypeError(f"{where}: got {type(arg).__name__}, expected a torch.Tensor")
            if arg.device.type != "cpu":
                raise ValueError(f"{where}: a tensor on {arg.device}; the emulator runs on CPU tensors")
            if not arg.is_contiguous():
                raise ValueError(
                    f"{where}: a non-contiguous tensor (strides {arg.stride()}); pass .contiguous()"
                )
            accepted = _DTYPES.get(pdesc["type"])
            if accepted is not None and _dtype_name(arg) not in accepted:
                raise TypeError(
                    f"{where}: a {_dtype_name(arg)} tensor, but the kernel takes tk::ptr<{pdesc['type']}> "
                    f"(expected {' or '.join(accepted)})"
                )
            values.append((arg.data_ptr(), arg.numel() * arg.element_size()))
        elif kind == "f32":
            if isinstance(arg, bool) or not isinstance(arg, numbers.Real):
                raise TypeError(f"{where}: got {type(arg).__name__}, expected a float")
            f = float(arg)
            if math.isfinite(f) and abs(f) > _FLT_MAX:
                raise ValueError(f"{where}: {f} is outside float32's range")
            values.append(int.from_bytes(ctypes.c_float(f), "little"))
        else:
            if isinstance(arg, bool) or not isinstance(arg, numbers.Integral):
                raise TypeError(f"{where}: got {type(arg).__name__}, expected an int")
            lo, hi = _INT_RANGE[kind]
            v = int(arg)
            if not lo <= v <= hi:
                raise ValueError(f"{where}: {v} is outside [{lo}, {hi}]")
            values.append(v & (2**64 - 1))
    return values
