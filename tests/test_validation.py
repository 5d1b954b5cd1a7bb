"""tunekit.validation: numerical checks, the model's verdict, and judging the model against a compile."""

from __future__ import annotations

import math

import pytest
import torch
from cellcases import MGU

from tunekit.cells import CELLS
from tunekit.hardware import load_profile
from tunekit.validation import (
    Prediction,
    TritonCase,
    cells_from,
    compare,
    compile_case,
    judge,
    predict,
    register_limit,
    validate_interpreter,
    validate_reference,
)

A100 = load_profile("a100")


def test_cells_come_from_the_registry_so_a_registered_cell_is_in_all(monkeypatch):
    assert cells_from("all") == list(CELLS) and {"lstm", "gru", "slstm", "elman"} <= set(CELLS)
    assert cells_from("gru") == ["gru"]
    with pytest.raises(ValueError, match=r"cell: expected 'all' or one of .* received 'lsmt'"):
        cells_from("lsmt")
    monkeypatch.setitem(CELLS, MGU.name, MGU)
    assert cells_from("all")[-1] == "mgu" and cells_from("mgu") == ["mgu"]
    (check,) = validate_reference(["mgu"])
    assert check.name == "mgu: derived backward vs autograd" and check.passed, check


def test_compare_is_relative_to_the_reference_with_an_absolute_floor():
    expected = torch.tensor([10.0, -20.0])
    assert compare("x", expected + 0.019, expected, rtol=1e-3, atol=0.0).passed  # 0.019 <= 1e-3 * 20
    assert not compare("x", expected + 0.021, expected, rtol=1e-3, atol=0.0).passed
    nan = compare("x", torch.tensor([math.nan, 0.0]), expected, rtol=1.0, atol=1.0)
    assert not nan.passed
    with pytest.raises(ValueError, match="shape"):
        compare("x", torch.zeros(3), expected, rtol=1e-3, atol=0.0)


def test_reference_checks_pass_and_cover_torch_nn_and_the_derived_backward():
    checks = validate_reference(["lstm", "gru", "slstm"])
    names = [c.name for c in checks]
    assert "lstm vs torch.nn: output" in names and "gru vs torch.nn: d W_hh" in names
    assert "slstm: derived backward vs autograd" in names
    assert all(c.passed for c in checks), [c for c in checks if not c.passed]
    assert max(c.max_error for c in checks) < 1e-10


def test_interpreter_checks_the_fused_kernels_forward_and_every_gradient():
    checks = validate_interpreter(["elman"], steps=3)
    assert [c.name for c in checks] == [
        "elman fp32: all states", "elman fp32: final states",
        "elman fp32: d Wx", "elman fp32: d R", "elman fp32: d b", "elman fp32: d initial states",
    ]  # fmt: skip
    assert all(c.passed for c in checks), [c for c in checks if not c.passed]


@pytest.mark.parametrize("warps,limit", [(1, 255), (4, 255), (8, 255), (16, 128), (32, 64)])
def test_register_limit_shares_the_64k_register_file_among_the_threads(warps, limit):
    assert register_limit(warps, A100) == limit


def test_prediction_names_the_violated_constraints():
    ok = Prediction(registers=128, shared_bytes=1000, register_limit=128, shared_limit=1000)
    bad = Prediction(registers=129, shared_bytes=1001, register_limit=128, shared_limit=1000)
    assert ok.accepted and ok.violations == ()
    assert not bad.accepted and bad.violations == ("registers_per_thread", "shared_memory_per_block")


def test_predict_uses_the_profile_limits():
    p = predict(TritonCase("lstm", "forward", "bfloat16", 48, num_warps=16), A100)
    assert (p.register_limit, p.shared_limit) == (128, 166912)
    assert p.shared_bytes >= 4 * 64 * 64 * 2  # four bf16 R tiles of d_pad = 64


ACCEPT = Prediction(registers=200, shared_bytes=10_000, register_limit=255, shared_limit=100_000)
REJECT = Prediction(registers=300, shared_bytes=10_000, register_limit=255, shared_limit=100_000)


@pytest.mark.parametrize(
    "prediction,registers,spills,shared,verdict,passed",
    [
        (ACCEPT, 180, 0, 10_000, "ok", True),
        (ACCEPT, 180, 0, 9_600, "ok", True),  # 4.2% over: within tolerance
        (ACCEPT, 255, 64, 10_000, "MODEL WRONG: accepted, but spills", False),
        (ACCEPT, 180, 0, 10_200, "MODEL WRONG: shared memory off by more than 5%", False),  # under
        (ACCEPT, 180, 0, 9_000, "MODEL WRONG: shared memory off by more than 5%", False),  # 11% over
        (REJECT, 255, 64, 10_000, "rejected (compiler agrees)", True),
        (REJECT, 250, 0, 10_000, "rejected (conservative)", True),
    ],
)
def test_judge_fails_the_model_only_when_it_is_wrong(prediction, registers, spills, shared, verdict, passed):
    assert judge(prediction, registers, spills, shared) == (verdict, passed)


def test_judge_fails_an_accepted_kernel_with_a_stack_frame():
    assert judge(ACCEPT, 180, 0, 10_000, stack_frame_bytes=16) == (
        "MODEL WRONG: accepted, but uses a 16 B stack frame",
        False,
    )
    assert judge(REJECT, 250, 0, 10_000, stack_frame_bytes=16) == ("rejected (compiler agrees)", True)


@pytest.mark.slow
def test_compile_case_compiles_the_rendered_kernel_and_judges_the_model():
    check = compile_case(TritonCase("elman", "forward", "float32", 24), 80, A100)
    assert check.name == "elman-fwd-tritonfused-D24-B16-fp32-sm80-bb16-w4-s1"
    assert 0 < check.registers <= 255 and check.spill_bytes == 0
    # one fp32 R tile of 32 x 32 stays in shared memory
    assert check.shared >= 32 * 32 * 4
    assert check.passed, check


# ---- records, verdicts and targets of the tuned compile checks --------------------------------------

PREDICTED = {"registers_per_thread": 128, "shared_memory_bytes_per_block": 2304}


def figures(**changes):
    from tunekit.validation.records import compiled_figures

    base = {"registers": 40, "static": 2048, "dynamic": 256, "spill": 0, "stack": 0} | changes
    return compiled_figures(base["registers"], base["static"], base["dynamic"], base["spill"], base["stack"])


@pytest.mark.parametrize(
    "compiled,verdict",
    [
        (figures(), "ok"),
        (figures(registers=128), "ok"),  # the bound is an upper bound
        (figures(registers=129), "MODEL WRONG: accepted, but 129 registers > the model's bound 128"),
        (figures(spill=8, stack=8), "MODEL WRONG: accepted, but spills 8 B; uses a 8 B stack frame"),
        (figures(static=2064), "MODEL WRONG: accepted, but shared memory 2320 B != the model's 2304 B"),
        (figures(dynamic=240), "MODEL WRONG: accepted, but shared memory 2288 B != the model's 2304 B"),
    ],
    ids=["exact", "at-bound", "over-bound", "spills", "shared-over", "shared-under"],
)
def test_cuda_verdict_demands_exact_shared_memory_and_no_local_memory(compiled, verdict):
    from tunekit.validation import cuda_verdict

    assert (
        compiled["shared_memory_bytes"] == compiled["static_shared_bytes"] + compiled["dynamic_shared_bytes"]
    )
    assert cuda_verdict(PREDICTED, compiled) == (verdict, verdict == "ok")


def test_targets_use_gpu_for_its_arch_and_refuse_a_gpu_that_judges_nothing():
    from tunekit.validation import targets

    chosen = targets([80, 90], "a100-sxm4-40gb")
    assert [(t.arch, t.gpu.name) for t in chosen] == [(80, "a100-sxm4-40gb"), (90, "h100-sxm5-80gb")]
    with pytest.raises(ValueError, match=r"--gpu: 'h100' is sm_90, but --compile lists only sm_80"):
        targets([80], "h100")


def test_sample_problems_take_the_given_fields_and_the_sample_for_the_rest():
    from tunekit.validation import SAMPLE, sample_problems

    (sampled,) = sample_problems(["gru"])
    assert (sampled.head_dim, sampled.batch, sampled.dtype, sampled.direction) == (
        SAMPLE["head_dim"], SAMPLE["batch"], SAMPLE["dtype"], SAMPLE["direction"])  # fmt: skip
    (given,) = sample_problems(["gru"], head_dim=40, batch=None, dtype="float32")
    assert (given.head_dim, given.batch, given.dtype) == (40, SAMPLE["batch"], "float32")
    with pytest.raises(ValueError, match="dtype"):
        sample_problems(["gru"], dtype="float64")


def test_sources_are_written_atomically_under_canonical_names_only(tmp_path):
    from tunekit.validation import write_source

    path = write_source(tmp_path, "lstm-fwd-x-D64", ".cu", "// kernel\n")
    assert path == tmp_path / "lstm-fwd-x-D64.cu" and path.read_text() == "// kernel\n"
    assert write_source(tmp_path, "lstm-fwd-x-D64", ".cu", "// new\n").read_text() == "// new\n"
    for bad in ("../escape", "a/b", "..", "", "-x", "name with space"):
        with pytest.raises(ValueError, match="canonical name"):
            write_source(tmp_path, bad, ".cu", "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lstm-fwd-x-D64.cu"]


def test_in_the_sample_a_problem_without_configurations_is_a_note_elsewhere_an_error():
    from tunekit.problem import Problem
    from tunekit.tuning import NoFeasibleConfig
    from tunekit.validation.tuned import targets, tuned

    (target,) = targets([80])
    # one head of D=4096 in fp32 keeps 4 x 64 MB of R on chip: no triton-fused configuration exists
    huge = Problem(cell="lstm", batch=16, heads=1, head_dim=4096, dtype="float32", direction="forward")
    small = Problem(cell="elman", batch=16, heads=1, head_dim=32, dtype="bfloat16", direction="forward")
    found = tuned("triton-fused", [huge, small], target, top=2, sample=True)
    assert len(found.notes) == 1 and "D=4096" in found.notes[0] and "nothing to compile" in found.notes[0]
    assert [c.problem.cell for c in found.configs] == ["elman", "elman"]
    with pytest.raises(NoFeasibleConfig):
        tuned("triton-fused", [huge, small], target, top=2, sample=False)
