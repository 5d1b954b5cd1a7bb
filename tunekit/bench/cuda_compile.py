"""``tunekit bench cuda-compile``: the cuda-fused model against ptxas over a sweep of configurations.

For each GPU profile (a100, h100, l4, rtx4090), cell, dtype and direction, head dims from 16 to
the coverage edge (odd ones included), one and four heads: the tuner's best configuration, and
where the space has them its best with a k split and its best with blocks spanning heads. Every
program is compiled with nvcc for the profile's arch (in parallel, cached on disk by canonical
name and source), and each kernel entry is judged as the compile tests judge it: shared memory
(ptxas static + launcher dynamic) equal to the model's, registers within its bound, no spills, no
stack frame, mma.sync in the PTX of the recurrent kernels, no local memory. Writes
``reports/cuda_fused_compile.md`` and ``.json`` (predicted vs ptxas per configuration, seconds).
"""

from __future__ import annotations

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


def configurations(gpus=DEFAULT_GPUS, quick: bool = False) -> Iterator[Sample]:
    """The sweep's configurations, solver-chosen (deduplicated by canonical name)."""
    from tunekit.constraints import build_space
    from tunekit.hardware import load_profile
    from tunekit.problem import Problem
    from tunekit.tuning import NoFeasibleConfig, tune

    seen: set[str] = set()
    for name in gpus:
        gpu = load_profile(name)
        for cell in CELLS:
            for dtype in DTYPES:
                for direction in DIRECTIONS:
                    for heads in (1,) if quick else (1, 4):
                        if quick:
                            dims = [61]
                        else:
                            edge = _edge(cell, heads, dtype, direction, gpu)
                            dims = sorted({16, 61, edge // 2 | 1, edge} - {0})
                        for d in dims:
                            problem = Problem(cell, 16, heads, d, dtype, direction)
                            try:
                                best = tune(problem, gpu, backend="cuda-fused", top=1).config
                            except NoFeasibleConfig:
                                continue
                            picks = [("tuned", best)]
                            if not quick:
                                space = build_space("cuda-fused", problem, gpu)
                                found = space.enumerate()
                                ksplit = [a for a in found if space.resources(a)["split_k"] > 1]
                                span = [a for a in found if a["span_heads"] == 1]
                                picks += [("k split", space.config(a)) for a in ksplit[:1]]
                                picks += [("span heads", space.config(a)) for a in span[:1]]
                            for why, config in picks:
                                if config.name not in seen:
                                    seen.add(config.name)
                                    yield Sample(gpu.name, problem, why, config)


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

    by_gpu: dict[str, list[Sample]] = {}
    for sample in configurations(gpus, quick):
        by_gpu.setdefault(sample.gpu, []).append(sample)
    # round-robin over the GPUs, so that a --limit still covers every one of them
    lists = list(by_gpu.values())
    longest = max(map(len, lists), default=0)
    samples = [lst[i] for i in range(longest) for lst in lists if i < len(lst)][:limit]
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
        "rows": rows,
    }


def write_reports(report: dict[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    """reports/cuda_fused_compile.md and .json."""
    out = Path(out_dir)
    js = out / "cuda_fused_compile.json"
    md = out / "cuda_fused_compile.md"
    write_atomic(js, json.dumps(report, indent=1) + "\n")
    rows = report["rows"]
    margins = [
        r["predicted"]["registers_per_thread"] - r["compiled"]["registers"] for r in rows if "compiled" in r
    ]
    exact = sum(
        1 for r in rows if "compiled" in r
        and r["compiled"]["shared_memory_bytes"] == r["predicted"]["shared_memory_bytes_per_block"]
    )  # fmt: skip
    lines = [
        "# cuda-fused: the model against ptxas",
        "",
        "Generated by `tunekit bench cuda-compile` (tunekit/bench/cuda_compile.py): every kernel of "
        "solver-chosen configurations compiled with nvcc for its profile's arch.",
        "",
        f"- configurations: {report['configurations']}, kernel entries: {report['kernels']}, passed: "
        f"{report['passed']}",
        f"- shared memory (ptxas static + launcher dynamic) equal to the model's: {exact} of {len(margins)}",
        f"- register margin (model bound - ptxas): min {min(margins, default=0)}, "
        f"max {max(margins, default=0)}",
        f"- wall seconds (2 parallel nvcc): {report['wall_seconds']}",
        "",
        "| configuration | why | kernel | regs model / ptxas | shared model / ptxas+dyn | spills | stack | s "
        "| verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        c = r.get("compiled")
        if c is None:
            lines.append(f"| {r['config']} | {r['why']} | {r['kernel']} | | | | | | {r['verdict']} |")
            continue
        p = r["predicted"]
        lines.append(
            f"| {r['config']} | {r['why']} | {r['kernel']} | "
            f"{p['registers_per_thread']} / {c['registers']} | "
            f"{p['shared_memory_bytes_per_block']} / {c['shared_memory_bytes']} | {c['spill_bytes']} | "
            f"{c['stack_frame_bytes']} | {r['seconds']} | {r['verdict']} |"
        )
    write_atomic(md, "\n".join(lines) + "\n")
    return md, js
