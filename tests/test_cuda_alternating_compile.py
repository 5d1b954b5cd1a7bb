"""Compiler truth for cuda-alternating: a sample of rendered programs compiles with nvcc and NVRTC
for sm_80/86/89/90, and per entry ptxas's figures agree with the constraint model: shared memory
(ptxas's static bytes + the launcher's dynamic bytes) exactly the model's, registers within the
model's budget, no spills, no stack frame; the GEMMs run on tensor cores (HMMA), fed by cp.async
(LDGSTS) and, where the operand is k-contiguous, ldmatrix (LDSM).

Compiles go through tunekit.compilers (cached on disk by name, source digest, arch and tool).
"""

from __future__ import annotations

import re

import pytest

from tunekit.compilers.cuda import compile_programs
from tunekit.kernels.cuda_alternating import (
    FAMILY,
    GEMM_ENTRIES,
    TUNABLES,
    gemm_shared_bytes,
    launch_dims,
    predicted,
    programs,
    tuned_config,
)
from tunekit.problem import KernelConfig, Problem

ARCHS = (80, 86, 89, 90)
TOOLS = ("nvcc", "nvrtc")


def _config(family_problem: tuple, gpu: str, params: tuple[int, ...]) -> KernelConfig:
    items = tuple(zip(TUNABLES, params, strict=True))
    return KernelConfig(FAMILY, Problem(*family_problem, direction="both"), gpu, items)


# The tuner's choice for a small bf16 problem (one warp, 64-deep k slices: every ldmatrix path), and
# a four-warp fp32 tile with 4 tf32 k steps a slice (the model's tightest register case).
SAMPLE = {
    "lstm-bf16-a100-tuned": lambda: tuned_config("lstm", 5, 3, 40, "bfloat16", "a100-sxm4-80gb"),
    "gru-fp32-128x8x32-4x1": lambda: _config(
        ("gru", 11, 2, 40, "float32"), "a100-sxm4-80gb", (128, 8, 32, 4, 1, 2, 128)
    ),  # fmt: skip
}


@pytest.fixture(scope="module")
def compiled():
    """name -> (config, {(program name, arch, tool): ProgramCompile}): every compile of the sample,
    two at a time (the machine's two cores; cached on disk by source digest, arch and tool)."""
    configs = {name: make() for name, make in SAMPLE.items()}
    jobs = [(p, a, t) for c in configs.values() for p in programs(c) for a in ARCHS for t in TOOLS]
    results = compile_programs(jobs, workers=2)
    failed = [str(r) for r in results if isinstance(r, Exception)]
    assert not failed, failed
    by_job = {(p.name, a, t): r for (p, a, t), r in zip(jobs, results, strict=True)}
    return {name: (config, by_job) for name, config in configs.items()}


@pytest.mark.parametrize("name", list(SAMPLE))
def test_every_entry_compiles_within_the_model(compiled, name):
    config, by_job = compiled[name]
    for program in programs(config):
        for entry in program.entries:
            model = predicted(config, entry.name)
            shared, registers = model["shared_memory_bytes_per_block"], model["registers_per_thread"]
            dynamic = launch_dims(config, entry.name).shared_bytes
            for arch in ARCHS:
                for tool in TOOLS:
                    got = by_job[(program.name, arch, tool)].entry(entry.name)
                    where = f"{program.name}:{entry.name} sm_{arch} ({tool})"
                    assert got.static_shared_bytes + dynamic == shared, (where, got.usage, shared)
                    assert got.registers <= registers, (where, got.usage, registers)
                    assert got.spill_bytes == 0 and got.stack_frame_bytes == 0, (where, got.usage)
                if entry.name in GEMM_ENTRIES:
                    code = by_job[(program.name, arch, "nvcc")].entry(entry.name).sass
                    where = f"{program.name}:{entry.name} sm_{arch}"
                    assert code is not None, f"{where}: no SASS (no cuobjdump found)"
                    assert "HMMA" in code and "LDGSTS" in code, f"{where}: no mma or no cp.async"
                    transposed_tf32 = config.problem.dtype == "float32" and entry.name == "gemm_weight_grad"
                    assert "LDSM" in code or transposed_tf32, f"{where}: no ldmatrix"


def test_gemm_shared_memory_is_the_pipeline_only(compiled):
    # what the launcher requests is STAGES x (A slice + B slice); ptxas sees no static shared memory
    for config, by_job in compiled.values():
        for program in programs(config):
            for entry in (e for e in program.entries if e.name in GEMM_ENTRIES):
                dynamic = launch_dims(config, entry.name).shared_bytes
                assert dynamic == gemm_shared_bytes(config.params, config.problem.dtype)
                for arch in ARCHS:
                    assert by_job[(program.name, arch, "nvcc")].entry(entry.name).static_shared_bytes == 0


def test_compile_seconds_are_reported(compiled, capsys):
    # the figures behind the report: the compile that made each (cached) build
    with capsys.disabled():
        for config, by_job in compiled.values():
            for program in programs(config):
                for tool in TOOLS:
                    seconds = [by_job[(program.name, a, tool)].build.seconds for a in ARCHS]
                    shown = ", ".join(f"sm_{a} {s:.1f}" for a, s in zip(ARCHS, seconds, strict=True))
                    print(f"\n{program.name} {tool}: {shown} s")
    assert compiled


_SIGNATURE = re.compile(r"TK_KERNEL void TK_LAUNCH_BOUNDS\([^)]*\)\s*(\w+)\((.*?)\)\s*\{", re.S)
_KINDS = {"int": "i32", "long long": "i64", "unsigned": "u32", "float": "f32"}


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_entry_parameters_match_the_kernel_signatures(dtype):
    # the launcher passes arguments by the KernelEntry's list: it must be the source's, name by name
    config = _config(("gru", 5, 2, 24, dtype), "a100-sxm4-80gb", (64, 8, 32, 2, 1, 3, 128))
    for program in programs(config):
        source = re.sub(r"//[^\n]*", "", program.source)
        found = {}
        for name, params in _SIGNATURE.findall(source):
            parsed = []
            for param in params.split(","):
                words = param.split()
                kind = "ptr" if words[0].startswith("tk::ptr<") else _KINDS[" ".join(words[:-1])]
                parsed.append((words[-1], kind))
            found[name] = tuple(parsed)
        assert found == {e.name: e.params for e in program.entries}
