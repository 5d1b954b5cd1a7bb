"""cuda-alternating kernels in tunekit's CPU emulator against the float64 reference.

The kernels' own source runs in the emulator (``TUNEKIT_CUDA_EMULATOR=1``): every cell x dtype at
odd sizes (T=13, D=40, B=5, N=3: M, N and K all padded), all states, final states and the
gradients of Wx, R, b and the initial states. Inputs are drawn in float32 and rounded to the tested
dtype; the reference runs in float64 on the rounded values, so only the kernels' arithmetic is
measured. A breach of ``atol + rtol * max|reference|`` fails.

Tolerances, from the kernels' roundings (u: unit roundoff of the operand format):

* float32 runs its products as tf32 (``cvt.rna``: 10 explicit mantissa bits, u = 2^-11): every
  step's R and y are rounded, so g = R·y carries ~u relative error, and so does each state after
  the (contractive) pointwise step; the backward's dg and R likewise. Measured at the shape below,
  worst over cells, outputs and gradients: 7.8e-4 of the magnitude (1.6u). Bound 8u = 4e-3.
* float16 (u = 2^-11): the y and dg operands and every stored state are rounded to fp16: the same
  per-step error as tf32, plus ≤ u from rounding each output. Measured 5.8e-4 (1.2u). Bound 8u = 4e-3.
* bfloat16 (u = 2^-8 = 3.9e-3): the same structure with 8 explicit bits. A stored bf16 state can
  sit one ulp (2u relative) from the reference's rounding when the fp32 state lies near a rounding
  boundary, but we compare against the unrounded float64 reference, so a flip costs ≤ u, not 2u;
  the backward reads the stored (rounded) states, so its local derivatives move by ~u. These do not
  compound: the cells are contractive (σ, tanh slopes ≤ 1; R scaled by 1/sqrt(D)). Measured 4.8e-3
  (1.2u; 5.5e-3 at T=6). Bound 8u = 3.1e-2.
"""

from __future__ import annotations

import time

import pytest
import torch
from cellcases import MGU, ODDMATH
from numerics import DTYPE_IDS, assert_within, make_inputs

import tunekit
from tunekit.api import BackendUnavailableError
from tunekit.cells import CELLS as REGISTERED_CELLS
from tunekit.cells import get_cell, register_cell
from tunekit.cuda import EMULATOR_ENV, CudaUnavailableError
from tunekit.kernels.cuda_alternating import TUNABLES, alternating_rnn, tuned_config
from tunekit.problem import KernelConfig, Problem
from tunekit.reference import rnn as reference_rnn

# dtype -> (rtol relative to max|reference|, absolute floor); see the module docstring
TOL = {
    torch.float32: (4e-3, 1e-5),
    torch.float16: (4e-3, 1e-4),
    torch.bfloat16: (3.1e-2, 1e-3),
}
CELLS = ("elman", "lstm", "gru", "slstm", "mgu")


def config_for(dtype: torch.dtype, **changes: int) -> dict[str, int]:
    """64 x 8 x 32 tiles (16-deep slices for fp32), 2 x 1 warps, 3 stages: at D=40, B=5 every GEMM
    pads M (4*40 = 160 -> 192), N (5 -> 8) and K (40 -> 64, fp32 48)."""
    config = {"tile_m": 64, "tile_n": 8, "tile_k": 16 if dtype == torch.float32 else 32, "warps_m": 2,
              "warps_n": 1, "stages": 3, "pointwise_threads": 128}  # fmt: skip
    return config | changes


@pytest.fixture(autouse=True)
def emulator(monkeypatch):
    """Every test here runs the kernels in the emulator, with the user-declared cells registered the
    user's way (register_cell) for the test's duration only: other tests list the known cells."""
    monkeypatch.setenv(EMULATOR_ENV, "1")
    added = [cell.name for cell in (MGU, ODDMATH) if cell.name not in REGISTERED_CELLS]
    for cell in (MGU, ODDMATH):
        register_cell(cell)
    yield
    for name in added:
        del REGISTERED_CELLS[name]


def assert_close(actual, expected, dtype, what):
    assert_within(actual, expected, TOL[dtype], what, DTYPE_IDS[dtype])


def check(
    cell, B, T, N, D, dtype, config, with_s0=True, seed=0, loss="both", run=alternating_rnn, device="cpu"
):
    """Forward and backward of ``run`` on ``device`` against the float64 reference on the CPU;
    returns (seconds it took, states, last, gradients) with everything back on the CPU."""
    inputs = make_inputs(cell, B, T, N, D, dtype, with_s0, seed)
    ours = [None if x is None else x.to(device, copy=True).requires_grad_() for x in inputs]
    ref = [None if x is None else x.double().requires_grad_() for x in inputs]
    start = time.perf_counter()
    states, last = run(*ours, cell=cell, config=config)
    ref_states, ref_last = reference_rnn(*ref, cell=cell)
    states_d, last_d = states, last
    states, last = states.cpu(), last.cpu()
    assert states.dtype == dtype and last.dtype == dtype
    assert_close(states, ref_states, dtype, "all states")
    assert_close(last, ref_last, dtype, "final states")

    declaration = get_cell(cell)
    gen = torch.Generator().manual_seed(seed + 1)
    w_all, w_last = torch.randn(states.shape, generator=gen), torch.randn(last.shape, generator=gen)
    for st in declaration.no_grad_states:  # no gradient flows through a stabilizer
        w_all[declaration.states.index(st)] = w_last[declaration.states.index(st)] = 0.0
    w_all, w_last = w_all * (loss in ("both", "all")), w_last * (loss in ("both", "last"))
    ((states_d.float() * w_all.to(device)).sum() + (last_d.float() * w_last.to(device)).sum()).backward()
    ((ref_states * w_all.double()).sum() + (ref_last * w_last.double()).sum()).backward()
    grads = []
    for name, x, x_ref in zip(("dWx", "dR", "db", "dstates0"), ours, ref, strict=True):
        if x is not None:
            assert x.grad is not None and x.grad.dtype == dtype, name
            assert_close(x.grad.cpu(), x_ref.grad, dtype, name)
            grads.append(x.grad.cpu())
    return time.perf_counter() - start, states, last, grads


@pytest.mark.parametrize("dtype", list(DTYPE_IDS), ids=list(DTYPE_IDS.values()))
@pytest.mark.parametrize("cell", CELLS)
def test_every_cell_and_dtype_matches_reference(cell, dtype):
    # T=13, D=40, B=5, N=3: M, N and K of every GEMM padded and masked
    check(cell, B=5, T=13, N=3, D=40, dtype=dtype, config=config_for(dtype))


@pytest.mark.parametrize("cell", ["lstm", "gru", "slstm", "oddmath"])
def test_initial_states_omitted(cell):
    # zeros without s0; oddmath: a bias-less gate (G_t < G_w) and a user's no-gradient state
    check(cell, B=5, T=7, N=2, D=24, dtype=torch.bfloat16, config=config_for(torch.bfloat16), with_s0=False)


TILES = {  # name -> (dtype, changes to config_for, what it exercises)
    "stages4-warps2x2": (torch.float16, {"tile_n": 32, "warps_m": 2, "warps_n": 2, "stages": 4}),
    "stages2-warps1x2-k64": (
        torch.bfloat16,
        {"tile_m": 32, "tile_n": 32, "tile_k": 64, "warps_m": 1, "warps_n": 2, "stages": 2},
    ),  # fmt: skip
    "tf32-k32-m128-warps4x1": (torch.float32, {"tile_m": 128, "tile_k": 32, "warps_m": 4, "stages": 2}),
    "tf32-k8-m16-n16": (torch.float32, {"tile_m": 16, "tile_n": 16, "tile_k": 8, "warps_m": 1, "stages": 4}),
}


@pytest.mark.parametrize("name", list(TILES))
def test_tile_configurations(name):
    # B=11 pads N (to 16 or 32), D=40 pads M and K differently for every tile
    dtype, changes = TILES[name]
    check("lstm", B=11, T=5, N=2, D=40, dtype=dtype, config=config_for(dtype, **changes), seed=4)


def test_head_dim_not_a_multiple_of_the_vector_width():
    # D=13: rows of 13 elements are copied from padded buffers; every pad is a zero
    check("gru", B=3, T=6, N=2, D=13, dtype=torch.float32, config=config_for(torch.float32), seed=6)


@pytest.mark.parametrize("loss", ["all", "last"])
def test_loss_on_one_output_only(loss):
    # the autograd.Function receives None for the unused output's gradient
    config = config_for(torch.float32)
    check("lstm", B=4, T=5, N=2, D=16, dtype=torch.float32, config=config, loss=loss, seed=3)


def test_tf32_products_are_the_only_rounding():
    # One step from a tf32-representable R and y0 (10-bit mantissas): g = R·y0 + Wx + b is then
    # exact up to fp32 accumulation, so the fp32 kernel must agree to fp32 accuracy, far inside
    # the tf32 tolerance (a kernel that rounded its operands to bf16 or fp16 would miss by ~1e-3).
    wx, r, b, s0 = make_inputs("elman", 5, 1, 3, 40, torch.float32, True, seed=8)
    r = (r.view(torch.int32) & ~0x1FFF).view(torch.float32)  # truncate to 10 explicit bits
    s0 = (s0.view(torch.int32) & ~0x1FFF).view(torch.float32)
    states, _ = alternating_rnn(wx, r, b, s0, cell="elman", config=config_for(torch.float32))
    expected, _ = reference_rnn(wx.double(), r.double(), b.double(), s0.double(), cell="elman")
    assert (states.double() - expected).abs().max().item() < 1e-6


def test_no_grad_forward_matches_and_keeps_no_history():
    wx, r, b, s0 = make_inputs("slstm", 5, 6, 2, 24, torch.bfloat16, True, seed=9)
    config = config_for(torch.bfloat16)
    with torch.no_grad():
        states, last = alternating_rnn(wx, r, b, s0, cell="slstm", config=config)
    with_grad, _ = alternating_rnn(wx, r.requires_grad_(), b, s0, cell="slstm", config=config)
    assert torch.equal(states, with_grad.detach()) and torch.equal(last[:, :, 0], states[:, :, -1])


@pytest.mark.parametrize("weights", ["constant", "requiring-grad"])
def test_double_backward_raises_a_clear_error(weights):
    # a gradient penalty: d(loss)/dR with create_graph=True, then a backward of that gradient. Its
    # second-order terms cannot come from the kernels: an error, never a silently partial gradient.
    wx, r, b, _ = make_inputs("elman", 3, 4, 1, 16, torch.float32, False, seed=10)
    r.requires_grad_()
    states, _ = alternating_rnn(wx, r, b, cell="elman", config=config_for(torch.float32))
    w = torch.ones_like(states, requires_grad=weights == "requiring-grad")
    (grad,) = torch.autograd.grad((states * w).sum(), r, create_graph=True)
    with pytest.raises(RuntimeError, match="differentiable once.*backend='reference'"):
        (grad**2).sum().backward()


def test_no_config_asks_the_tuner_for_the_a100_in_the_emulator():
    config = tuned_config("lstm", 5, 3, 40, "bfloat16", "a100-sxm4-80gb")
    assert config.family == "cuda-alternating" and config.gpu == "a100-sxm4-80gb"
    check("lstm", B=5, T=4, N=3, D=40, dtype=torch.bfloat16, config=None, seed=12)


def test_tunekit_rnn_dispatches_to_the_emulator():
    def run(*tensors, cell, config):
        return tunekit.rnn(*tensors, cell=cell, backend="cuda-alternating", config=config)

    check("mgu", B=5, T=5, N=3, D=40, dtype=torch.float16, config=config_for(torch.float16), run=run, seed=13)


def test_cpu_without_the_emulator_names_both_ways(monkeypatch):
    monkeypatch.delenv(EMULATOR_ENV)
    wx, r, b, _ = make_inputs("lstm", 2, 3, 1, 16, torch.float32, False, seed=0)
    with pytest.raises(CudaUnavailableError, match=f"CUDA GPU.*{EMULATOR_ENV}=1"):
        alternating_rnn(wx, r, b, cell="lstm", config=config_for(torch.float32))
    with pytest.raises(BackendUnavailableError, match=f"CUDA GPU.*{EMULATOR_ENV}=1"):
        tunekit.rnn(wx, r, b, cell="lstm", backend="cuda-alternating")


def _problem(**changes):
    return Problem(**({"cell": "lstm", "batch": 2, "heads": 1, "head_dim": 16, "dtype": "float32",
                       "direction": "both"} | changes))  # fmt: skip


FP32 = config_for(torch.float32)


def _other(**changes):
    return KernelConfig("cuda-alternating", _problem(**changes), "a100-sxm4-80gb", tuple(FP32.items()))


BAD_CONFIGS = {  # name -> (config, the error it must raise)
    "unknown-key": (FP32 | {"tile_q": 2}, r"unknown key\(s\) \['tile_q'\]"),
    "missing-key": ({k: v for k, v in FP32.items() if k != "stages"}, r"missing.*stages"),
    "not-an-int": (FP32 | {"stages": 2.0}, "config stages: got 2.0, expected a positive int"),
    "bool": (FP32 | {"warps_m": True}, "config warps_m: got True"),
    "tile-k-not-pow2": (FP32 | {"tile_k": 12}, "config tile_k: got 12, expected a power of two"),
    "tile-m-per-warp": (FP32 | {"tile_m": 16, "warps_m": 2}, r"tile_m: got 16, expected a multiple of 16 \*"),
    "stages-1": (FP32 | {"stages": 1}, "config stages: got 1, expected 2..8"),
    "other-family": (
        KernelConfig("triton-fused", _problem(), "a100-sxm4-80gb", (("block_b", 16),)),
        "config family: got 'triton-fused'",
    ),  # fmt: skip
    "other-cell": (_other(cell="gru"), "config cell: .*'gru'.*'lstm'"),
    "other-batch": (_other(batch=16), "config batch: .*16.*2"),
    "other-dtype": (_other(dtype="bfloat16"), "config dtype"),
}


@pytest.mark.parametrize("name", list(BAD_CONFIGS))
def test_bad_config_raises_value_error_naming_the_key(name):
    config, message = BAD_CONFIGS[name]
    wx, r, b, _ = make_inputs("lstm", 2, 3, 1, 16, torch.float32, False, seed=0)
    with pytest.raises(ValueError, match=message):
        alternating_rnn(wx, r, b, cell="lstm", config=config)


def test_tunables_are_the_models_variables():
    # a configuration the tuner returns is accepted as is: same names, same order
    config = tuned_config("gru", 7, 2, 24, "float16", "h100-sxm5-80gb")
    assert tuple(config.params) == TUNABLES
