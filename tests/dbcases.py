"""Records for the tuning-database, measurement and calibration tests (shared, not a test file)."""

from __future__ import annotations

from dataclasses import replace

from tunekit.cost import active_constants
from tunekit.db import Record, RecordKey, predicted_record
from tunekit.problem import KernelConfig, Problem
from tunekit.tuning import tune

SMALL = Problem("lstm", batch=5, heads=3, head_dim=48)  # odd sizes: every family fits on an a100


def ranked(problem: Problem = SMALL, gpu: str = "a100", top: int = 6, backend: str = "auto") -> list[tuple]:
    """(KernelConfig, predicted Record) pairs of tune's top candidates, best first."""
    result = tune(problem, gpu, backend=backend, top=top)
    digest = active_constants().digest
    return [(c.config, predicted_record(c, result.gpu, i, digest)) for i, c in enumerate(result.candidates)]


def measured(
    record: Record, samples: list[float], *, passed: bool = True, runner: str = "recorded"
) -> Record:
    """``record`` as a measured one with these samples (µs per step) and a numerics verdict."""
    numerics = {"passed": passed, "max_error": 1e-3 if passed else 0.5, "tolerance": 1e-2, "detail": ""}
    return replace(
        record,
        tier="measured",
        status="ok" if passed else "failed",
        samples_us=tuple(samples) if passed else (),
        numerics=numerics,
        measure={"steps": 256, "warmup": 5, "repeats": len(samples), "check_steps": 8, "runner": runner},
        note="" if passed else "wrong numbers: max error 0.5 > tolerance 0.01",
    )


def synthetic(count: int, tag: str) -> list[Record]:
    """``count`` predicted records with distinct keys (no tuning: cheap, for bulk writes)."""
    problem = Problem("lstm", batch=16, heads=1, head_dim=64)
    out = []
    for i in range(count):
        config = KernelConfig("triton-fused", problem, "a100-sxm4-80gb", (("block_b", 16), ("run", i)))
        key = RecordKey(
            profile="a100-sxm4-80gb",
            profile_hash="0" * 16,
            cell="lstm",
            cell_hash="1" * 16,
            family="triton-fused",
            batch=16,
            heads=1,
            head_dim=64,
            dtype="bfloat16",
            direction="forward",
            config_name=f"{config.name}-{tag}",
            template_hash="2" * 16,
            tunekit_version="0.1.0",
            triton_version="3.9.0",
            cuda_version="none",
        )
        out.append(
            Record(
                key=key,
                params=config.params,
                tier="predicted",
                predicted={"time_us_per_step": 1.0 + i},
                cost_model="3" * 16,
                model_rank=i,
                updated_at="2025-01-01T00:00:00Z",
            )  # fmt: skip
        )
    return out
