"""``tunekit bench cuda-compile``: the cuda-fused model against ptxas over a sweep of configurations.

For each GPU profile (a100, h100, l4, rtx4090), cell, dtype and direction, head dims from 16 to
the coverage edge (odd ones included), one and four heads: the tuner's best configuration, and
where the space has them its best with a k split and its best with blocks spanning heads. Every
program is compiled with nvcc for the profile's arch (in parallel, cached on disk by canonical
name and source), and each kernel entry is judged as the compile tests judge it: shared memory
(ptxas static + launcher dynamic) equal to the model's, registers within its bound, no spills, no
stack frame, mma.sync in the PTX of the recurrent kernels, no local memory, at most 1024 threads a
block and a cooperative grid no larger than the SMs times the blocks per SM the model computed.
Writes ``reports/cuda_fused_compile.md`` and ``.json`` (predicted vs ptxas per configuration,
compile seconds).
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunekit.files import write_atomic

__all__ = ["DEFAULT_GPUS", "configurations", "run", "write_reports"]

DEFAULT_GPUS = ("a100", "h100", "l4", "rtx4090")
CELLS = ("lstm", "gru", "slstm", "elman")
DTYPES = ("bfloat16", "float16", "float32")
DIRECTIONS = ("forward", "both")


@dataclass(frozen=True)
class Sample:
    gpu: str
    problem: Any
    why: str  # "tuned", "k split", "span heads"
    config: Any


def _edge(cell: str, heads: int, dtype: str, direction: str, gpu: Any) -> int:
    """The largest feasible D (bisection over the model's monotone feasibility)."""
    from tunekit.constraints import build_space
    from tunekit.problem import Problem
    from tunekit.solvers import solve

    def ok(d: int) -> bool:
        return (
            solve(build_space("cuda-fused", Problem(cell, 16, heads, d, dtype, direction), gpu).model)
            is not None
        )

    lo, hi = 1, 4096
    if not ok(lo):
        return 0
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid - 1)
    return lo


def _groups(gpus, quick: bool) -> list[tuple[tuple, int]]:
    """((gpu, cell, dtype, direction, heads), rotation): the sweep's problem groups, one D list each;
    a group's rotation is the sum of its indices along the five axes."""
    axes = (tuple(gpus), CELLS, DTYPES, DIRECTIONS, (1,) if quick else (1, 4))
    return [
        (tuple(value for _, value in pairs), sum(i for i, _ in pairs))
        for pairs in itertools.product(*(tuple(enumerate(axis)) for axis in axes))
    ]


def _group_samples(group: tuple, quick: bool, rotation: int = 0) -> Iterator[Sample]:
    """One group's configurations: the tuner's picks at the coverage edge (where registers and
    shared memory bind), D=61 (odd, padded), half the edge (odd) and D=16, starting at head dim
    ``rotation`` of that list and wrapping around; then the best k-split and span-heads
    configurations of each of those head dims."""
    from tunekit.constraints import build_space
    from tunekit.hardware import load_profile
    from tunekit.problem import Problem
    from tunekit.tuning import NoFeasibleConfig, tune

    name, cell, dtype, direction, heads = group
    gpu = load_profile(name)
    if quick:
        dims = [61]
    else:
        edge = _edge(cell, heads, dtype, direction, gpu)
        dims = [d for d in dict.fromkeys((edge, 61, edge // 2 | 1, 16)) if 0 < d <= edge]

    def tuned(d: int) -> Iterator[Sample]:
        problem = Problem(cell, 16, heads, d, dtype, direction)
        try:
            yield Sample(gpu.name, problem, "tuned", tune(problem, gpu, backend="cuda-fused", top=1).config)
        except NoFeasibleConfig:
            return

    def variants(d: int) -> Iterator[Sample]:
        problem = Problem(cell, 16, heads, d, dtype, direction)
        space = build_space("cuda-fused", problem, gpu)
        found = space.enumerate()
        ksplit = [a for a in found if space.resources(a)["split_k"] > 1]
        span = [a for a in found if a["span_heads"] == 1]
        for why, points in (("k split", ksplit), ("span heads", span)):
            if points:
                yield Sample(gpu.name, problem, why, space.config(points[0]))

    if not dims:
        return
    shift = rotation % len(dims)
    dims = dims[shift:] + dims[:shift]
    for d in dims:
        yield from tuned(d)
    if not quick:
        for d in dims:
            yield from variants(d)


def configurations(gpus=DEFAULT_GPUS, quick: bool = False, limit: int | None = None) -> list[Sample]:
    """The sweep's configurations, solver-chosen, deduplicated by canonical name, round-robin over
    the (GPU, cell, dtype, direction, heads) groups, so that a ``limit`` still covers every group
    before it takes a second configuration of any. Groups start at different head dims (the sum of
    their indices along the five axes, mod 4): for each cell, dtype and direction, the four GPUs
    start at the edge, D=61, half the edge and D=16, so that a limit of one a group still spans
    every head dim of every kernel."""
    streams = [_group_samples(group, quick, rotation) for group, rotation in _groups(gpus, quick)]
    seen: set[str] = set()
    out: list[Sample] = []
    while streams and (limit is None or len(out) < limit):
        alive = []
        for stream in streams:
            for sample in stream:
                if sample.config.name not in seen:
                    seen.add(sample.config.name)
                    out.append(sample)
                    alive.append(stream)
                    break
            if limit is not None and len(out) >= limit:
                break
        streams = alive
    return out


def run(
    gpus=DEFAULT_GPUS,
    quick: bool = False,
    limit: int | None = None,
    workers: int = 2,
    progress: Callable | None = None,
) -> dict[str, Any]:
    """Compile the sweep and judge every kernel entry; returns the report (also for write_reports)."""
    from tunekit.compilers.cuda import compile_programs
    from tunekit.compilers.ptxas import local_memory_instructions
    from tunekit.hardware import load_profile
    from tunekit.kernels import cuda_fused
    from tunekit.validation.records import compiled_figures, cuda_verdict

    samples = configurations(gpus, quick, limit)
    jobs = []
    for s in samples:
        for program in cuda_fused.programs(s.config):
            jobs.append((s, program))
    if progress:
        progress(f"{len(samples)} configurations, {len(jobs)} programs: compiling with nvcc")
    start = time.perf_counter()
    results = compile_programs([(p, load_profile(s.gpu).arch, "nvcc") for s, p in jobs], workers=workers)
    rows = []
    for (s, program), result in zip(jobs, results, strict=True):
        gpu = load_profile(s.gpu)
        co_resident = gpu.sm_count * cuda_fused.plan_of(s.config).resources["blocks_per_sm"]
        for entry in program.entries:
            predicted = cuda_fused.predicted(s.config, entry.name)
            row = {"config": s.config.name, "gpu": s.gpu, "why": s.why, "kernel": entry.name,
                   "predicted": predicted}  # fmt: skip
            if isinstance(result, Exception):
                rows.append(row | {"verdict": f"COMPILE ERROR: {str(result)[:200]}", "passed": False})
                continue
            got = result.entry(entry.name)
            dims = cuda_fused.launch_dims(s.config, entry.name)
            figures = compiled_figures(got.registers, got.static_shared_bytes, dims.shared_bytes,
                                       got.spill_bytes, got.stack_frame_bytes)  # fmt: skip
            verdict, passed = cuda_verdict(predicted, figures)
            local = local_memory_instructions(got.ptx) + local_memory_instructions(got.sass or "")
            mma = "mma.sync.aligned" in got.ptx
            if entry.cooperative and not mma:
                verdict, passed = verdict + "; no mma.sync", False
            if dims.threads_per_block > gpu.max_threads_per_block:
                verdict, passed = verdict + f"; {dims.threads_per_block} threads a block", False
            if entry.cooperative and dims.blocks > co_resident:
                verdict, passed = verdict + f"; {dims.blocks} blocks > {co_resident} co-resident", False
            if local:
                verdict, passed = verdict + f"; {len(local)} local-memory instructions", False
            timing = {"seconds": round(result.build.seconds, 2), "cached": result.build.cached}
            rows.append(
                row | {"compiled": figures, "verdict": verdict, "passed": passed, "mma": mma} | timing
            )
    return {
        "gpus": list(gpus),
        "configurations": len(samples),
        "kernels": len(rows),
        "passed": sum(r["passed"] for r in rows),
        "wall_seconds": round(time.perf_counter() - start, 1),
        "workers": workers,
        "rows": rows,
    }


def _estimate(predicted: dict[str, int]) -> int:
    """The model's register estimate (reports of older runs have only the bound)."""
    return predicted.get("registers_estimate", predicted["registers_per_thread"])


def write_reports(report: dict[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    """reports/cuda_fused_compile.md and .json."""
    out = Path(out_dir)
    js = out / "cuda_fused_compile.json"
    md = out / "cuda_fused_compile.md"
    write_atomic(js, json.dumps(report, indent=1) + "\n")
    rows = report["rows"]
    done = [r for r in rows if "compiled" in r]
    margins = [r["predicted"]["registers_per_thread"] - r["compiled"]["registers"] for r in done]
    # the estimate's error where ptxas was not at the cap (at the cap it can only be short)
    errors = [
        _estimate(r["predicted"]) - r["compiled"]["registers"]
        for r in done
        if r["compiled"]["registers"] < r["predicted"]["registers_per_thread"]
    ]
    exact = sum(
        1
        for r in done
        if r["compiled"]["shared_memory_bytes"] == r["predicted"]["shared_memory_bytes_per_block"]
    )
    seconds = sorted(r["seconds"] for r in done if "seconds" in r)
    lines = [
        "# cuda-fused: the model against ptxas",
        "",
        "Generated by `tunekit bench cuda-compile` (tunekit/bench/cuda_compile.py): every kernel of "
        "solver-chosen configurations compiled with nvcc for its profile's arch. Each recurrent kernel "
        "is compiled with `__maxnreg__` = the registers a thread of the co-resident grid may use (the "
        "model's bound, *cap*); *estimate* is what the model expects ptxas to use.",
        "",
        f"- configurations: {report['configurations']}, kernel entries: {report['kernels']}, passed: "
        f"{report['passed']}",
        f"- shared memory (ptxas static + launcher dynamic) equal to the model's: {exact} of {len(done)}",
        f"- register margin (model bound - ptxas): min {min(margins, default=0)}, "
        f"max {max(margins, default=0)}",
        f"- register estimate - ptxas, kernels below the cap: min {min(errors, default=0)}, "
        f"median {sorted(errors)[len(errors) // 2] if errors else 0}, max {max(errors, default=0)}",
        f"- compile seconds per kernel's program: median {seconds[len(seconds) // 2] if seconds else 0}, "
        f"max {seconds[-1] if seconds else 0}; entries whose program came from the compile cache: "
        f"{sum(1 for r in done if r.get('cached'))} of {len(done)} (their seconds are the first "
        f"compile's); this run's wall seconds ({report.get('workers', 2)} parallel nvcc): "
        f"{report['wall_seconds']}",
        "",
        "| configuration | why | kernel | regs estimate / cap / ptxas | shared model / ptxas+dyn | spills "
        "| stack | s | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        c = r.get("compiled")
        if c is None:
            lines.append(f"| {r['config']} | {r['why']} | {r['kernel']} | | | | | | {r['verdict']} |")
            continue
        p = r["predicted"]
        estimate = _estimate(p)
        lines.append(
            f"| {r['config']} | {r['why']} | {r['kernel']} | "
            f"{estimate} / {p['registers_per_thread']} / {c['registers']} | "
            f"{p['shared_memory_bytes_per_block']} / {c['shared_memory_bytes']} | {c['spill_bytes']} | "
            f"{c['stack_frame_bytes']} | {r['seconds']} | {r['verdict']} |"
        )
    write_atomic(md, "\n".join(lines) + "\n")
    return md, js
