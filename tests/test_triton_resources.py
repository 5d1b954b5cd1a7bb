"""The triton-fused resource formulas and kernel facts: ints and solver expressions agree, and the
formulas against compiles of the rendered kernels (triton 3.9, maxnreg = the register cap)."""

from __future__ import annotations

import itertools

import pytest

from tunekit.constraints.triton_kernel import (
    backward_dot_forms,
    class_head_dim,
    kernel_head_dim,
    register_arch,
    register_cap,
    wgmma_operands,
)
from tunekit.constraints.triton_resources import (
    per_thread,
    r_copies,
    triton_fused_registers_per_thread,
    triton_fused_shared_bytes,
)
from tunekit.hardware import load_profile
from tunekit.solvers import Model, PowersOfTwo, Range, Values

# (G_r, S, states with a gradient, G_w) of the built-in cells
CELLS = {"lstm": (4, 2, 2, 4), "gru": (3, 1, 1, 3), "slstm": (4, 4, 3, 4), "elman": (1, 1, 1, 1)}


def shared(cell, direction, size, d_pad, block_b, warps, stages, r_once=0, arch=80):
    g, s, grad, w = CELLS[cell]
    return triton_fused_shared_bytes(g, s, d_pad, block_b, warps, stages, size, direction, arch=arch,
                                     r_once=r_once, grad_states=grad, w_gates=w)  # fmt: skip


def bound(cell, direction, size, d_pad, block_b, warps, stages):
    g, s, _, _ = CELLS[cell]
    return triton_fused_registers_per_thread(g, s, d_pad, block_b, warps, stages, size, direction)


@pytest.mark.parametrize("warps", [1, 2, 4, 8, 16, 32])
@pytest.mark.parametrize("elements", [256, 512, 1000, 16 * 48, 64 * 128])
def test_per_thread_share_is_ceil_of_elements_over_threads(elements, warps):
    assert per_thread(elements, warps) == -(-elements // (32 * warps))


@pytest.mark.parametrize("arch", [80, 90])
@pytest.mark.parametrize("dtype_bytes", [2, 4])
@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_expression_and_int_evaluations_agree(direction, dtype_bytes, arch):
    m = Model("triton-fused")
    bb = m.int_var("block_b", PowersOfTwo(16, 128))
    warps = m.int_var("num_warps", PowersOfTwo(1, 16))
    stages = m.int_var("num_stages", Range(1, 2))
    form = m.int_var("r_once", Values([0, 1] if dtype_bytes == 2 else [0]))
    for d_pad in (16, 64, 128):
        s_expr = triton_fused_shared_bytes(4, 4, d_pad, bb, warps, stages, dtype_bytes, direction, arch=arch,
                                           r_once=form, grad_states=3, w_gates=4)  # fmt: skip
        r_expr = triton_fused_registers_per_thread(4, 4, d_pad, bb, warps, stages, dtype_bytes, direction)
        forms = [0, 1] if dtype_bytes == 2 else [0]
        for b, w, st, ro in itertools.product([16, 32, 64, 128], [1, 2, 4, 8, 16], [1, 2], forms):
            point = {"block_b": b, "num_warps": w, "num_stages": st, "r_once": ro}
            ints = triton_fused_shared_bytes(4, 4, d_pad, b, w, st, dtype_bytes, direction, arch=arch,
                                             r_once=ro, grad_states=3, w_gates=4)  # fmt: skip
            assert s_expr.evaluate(point) == ints, point
            assert r_expr.evaluate(point) == triton_fused_registers_per_thread(
                4, 4, d_pad, b, w, st, dtype_bytes, direction
            ), point


# metadata.shared of the rendered kernels compiled as a launch compiles them, from the calibration
# sample (reports/triton_calibration.md): both forms, fp32 (tf32), sm_80/89/90, one and two stages.
# (cell, direction, dtype bytes, d_pad, block_b, num_warps, num_stages, r_once, arch) -> bytes
KNOWN_SHARED = {
    ("elman", "backward", 2, 128, 16, 16, 1, 0, 80): 73728,  # R and R^T + one fp32 tile
    ("elman", "backward", 2, 128, 16, 8, 2, 0, 80): 90112,  # + the next step's staged loads
    ("slstm", "backward", 2, 64, 16, 2, 1, 0, 90): 69632,
    ("gru", "backward", 2, 16, 16, 2, 2, 0, 90): 7168,
    ("elman", "backward", 2, 128, 16, 8, 1, 1, 80): 40960,  # one copy of R
    ("elman", "backward", 2, 64, 16, 4, 2, 1, 89): 18432,
    ("elman", "backward", 2, 32, 32, 4, 1, 1, 90): 6144,
    ("gru", "backward", 4, 16, 64, 4, 1, 0, 89): 14336,  # fp32: two copies whatever the form
    ("lstm", "backward", 4, 16, 16, 8, 1, 0, 90): 10240,
    ("elman", "backward", 4, 128, 32, 8, 2, 0, 90): 196608,
    ("elman", "forward", 2, 16, 64, 8, 1, 0, 80): 2560,
    ("elman", "forward", 2, 128, 16, 4, 1, 0, 90): 36864,
    ("elman", "forward", 2, 16, 64, 16, 2, 0, 90): 4608,
    ("elman", "forward", 4, 64, 16, 8, 2, 0, 89): 20480,
    ("elman", "forward", 4, 32, 32, 2, 1, 0, 90): 8192,
    ("lstm", "forward", 2, 128, 16, 8, 1, 0, 80): 135168,  # LSTM bf16 D=128 forward: 128 KiB of R
    ("lstm", "backward", 2, 128, 16, 8, 1, 1, 80): 139264,  # ... and its backward keeps one copy
    ("lstm", "backward", 2, 128, 16, 8, 1, 1, 90): 139264,  # sm_90: R and R^T as A operands, one buffer
}


@pytest.mark.parametrize("key,known", sorted(KNOWN_SHARED.items()), ids=str)
def test_shared_memory_equals_the_compiler_on_known_compiles(key, known):
    cell, direction, size, d_pad, block_b, warps, stages, r_once, arch = key
    assert shared(cell, direction, size, d_pad, block_b, warps, stages, r_once, arch) == known


@pytest.mark.parametrize(
    "args,copies",
    [
        ((80, 2, 64, 16, 4, 0), 2),  # mma.sync, rows form: R and R^T
        ((80, 2, 64, 16, 4, 1), 1),  # mma.sync, one-copy form
        ((90, 2, 32, 64, 4, 0), 1),  # sm_90 warpgroup MMA over 64 batch rows: R^T a view of R
        ((90, 2, 128, 16, 8, 1), 1),  # sm_90, hidden units on M in both products
        ((90, 2, 32, 64, 4, 1), 2),  # sm_90, 32 units (mma.sync) beside 64 rows (warpgroup MMA)
        ((90, 4, 64, 64, 8, 0), 2),  # fp32 (tf32): always two
    ],
    ids=str,
)
def test_copies_of_r_in_the_backward(args, copies):
    assert r_copies(*args) == copies


def test_fp32_lstm_forward_at_d128_exceeds_every_gpu_opt_in_shared_memory():
    # 4 fp32 tiles of 128 x 128 = 256 KiB: more than H100's 227 KiB opt-in limit (232448 B)
    assert shared("lstm", "forward", 4, 128, 16, 4, 1) > 232448


# Configurations ptxas spilled with maxnreg = the cap (the calibration sample): the bound that judges
# configurations the measured table lacks must refuse every one.
# (cell, direction, dtype bytes, d_pad, block_b, num_warps, num_stages)
KNOWN_SPILLS = [
    ("slstm", "forward", 2, 64, 32, 4, 1),  # bf16 sm_80: 16 B at 255 registers
    ("gru", "backward", 2, 64, 32, 4, 2),  # fp16 sm_90 one-copy form: 528 B at 255
    ("elman", "backward", 2, 256, 32, 16, 2),  # fp16 sm_89: 48 B at 128
    ("gru", "forward", 4, 128, 32, 16, 2),  # fp32 sm_90: 140 B at 128
    ("gru", "backward", 4, 64, 32, 16, 2),  # fp32 sm_80: 20 B at 128
    ("lstm", "backward", 4, 32, 16, 1, 1),  # fp32 sm_90: 1700 B at 255
    ("gru", "backward", 2, 64, 64, 8, 2),  # bf16 sm_90: 1044 B at 255
    ("slstm", "forward", 4, 32, 64, 4, 2),  # fp32 sm_89: 304 B at 255
    ("slstm", "forward", 4, 64, 32, 16, 1),  # fp32 sm_80: 616 B at 128
    ("gru", "forward", 2, 64, 64, 8, 1),  # fp16 sm_89: 640 B at 255 (the old bound accepted it)
]


@pytest.mark.parametrize("key", KNOWN_SPILLS, ids=str)
def test_register_bound_refuses_known_spilling_compiles(key):
    cell, direction, size, d_pad, block_b, warps, stages = key
    assert bound(*key) > (255 if warps <= 8 else 128)


def test_register_bound_still_accepts_small_kernels():
    # not a blanket refusal: an Elman bf16 forward at D=32 (38 registers on sm_90) is accepted
    assert bound("elman", "forward", 2, 32, 16, 4, 1) <= 255
    assert bound("lstm", "forward", 2, 32, 16, 4, 1) <= 255


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"direction": "sideways"}, "direction"),
        ({"dtype_bytes": 3}, "dtype_bytes"),
        ({"num_warps": 3}, "num_warps"),
    ],
)
@pytest.mark.parametrize("formula", [triton_fused_shared_bytes, triton_fused_registers_per_thread])
def test_bad_arguments_raise_value_error_naming_them(formula, kwargs, message):
    args = {"num_warps": 4, "dtype_bytes": 2, "direction": "forward"} | kwargs
    with pytest.raises(ValueError, match=message):
        formula(4, 2, 64, 16, args["num_warps"], 1, args["dtype_bytes"], args["direction"])


def test_arch_must_be_a_known_compute_capability():
    with pytest.raises(ValueError, match="arch: expected a compute capability"):
        triton_fused_shared_bytes(4, 2, 64, 16, 4, 1, 2, "backward", arch=75)


# ---- kernel facts -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "head_dim,kernel", [(1, 8), (8, 8), (15, 16), (48, 48), (61, 64), (100, 104), (125, 128)]
)
def test_head_dims_run_padded_to_a_multiple_of_8(head_dim, kernel):
    assert kernel_head_dim(head_dim) == kernel


def test_the_measured_d_of_a_tile():
    assert [class_head_dim(d, True) for d in (16, 64, 128)] == [16, 64, 128]
    assert [class_head_dim(d, False) for d in (16, 64, 128)] == [8, 56, 120]


@pytest.mark.parametrize(
    "gpu,warps,cap", [("a100", 4, 255), ("a100", 8, 255), ("h100", 16, 128), ("l4", 32, 64)]
)
def test_register_cap_of_a_block(gpu, warps, cap):
    assert register_cap(warps, load_profile(gpu)) == cap


def test_sm86_reads_sm89_measurements():
    assert [register_arch(a) for a in (80, 86, 89, 90)] == [80, 89, 89, 90]


@pytest.mark.parametrize(
    "args,forms",
    [
        ((80, 2, 128, 16, 8, 1), (True, False)),  # mma.sync: R as A (ry^T) and as B (dry R)
        ((90, 2, 128, 16, 8, 1), (True, True)),  # sm_90: hidden units on M in both
        ((90, 2, 32, 16, 8, 1), (True, False)),  # sm_90 below 64 units: mma.sync
        ((90, 2, 128, 16, 2, 1), (True, False)),  # two warps: no warpgroup
        ((80, 2, 64, 16, 4, 0), (False, False)),  # rows form
        ((80, 4, 64, 16, 4, 0), (False, False)),  # fp32
    ],
    ids=str,
)
def test_backward_dot_forms(args, forms):
    assert backward_dot_forms(*args) == forms


def test_fp32_has_no_one_copy_form():
    with pytest.raises(ValueError, match="r_once"):
        backward_dot_forms(80, 4, 64, 16, 4, 1)


def test_warpgroup_mma_needs_sm90_whole_warpgroups_and_64_rows():
    assert wgmma_operands(90, 64, 4) and not wgmma_operands(80, 64, 4)
    assert not wgmma_operands(90, 32, 4) and not wgmma_operands(90, 64, 2)
