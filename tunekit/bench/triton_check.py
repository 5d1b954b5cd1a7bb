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

import itertools
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from tunekit.constraints.triton_kernel import kernel_head_dim
from tunekit.kernels.triton_fused_aot import Compiled, CompileJob
from tunekit.problem import Problem

FAMILY = "triton-fused"
CHECK_GPUS = ("a100", "h100")
CHECK_TOP = 5  # tune's default number of candidates returned beside the best
SHARED_TOLERANCE = 0.05  # the model may over-estimate shared memory by this much, never under

# (head_dim, batch, heads): odd head dims (15, 61, 125 run on copies padded to 16, 64, 128 lanes; 100
# on 104 lanes of a 128 tile), batches below, at and above one 16-row block
SHAPES = ((15, 7, 4), (30, 33, 2), (48, 64, 1), (61, 16, 3), (100, 16, 1), (125, 5, 1))
CELLS = ("lstm", "gru", "slstm", "elman")
DTYPES = ("float32", "float16", "bfloat16")
DIRECTIONS = ("forward", "both")
# issue 14's training targets: sLSTM bf16 at D=64, LSTM bf16 at D=128, LSTM fp32 (tf32) at D=64
TARGETS = (
    Problem("slstm", batch=16, heads=1, head_dim=64, dtype="bfloat16", direction="both"),
    Problem("lstm", batch=16, heads=1, head_dim=128, dtype="bfloat16", direction="both"),
    Problem("lstm", batch=16, heads=1, head_dim=64, dtype="float32", direction="both"),
)
CHECK_PROBLEMS = (
    tuple(
        Problem(cell, batch=b, heads=n, head_dim=d, dtype=dtype, direction=direction)
        for cell, dtype, direction, (d, b, n) in itertools.product(CELLS, DTYPES, DIRECTIONS, SHAPES)
    )
    + TARGETS
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


def returned(problem: Problem, gpu: str) -> list[tuple[int, Any, dict[str, int]]]:
    """(rank, KernelConfig, predicted) of every configuration tune returns (empty when none fits)."""
    from tunekit.tuning import NoFeasibleConfig, tune

    try:
        result = tune(problem, gpu, backend=FAMILY, top=CHECK_TOP)
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
) -> tuple[list[Checked], list[str]]:
    """Every returned configuration with its compiles; and the problems with no configuration."""
    from tunekit.hardware import load_profile

    checked, empty = [], []
    for gpu in gpus:
        profile = load_profile(gpu)
        for problem in problems:
            answers = returned(problem, gpu)
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

    Every refused point whose kernels all fit the shared memory is judged by the compiler: from the
    cache where present (the measured table's walks), else in a seeded sample of ``sample`` points.
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
    rng = random.Random(seed)
    judged = rng.sample(refused, min(sample, len(refused)))
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
