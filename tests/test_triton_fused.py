"""triton-fused kernels in Triton's interpreter against the float64 reference.

Checked: all states, final states and all gradients.

Inputs are drawn in float32, rounded to the tested dtype, and the reference runs in float64 on the
rounded values, so only the kernel's own arithmetic is measured. A breach of
``atol + rtol * max|reference|`` fails. The interpreter costs ~7 ms per time step per program, so
sequences stay short (T = 5..9).

bf16: Triton 3.9's interpreter returns garbage for ``tl.dot`` on bfloat16 operands (errors ~1e10).
The runtime probes this (``bf16_dot_is_exact``) and, in the interpreter only, upcasts bf16 dot
operands to fp32 (exact: a bf16 x bf16 product fits fp32, as on tensor cores). The bf16 cases below
therefore validate everything but the dot instruction itself; ``test_raw_bf16_dot_agrees_with_probe``
runs the kernel without the upcast and checks that the probe's belief matches what happens.

bf16 outputs: the interpreter also converts fp32 -> bf16 by truncation, not round-to-nearest-even
as compiled kernels do (``cvt.rn.bf16.f32``): each stored bf16 value (states, dWx) is up to one ulp
(2^-7 relative) toward zero instead of half an ulp off, about half of them by one ulp (all 768 values of the
canary equal the truncated value). States are carried in fp32 between steps, so this does not compound;
it costs at most 2^-7 = 0.8% of max|reference|, inside the bf16 rtol of 3e-2 with a margin of ~4.
``tests/test_printers.py::test_canary_the_interpreter_truncates_fp32_to_bf16_instead_of_rounding``
fails when the interpreter changes, so this reasoning is revisited.
"""

from __future__ import annotations

import pytest
import torch
from numerics import DTYPE_IDS, assert_within, make_inputs

from tunekit.bench.triton_check import TARGETS
from tunekit.cells import get_cell
from tunekit.kernels.triton_fused import (
    DEFAULT_CONFIG,
    bf16_dot_is_exact,
    fused_rnn,
    interpreter_dot_error,
    load_kernels,
    tuned_config,
)
from tunekit.reference import rnn as reference_rnn
from tunekit.tuning import NoFeasibleConfig

# dtype -> (rtol relative to max|reference|, absolute floor); "tf32": fp32 whose products run on tf32
# tensor cores (10 mantissa bits, as fp16; measured here up to 1.6e-3 of max|reference|)
TOL = {
    torch.float32: (2e-5, 1e-6),
    "tf32": (5e-3, 1e-4),
    torch.float16: (5e-3, 1e-4),
    torch.bfloat16: (3e-2, 1e-3),
}
CELL_NAMES = ("elman", "lstm", "gru", "slstm")
CONFIG = {"block_b": 16, "num_warps": 4, "num_stages": 1}  # fp32: exact products ("ieee")
# what the tuner gives each dtype on an A100: fp32 on tf32 tensor cores, 16-bit with one copy of R
# in the backward (ry^T = R y^T and dry R, tunekit.constraints.triton_resources.backward_dot_forms)
TUNED_FORM = {torch.float32: {"tf32": 1}, torch.float16: {"r_once": 1}, torch.bfloat16: {"r_once": 1}}


def loss_weights(cell_name: str, all_shape, last_shape, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random weights of a loss on every state and on the final states (zero on no-gradient states)."""
    cell = get_cell(cell_name)
    gen = torch.Generator().manual_seed(seed + 1)
    w_all, w_last = torch.randn(all_shape, generator=gen), torch.randn(last_shape, generator=gen)
    for st in cell.no_grad_states:
        w_all[cell.states.index(st)] = 0.0
        w_last[cell.states.index(st)] = 0.0
    return w_all, w_last


def assert_close(
    actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype, what: str, tol=None
) -> None:
    assert_within(actual, expected, TOL[dtype if tol is None else tol], what, DTYPE_IDS[dtype])


def check_against_reference(
    cell, B, T, N, D, dtype, with_s0=True, config=CONFIG, seed=0, loss="both", device="cpu", tol=None
):
    inputs = make_inputs(cell, B, T, N, D, dtype, with_s0, seed)
    ours = [None if x is None else x.to(device, copy=True).requires_grad_() for x in inputs]
    ref = [None if x is None else x.double().requires_grad_() for x in inputs]

    states_d, last_d = fused_rnn(*ours, cell=cell, config=config)  # on ``device``
    ref_states, ref_last = reference_rnn(*ref, cell=cell)
    states, last = states_d.cpu(), last_d.cpu()
    assert states.dtype == dtype and last.dtype == dtype
    assert_close(states, ref_states, dtype, "all states", tol)
    assert_close(last, ref_last, dtype, "final states", tol)

    w_all, w_last = loss_weights(cell, states.shape, last.shape, seed)
    w_all = w_all * (loss in ("both", "all"))
    w_last = w_last * (loss in ("both", "last"))
    w_all_d, w_last_d = w_all.to(states_d.device), w_last.to(states_d.device)
    ((states_d.float() * w_all_d).sum() + (last_d.float() * w_last_d).sum()).backward()
    ((ref_states * w_all.double()).sum() + (ref_last * w_last.double()).sum()).backward()
    for name, x, x_ref in zip(("dWx", "dR", "db", "dstates0"), ours, ref, strict=True):
        if x is not None:
            assert x.grad is not None and x.grad.dtype == dtype, name
            assert_close(x.grad.cpu(), x_ref.grad, dtype, name, tol)


@pytest.mark.parametrize("dtype", list(DTYPE_IDS), ids=list(DTYPE_IDS.values()))
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_every_cell_and_dtype_matches_reference(cell, dtype):
    # odd sizes: B=5 < BLOCK_B (masked rows), D=48 padded to 64 (masked lanes), 3 heads; the tuner's
    # form per dtype (fp32 on tf32 tensor cores, emulated by truncating the operands' mantissas)
    config = CONFIG | TUNED_FORM[dtype]
    tol = "tf32" if dtype == torch.float32 else None
    check_against_reference(cell, B=5, T=6, N=3, D=48, dtype=dtype, config=config, tol=tol)


# The backward's other two dot forms (the interpreter runs the code an arch would compile): both
# products with the batch rows on M (r_once = 0: R and R^T as B operands), and both with the hidden
# units on M (sm_90 warpgroup MMA: R and R^T as A operands). D = 36 is not a multiple of 8, so the
# runtime also runs it on copies padded to D = 40 (and the tile to 64).
FORMS = {"rows": {"r_once": 0}, "units-sm90": {"r_once": 1, "profile": "h100"}}


@pytest.mark.parametrize("form", list(FORMS))
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_every_cell_in_the_other_backward_forms_matches_reference(cell, form):
    config = CONFIG | FORMS[form]
    check_against_reference(cell, B=5, T=4, N=1, D=36, dtype=torch.bfloat16, config=config, seed=29)


def test_the_forms_are_the_ones_named():
    # the rows form and the sm_90 units form compile as (RY_UNITS, DH_UNITS) = (F, F) and (T, T)
    from tunekit.constraints.triton_kernel import backward_dot_forms

    assert backward_dot_forms(80, 2, 64, 16, 4, 0) == (False, False)
    assert backward_dot_forms(90, 2, 64, 16, 4, 1) == (True, True)
    assert backward_dot_forms(80, 2, 64, 16, 4, 1) == (True, False)  # the tuned A100 form above


@pytest.mark.parametrize(
    "cell,dtype", [("lstm", torch.float32), ("slstm", torch.bfloat16)], ids=["lstm-fp32", "slstm-bf16"]
)
def test_the_issue_shape_T63_B5_N3_D48(cell, dtype):
    # a long-enough sequence for errors to compound through the recurrence (~12 s each here)
    check_against_reference(cell, B=5, T=63, N=3, D=48, dtype=dtype, seed=11)


SHAPES = [  # (B, T, N, D, with initial states)
    (3, 5, 2, 16, False),  # smallest tile, zero initial states
    (17, 7, 1, 32, True),  # two batch blocks, the second holds one row
]


@pytest.mark.parametrize(
    "B,T,N,D,with_s0", SHAPES, ids=[f"B{b}-T{t}-N{n}-D{d}-s0{int(s)}" for b, t, n, d, s in SHAPES]
)
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_shapes_fp32(cell, B, T, N, D, with_s0):
    check_against_reference(cell, B, T, N, D, torch.float32, with_s0=with_s0, seed=B + D)


@pytest.mark.parametrize("loss", ["all", "last"])
def test_loss_on_one_output_only(loss):
    # the autograd.Function gets None for the unused output's gradient
    check_against_reference("lstm", B=4, T=5, N=2, D=16, dtype=torch.float32, loss=loss, seed=3)


def test_larger_tiles_than_needed():
    # BLOCK_B=32 for B=17 (15 padded rows) and D=40 padded to 64: more padding must change nothing
    # (the model's domains bound the tiles: block_b <= next_pow2(B), d_pad = next_pow2(D))
    config = {"block_b": 32, "num_warps": 8, "num_stages": 2}
    check_against_reference("gru", B=17, T=5, N=2, D=40, dtype=torch.float32, config=config, seed=5)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_longer_sequences_two_blocks(cell, dtype):
    check_against_reference(cell, B=19, T=9, N=2, D=64, dtype=dtype, seed=7)


def test_interpreter_dot_probe_on_fp32_and_fp16():
    # the probe itself must be right where the interpreter is known to be right
    assert interpreter_dot_error(torch.float32) < 1e-5
    assert interpreter_dot_error(torch.float16) < 1e-5


def test_raw_bf16_dot_agrees_with_probe():
    # Launch the bf16 forward kernel with DOT_FP32=False (the raw bf16 dot) and compare with the
    # reference: it must match exactly when the probe says the interpreter's bf16 dot is right,
    # and miss badly when the probe says it is broken (the garbage it guards against).
    B, T, N, D = 4, 5, 1, 16
    wx, r, b, _ = make_inputs("elman", B, T, N, D, torch.bfloat16, with_s0=False, seed=11)
    forward, _ = load_kernels("elman", {"name": "raw-bf16-dot", **CONFIG}, torch.bfloat16, interpret=True)
    out = torch.empty(1, B, T, N, D, dtype=torch.float32)
    last = torch.empty(1, B, 1, N, D, dtype=torch.float32)
    forward[(N, 1)](
        wx, r, b, last, out, last, B, T, N, 0,
        D=D, D_PAD=16, BLOCK_B=16, DOT_FP32=False, DOT_PRECISION="ieee", TF32_TRUNCATE=False,
    )  # fmt: skip
    expected, _ = reference_rnn(wx.double(), r.double(), b.double(), None, cell="elman")
    error = (out.double() - expected).abs().max().item()
    raw_dot_is_right = error < 3e-2
    assert raw_dot_is_right == bf16_dot_is_exact(), f"raw bf16 kernel error {error:.3e}"


def test_cpu_without_interpreter_raises_clear_error():
    import triton

    wx, r, b, _ = make_inputs("lstm", 2, 3, 1, 16, torch.float32, with_s0=False, seed=0)
    with triton.knobs.runtime.scope():
        triton.knobs.runtime.interpret = False
        with pytest.raises(RuntimeError, match="set TRITON_INTERPRET=1"):
            fused_rnn(wx, r, b, cell="lstm", config=CONFIG)


@pytest.mark.parametrize(
    "config,message",
    [
        ({"block_b": 12, "num_warps": 4, "num_stages": 1}, "block_b: got 12"),
        ({"block_b": 16, "num_warps": 3, "num_stages": 1}, "num_warps: got 3"),
        ({"block_b": 16, "num_warps": 4, "num_stages": 1, "d_pad": 32}, "d_pad: got 32"),
        ({"block_b": 16, "num_warps": 4}, "missing \\['num_stages'\\]"),
    ],
    ids=["block_b-not-pow2", "num_warps-3", "d_pad-below-D", "missing-key"],
)
def test_bad_config_raises_value_error(config, message):
    wx, r, b, _ = make_inputs("lstm", 2, 3, 1, 48, torch.float32, with_s0=False, seed=0)
    with pytest.raises(ValueError, match=message):
        fused_rnn(wx, r, b, cell="lstm", config=config)


def test_mismatched_shapes_raise_value_error():
    wx, r, b, _ = make_inputs("lstm", 2, 3, 1, 16, torch.float32, with_s0=False, seed=0)
    with pytest.raises(ValueError, match=r"R: got shape \(3, 1, 16, 16\)"):
        fused_rnn(wx, r[:3], b, cell="lstm", config=CONFIG)


def test_no_config_asks_the_tuner_for_the_a100_in_the_interpreter():
    config = tuned_config("lstm", 5, 3, 48, "bfloat16", interpret=True)
    assert config.family == "triton-fused" and config.gpu == "a100-sxm4-80gb"
    check_against_reference("lstm", B=5, T=4, N=3, D=48, dtype=torch.bfloat16, config=None, seed=19)


def test_a_shape_the_model_rejects_runs_with_the_default_tiles_only_in_the_interpreter():
    # fp32 R of D=100 (padded to 128): 256 KiB, beyond every GPU's shared memory per block
    assert tuned_config("elman", 5, 1, 100, "float32", interpret=True) is not DEFAULT_CONFIG
    assert tuned_config("lstm", 5, 1, 100, "float32", interpret=True) == DEFAULT_CONFIG
    with pytest.raises(NoFeasibleConfig, match="no feasible configuration"):
        tuned_config("lstm", 5, 1, 100, "float32", interpret=False, gpu="a100")
    check_against_reference("lstm", B=3, T=3, N=1, D=100, dtype=torch.float32, config=None, seed=23)


def _target_id(problem) -> str:
    return f"{problem.cell}-{DTYPE_IDS[getattr(torch, problem.dtype)]}-D{problem.head_dim}"


@pytest.mark.parametrize("gpu", ["a100", "h100"])
@pytest.mark.parametrize("target", TARGETS, ids=_target_id)
def test_the_training_targets_run_the_tuners_configuration_correctly(target, gpu):
    # issue 14's training targets (sLSTM at D=64 in every dtype, LSTM 16-bit at D=128, LSTM fp32 at
    # D=64) with the configuration the tuner returns for them: its tile, warps and dot forms
    from tunekit.hardware import load_profile
    from tunekit.problem import Problem
    from tunekit.tuning import tune

    problem = Problem(target.cell, 5, 1, target.head_dim, target.dtype, "both")
    config = tune(problem, load_profile(gpu), backend="triton-fused").config
    dtype = getattr(torch, target.dtype)
    tol = "tf32" if dtype == torch.float32 and config.params.get("tf32") else None
    check_against_reference(target.cell, 5, 3, 1, target.head_dim, dtype, config=config, tol=tol, seed=13)
