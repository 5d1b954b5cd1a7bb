"""Every emulated primitive against an independent NumPy/torch reference: bf16/fp16 rounding, tf32
cvt.rna, pack2/load_pair, each mma shape and dtype with fragments per the documented layouts,
ldmatrix in every form, every shuffle kind and width, votes, __syncwarp and cp.async (docs/cuda.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tunekit.cuda import CudaProgram, KernelEntry, LaunchDims
from tunekit.cuda.emulator import EmulatorRunner

CUDA_DIR = Path(__file__).parent / "cuda"
PTR4 = (("A", "ptr"), ("B", "ptr"), ("C", "ptr"), ("D", "ptr"))
PRIMITIVES = CudaProgram(
    "test-emu-primitives",
    (CUDA_DIR / "emu_primitives.cu").read_text(),
    (
        KernelEntry(
            "convert",
            (("x", "ptr"), ("bf", "ptr"), ("hf", "ptr"), ("tf", "ptr"), ("back", "ptr"), ("n", "i32")),
        ),
        KernelEntry("pairs", (("x", "ptr"), ("bf", "ptr"), ("hf", "ptr"), ("out", "ptr"), ("pairs", "i32"))),
        KernelEntry("mma_bf16", PTR4),
        KernelEntry("mma_f16", PTR4),
        KernelEntry("mma_tf32", PTR4),
        KernelEntry("mma_bf16_ldmatrix", PTR4),
        KernelEntry("ldmatrix_forms", (("src", "ptr"), ("perm", "ptr"), ("out", "ptr"))),
        KernelEntry("shuffles", (("args", "ptr"), ("out", "ptr"), ("nargs", "i32"))),
        KernelEntry("shuffle_types", (("f", "ptr"), ("d", "ptr"), ("ll", "ptr"))),
        KernelEntry("votes", (("patterns", "ptr"), ("out", "ptr"), ("n", "i32"))),
        KernelEntry("warp_sync_sum", (("x", "ptr"), ("y", "ptr"), ("sums", "ptr"))),
        KernelEntry("copies", (("src", "ptr"), ("out", "ptr"), ("early", "ptr"))),
    ),
)
WARP = LaunchDims((1, 1, 1), (32, 1, 1))


@pytest.fixture(scope="module")
def runner() -> EmulatorRunner:
    return EmulatorRunner(timeout_s=60)


def _bits32(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)


def _test_floats(seed: int) -> np.ndarray:
    """200k uniformly random bit patterns (every exponent: NaN, inf, subnormals) and the hard cases:
    exact bf16 and fp16 ties (round-half bits set, nothing below) with even and odd kept bits,
    fp16 subnormals and their ties, fp16 overflow around 65504/65520, bf16 overflow near FLT_MAX."""
    rng = np.random.default_rng(seed)
    random = rng.integers(0, 2**32, size=200_000, dtype=np.uint64).astype(np.uint32)
    kept = rng.integers(0, 2**16, size=20_000, dtype=np.uint64).astype(np.uint32) << 16
    bf16_ties = kept | 0x8000  # the dropped half is exactly one half ulp
    near = rng.integers(0, 2**32, size=20_000, dtype=np.uint64).astype(np.uint32)
    f16_ties = (near & 0xFFFFE000) | 0x1000  # the 13 bits fp16 drops are exactly a half
    f16_sub = rng.uniform(-(2.0**-14), 2.0**-14, size=20_000).astype(np.float32).view(np.uint32)
    sub_ties = (np.arange(1, 2048, dtype=np.float64) + 0.5) * 2.0**-24  # halfway between fp16 subnormals
    edges = [
        65504.0,
        65519.996,
        65520.0,
        65536.0,
        2.0**-24,
        2.0**-25,
        2.0**-25 * 1.0000001,
        2.0**-14,
        3.4028235e38,
    ]
    special = np.array(edges + [-e for e in edges] + [0.0, -0.0, np.inf, -np.inf, np.nan], dtype=np.float32)
    parts = [random, bf16_ties, f16_ties, f16_sub, _bits32(sub_ties.astype(np.float32)), _bits32(special)]
    parts.append(
        np.array([0x7F7FFFFF, 0xFF7FFFFF, 0x7F7F8000, 0x7F7F7FFF, 0x00000001, 0x80008000], dtype=np.uint32)
    )
    return np.concatenate(parts).view(np.float32)


def _tf32_rna(x: np.ndarray) -> np.ndarray:
    """cvt.rna.tf32.f32 in float64: nearest multiple of the tf32 quantum (10 stored mantissa bits,
    float32's exponent range and subnormals), ties away from zero; NaN -> 0x7fffffff."""
    with np.errstate(invalid="ignore"):  # signalling NaNs among the bit patterns
        xd = x.astype(np.float64)
    finite = np.isfinite(xd) & (xd != 0)
    e = np.floor(np.log2(np.abs(np.where(finite, xd, 1.0))))
    q = np.exp2(np.maximum(e, -126) - 10)
    r = np.where(finite, np.sign(xd) * np.floor(np.abs(xd) / q + 0.5) * q, xd)
    with np.errstate(over="ignore"):
        out = _bits32(r.astype(np.float32)).copy()
    out[np.isnan(x)] = 0x7FFFFFFF
    return out


def test_bf16_fp16_and_tf32_round_like_the_hardware_on_300k_values(runner):
    x = _test_floats(seed=5)
    n = x.size
    xt = torch.from_numpy(x.copy())
    bf, hf = torch.zeros(n, dtype=torch.bfloat16), torch.zeros(n, dtype=torch.float16)
    tf, back = torch.zeros(n, dtype=torch.uint32), torch.zeros(2 * n)
    runner.launch(PRIMITIVES, "convert", LaunchDims((2, 1, 1), (64, 1, 1)), [xt, bf, hf, tf, back, n])
    nan = np.isnan(x)
    assert nan.sum() > 100 and (np.abs(x) < 2.0**-126).sum() > 100  # the sample has NaNs and subnormals
    # bf16: torch's float -> bfloat16 is round-to-nearest-even; NaN is the canonical 0x7fff (cuda_bf16.hpp)
    got_bf = bf.view(torch.int16).numpy().view(np.uint16)
    want_bf = xt.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    np.testing.assert_array_equal(got_bf[~nan], want_bf[~nan])
    assert (got_bf[nan] == 0x7FFF).all()
    # fp16: numpy's float32 -> float16 rounds to nearest even, subnormals and overflow to inf included
    got_hf = hf.view(torch.int16).numpy().view(np.uint16)
    with np.errstate(over="ignore"):
        want_hf = x.astype(np.float16).view(np.uint16)
    np.testing.assert_array_equal(got_hf[~nan], want_hf[~nan])
    assert (got_hf[nan] == 0x7FFF).all()
    assert (got_hf[(np.abs(x) >= 65520) & ~nan] & 0x7FFF == 0x7C00).all()  # overflow: inf
    # tf32
    np.testing.assert_array_equal(tf.numpy(), _tf32_rna(x))
    # back to float: exact
    back = back.view(n, 2).numpy()
    np.testing.assert_array_equal(_bits32(back[~nan, 0]), _bits32(bf[~torch.from_numpy(nan)].float().numpy()))
    np.testing.assert_array_equal(
        _bits32(back[~nan, 1]), _bits32(want_hf[~nan].view(np.float16).astype(np.float32))
    )


def test_pack2_and_load_pair_put_the_first_value_in_the_low_half(runner):
    x = torch.randn(2 * 37, generator=torch.Generator().manual_seed(6))
    bf, hf = torch.zeros(74, dtype=torch.bfloat16), torch.zeros(74, dtype=torch.float16)
    out = torch.zeros(4 * 37, dtype=torch.uint32)
    runner.launch(PRIMITIVES, "pairs", LaunchDims((1, 1, 1), (32, 1, 1)), [x, bf, hf, out, 37])
    b16 = x.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16).astype(np.uint32).reshape(37, 2)
    h16 = x.numpy().astype(np.float16).view(np.uint16).astype(np.uint32).reshape(37, 2)
    got = out.numpy().reshape(37, 4)
    np.testing.assert_array_equal(got[:, 0], b16[:, 0] | (b16[:, 1] << 16))
    np.testing.assert_array_equal(got[:, 1], got[:, 0])
    np.testing.assert_array_equal(got[:, 2], h16[:, 0] | (h16[:, 1] << 16))
    np.testing.assert_array_equal(got[:, 3], got[:, 2])


# ---- mma -------------------------------------------------------------------------------------

MMA = {
    "bf16": ("mma_bf16", torch.bfloat16, 16),
    "f16": ("mma_f16", torch.float16, 16),
    "tf32": ("mma_tf32", torch.float32, 8),
}


def _mma(runner, entry, dtype, A, B, C):
    D = torch.zeros(16, 8)
    runner.launch(PRIMITIVES, entry, WARP, [A.to(dtype).contiguous(), B.to(dtype).contiguous(), C, D])
    return D


@pytest.mark.parametrize("kind", ["bf16", "f16", "tf32", "bf16-ldmatrix"])
def test_mma_with_documented_fragments_is_a_matmul(runner, kind):
    entry, dtype, K = MMA[kind.split("-")[0]]
    if kind.endswith("ldmatrix"):
        entry = "mma_bf16_ldmatrix"
    g = torch.Generator().manual_seed(7)
    # small integers: every product and partial sum exact in fp32, so D must equal the matmul exactly
    A = torch.randint(-8, 9, (16, K), generator=g).float()
    B = torch.randint(-8, 9, (K, 8), generator=g).float()
    C = torch.randint(-64, 65, (16, 8), generator=g).float()
    assert torch.equal(_mma(runner, entry, dtype, A, B, C), C + A @ B)


@pytest.mark.parametrize("kind", ["bf16", "f16", "tf32"])
def test_mma_of_random_values_accumulates_in_fp32(runner, kind):
    entry, dtype, K = MMA[kind]
    g = torch.Generator().manual_seed(8)
    A, B, C = torch.randn(16, K, generator=g), torch.randn(K, 8, generator=g), torch.randn(16, 8, generator=g)
    D = _mma(runner, entry, dtype, A, B, C)
    if kind == "tf32":
        a64 = torch.from_numpy(_tf32_rna(A.numpy()).view(np.float32)).double()
        b64 = torch.from_numpy(_tf32_rna(B.numpy()).view(np.float32)).double()
    else:
        a64, b64 = A.to(dtype).double(), B.to(dtype).double()
    exact = C.double() + a64 @ b64
    # K fp32 roundings of sums whose magnitude is at most sum |c| + sum |a b|
    bound = K * 2.0**-24 * (C.double().abs() + a64.abs() @ b64.abs())
    assert ((D.double() - exact).abs() <= bound).all()


def test_mma_adds_the_products_in_k_order_rounding_each_sum_to_fp32(runner):
    # c = 2^24 and sixteen products of 1: each fp32 sum 2^24 + 1 rounds back to 2^24 (ties to even);
    # exact accumulation would give 2^24 + 16 (docs/cuda.md §2: the emulator's tensor-core model)
    A, B = torch.ones(16, 16), torch.ones(16, 8)
    C = torch.full((16, 8), 2.0**24)
    assert torch.equal(_mma(runner, "mma_bf16", torch.bfloat16, A, B, C), C)
    # from 2^24 + 2 (odd mantissa) the first + 1 is a tie that rounds up to 2^24 + 4, the rest round back
    C2 = torch.full((16, 8), 2.0**24 + 2)
    assert torch.equal(_mma(runner, "mma_bf16", torch.bfloat16, A, B, C2), C2 + 2)


# ---- ldmatrix --------------------------------------------------------------------------------


def test_ldmatrix_every_form_delivers_the_ptx_lane_layout(runner):
    m = np.arange(256, dtype=np.int64).reshape(32, 8) * 7 + 3  # row r, column c -> 56 r + 7 c + 3
    src = torch.from_numpy(m.astype(np.int16).reshape(-1))
    perm = torch.from_numpy(((np.arange(32) * 5 + 3) % 32).astype(np.int32))
    out = torch.zeros(6 * 32 * 4, dtype=torch.uint32)
    runner.launch(PRIMITIVES, "ldmatrix_forms", WARP, [src, perm, out])
    got = out.numpy().reshape(6, 32, 4)
    rows = m[perm.numpy()]  # the row lane l points at
    for form, (count, trans) in enumerate(
        [(1, False), (1, True), (2, False), (2, True), (4, False), (4, True)]
    ):
        for lane in range(32):
            for i in range(count):
                M = rows[8 * i : 8 * i + 8]  # matrix i: rows given by lanes 8i..8i+7
                if trans:
                    M = M.T
                r, c = lane // 4, 2 * (lane % 4)
                want = int(M[r, c]) | (int(M[r, c + 1]) << 16)
                assert got[form, lane, i] == want, (form, lane, i)


# ---- shuffles and votes ----------------------------------------------------------------------


def _shuffle_reference(kind: str, width: int, arg: int) -> list[int]:
    """CUDA C++ Programming Guide, warp shuffle functions, for a warp whose lane l holds 10 l + 1."""
    out = []
    for lane in range(32):
        seg = lane // width * width
        if kind == "idx":
            src = seg + ((7 * lane + arg) % 64) % width
        elif kind == "up":
            src = lane - arg if lane - arg >= seg else lane
        elif kind == "down":
            src = lane + arg if lane + arg < seg + width else lane
        else:  # xor: a lane in a later segment of width lanes returns its own value
            src = lane ^ arg if (lane ^ arg) < seg + width else lane
        out.append(10 * src + 1)
    return out


def test_every_shuffle_kind_and_width(runner):
    args = [0, 1, 3, 8, 17, 31]
    out = torch.zeros(4 * 6 * len(args) * 32, dtype=torch.int32)
    runner.launch(PRIMITIVES, "shuffles", WARP, [torch.tensor(args, dtype=torch.int32), out, len(args)])
    got = out.view(4, 6, len(args), 32).tolist()
    for k, kind in enumerate(["idx", "up", "down", "xor"]):
        for w, width in enumerate([1, 2, 4, 8, 16, 32]):
            for a, arg in enumerate(args):
                assert got[k][w][a] == _shuffle_reference(kind, width, arg), (kind, width, arg)


def test_shuffles_move_float_double_and_64_bit_values(runner):
    f, d, ll = torch.zeros(32), torch.zeros(32, dtype=torch.float64), torch.zeros(32, dtype=torch.int64)
    runner.launch(PRIMITIVES, "shuffle_types", WARP, [f, d, ll])
    lanes = np.arange(32)
    assert f.tolist() == (0.5 * (lanes ^ 3)).tolist()
    assert d.tolist() == [1e300 * (lane + 2 if lane + 2 < 32 else lane) for lane in lanes]
    assert ll.tolist() == [(1 << 40) * (31 - lane) + (31 - lane) for lane in lanes]


def test_ballot_any_all(runner):
    patterns = [(1, 0), (3, 0), (3, 1), (0, 1), (5, 2)]
    out = torch.zeros(3 * len(patterns), dtype=torch.uint32)
    runner.launch(
        PRIMITIVES, "votes", WARP, [torch.tensor(patterns, dtype=torch.int32).view(-1), out, len(patterns)]
    )
    for p, (mul, add) in enumerate(patterns):
        preds = [(lane * mul + add) % 3 == 0 for lane in range(32)]
        ballot = sum(1 << lane for lane in range(32) if preds[lane])
        assert out[3 * p : 3 * p + 3].tolist() == [ballot, int(any(preds)), int(all(preds))], (mul, add)


def test_syncwarp_orders_shared_memory_within_a_warp(runner):
    x = torch.randn(64, generator=torch.Generator().manual_seed(9))
    y, sums = torch.zeros(64), torch.zeros(2)
    runner.launch(PRIMITIVES, "warp_sync_sum", LaunchDims((1, 1, 1), (64, 1, 1)), [x, y, sums])
    assert torch.equal(y, x.view(2, 32).roll(-1, dims=1).reshape(-1))
    assert ((sums.double() - x.view(2, 32).double().sum(1)).abs() <= 1e-5).all()  # 31 fp32 adds of |x| < 5


# ---- cp.async --------------------------------------------------------------------------------


def test_cp_async_copies_at_the_wait_and_zero_fills_invalid_chunks(runner):
    src = torch.arange(256, dtype=torch.float32) + 1
    out, early = torch.zeros(256), torch.zeros(256)
    runner.launch(PRIMITIVES, "copies", WARP, [src, out, early])
    chunks = src.view(64, 4).clone()
    chunks[32:][1::2] = 0  # chunk 32 + t of odd threads t: valid = false
    assert torch.equal(out, chunks.reshape(-1))
    assert torch.equal(early[:128], src[:128])  # group 0: completed by wait<1>
    assert torch.isnan(early[128:]).all()  # group 1: still in flight, its destination poisoned
