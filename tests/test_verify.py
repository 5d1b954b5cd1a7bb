"""Compiler-verified tier: real compiles (Triton ahead of time, nvcc for a stand-in CUDA family),
limits read from the compiler and checked against the profile, families without kernels named."""

from __future__ import annotations

import json
import sys
import types
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner
from dbcases import ranked

from tunekit.cli import main
from tunekit.cuda import CudaProgram, KernelEntry, LaunchDims
from tunekit.db import TuningDB
from tunekit.db.tuning_run import RunOptions, run_tuning
from tunekit.hardware import load_profile
from tunekit.problem import KernelConfig, Problem
from tunekit.verify import (
    CudaVerifier,
    KernelCheck,
    TritonVerifier,
    limit_problems,
    verified_record,
    verify_configs,
)

A100, L4 = load_profile("a100"), load_profile("l4")


def check(**fields) -> KernelCheck:
    base = dict(entry="k", arch="sm_80", threads_per_block=128, registers=64, spill_bytes=0, stack_bytes=0,
                shared_bytes=16_384)  # fmt: skip
    return KernelCheck(**(base | fields))


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({}, None),
        ({"spill_bytes": 24}, "spills 24 B"),
        ({"stack_bytes": 16}, "16 B stack frame"),
        ({"registers": 256}, "256 registers > 255 per thread"),
        ({"registers": 255, "threads_per_block": 512}, "registers per block > 65,536"),
        ({"shared_bytes": 166_913}, "166,913 B shared memory > 166,912 B per block on a100-sxm4-80gb"),
        ({"threads_per_block": 2048, "registers": 16}, "2048 threads > 1024 per block"),
        (
            {"cooperative": True, "blocks": 108 * 3 + 1, "shared_bytes": 50_000},
            "cooperative grid of 325 blocks",
        ),
        ({"cooperative": True, "blocks": 108 * 3, "shared_bytes": 50_000}, None),
    ],
    ids=[
        "fits",
        "spills",
        "stack",
        "registers",
        "block-registers",
        "shared",
        "threads",
        "coresidency",
        "coresident",
    ],
)
def test_compiled_resources_are_checked_against_every_limit(fields: dict, words: str | None):
    problems = limit_problems(check(**fields), A100)
    assert problems == [] if words is None else len(problems) == 1 and words in problems[0]


# ---- a CUDA family through nvcc --------------------------------------------------------------------

FAKE_SOURCE = r"""
#include "tk_cuda.cuh"
TK_KERNEL void TK_LAUNCH_BOUNDS(128, 1) clean(tk::ptr<float> out, int n) {
  TK_SHARED(float, buf, 256);
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  buf[threadIdx.x] = float(i);
  __syncthreads();
  if (i < n) out[i] = 2.0f * buf[(threadIdx.x + 1) % 128];
  tk::grid_sync();
}
TK_KERNEL void spilling(tk::ptr<float> out, int n, int k) {
  float local[256];  // indexed at run time: lives in local memory, a stack frame
  for (int j = 0; j < 256; ++j) local[j] = out[(j * k) % n];
  out[threadIdx.x] = local[k % 256] + local[(k * 7) % 256];
}
"""


def _fake_family(kind_of: dict[str, str]) -> types.ModuleType:
    """A CudaFamily module: config name -> "clean" | "spilling" | "too-much-shared"."""
    module = types.ModuleType("tunekit_test_fake_cuda_family")
    module.FAMILY = "cuda-fused"
    entries = {
        "clean": KernelEntry("clean", (("out", "ptr"), ("n", "i32")), cooperative=True),
        "spilling": KernelEntry("spilling", (("out", "ptr"), ("n", "i32"), ("k", "i32"))),
    }

    def programs(config):
        kind = kind_of[config.name]
        entry = entries["spilling" if kind == "spilling" else "clean"]
        return (CudaProgram(config.name, FAKE_SOURCE, (entry,)),)

    def launch_dims(config, entry):
        extra = 200_000 if kind_of[config.name] == "too-much-shared" else 2048
        return LaunchDims(grid=(108, 1, 1), block=(128, 1, 1), shared_bytes=extra)

    def predicted(config, entry):
        return {"registers_per_thread": 32, "shared_memory_bytes_per_block": 1024 + 2048}

    module.programs, module.launch_dims, module.predicted = programs, launch_dims, predicted
    return module


@pytest.fixture
def fake_families(monkeypatch):
    """cuda-fused answered by the stand-in module; cuda-alternating with no kernels module at all."""
    from tunekit import kernels

    def install(kind_of: dict[str, str]) -> None:
        module = _fake_family(kind_of)
        monkeypatch.setitem(sys.modules, module.__name__, module)
        monkeypatch.setitem(kernels.CUDA_FAMILIES, "cuda-fused", module.__name__)

    monkeypatch.setitem(kernels.CUDA_FAMILIES, "cuda-alternating", "tunekit.kernels._not_written_yet")
    return install


def _configs(family: str, count: int) -> list[KernelConfig]:
    configs = [c for c, _ in ranked(backend=family, top=count)]
    assert len(configs) == count
    return configs


def test_nvcc_verdicts_for_a_clean_a_spilling_and_an_over_the_limit_kernel(fake_families, nvcc: str):
    configs = _configs("cuda-alternating", 3)  # any three configurations; the stand-in decides the code
    configs = [replace(c, family="cuda-fused", items=c.items) for c in configs]
    fake_families(dict(zip((c.name for c in configs), ("clean", "spilling", "too-much-shared"), strict=True)))
    verifier = CudaVerifier("cuda-fused", tool="nvcc")
    clean, spilling, too_much = (verifier.verify(c, A100) for c in configs)

    assert clean.status == "ok" and clean.kept and clean.compiler.startswith("nvcc ")
    (k,) = clean.kernels
    assert (k.arch, k.shared_bytes, k.blocks, k.cooperative) == ("sm_80", 1024 + 2048, 108, True)
    assert 0 < k.registers <= 32 and k.spill_bytes == k.stack_bytes == 0
    assert clean.reasons == ()  # registers within the model's bound, shared memory exactly as predicted

    assert spilling.status == "rejected" and not spilling.kept
    assert any("stack frame" in r for r in spilling.reasons)
    assert too_much.status == "rejected" and "201,024 B shared memory > 166,912 B" in too_much.reasons[0]
    record = verified_record(ranked(top=1)[0][1], spilling)
    assert (record.tier, record.status) == ("compiler-verified", "rejected") and "stack frame" in record.note


def test_a_family_without_a_kernels_module_is_named_and_records_nothing(fake_families, tmp_path: Path):
    (config,) = _configs("cuda-alternating", 1)
    (result,) = verify_configs([config], A100)
    assert result.status == "unavailable" and result.kept
    assert result.reasons == (
        "cuda-alternating has no kernels module yet (tunekit.kernels._not_written_yet): nothing to compile",
    )
    assert verified_record(ranked(top=1)[0][1], result) is None


def test_tune_verify_drops_what_the_compiler_rejects_and_records_the_verdicts(
    fake_families, nvcc: str, tmp_path: Path
):
    problem = Problem("lstm", batch=16, heads=1, head_dim=768)  # on an a100 the model ranks cuda-fused first
    names = [c.name for c, _ in ranked(problem, top=3)]
    assert all(n.startswith("lstm-fwd-cudafused") for n in names)
    fake_families({names[0]: "spilling", names[1]: "clean", names[2]: "clean"})
    db_path = tmp_path / "t.sqlite"
    report = run_tuning(problem, "a100", top=3, db_path=db_path, options=RunOptions(verify=True))
    assert [v.status for v in report.verified] == ["rejected", "ok", "ok"]
    assert (report.choice.source, report.choice.tier, report.choice.record.name) == (
        "fresh",
        "compiler-verified",
        names[1],
    )
    with TuningDB(db_path) as db:
        tiers = {r.name: (r.tier, r.status) for r in db.records()}
    assert tiers[names[0]] == ("compiler-verified", "rejected")
    assert tiers[names[1]] == ("compiler-verified", "ok")
    # a later plain run reads the verified record back and never brings back the rejected one
    args = ["tune", "--gpu", "a100", "--cell", "lstm", "--head-dim", "768", "--top", "3", "--json"]
    cli = CliRunner().invoke(main, [*args, "--db", str(db_path)])
    data = json.loads(cli.stdout)
    assert (data["choice"]["source"], data["choice"]["tier"]) == ("stored", "compiler-verified")
    assert data["config_name"] in names[1:]  # a verified one; the rejected model favourite never returns


def test_tune_verify_output_says_what_was_dropped_and_what_has_no_kernels(
    fake_families, nvcc: str, tmp_path: Path
):
    names = [c.name for c, _ in ranked(Problem("lstm", 16, 1, 768), top=2)]
    fake_families({names[0]: "spilling", names[1]: "clean"})
    args = ["tune", "--gpu", "a100", "--cell", "lstm", "--head-dim", "768", "--verify", "--verify-top", "2"]
    result = CliRunner().invoke(main, [*args, "--db", str(tmp_path / "t.sqlite")])
    assert result.exit_code == 0, result.output
    assert "dropped (rejected):" in result.output and "stack frame" in result.output
    assert "verified with nvcc" in result.output and "Choice: fresh compiler-verified record" in result.output


# ---- triton-fused through Triton's ahead-of-time compiler ---------------------------------------------


@pytest.mark.slow
def test_triton_compiles_verify_a_fitting_config_and_reject_it_where_shared_memory_is_short():
    tunables = (("block_b", 16), ("num_warps", 4), ("num_stages", 1), ("d_pad", 32))
    config = KernelConfig("triton-fused", Problem("lstm", 16, 2, 32), L4.name, tunables)
    verifier = TritonVerifier()
    verifier.prepare([config], L4)  # one batch: one child process under Triton's interpreter
    ok = verifier.verify(config, L4)
    assert ok.status == "ok", ok.reasons
    (k,) = ok.kernels
    assert k.arch == "sm_89" and k.spill_bytes == k.stack_bytes == 0 and k.threads_per_block == 128
    assert k.shared_bytes <= k.predicted_shared <= 1.05 * k.shared_bytes
    assert k.registers <= k.predicted_registers  # the model's register formula is an upper bound
    assert ok.compiler.startswith("triton ")
    # the same compiled kernel judged by a GPU with less shared memory per block than it asks
    short = replace(L4, shared_memory_per_block_optin=k.shared_bytes - 128)
    over = verifier.verify(config, short)  # compiled once: the cache answers
    assert over.status == "rejected" and f"{k.shared_bytes:,} B shared memory > " in over.reasons[0]
