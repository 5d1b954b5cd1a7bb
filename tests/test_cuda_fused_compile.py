"""cuda-fused model = kernel, checked by the compiler on a sample (issue 10, items 2 and 3).

Every kernel of a solver-chosen configuration compiles with nvcc for its profile's arch; shared
memory (ptxas static + the launcher's dynamic bytes) equals the model's exactly, registers stay
within the model's bound (the kernel caps ptxas at it), nothing spills, there is no stack frame,
the PTX holds mma.sync and neither PTX nor SASS touches local memory. `tunekit bench
cuda-compile` runs the same checks over a large sweep.
"""

from __future__ import annotations

import pytest

from tunekit.compilers.ptxas import local_memory_instructions
from tunekit.hardware import load_profile
from tunekit.kernels import cuda_fused
from tunekit.problem import Problem
from tunekit.tuning import tune
from tunekit.validation.records import compiled_figures, cuda_verdict

# (gpu, problem): every cell and dtype, odd D and B, one, two and four heads, with and without a k
# split, and two where the register budget binds (R tiles beyond it streamed from shared memory):
# four heads of D=61 (spilled 8 B when ptxas was capped at the model's estimate) and LSTM bf16 near
# the RTX 4090's four-head edge
SAMPLE = [
    ("a100", Problem("lstm", 16, 1, 768, "bfloat16", "forward")),
    ("h100", Problem("gru", 5, 1, 61, "float16", "both")),
    ("l4", Problem("slstm", 16, 2, 256, "float32", "both")),
    ("rtx4090", Problem("elman", 7, 1, 1000, "bfloat16", "forward")),
    ("l4", Problem("lstm", 16, 4, 61, "bfloat16", "forward")),
    ("rtx4090", Problem("lstm", 16, 4, 1000, "bfloat16", "forward")),
]
IDS = [f"{g}-{p.cell}-D{p.head_dim}-N{p.heads}-B{p.batch}-{p.dtype}-{p.direction}" for g, p in SAMPLE]


@pytest.fixture(scope="module")
def compiled(nvcc):
    """Every sample configuration's programs compiled with nvcc (in parallel, cached on disk)."""
    from tunekit.compilers.cuda import compile_programs

    jobs, configs = [], []
    for gpu, problem in SAMPLE:
        profile = load_profile(gpu)
        config = tune(problem, profile, backend="cuda-fused", top=1).config
        for program in cuda_fused.programs(config):
            jobs.append((program, profile.arch, "nvcc"))
            configs.append(config)
    results = compile_programs(jobs, workers=2, sass=True)
    return {
        job[0].name: (config, job[0], result)
        for job, config, result in zip(jobs, configs, results, strict=True)
    }


@pytest.mark.parametrize("case", range(len(SAMPLE)), ids=IDS)
def test_shared_memory_is_the_models_registers_within_its_bound_no_spills(compiled, case):
    gpu, problem = SAMPLE[case]
    mine = [v for v in compiled.values() if v[0].problem == problem and v[0].gpu == load_profile(gpu).name]
    assert mine
    for config, program, result in mine:
        assert not isinstance(result, Exception), result
        for entry in program.entries:
            got = result.entry(entry.name)
            predicted = cuda_fused.predicted(config, entry.name)
            dims = cuda_fused.launch_dims(config, entry.name)
            figures = compiled_figures(got.registers, got.static_shared_bytes, dims.shared_bytes,
                                       got.spill_bytes, got.stack_frame_bytes)  # fmt: skip
            verdict, passed = cuda_verdict(predicted, figures)
            assert passed, (
                f"{program.name} {entry.name}: {verdict} (predicted {predicted}, compiled {figures})"
            )
            assert dims.threads_per_block <= 1024
            res = cuda_fused.plan_of(config).resources
            assert dims.blocks <= load_profile(gpu).sm_count * res["blocks_per_sm"]


@pytest.mark.parametrize("case", range(len(SAMPLE)), ids=IDS)
def test_tensor_cores_and_no_local_memory(compiled, case):
    gpu, problem = SAMPLE[case]
    for config, program, result in compiled.values():
        if config.problem != problem:
            continue
        for entry in program.entries:
            got = result.entry(entry.name)
            if entry.cooperative:  # the recurrent kernels multiply on tensor cores (dR, db: fp32 FMA)
                assert "mma.sync.aligned" in got.ptx
                if got.sass is not None:
                    assert "HMMA" in got.sass
            assert local_memory_instructions(got.ptx) == []
            if got.sass is not None:
                assert local_memory_instructions(got.sass) == []


def test_many_register_fragments_stay_in_registers(nvcc):
    # 47 R tiles a warp in registers (LSTM bf16 D=1024 on an A100, 2 x 2 warps): with the variant
    # lambdas left as calls, NVVM put the fragments in local memory (54 registers, a 904 B stack
    # frame); inlined, ptxas keeps them in registers (51 tiles took 244 of the 255)
    from tunekit.compilers.cuda import compile_programs
    from tunekit.constraints import build_space

    gpu = load_profile("a100")
    space = build_space("cuda-fused", Problem("lstm", 16, 1, 1024, "bfloat16", "forward"), gpu)
    point = {"hidden_per_block": 12, "k_per_block": 1024, "block_b": 16, "tile_b": 8, "warps_rows": 2,
             "warps_k": 2, "span_heads": 0}  # fmt: skip
    assert space.resources(point)["r_tiles_in_registers_per_warp"] == 47
    config = space.config(point)
    (program,) = cuda_fused.programs(config)
    (result,) = compile_programs([(program, gpu.arch, "nvcc")], workers=1)
    got = result.entry("lstm_fused_forward")
    assert (got.stack_frame_bytes, got.spill_bytes) == (0, 0)
    assert got.registers <= cuda_fused.predicted(config, "lstm_fused_forward")["registers_per_thread"]
