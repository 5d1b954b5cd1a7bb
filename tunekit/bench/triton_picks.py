"""The tuner's picks, compiled until every one is clean: the measured table grown where it matters.

A full walk of every kernel, tile, form and architecture (:mod:`tunekit.bench.triton_sweep`) is
thousands of compiles, and every edit of a template or a cell (their source hash) makes it stale.
:func:`close_loop` measures instead what the tuner actually returns: it tunes each (problem, GPU),
compiles the kernels of every returned configuration that the table lacks (cached), records ptxas's
registers, spills and Triton's shared memory in ``tunekit/constraints/triton_registers.json``
(:func:`record`), and tunes again, until a round adds nothing: a configuration that spilled is then
refused (its point reads one register over the cap), the tuner moves to its next candidate, and
every configuration it returns for these problems has been compiled clean. Elsewhere the model
keeps its conservative bound.

Points are recorded per table group (cell, role, dtype, register architecture, tile, class of D:
:func:`tunekit.constraints.triton_registers.group_key`); two head dims of one class at one point keep
the larger registers and any spill (the worse of the two).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from tunekit.bench.triton_check import CHECK_TOP, kernel_jobs, returned
from tunekit.bench.triton_table import DEFAULT_TABLE, _current, table_lines
from tunekit.constraints.triton_registers import group_key
from tunekit.files import write_atomic
from tunekit.kernels.triton_fused_aot import Compiled, CompileJob, kernel_source_hash
from tunekit.problem import Problem

MAX_ROUNDS = 8


def job_group(job: CompileJob) -> str:
    """The table group a compile belongs to."""
    tile = job.d_pad
    return group_key(job.cell, job.direction, job.dtype, job.arch, tile, job.head_dim == tile)


def job_row(job: CompileJob, result: Compiled) -> list[int]:
    """A table row [block_b, num_warps, num_stages, r_once, registers, spill bytes, shared]."""
    return [job.block_b, job.num_warps, job.num_stages, job.r_once, result.registers, result.spill_bytes,
            result.shared]  # fmt: skip


def _worse(a: list[int], b: list[int]) -> list[int]:
    """Of two rows at one point: the larger registers, any spill, the larger shared memory."""
    return [*a[:4], max(a[4], b[4]), max(a[5], b[5]), max(a[6], b[6])]


def record(results: Iterable[tuple[CompileJob, Compiled]], path: Path = DEFAULT_TABLE) -> int:
    """Merge compiled points into the table (entries of stale kernels dropped); the rows added or
    changed. Failed compiles (errors, timeouts) are not recorded: the bound keeps judging them."""
    path = Path(path)
    old = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {"kernels": {}, "groups": {}}
    kernels = {k: h for k, h in old.get("kernels", {}).items() if _current(k, h)}
    groups: dict[str, dict[tuple[int, ...], list[int]]] = {
        key: {tuple(row[:4]): list(row) for row in rows}
        for key, rows in old.get("groups", {}).items()
        if "/".join(key.split("/")[:2]) in kernels
    }
    changed = 0
    for job, result in results:
        if result.error:
            continue
        kernels[f"{job.cell}/{job.direction}"] = kernel_source_hash(job.cell, job.direction)
        rows = groups.setdefault(job_group(job), {})
        row = job_row(job, result)
        point = tuple(row[:4])
        merged = _worse(rows[point], row) if point in rows else row
        if rows.get(point) != merged:
            rows[point] = merged
            changed += 1
    write_atomic(path, table_lines(kernels, {k: sorted(v.values()) for k, v in groups.items()}))
    return changed


def _reset_model_caches() -> None:
    from tunekit.constraints import triton_registers

    triton_registers.reload()


def close_loop(
    compile_all: Callable[[Sequence[CompileJob]], list[Compiled]],
    pairs: Sequence[tuple[Problem, str]],
    table_path: Path = DEFAULT_TABLE,
    top: int = CHECK_TOP,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Tune, compile and record until every returned configuration of every (problem, GPU) pair has
    its compiles in the table; a summary (rounds, compiles, spills found)."""
    from tunekit.hardware import load_profile

    seen: set[str] = set()
    summary = {"rounds": 0, "compiled": 0, "spilled": 0, "converged": False}
    for round_ in range(1, MAX_ROUNDS + 1):
        _reset_model_caches()
        jobs: dict[str, CompileJob] = {}
        for problem, gpu in pairs:
            arch = load_profile(gpu).arch
            for _, config, _ in returned(problem, gpu, top):
                for job in kernel_jobs(problem, dict(config.params), arch):
                    if job.key not in seen:
                        jobs.setdefault(job.key, job)
        summary["rounds"] = round_
        if not jobs:
            summary["converged"] = True
            break
        if progress:
            progress(f"picks round {round_}: {len(jobs)} new compiles")
        batch = list(jobs.values())
        results = compile_all(batch)
        seen.update(jobs)
        summary["compiled"] += len(batch)
        summary["spilled"] += sum(1 for r in results if not r.clean)
        record(zip(batch, results, strict=True), table_path)
    _reset_model_caches()
    return summary


def seed_jobs() -> list[CompileJob]:
    """Points compiled before the loop, so that issue 14's training targets and FlashRNN's
    inference reach (which the conservative bound refuses) are judged by ptxas: one batch block of
    16, 4 and 8 warps, one stage, both forms of a 16-bit backward, each kernel on sm_80, sm_89 and
    sm_90, at the target's D and at the D that stands for its tile's padded lanes (a target at D=64
    vouches for 40..56 too, so that no D below it is refused where it is not)."""
    from tunekit.bench.triton_check import INFERENCE_TARGETS, TARGETS
    from tunekit.bench.triton_sweep import forms
    from tunekit.constraints.triton_kernel import REGISTER_ARCHS, class_head_dim, kernel_head_dim
    from tunekit.intmath import next_pow2

    jobs = []
    for problem in TARGETS + INFERENCE_TARGETS:
        d = kernel_head_dim(problem.head_dim)
        for d_run in dict.fromkeys((d, class_head_dim(next_pow2(d), full=False))):
            for arch in REGISTER_ARCHS:
                for role in problem.directions:
                    for warps in (4, 8):
                        for r_once in forms(role, problem.dtype):
                            args = (problem.cell, role, problem.dtype, d_run, 16, warps, 1, r_once, arch)
                            jobs.append(CompileJob(*args))
    return jobs


# The head dims that stand for each class of D (tunekit.constraints.triton_kernel.class_head_dim):
# a full tile (D = d_pad) and one with padded lanes (D = d_pad - 8), tiles 16..256
CLASS_HEAD_DIMS = (8, 16, 24, 32, 56, 64, 120, 128, 248, 256)


def refused_candidates(
    problem: Problem, gpu: str, count: int = 1, likely: bool = False
) -> list[dict[str, int]]:
    """The ``count`` points of the problem's space the model refuses for registers alone (no other
    limit), fastest predicted first: where the conservative bound may be wrong and the tuner would
    go if ptxas agreed. ``likely``: the ones most likely to compile clean first (the most warps under
    the 255-register cap, i.e. 8, the fewest rows and stages), fastest among those."""
    from tunekit.bench.triton_check import space_points
    from tunekit.cost import estimate

    space, points = space_points(problem, gpu)
    refused = []
    for point in points:
        violated = space.violated(point)
        if violated and all(v.startswith("registers_per_") for v in violated):
            try:
                refused.append((estimate(space, point).total_us_per_step, sorted(point.items()), point))
            except (ArithmeticError, ValueError):
                continue
    if likely:

        def pressure(p: dict[str, int]) -> tuple[int, ...]:
            return (abs(8 - p["num_warps"]), p["block_b"], p["num_stages"], -p.get("r_once", 0))

        refused.sort(key=lambda x: (pressure(x[2]), x[0], x[1]))
    else:
        refused.sort(key=lambda x: x[:2])
    return [point for _, _, point in refused[:count]]


def probe_jobs(
    pairs: Iterable[tuple[Problem, str]], count: int = 1, likely: bool = False
) -> list[CompileJob]:
    """The kernels of each pair's ``count`` fastest refused-for-registers points that the table
    does not hold yet."""
    from tunekit.constraints.triton_registers import _table
    from tunekit.hardware import load_profile

    groups = _table().get("groups", {})
    jobs: dict[str, CompileJob] = {}
    for problem, gpu in pairs:
        arch = load_profile(gpu).arch
        for point in refused_candidates(problem, gpu, count, likely):
            for job in kernel_jobs(problem, point, arch):
                rows = groups.get(job_group(job), [])
                if not any(
                    tuple(r[:4]) == (job.block_b, job.num_warps, job.num_stages, job.r_once) for r in rows
                ):
                    jobs.setdefault(job.key, job)
    return list(jobs.values())


def reach_pairs(gpus: Sequence[str]) -> list[tuple[Problem, str]]:
    """The reach study's problems (B = 16, one head) at the head dims that stand for each class."""
    from tunekit.bench.triton_headdim import BATCH, CELLS, DTYPES, USES

    return [
        (Problem(cell, BATCH, 1, d, dtype=dtype, direction=direction), gpu)
        for gpu in gpus
        for cell in CELLS
        for dtype in DTYPES
        for direction in USES.values()
        for d in CLASS_HEAD_DIMS
    ]


def cached_results(cache: dict[str, Compiled]) -> list[tuple[CompileJob, Compiled]]:
    """The cache's results of the kernels as they render now (others were compiled from older code)."""
    from tunekit.bench.triton_check import parse_key

    pairs = ((parse_key(key), result) for key, result in cache.items())
    return [(job, result) for job, result in pairs if job.key in cache and not result.error]
