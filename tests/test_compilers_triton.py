"""Triton ahead-of-time compiles without a GPU (tunekit.compilers.triton): real compiles for sm_80 / sm_90."""

from __future__ import annotations

import pytest

from tunekit.compilers import SUPPORTED_ARCHS, CompileCache
from tunekit.compilers.triton import TritonJob, compile_triton_jobs, compile_triton_kernel, ptxas_for

triton = pytest.importorskip("triton")
tl = pytest.importorskip("triton.language")


@pytest.fixture(autouse=True, scope="module")
def private_cache(tmp_path_factory):
    """tunekit's caches (compile results, rendered sources) in a directory of this module's own."""
    patch = pytest.MonkeyPatch()
    patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
    yield
    patch.undo()


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
    fresh = compile_triton_kernel(lstm_like_forward, SIGNATURE, constexprs, 80, num_warps=2, cache=False)
    cached = compile_triton_kernel(lstm_like_forward, SIGNATURE, constexprs, 80, num_warps=2, cache=False)
    assert "Compiling entry function 'lstm_like_forward'" in fresh.ptxas_log
    assert (fresh.registers, fresh.spills, fresh.shared_bytes) == (
        cached.registers,
        cached.spills,
        cached.shared_bytes,
    )


def test_tunekit_cache_returns_the_same_report_and_rebuilds_a_corrupt_entry(tmp_path):
    cache = CompileCache(tmp_path / "compile")
    constexprs = {"D": 16, "BLOCK_B": 16}
    first = compile_triton_kernel(lstm_like_forward, SIGNATURE, constexprs, 90, num_warps=1, cache=cache)
    again = compile_triton_kernel(lstm_like_forward, SIGNATURE, constexprs, 90, num_warps=1, cache=cache)
    assert not first.cached and again.cached
    assert (again.registers, again.shared_bytes, again.ptxas_log) == (first.registers, first.shared_bytes,
                                                                      first.ptxas_log)  # fmt: skip
    (entry,) = (tmp_path / "compile").glob("*.json")
    entry.write_bytes(b"\xff not json")
    rebuilt = compile_triton_kernel(lstm_like_forward, SIGNATURE, constexprs, 90, num_warps=1, cache=cache)
    assert not rebuilt.cached and rebuilt.registers == first.registers
    assert compile_triton_kernel(
        lstm_like_forward, SIGNATURE, constexprs, 90, num_warps=1, cache=cache
    ).cached


def test_jobs_name_kernels_by_file_and_function_and_keep_their_order():
    jobs = [
        TritonJob(__file__, "lstm_like_forward", SIGNATURE, {"D": 16, "BLOCK_B": 16}, 80, num_warps=w)
        for w in (4, 1)
    ]
    reports = compile_triton_jobs(jobs, cache=False)
    assert [(r.kernel, r.num_warps) for r in reports] == [("lstm_like_forward", 4), ("lstm_like_forward", 1)]
    with pytest.raises(ValueError, match="num_warps"):
        compile_triton_jobs([TritonJob(__file__, "lstm_like_forward", SIGNATURE, {}, 80, num_warps=5)])


def test_aot_is_a_thin_re_export_of_the_compilers_package():
    import tunekit.aot as aot
    import tunekit.compilers.triton as home

    assert aot.compile_triton_kernel is home.compile_triton_kernel and aot.CompileReport is home.CompileReport
