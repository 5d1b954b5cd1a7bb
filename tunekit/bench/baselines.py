"""Baselines for the solver benchmark: FlashRNN's ConstrINT solver and Kernel Tuner's search-space builder.

Both tools are optional (``pip install tunekit[bench]``). A missing package or an error inside a tool comes
back as a :class:`BaselineResult` that says so; these functions never raise for either.

**FlashRNN** (1.0.8). ``flashrnn.flashrnn.flashrnn._FlashRNNCUDAFused.instance(config)`` writes the
constraint text of its fused CUDA kernel (forward and backward tilings, warps, register and shared-memory
budgets) from ``get_gpu_info(device)``, a compiled CUDA query, and hands it with its value-ordering list to
``load_parametric_and_test_and_bisect``. That function parses the text and calls
``solve_constrint(constr, var, value_refinements, 1)`` before it compiles anything. We run FlashRNN's own
``instance`` with three names of *its* module replaced for the duration of the call only
(``unittest.mock.patch.object``, undone on exit):

- ``get_gpu_info`` returns the profile's numbers: ``maxThreadsPerBlock`` = ``max_threads_per_block``,
  ``regsPerMultiprocessor`` = ``registers_per_sm``, ``multiProcessorCount`` = ``sm_count``,
  ``sharedMemPerBlockOptin`` = ``shared_memory_per_block_optin`` (the only four keys its text reads);
- ``torch`` is a view of torch whose ``cuda.current_device()`` is 0 and whose ``zeros`` makes ``meta``
  tensors (the test inputs it would send to the compiled kernel);
- ``load_parametric_and_test_and_bisect`` records its arguments and stops the call.

Then we time what that function does first: ``parse_expression`` + ``solve_constrint`` with one solution
asked. ``solve_constrint`` carries an on-disk pickle cache (``~/.cache/constrint``); we call the undecorated
function so every timing is a cold solve. FlashRNN then compiles the kernel and bisects the register-cached
tile count with further solves on a GPU; that part is not timed, so our figure is a lower bound of its tuning.

**Kernel Tuner** (1.5.0) has no hardware model: it enumerates a Cartesian product under restrictions that
the user writes. :func:`kernel_tuner_space` writes restrictions in the spirit of tunekit's cuda-fused
model (threads per block, 255 registers per thread, register file, opt-in shared memory, co-resident grid,
tile divisibility) with this module's own estimates; :func:`time_kernel_tuner` times
``kernel_tuner.searchspace.Searchspace`` building that space. The restrictions are what WE pass.

The runner and its JSON/markdown report (``python -m tunekit.bench.baselines``) are in
:mod:`tunekit.bench.baselines_report`.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import multiprocessing
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any
from unittest import mock

__all__ = [
    "BaselineResult",
    "GpuLimits",
    "flashrnn_gpu_info",
    "gpu_limits",
    "kernel_tuner_space",
    "time_flashrnn",
    "time_kernel_tuner",
]

_DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
# Registers a thread of the Kernel Tuner space needs besides cached R fragments and fp32 accumulators
# (indices, pointers, pointwise temporaries): an assumption of this baseline, not a measurement.
_BASE_REGS = 32


@dataclass(frozen=True)
class BaselineResult:
    """One timed run of a baseline tool on one shape."""

    tool: str  # "flashrnn" | "kernel_tuner"
    installed: bool
    seconds: float  # wall time of the solve / construction; 0.0 when it did not run
    solutions_found: int  # FlashRNN asks for 1 solution; Kernel Tuner: size of the built space
    first_solution: dict[str, int] | None  # what the tool would pick (FlashRNN) / try first (Kernel Tuner)
    note: str = ""  # "not installed: ...", "no solution", "timeout ...", or the tool's exception
    details: Mapping[str, Any] = field(default_factory=dict)  # tool version, limits passed, space size


@dataclass(frozen=True)
class GpuLimits:
    """The GPU numbers the baselines need (from a tunekit profile or a plain mapping)."""

    name: str
    sm_count: int
    shared_memory_per_block_optin: int
    registers_per_sm: int
    max_registers_per_thread: int
    max_threads_per_block: int


def gpu_limits(gpu: Any) -> GpuLimits:
    """Limits from a profile name/alias (``tunekit.hardware.load_profile``), a profile, or a mapping."""
    if isinstance(gpu, GpuLimits):
        return gpu
    if isinstance(gpu, Mapping):
        values = dict(gpu)
        values.setdefault("name", "custom")
        return GpuLimits(**{f: values[f] for f in GpuLimits.__dataclass_fields__})
    from tunekit.hardware import load_profile

    p = load_profile(gpu)
    return GpuLimits(
        p.name,
        p.sm_count,
        p.shared_memory_per_block_optin,
        p.registers_per_sm,
        p.max_registers_per_thread,
        p.max_threads_per_block,
    )


def flashrnn_gpu_info(gpu: Any) -> dict[str, int]:
    """The dict we hand FlashRNN in place of its CUDA ``get_gpu_info`` (cudaDeviceProp field names)."""
    lim = gpu_limits(gpu)
    return {
        "maxThreadsPerBlock": lim.max_threads_per_block,
        "regsPerMultiprocessor": lim.registers_per_sm,
        "multiProcessorCount": lim.sm_count,
        "sharedMemPerBlockOptin": lim.shared_memory_per_block_optin,
    }


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"


def _missing(tool: str, pip_name: str, err: Exception) -> BaselineResult:
    return BaselineResult(tool, False, 0.0, 0, None, f"not installed: pip install {pip_name} ({err})")


def _failed(tool: str, err: BaseException, details: Mapping[str, Any]) -> BaselineResult:
    installed = importlib.util.find_spec(tool) is not None  # e.g. an unknown GPU is found before the import
    return BaselineResult(tool, installed, 0.0, 0, None, f"{type(err).__name__}: {err}", dict(details))


# ---- FlashRNN -----------------------------------------------------------------------------------------


class _Captured(Exception):
    """Raised by our stand-in for ``load_parametric_and_test_and_bisect`` once it has its arguments."""


def _flashrnn_problem(cell: str, head_dim: int, heads: int, batch: int, dtype: str, info: dict[str, int]):
    """FlashRNN's config, constraint text and value refinements for its fused kernel (None text: no fused)."""
    import torch

    frm = importlib.import_module("flashrnn.flashrnn.flashrnn")
    config = frm.FlashRNNConfig(
        backend="cuda_fused", function=cell, head_dim=head_dim, num_heads=heads, batch_size=batch, dtype=dtype
    )
    if config.backend != "cuda_fused":  # FlashRNN itself moves e.g. GRU to its alternating kernel
        return config, None, None
    captured: dict[str, Any] = {}

    def capture(**kwargs: Any) -> None:
        captured.update(kwargs)
        raise _Captured

    class _TorchView:
        """torch as FlashRNN's module sees it during the call: device 0, test inputs on ``meta``."""

        cuda = SimpleNamespace(current_device=lambda: 0)

        def __getattr__(self, name: str) -> Any:
            return getattr(torch, name)

        @staticmethod
        def zeros(*shape: Any, device: Any = None, **kwargs: Any) -> Any:
            return torch.zeros(*shape, device="meta", **kwargs)

    with (
        mock.patch.object(frm, "get_gpu_info", lambda device_id: dict(info)),
        mock.patch.object(frm, "torch", _TorchView()),
        mock.patch.object(frm, "load_parametric_and_test_and_bisect", capture),
        contextlib.suppress(_Captured),
    ):
        frm._FlashRNNCUDAFused.instance(config)
    if "constraint_str" not in captured:
        raise RuntimeError("FlashRNN did not reach load_parametric_and_test_and_bisect")
    return config, captured["constraint_str"], captured["value_refinements"]


def _flashrnn_solve(cell: str, head_dim: int, heads: int, batch: int, dtype: str, gpu: GpuLimits):
    """Build FlashRNN's fused-kernel CSP and solve it as FlashRNN does; runs in this process."""
    try:
        cst = importlib.import_module("flashrnn.autotune.constrint")
    except ImportError as err:
        return _missing("flashrnn", "flashrnn", err)
    info = flashrnn_gpu_info(gpu)
    details: dict[str, Any] = {"version": _version("flashrnn"), "gpu": gpu.name, "gpu_info_passed": info}
    try:
        config, text, refinements = _flashrnn_problem(cell, head_dim, heads, batch, dtype, info)
        details["flashrnn_batch_size"] = config.batch_size  # FlashRNN sets 16 for float32 cuda_fused
        if text is None:
            note = (
                f"FlashRNN has no fused kernel for {cell}: its config switches to backend {config.backend!r}"
            )
            return BaselineResult("flashrnn", True, 0.0, 0, None, note, details)
        solve = getattr(cst.solve_constrint, "__wrapped__", cst.solve_constrint)  # skip the pickle cache
        start, cpu = time.perf_counter(), time.process_time()
        constr, variables = cst.parse_expression(text)
        sols = solve(constr, variables, refinements, 1)
        seconds = time.perf_counter() - start
        details["cpu_seconds"] = time.process_time() - cpu  # less sensitive than wall time to a busy host
    except Exception as err:  # a tool error is a result, not a crash
        return _failed("flashrnn", err, {**details, "traceback": traceback.format_exc(limit=3)})
    first = {k: int(v) for k, v in sols[0].items()} if sols else None
    return BaselineResult("flashrnn", True, seconds, len(sols), first, "" if sols else "no solution", details)


def _child(conn: Any, args: tuple) -> None:
    conn.send(_flashrnn_solve(*args))
    conn.close()


def time_flashrnn(
    cell: str,
    head_dim: int,
    heads: int,
    batch: int,
    dtype: str,
    gpu: Any,
    timeout_s: float | None = None,
) -> BaselineResult:
    """Time FlashRNN's ConstrINT solve of its fused-kernel configuration for one shape on ``gpu``.

    ``gpu``: a tunekit profile name/alias, a ``GPUProfile``, or a mapping with :class:`GpuLimits`' fields.
    With ``timeout_s``, the solve runs in a forked child that is stopped after that many seconds.
    """
    try:
        lim = gpu_limits(gpu)
    except Exception as err:
        return _failed("flashrnn", err, {})
    args = (cell, head_dim, heads, batch, dtype, lim)
    if timeout_s is None:
        return _flashrnn_solve(*args)
    ctx = multiprocessing.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(send, args), daemon=True)
    proc.start()
    send.close()
    try:
        if recv.poll(timeout_s):
            return recv.recv()
        note = f"timeout: no answer within {timeout_s:g} s (stopped)"
        details = {
            "version": _version("flashrnn"),
            "gpu": lim.name,
            "gpu_info_passed": flashrnn_gpu_info(lim),
        }
        return BaselineResult("flashrnn", True, float(timeout_s), 0, None, note, details)
    except EOFError:
        return BaselineResult("flashrnn", True, 0.0, 0, None, f"child exited with code {proc.exitcode}")
    finally:
        if proc.is_alive():
            proc.terminate()
        proc.join(5)
        recv.close()


# ---- Kernel Tuner -------------------------------------------------------------------------------------


def kernel_tuner_space(
    cell: str, head_dim: int, heads: int, batch: int, dtype: str, gpu: Any
) -> tuple[dict[str, list[int]], list[str]]:
    """Tune parameters and restriction strings of a cuda-fused-like kernel, written as for Kernel Tuner.

    One block per SM, each owning a (gate rows x hidden columns) tile of R for some heads and a batch
    block; warps split the block's gate rows, each looping over ``warp_loop`` 16-row mma tiles and keeping
    ``cached_tiles`` of its R tiles in registers, the rest of R in shared memory. The register and shared
    memory formulas are estimates written here, not a hardware model of Kernel Tuner's.
    """
    from tunekit.cells import get_cell

    lim = gpu_limits(gpu)
    gates = len(get_cell(cell).r_gates)
    size = _DTYPE_BYTES[dtype]
    tk = 8 if dtype == "float32" else 16  # mma k: m16n8k8 (tf32) or m16n8k16 (fp16/bf16)
    rows, cols, bp = gates * head_dim, head_dim, -(-batch // 8) * 8  # batch padded to the mma n=8
    tile_regs = 16 * tk * size // (32 * 4)  # 32-bit registers per thread for one cached 16 x tk R tile
    smem = (
        f"(n // head_groups) * ((rows // blocks_gate) * (cols // blocks_hidden)"
        f" - cached_tiles * (block_size_x // 32) * 16 * {tk}) * {size}"  # R not held in registers
        f" + (n // head_groups) * (bp // blocks_batch) * (cols // blocks_hidden) * {size}"  # y tile
        f" + (n // head_groups) * (bp // blocks_batch) * (rows // blocks_gate) * 4"  # fp32 gate sums
    )
    regs = f"({_BASE_REGS} + {tile_regs} * cached_tiles + warp_loop * 16 * (bp // blocks_batch) // 32)"
    consts = {"rows": rows, "cols": cols, "bp": bp, "n": heads}
    restrictions = [
        "rows % (blocks_gate * 16) == 0",  # gate rows split into whole 16-row mma tiles
        f"cols % (blocks_hidden * {tk}) == 0",  # hidden split into whole mma k tiles
        "bp % (blocks_batch * 8) == 0",  # batch blocks of whole mma n=8 columns
        "n % head_groups == 0",  # heads split evenly
        f"blocks_gate * blocks_hidden * blocks_batch * head_groups <= {lim.sm_count}",  # co-resident grid
        "rows // blocks_gate == (block_size_x // 32) * warp_loop * 16",  # warps x loop cover the rows
        f"cached_tiles * {tk} * blocks_hidden <= warp_loop * cols",  # cache at most the warp's own tiles
        f"{regs} <= {lim.max_registers_per_thread}",  # registers per thread
        f"block_size_x * {regs} <= {lim.registers_per_sm}",  # register file of one SM
        f"{smem} <= {lim.shared_memory_per_block_optin}",  # opt-in shared memory per block
    ]
    for name, value in consts.items():
        restrictions = [_substitute(r, name, value) for r in restrictions]
    tune_params = {
        "block_size_x": list(range(32, lim.max_threads_per_block + 1, 32)),
        "blocks_gate": list(range(1, lim.sm_count + 1)),
        "blocks_hidden": list(range(1, lim.sm_count + 1)),
        "blocks_batch": list(range(1, bp // 8 + 1)),
        "head_groups": list(range(1, heads + 1)),
        "warp_loop": [1, 2, 3, 4, 6, 8],
        "cached_tiles": list(range(0, 65)),
    }
    return tune_params, restrictions


def _substitute(text: str, name: str, value: int) -> str:
    import re

    return re.sub(rf"\b{name}\b", str(value), text)


def time_kernel_tuner(
    cell: str, head_dim: int, heads: int, batch: int, dtype: str, gpu: Any
) -> BaselineResult:
    """Time Kernel Tuner's ``Searchspace`` construction for :func:`kernel_tuner_space` on ``gpu``."""
    try:
        lim = gpu_limits(gpu)
    except Exception as err:
        return _failed("kernel_tuner", err, {})
    try:
        searchspace = importlib.import_module("kernel_tuner.searchspace")
    except ImportError as err:
        return _missing("kernel_tuner", "kernel_tuner", err)
    details: dict[str, Any] = {"version": _version("kernel_tuner")}
    try:
        tune_params, restrictions = kernel_tuner_space(cell, head_dim, heads, batch, dtype, lim)
        product = 1
        for values in tune_params.values():
            product *= len(values)
        details.update(gpu=lim.name, cartesian_size=product, restrictions=restrictions)
        start, cpu = time.perf_counter(), time.process_time()
        space = searchspace.Searchspace(tune_params, restrictions, lim.max_threads_per_block)
        seconds = time.perf_counter() - start
        details["cpu_seconds"] = time.process_time() - cpu
    except Exception as err:
        return _failed("kernel_tuner", err, details)
    first = {k: int(v) for k, v in zip(tune_params, space.list[0], strict=True)} if space.size else None
    note = "" if space.size else "no solution"
    return BaselineResult("kernel_tuner", True, seconds, int(space.size), first, note, details)


if __name__ == "__main__":
    from tunekit.bench.baselines_report import main

    main()
