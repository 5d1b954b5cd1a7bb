"""Which triton-fused kernels the calibration compiles: a random sample, and the measured table.

* :func:`sample_jobs`: a seeded sample of the whole space (every cell, role, dtype, tile, class of
  D, block_b, warps, stages, form and architecture) the resource formulas are judged on;
* :func:`groups` and :func:`walk`: for every cell, role, dtype, register architecture, tile and
  class of D, the configurations walked in the directions registers grow (a larger batch block,
  fewer warps at the same cap, a second pipeline stage): a walk stops at the first configuration
  that spills, and what lies beyond it is recorded as spilling without a compile. The tuner check
  (tunekit.bench.triton_check.refused_clean) compiles a sample of those to test the rule.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from tunekit.cells import get_cell
from tunekit.constraints.triton_kernel import REGISTER_ARCHS, class_head_dim
from tunekit.constraints.triton_resources import DTYPE_BYTES_OF
from tunekit.kernels.triton_fused_aot import Compiled, CompileJob

CELLS = ("lstm", "gru", "slstm", "elman")
ROLES = ("forward", "backward")
DTYPES = ("float32", "float16", "bfloat16")
D_PADS = (16, 32, 64, 128, 256)
BLOCK_BS = (16, 32, 64, 128)
WARPS = (1, 2, 4, 8, 16)
STAGES = (1, 2)
# the largest opt-in shared memory per block of any supported GPU (h100: 227 KB)
MAX_SHARED = 232448


def forms(role: str, dtype: str) -> tuple[int, ...]:
    """r_once values a kernel has: 0 and 1 for a 16-bit backward, else only 0."""
    return (0, 1) if role == "backward" and DTYPE_BYTES_OF[dtype] == 2 else (0,)


def r_bytes(cell: str, d_pad: int, dtype: str) -> int:
    """One copy of the cell's R tiles of one head (the least any kernel keeps in shared memory)."""
    return len(get_cell(cell).r_gates) * d_pad * d_pad * DTYPE_BYTES_OF[dtype]


def sample_jobs(count: int, seed: int = 0, archs: Iterable[int] = REGISTER_ARCHS) -> list[CompileJob]:
    """``count`` distinct jobs drawn uniformly (seeded) from the space, within 16 tile elements a
    thread and one R copy under the largest shared memory."""
    if count < 1:
        raise ValueError(f"count: expected >= 1 configurations, received {count!r}")
    rng = random.Random(seed)
    archs = tuple(archs)
    seen: dict[str, CompileJob] = {}
    while len(seen) < count:
        cell, role, dtype = rng.choice(CELLS), rng.choice(ROLES), rng.choice(DTYPES)
        d_pad, full = rng.choice(D_PADS), rng.random() < 0.5
        bb, w = rng.choice(BLOCK_BS), rng.choice(WARPS)
        if bb * d_pad > 16 * 32 * w or r_bytes(cell, d_pad, dtype) > MAX_SHARED:
            continue
        job = CompileJob(cell, role, dtype, class_head_dim(d_pad, full), bb, w, rng.choice(STAGES),
                         rng.choice(forms(role, dtype)), rng.choice(archs))  # fmt: skip
        seen.setdefault(job.key, job)
    return list(seen.values())


@dataclass(frozen=True)
class Group:
    """The configurations one walk covers: a kernel at one tile, class of D and architecture."""

    cell: str
    role: str
    dtype: str
    d_pad: int
    full: bool
    arch: int
    r_once: int

    def job(self, block_b: int, num_warps: int, num_stages: int) -> CompileJob:
        d = class_head_dim(self.d_pad, self.full)
        return CompileJob(self.cell, self.role, self.dtype, d, block_b, num_warps, num_stages, self.r_once,
                          self.arch)  # fmt: skip


def groups(
    archs: Iterable[int] = REGISTER_ARCHS, shared_limit: Callable[[int], int] | None = None
) -> Iterator[Group]:
    """Every (cell, role, dtype, d_pad, class, arch, form) whose R fits the architecture once."""
    for arch in archs:
        limit = MAX_SHARED if shared_limit is None else shared_limit(arch)
        for cell in CELLS:
            for role in ROLES:
                for dtype in DTYPES:
                    for d_pad in D_PADS:
                        if r_bytes(cell, d_pad, dtype) > limit:
                            continue
                        for full in (True, False):
                            for r_once in forms(role, dtype):
                                yield Group(cell, role, dtype, d_pad, full, arch, r_once)


def walk(
    group: Group, compile_: Callable[[CompileJob], Compiled], shared_limit: int, block_bs: tuple[int, ...]
) -> dict[tuple[int, int, int], Compiled | None]:
    """Compile the group's (block_b, num_warps, num_stages) points in the directions registers grow;
    None marks a point not compiled because a smaller one already spilled or passed ``shared_limit``.

    A walk raises block_b until a compile spills (or its shared memory passes the limit). Up to 8
    warps the cap is 255 registers, so at one block_b fewer warps never need fewer registers: the walk
    at w warps stops at the largest block the walk at 2w warps kept. 16 warps (cap 128) walks on its
    own. A second stage only adds staged loads: it stops where one stage did.
    """
    out: dict[tuple[int, int, int], Compiled | None] = {}
    kept: dict[tuple[int, int], int] = {}  # (num_warps, num_stages) -> largest clean block_b
    for w in (16, 8, 4, 2, 1):
        for st in STAGES:
            top = block_bs[-1]
            if 2 * w <= 8:
                top = min(top, kept[(2 * w, st)])
            if st > 1:
                top = min(top, kept[(w, st - 1)])
            kept[(w, st)] = 0
            stopped = False
            for bb in block_bs:
                if stopped or bb > top:
                    out[(bb, w, st)] = None
                    continue
                result = compile_(group.job(bb, w, st))
                out[(bb, w, st)] = result
                if result.clean and result.shared <= shared_limit:
                    kept[(w, st)] = bb
                else:
                    stopped = True
    return out
