"""The tuner's triton-fused answers against the compiler, over a fixed set of problems.

:data:`CHECK_PROBLEMS` spans every cell, the three dtypes, inference and training, odd head dims
and several batch sizes; each is tuned for sm_80 (a100) and sm_90 (h100). :func:`check` compiles
every kernel of every configuration ``tune`` returns (the best and its candidates, cached) and
judges it: no spills, shared memory within the GPU's opt-in limit and equal to (or at most 5%
above) what the model predicted. :func:`refused_clean` counts, over the same problems' whole
spaces, the configurations the model refuses for registers although ptxas compiled them without
spills (from the measured table and, for points it lacks, compiles of a seeded sample).

``reports/triton_tuned_check.json`` keeps the compile results of every returned configuration, so
``tests/test_triton_compile_check.py`` re-tunes in CI without compiling and fails when the file
lacks a result for a configuration ``tune`` now returns (after a change of the model or a template:
rerun ``tunekit bench calibrate-triton``).
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from tunekit.constraints.triton_kernel import kernel_head_dim
from tunekit.kernels.triton_fused_aot import Compiled, CompileJob
from tunekit.problem import Problem

FAMILY = "triton-fused"
CHECK_GPUS = ("a100", "h100")
# configurations per problem the check compiles: tune's best and its runner-up (tune(top=2)); the
# runtime launches the best
CHECK_TOP = 2
SHARED_TOLERANCE = 0.05  # the model may over-estimate shared memory by this much, never under

# (head_dim, batch, heads): odd head dims (15, 61, 125 run on copies padded to 16, 64, 128 lanes; 100
# on 104 lanes of a 128 tile), batches below, at and above one 16-row block
SHAPES = ((15, 7, 4), (30, 33, 2), (48, 64, 1), (61, 16, 3), (100, 16, 1), (125, 5, 1))
CELLS = ("lstm", "gru", "slstm", "elman")
DTYPES = ("float32", "float16", "bfloat16")
DIRECTIONS = ("forward", "both")
# issue 14's training targets: sLSTM bf16 at D=64, LSTM bf16 at D=128, LSTM fp32 (tf32) at D=64,
# and FlashRNN parity
TARGETS = (
    Problem("slstm", batch=16, heads=1, head_dim=64, dtype="bfloat16", direction="both"),
    Problem("lstm", batch=16, heads=1, head_dim=128, dtype="bfloat16", direction="both"),
    Problem("lstm", batch=16, heads=1, head_dim=64, dtype="float32", direction="both"),
    # FlashRNN's Triton path trains LSTM and sLSTM to D=64 in every dtype; fp16 is bf16's twin
    Problem("slstm", batch=16, heads=1, head_dim=64, dtype="float16", direction="both"),
    Problem("slstm", batch=16, heads=1, head_dim=64, dtype="float32", direction="both"),
    Problem("lstm", batch=16, heads=1, head_dim=128, dtype="float16", direction="both"),
)
# FlashRNN's Triton path runs LSTM and sLSTM forward to D=128; sLSTM's 4 gates at D=128 fit one copy
# of R in 16-bit only (128 KiB; fp32 needs 256 KiB)
INFERENCE_TARGETS = (
    Problem("slstm", batch=16, heads=1, head_dim=128, dtype="bfloat16", direction="forward"),
    Problem("slstm", batch=16, heads=1, head_dim=128, dtype="float16", direction="forward"),
)
# `tunekit validate --compile`'s built-in sample (tunekit.validation.tuned.SAMPLE): each cell at D=64
VALIDATE_SAMPLE = tuple(
    Problem(cell, batch=16, heads=1, head_dim=64, dtype="bfloat16", direction="both") for cell in CELLS
)
CHECK_PROBLEMS = (
    tuple(
        Problem(cell, batch=b, heads=n, head_dim=d, dtype=dtype, direction=direction)
        for cell, dtype, direction, (d, b, n) in itertools.product(CELLS, DTYPES, DIRECTIONS, SHAPES)
    )
    + TARGETS
    + INFERENCE_TARGETS
    + tuple(p for p in VALIDATE_SAMPLE if p not in TARGETS)
)


def problem_id(problem: Problem, gpu: str) -> str:
    return f"{problem.cell}-{problem.direction}-{problem.tag}-{gpu}"


def kernel_jobs(problem: Problem, params: dict[str, int], arch: int) -> list[CompileJob]:
    """The compiles a configuration of ``problem`` launches: one per kernel it runs."""
    d_run = kernel_head_dim(problem.head_dim)
    return [
        CompileJob(
            problem.cell,
            role,
            problem.dtype,
            d_run,
            params["block_b"],
            params["num_warps"],
            params["num_stages"],
            params["r_once"] if role == "backward" else 0,
            arch,
        )  # fmt: skip
        for role in problem.directions
    ]


@dataclass(frozen=True)
class Checked:
    """One returned configuration and what the compiler said about its kernels."""

    problem: str
    gpu: str
    rank: int  # 0: the best, 1..: candidates
    config: str
    predicted_registers: int
    predicted_shared: int
    shared_limit: int
    compiled: tuple[tuple[str, Compiled], ...]  # (job key, result) per kernel

    @property
    def verdict(self) -> str:
        problems = []
        for key, c in self.compiled:
            if c.error:
                problems.append(f"{key}: {c.error}")
            elif c.spill_bytes:
                problems.append(f"{key}: spills {c.spill_bytes} B")
            elif c.shared > self.shared_limit:
                problems.append(f"{key}: shared {c.shared} B over the limit")
        shared = max((c.shared for _, c in self.compiled), default=0)
        if not shared <= self.predicted_shared <= (1 + SHARED_TOLERANCE) * shared:
            problems.append(f"model shared {self.predicted_shared} B vs compiler {shared} B")
        return "ok" if not problems else "; ".join(problems)


def returned(problem: Problem, gpu: str, top: int = CHECK_TOP) -> list[tuple[int, Any, dict[str, int]]]:
    """(rank, KernelConfig, predicted) of every configuration tune returns (empty when none fits)."""
    from tunekit.tuning import NoFeasibleConfig, tune

    try:
        result = tune(problem, gpu, backend=FAMILY, top=top)
    except NoFeasibleConfig:
        return []
    out = [(0, result.config, result.predicted)]
    out += [
        (i + 1, c.config, c.predicted) for i, c in enumerate(result.candidates) if c.config != result.config
    ]
    return out


def check(
    compile_all: Callable[[Sequence[CompileJob]], list[Compiled]],
    problems: Iterable[Problem] = CHECK_PROBLEMS,
    gpus: Sequence[str] = CHECK_GPUS,
    top: int = CHECK_TOP,
) -> tuple[list[Checked], list[str]]:
    """Every returned configuration with its compiles; and the problems with no configuration."""
    from tunekit.hardware import load_profile

    checked, empty = [], []
    for gpu in gpus:
        profile = load_profile(gpu)
        for problem in problems:
            answers = returned(problem, gpu, top)
            if not answers:
                empty.append(problem_id(problem, gpu))
            for rank, config, predicted in answers:
                jobs = kernel_jobs(problem, dict(config.params), profile.arch)
                results = compile_all(jobs)
                checked.append(
                    Checked(
                        problem=problem_id(problem, gpu),
                        gpu=gpu,
                        rank=rank,
                        config=config.name,
                        predicted_registers=int(predicted["registers_per_thread"]),
                        predicted_shared=int(predicted["shared_memory_bytes_per_block"]),
                        shared_limit=profile.shared_memory_per_block_optin,
                        compiled=tuple((j.key, c) for j, c in zip(jobs, results, strict=True)),
                    )
                )
    return checked, empty


def space_points(problem: Problem, gpu: str) -> tuple[Any, list[dict[str, int]]]:
    """The problem's space and every point of its domains (feasible or not)."""
    from tunekit.constraints import build_space
    from tunekit.hardware import load_profile

    space = build_space(FAMILY, problem, load_profile(gpu))
    names = [v.name for v in space.model.variables]
    domains = [v.domain.values for v in space.model.variables]
    return space, [dict(zip(names, values, strict=True)) for values in itertools.product(*domains)]


def refused_clean(
    compile_all: Callable[[Sequence[CompileJob]], list[Compiled]],
    problems: Iterable[Problem] = CHECK_PROBLEMS,
    gpus: Sequence[str] = CHECK_GPUS,
    sample: int = 200,
    seed: int = 0,
) -> dict[str, Any]:
    """Configurations the model refuses only for registers: how many compile without spills.

    A seeded sample of ``sample`` refused points is judged by the compiler (cached).
    """
    from tunekit.hardware import load_profile

    refused, accepted = [], 0
    for gpu in gpus:
        profile = load_profile(gpu)
        for problem in problems:
            space, points = space_points(problem, gpu)
            for point in points:
                violated = space.violated(point)
                if not violated:
                    accepted += 1
                elif all(v.startswith("registers_per_") for v in violated):
                    refused.append((problem, gpu, point, profile.arch))

    # a seeded order of the points themselves (not of the list), so that adding problems keeps most
    # of the sample, and its compiles cached
    def order(item: tuple) -> str:
        problem, gpu, point, _ = item
        text = f"{seed}:{problem_id(problem, gpu)}:{sorted(point.items())}"
        return hashlib.sha256(text.encode()).hexdigest()

    judged = sorted(refused, key=order)[:sample]
    clean, reasons = 0, []
    for problem, gpu, point, arch in judged:
        jobs = kernel_jobs(problem, point, arch)
        results = compile_all(jobs)
        if all(r.clean for r in results):
            clean += 1
            reasons.append(f"{problem_id(problem, gpu)} {point}: refused, compiles clean")
    return {
        "accepted": accepted,
        "refused_for_registers": len(refused),
        "judged": len(judged),
        "judged_clean": clean,
        "share_clean_of_refused": clean / len(judged) if judged else 0.0,
        "examples": reasons[:40],
    }


def as_json(checked: Sequence[Checked], empty: Sequence[str]) -> dict[str, Any]:
    return {
        "checked": [
            {
                "problem": c.problem,
                "gpu": c.gpu,
                "rank": c.rank,
                "config": c.config,
                "predicted_registers": c.predicted_registers,
                "predicted_shared": c.predicted_shared,
                "verdict": c.verdict,
                "kernels": [k for k, _ in c.compiled],
            }
            for c in checked
        ],  # fmt: skip
        "no_configuration": list(empty),
        "compiles": {k: asdict(r) for c in checked for k, r in c.compiled},
    }


def parse_key(key: str) -> CompileJob:
    """The CompileJob a :attr:`CompileJob.key` names (the inverse of the key, its hash aside)."""
    cell, role, _, short, sm, d, bb, w, s, ro = key.split("-")
    dtype = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}[short]
    return CompileJob(cell, {"fwd": "forward", "bwd": "backward"}[role], dtype, int(d[1:]), int(bb[2:]),
                      int(w[1:]), int(s[1:]), int(ro[2:]), int(sm[2:]))  # fmt: skip


def bound_vs_ptxas(compiles: dict[str, Compiled]) -> dict[str, Any]:
    """The conservative register bound (the model without its table) against ptxas's registers on
    the clean compiles: how far above it is, and how often it is below (where only the table is safe)."""
    import statistics

    from tunekit.constraints.triton_fused import kernel_resources
    from tunekit.hardware import load_profile
    from tunekit.kernels.triton_fused_aot import ARCH_PROFILES

    gaps: dict[int, list[int]] = {}
    for key, c in compiles.items():
        job = parse_key(key)
        if not c.clean or job.key != key:  # a spill, or a compile of an earlier version of the kernel
            continue
        point = {"block_b": job.block_b, "num_warps": job.num_warps, "num_stages": job.num_stages,
                 "r_once": job.r_once}  # fmt: skip
        gpu = load_profile(ARCH_PROFILES[job.arch])
        args = (job.cell, job.direction, job.dtype, job.head_dim, point, gpu)
        bound, _ = kernel_resources(*args, use_table=False)
        gaps.setdefault(job.arch, []).append(int(bound) - c.registers)
    return {
        f"sm{arch}": {
            "compiles": len(g),
            "median_bound_minus_ptxas": statistics.median(g),
            "bound_below_ptxas": sum(1 for x in g if x < 0),
            "worst_under": min(g),
        }
        for arch, g in sorted(gaps.items())
    }
