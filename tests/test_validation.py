"""tunekit.validation: numerical checks, the model's verdict, and judging the model against a compile."""

from __future__ import annotations

import math

import pytest
import torch

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


def test_cells_from_all_and_one_and_unknown():
    assert cells_from("all") == ["lstm", "gru", "slstm", "elman"]
    assert cells_from("gru") == ["gru"]
    with pytest.raises(ValueError, match=r"cell: expected 'all' or one of .* received 'lsmt'"):
        cells_from("lsmt")


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


@pytest.mark.slow
def test_compile_case_compiles_the_rendered_kernel_and_judges_the_model():
    check = compile_case(TritonCase("elman", "forward", "float32", 24), 80, A100)
    assert check.name == "elman-fwd-tritonfused-D24-B16-fp32-sm80-bb16-w4-s1"
    assert 0 < check.registers <= 255 and check.spill_bytes == 0
    # one fp32 R tile of 32 x 32 stays in shared memory
    assert check.shared >= 32 * 32 * 4
    assert check.passed, check
