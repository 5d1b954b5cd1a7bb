"""Ahead-of-time compilation without a GPU: the ptxas log parser, and real compiles for sm_80 / sm_90."""

from __future__ import annotations

import pytest

from tunekit.aot import SUPPORTED_ARCHS, compile_triton_kernel, parse_ptxas_log, ptxas_for

triton = pytest.importorskip("triton")
tl = pytest.importorskip("triton.language")

# ---- captured ptxas -v logs (triton 3.9's bundled ptxas 12.9 and ptxas-blackwell 13.4) ----

LOG_SM80 = """\
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function 'fused_forward' for 'sm_80'
ptxas info    : Function properties for fused_forward
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 72 registers, used 1 barriers, 432 bytes cmem[0]
ptxas info    : Compile time = 61.170 ms
"""

LOG_SM80_SPILLS = """\
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function 'fused_forward' for 'sm_80'
ptxas info    : Function properties for fused_forward
    8 bytes stack frame, 4 bytes spill stores, 4 bytes spill loads
ptxas info    : Used 128 registers, used 1 barriers, 8 bytes cumulative stack size, 432 bytes cmem[0]
ptxas info    : Compile time = 230.199 ms
"""

LOG_SM90A = """\
ptxas-blackwell info    : 0 bytes gmem
ptxas-blackwell info    : Compiling entry function 'fused_forward' for 'sm_90a'
ptxas-blackwell info    : Function properties for fused_forward
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas-blackwell info    : Used 72 registers, used 1 barriers
ptxas-blackwell info    : Compile time = 62.042 ms
"""

# Two kernels in one file, in the older format with static smem and lmem on the "Used" line.
LOG_TWO_KERNELS = """\
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function 'first' for 'sm_86'
ptxas info    : Function properties for first
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 40 registers, 4096 bytes smem, 380 bytes cmem[0]
ptxas info    : Compiling entry function 'second' for 'sm_86'
ptxas info    : Function properties for second
    48 bytes stack frame, 40 bytes spill stores, 36 bytes spill loads
ptxas info    : Used 255 registers, 64 bytes lmem, 0 bytes smem, 380 bytes cmem[0]
"""


def test_parser_reads_registers_and_no_spills():
    usage = parse_ptxas_log(LOG_SM80)
    assert (usage.function, usage.arch, usage.registers) == ("fused_forward", "sm_80", 72)
    assert (usage.spill_stores_bytes, usage.spill_loads_bytes, usage.local_bytes) == (0, 0, 0)


def test_parser_reads_spills_and_stack_frame():
    usage = parse_ptxas_log(LOG_SM80_SPILLS)
    assert usage.registers == 128
    assert (usage.spill_stores_bytes, usage.spill_loads_bytes, usage.stack_frame_bytes) == (4, 4, 8)


def test_parser_accepts_the_blackwell_ptxas_prefix_and_sm90a():
    usage = parse_ptxas_log(LOG_SM90A)
    assert (usage.arch, usage.registers, usage.static_shared_bytes) == ("sm_90a", 72, 0)


def test_parser_picks_the_named_function_and_its_own_lines():
    first = parse_ptxas_log(LOG_TWO_KERNELS, "first")
    second = parse_ptxas_log(LOG_TWO_KERNELS, "second")
    assert (first.registers, first.static_shared_bytes, first.spill_stores_bytes) == (40, 4096, 0)
    assert (second.registers, second.spill_stores_bytes, second.spill_loads_bytes) == (255, 40, 36)
    assert second.local_bytes == 64  # lmem (64) exceeds the stack frame (48)
    assert parse_ptxas_log(LOG_TWO_KERNELS).function == "first"


@pytest.mark.parametrize(
    "text,function,message",
    [
        ("ptxas fatal : Unresolved extern function 'f'", None, "Compiling entry function"),
        (LOG_TWO_KERNELS, "third", "first, second"),
        ("ptxas info : Compiling entry function 'f' for 'sm_80'\n", None, "Used N registers"),
    ],
)
def test_parser_rejects_logs_without_what_it_needs(text, function, message):
    with pytest.raises(ValueError, match=message):
        parse_ptxas_log(text, function)


def test_sm90_is_assembled_as_sm90a_like_triton_does():
    # wgmma and setmaxnreg exist only in the arch-specific sm_90a target, which Triton uses for 9.x.
    assert ptxas_for(90)[1] == "sm_90a"
    assert ptxas_for(80)[1] == "sm_80"


# ---- a real compile: a small LSTM-forward-like kernel shaped like templates/triton/fused_forward ----


@triton.jit
def lstm_like_forward(
    wx_ptr,  # [B, T, 4, D] input contributions
    r_ptr,  # [4, D, D] recurrent weights, output index first
    out_ptr,  # [B, T, D] hidden states
    B,
    T,  # runtime sequence length: the loop is not unrolled
    D: tl.constexpr,
    BLOCK_B: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    cols = tl.arange(0, D)
    ok = (rows < B)[:, None]
    # R loaded once, transposed so that ry = y @ R^T; it stays in shared memory for all steps
    rt_i = tl.load(r_ptr + 0 * D * D + cols[None, :] * D + cols[:, None])
    rt_f = tl.load(r_ptr + 1 * D * D + cols[None, :] * D + cols[:, None])
    rt_z = tl.load(r_ptr + 2 * D * D + cols[None, :] * D + cols[:, None])
    rt_o = tl.load(r_ptr + 3 * D * D + cols[None, :] * D + cols[:, None])
    h = tl.zeros((BLOCK_B, D), dtype=tl.float32)
    c = tl.zeros((BLOCK_B, D), dtype=tl.float32)
    wx_ptrs = wx_ptr + rows[:, None] * T * 4 * D + cols[None, :]
    out_ptrs = out_ptr + rows[:, None] * T * D + cols[None, :]
    for _t in range(0, T):
        y = h.to(r_ptr.dtype.element_ty)
        gi = tl.dot(y, rt_i) + tl.load(wx_ptrs, mask=ok, other=0.0).to(tl.float32)
        gf = tl.dot(y, rt_f) + tl.load(wx_ptrs + D, mask=ok, other=0.0).to(tl.float32)
        gz = tl.dot(y, rt_z) + tl.load(wx_ptrs + 2 * D, mask=ok, other=0.0).to(tl.float32)
        go = tl.dot(y, rt_o) + tl.load(wx_ptrs + 3 * D, mask=ok, other=0.0).to(tl.float32)
        c = tl.sigmoid(gf) * c + tl.sigmoid(gi) * (2.0 * tl.sigmoid(2.0 * gz) - 1.0)
        h = tl.sigmoid(go) * (2.0 * tl.sigmoid(2.0 * c) - 1.0)
        tl.store(out_ptrs, h.to(out_ptr.dtype.element_ty), mask=ok)
        wx_ptrs += 4 * D
        out_ptrs += D


SIGNATURE = {
    "wx_ptr": "*bf16",
    "r_ptr": "*bf16",
    "out_ptr": "*bf16",
    "B": "i32",
    "T": "i32",
    "D": "constexpr",
    "BLOCK_B": "constexpr",
}


@pytest.mark.parametrize("arch", [80, 90])
def test_real_compile_reports_registers_and_shared_memory_of_r(arch):
    report = compile_triton_kernel(lstm_like_forward, SIGNATURE, {"D": 32, "BLOCK_B": 16}, arch, num_warps=4)
    assert report.kernel == "lstm_like_forward" and report.arch == arch
    assert 0 < report.registers <= 255
    assert not report.spills
    # 4 bf16 R tiles of 32 x 32 stay in shared memory for the whole loop.
    assert report.shared_bytes >= 4 * 32 * 32 * 2
    assert "Used" in report.ptxas_log


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"arch": 75}, "arch"),
        ({"arch": 80, "num_warps": 3}, "num_warps"),
        ({"arch": 80, "num_stages": 0}, "num_stages"),
    ],
)
def test_compile_rejects_bad_launch_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        compile_triton_kernel(lstm_like_forward, SIGNATURE, {"D": 32, "BLOCK_B": 16}, **kwargs)


def test_compile_names_arguments_missing_from_the_signature():
    partial = {k: v for k, v in SIGNATURE.items() if k != "T"}
    with pytest.raises(ValueError, match="'T'"):
        compile_triton_kernel(lstm_like_forward, partial, {"D": 32, "BLOCK_B": 16}, 80)


def test_supported_archs_are_ampere_ada_and_hopper():
    assert SUPPORTED_ARCHS == (80, 86, 89, 90)


def test_fresh_compile_and_cache_hit_read_the_same_ptxas_figures(tmp_path, monkeypatch):
    # A fresh compile parses the log Triton's own ptxas run printed; a cache hit (no ptxas run by
    # Triton) assembles the cached PTX again. Both must report the same registers and spills.
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path))
    constexprs = {"D": 16, "BLOCK_B": 16}
    fresh = compile_triton_kernel(lstm_like_forward, SIGNATURE, constexprs, 80, num_warps=2)
    cached = compile_triton_kernel(lstm_like_forward, SIGNATURE, constexprs, 80, num_warps=2)
    assert "Compiling entry function 'lstm_like_forward'" in fresh.ptxas_log
    assert (fresh.registers, fresh.spills, fresh.shared_bytes) == (
        cached.registers,
        cached.spills,
        cached.shared_bytes,
    )
