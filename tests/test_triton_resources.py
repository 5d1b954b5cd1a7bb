"""The triton-fused resource formulas: same value on ints and solver expressions, and the known compiles."""

from __future__ import annotations

import itertools

import pytest

from tunekit.constraints.triton_resources import (
    per_thread,
    triton_fused_registers_per_thread,
    triton_fused_shared_bytes,
)
from tunekit.solvers import Model, PowersOfTwo, Range

FORMULAS = [triton_fused_shared_bytes, triton_fused_registers_per_thread]


@pytest.mark.parametrize("warps", [1, 2, 4, 8, 16, 32])
@pytest.mark.parametrize("elements", [256, 512, 1000, 16 * 48, 64 * 128])
def test_per_thread_share_is_ceil_of_elements_over_threads(elements, warps):
    assert per_thread(elements, warps) == -(-elements // (32 * warps))


@pytest.mark.parametrize("dtype_bytes", [2, 4])
@pytest.mark.parametrize("formula", FORMULAS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_expression_and_int_evaluations_agree(formula, direction, dtype_bytes):
    m = Model("triton-fused")
    bb = m.int_var("block_b", PowersOfTwo(16, 64))
    warps = m.int_var("num_warps", PowersOfTwo(1, 16))
    stages = m.int_var("num_stages", Range(1, 2))
    dp = m.int_var("d_pad", PowersOfTwo(16, 128))
    expr = formula(4, 2, dp, bb, warps, stages, dtype_bytes, direction)
    for b, w, st, d in itertools.product([16, 32, 64], [1, 2, 4, 8, 16], [1, 2], [16, 64, 128]):
        point = {"block_b": b, "num_warps": w, "num_stages": st, "d_pad": d}
        assert expr.evaluate(point) == formula(4, 2, d, b, w, st, dtype_bytes, direction), point


# metadata.shared of the RENDERED kernels (templates/triton/fused_*.py.j2, triton 3.9, sm_80 and
# sm_90 alike), read off tunekit.aot compiles (see reports/triton_calibration.md). The earlier truths
# here (9216/34816/135168 B) came from a hand-written kernel without initial states; the rendered
# forward converts its initial states to the MMA layout in fp32 when threads hold few elements, and
# the backward stages R and R^T plus, at num_stages = 2, the next step's loads.
# (cell, direction, dtype bytes, d_pad, block_b, num_warps, num_stages) -> bytes
KNOWN_SHARED = {
    ("lstm", "forward", 2, 64, 16, 4, 1): 34816,  # + y staged in bf16 (2048)
    ("lstm", "forward", 2, 64, 16, 16, 1): 36864,  # + initial states converted in fp32 (4096)
    ("lstm", "forward", 2, 64, 32, 4, 2): 36864,
    ("lstm", "forward", 2, 32, 16, 8, 1): 10240,
    ("lstm", "forward", 2, 128, 64, 8, 1): 147456,
    ("lstm", "forward", 4, 64, 64, 2, 1): 81920,  # fp32: R + one fp32 tile, whatever the warps
    ("elman", "forward", 2, 32, 16, 2, 1): 3072,
    ("elman", "forward", 4, 128, 16, 4, 1): 73728,
    ("lstm", "backward", 2, 64, 16, 4, 1): 69632,  # R and R^T 65536 + one fp32 tile
    ("lstm", "backward", 2, 128, 16, 4, 2): 319488,  # + next step's dstates, states, s0, wx
    ("gru", "backward", 2, 32, 16, 8, 2): 21504,
    ("elman", "backward", 4, 32, 16, 4, 1): 6144,  # fp32 keeps one R copy in shared memory
    ("lstm", "backward", 4, 32, 64, 4, 2): 106496,
}
GATES_STATES = {"lstm": (4, 2), "gru": (3, 1), "elman": (1, 1), "slstm": (4, 4)}


@pytest.mark.parametrize(
    "key,shared",
    sorted(KNOWN_SHARED.items()),
    ids=lambda v: "-".join(map(str, v)) if isinstance(v, tuple) else "",
)
def test_shared_memory_equals_the_compiler_on_known_compiles(key, shared):
    cell, direction, size, d_pad, block_b, warps, stages = key
    g, s = GATES_STATES[cell]
    assert triton_fused_shared_bytes(g, s, d_pad, block_b, warps, stages, size, direction) == shared


@pytest.mark.parametrize(
    "key,sm80,sm90",
    [
        # sm_90's warpgroup MMA (16-bit, block_b >= 64, >= 4 warps) reads R^T from R's buffer
        (("elman", 2, 32, 64, 8, 2), 32768, 30720),
        (("gru", 2, 64, 64, 16, 1), 65536, 40960),
        (("slstm", 2, 16, 128, 4, 1), 12288, 10240),
        # below block_b 64, or fp32 (FMA dot), both architectures allocate the same
        (("lstm", 2, 64, 16, 4, 1), 69632, 69632),
        (("lstm", 4, 32, 64, 4, 2), 106496, 106496),
    ],
    ids=str,
)
def test_backward_shared_memory_on_sm80_and_sm90(key, sm80, sm90):
    cell, size, d_pad, block_b, warps, stages = key
    g, s = GATES_STATES[cell]
    args = (g, s, d_pad, block_b, warps, stages, size, "backward")
    assert (triton_fused_shared_bytes(*args), triton_fused_shared_bytes(*args, arch=90)) == (sm80, sm90)


def test_arch_must_be_a_known_compute_capability():
    with pytest.raises(ValueError, match="arch: expected a compute capability"):
        triton_fused_shared_bytes(4, 2, 64, 16, 4, 1, 2, "backward", arch=75)


def test_one_warp_scratch_is_below_a_tile_and_the_bound_stays_within_5_percent():
    # one warp converts in two rounds: scratch 1024 B, not the 2048 B bf16 tile the model counts
    predicted = triton_fused_shared_bytes(4, 2, 64, 16, 1, 1, 2, "forward")
    assert 33792 < predicted <= 1.05 * 33792


# ptxas registers of rendered kernels (sm_80) that did not spill: the bound must cover them, and
# the ones marked True must be accepted (<= 255): the model is not a blanket rejection. The others
# it rejects on purpose (8-warp and 2-stage backward kernels, where ptxas spilled elsewhere).
# (cell, direction, dtype bytes, d_pad, block_b, num_warps, num_stages) -> (registers, accepted)
KNOWN_REGISTERS = {
    ("lstm", "forward", 2, 64, 16, 4, 1): (144, True),
    ("lstm", "forward", 2, 64, 16, 8, 1): (100, True),
    ("lstm", "forward", 2, 128, 16, 8, 1): (186, True),
    ("lstm", "forward", 2, 32, 16, 8, 1): (80, True),
    ("elman", "forward", 2, 32, 16, 2, 1): (62, True),
    ("lstm", "backward", 2, 64, 16, 4, 1): (248, True),
    ("lstm", "backward", 2, 32, 16, 4, 1): (140, True),
    ("elman", "backward", 4, 32, 16, 4, 1): (80, True),
    ("lstm", "backward", 2, 64, 16, 8, 1): (167, False),
    ("lstm", "backward", 2, 16, 16, 4, 2): (211, False),
    ("gru", "backward", 2, 32, 16, 8, 2): (120, False),
}


@pytest.mark.parametrize("key,known", sorted(KNOWN_REGISTERS.items()), ids=str)
def test_register_bound_covers_known_spill_free_compiles(key, known):
    cell, direction, size, d_pad, block_b, warps, stages = key
    registers, accepted = known
    g, s = GATES_STATES[cell]
    predicted = triton_fused_registers_per_thread(g, s, d_pad, block_b, warps, stages, size, direction)
    assert registers <= predicted
    assert (predicted <= min(255, 65536 // (32 * warps))) == accepted


# Configurations ptxas spills (registers capped at 255, or 128 at 16 warps): the bound must reject them.
KNOWN_SPILLS = [
    ("lstm", "forward", 2, 64, 16, 1, 1),  # 808 B spilled
    ("lstm", "forward", 2, 64, 64, 4, 1),  # 696 B
    ("lstm", "forward", 4, 64, 16, 4, 1),  # fp32: 540 B
    ("lstm", "forward", 2, 32, 32, 16, 2),  # 16 warps: 128 registers, 120 B
    ("gru", "forward", 4, 32, 128, 8, 2),  # 1508 B
    ("lstm", "backward", 2, 32, 32, 8, 2),  # 204 B
    ("slstm", "backward", 2, 64, 16, 4, 1),  # 96 B
    ("elman", "backward", 4, 64, 64, 8, 1),  # 500 B
    ("lstm", "backward", 2, 32, 16, 8, 1),  # 48 B at 128 registers although 255 were allowed
    ("lstm", "backward", 4, 32, 16, 8, 1),  # fp32: 16 B at 128 registers
    ("slstm", "backward", 2, 32, 16, 4, 1),  # sm_90: 8 B at 168 registers
]


@pytest.mark.parametrize("key", KNOWN_SPILLS, ids=str)
def test_register_bound_rejects_known_spilling_compiles(key):
    cell, direction, size, d_pad, block_b, warps, stages = key
    g, s = GATES_STATES[cell]
    predicted = triton_fused_registers_per_thread(g, s, d_pad, block_b, warps, stages, size, direction)
    assert predicted > min(255, 65536 // (32 * warps))


def test_fp32_lstm_forward_at_d128_exceeds_every_gpu_opt_in_shared_memory():
    # 4 fp32 tiles of 128 x 128 = 256 KiB: more than H100's 227 KiB opt-in limit (232448 B).
    assert triton_fused_shared_bytes(4, 2, 128, 16, 4, 1, 4, "forward") > 232448


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"direction": "sideways"}, "direction"),
        ({"dtype_bytes": 3}, "dtype_bytes"),
        ({"num_warps": 3}, "num_warps"),
    ],
)
@pytest.mark.parametrize("formula", FORMULAS, ids=lambda f: f.__name__)
def test_bad_arguments_raise_value_error_naming_them(formula, kwargs, message):
    args = {"num_warps": 4, "dtype_bytes": 2, "direction": "forward"} | kwargs
    with pytest.raises(ValueError, match=message):
        formula(4, 2, 64, 16, args["num_warps"], 1, args["dtype_bytes"], args["direction"])


def test_sm90_shared_memory_expression_agrees_with_ints():
    m = Model("triton-fused")
    bb = m.int_var("block_b", PowersOfTwo(16, 128))
    warps = m.int_var("num_warps", PowersOfTwo(1, 16))
    dp = m.int_var("d_pad", PowersOfTwo(16, 128))
    expr = triton_fused_shared_bytes(3, 1, dp, bb, warps, 1, 2, "backward", arch=90)
    for b, w, d in itertools.product([16, 32, 64, 128], [1, 2, 4, 8, 16], [16, 64, 128]):
        point = {"block_b": b, "num_warps": w, "d_pad": d}
        assert expr.evaluate(point) == triton_fused_shared_bytes(3, 1, d, b, w, 1, 2, "backward", arch=90)
