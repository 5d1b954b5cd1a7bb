"""The CUDA emulator's core: launches from Python, indices, barriers, shared memory, scalars,
atomics, grid sync, the profile's limits, argument checks, the build cache, and the same source
compiling with nvcc (docs/cuda.md §2)."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from tunekit.cuda import CudaProgram, KernelEntry, LaunchDims, LaunchRefused
from tunekit.cuda.emu_build import build_program, build_server, cache_dir
from tunekit.cuda.emulator import LAUNCHES, EmulatorBuildError, EmulatorRunner, co_resident_blocks
from tunekit.hardware import load_profile

CUDA_DIR = Path(__file__).parent / "cuda"
TEMPLATES = Path(__file__).parent.parent / "templates" / "cuda"


def _program(stem: str, *entries: KernelEntry) -> CudaProgram:
    return CudaProgram(f"test-{stem}", (CUDA_DIR / f"{stem}.cu").read_text(), entries)


CORE = _program(
    "emu_core",
    KernelEntry("indices", (("out", "ptr"),)),
    KernelEntry("reverse_static", (("x", "ptr"), ("y", "ptr"))),
    KernelEntry("reverse_dynamic", (("x", "ptr"), ("y", "ptr"), ("sums", "ptr"))),
    KernelEntry(
        "scalars",
        (
            ("ints", "ptr"),
            ("wide", "ptr"),
            ("reals", "ptr"),
            ("a", "i32"),
            ("b", "u32"),
            ("c", "i64"),
            ("d", "f32"),
        ),
    ),
    KernelEntry(
        "atomics",
        (
            ("keys", "ptr"),
            ("vals", "ptr"),
            ("counts", "ptr"),
            ("sum", "ptr"),
            ("per_block", "ptr"),
            ("n", "i32"),
        ),
    ),
    KernelEntry("grid_rotate", (("buf", "ptr"), ("steps", "i32")), cooperative=True),
    KernelEntry("math", (("x", "ptr"), ("y", "ptr"), ("n", "i32"))),
)


@pytest.fixture(scope="module")
def runner() -> EmulatorRunner:
    return EmulatorRunner(timeout_s=60)


def dims(grid, block, shared=0) -> LaunchDims:
    return LaunchDims(tuple(grid), tuple(block), shared)


@pytest.mark.parametrize(
    "grid,block", [((3, 2, 1), (5, 3, 2)), ((1, 1, 2), (40, 1, 1))], ids=["3d", "odd-block"]
)
def test_every_thread_sees_its_indices(runner, grid, block):
    threads, blocks = int(np.prod(block)), int(np.prod(grid))
    out = torch.full((blocks * threads * 12,), -1, dtype=torch.int32)
    runner.launch(CORE, "indices", dims(grid, block), [out])
    got = out.view(blocks, threads, 12).numpy()
    t = np.arange(threads)
    b = np.arange(blocks)
    np.testing.assert_array_equal(got[:, :, 0], np.broadcast_to(t % block[0], (blocks, threads)))
    np.testing.assert_array_equal(got[:, :, 1], np.broadcast_to(t // block[0] % block[1], (blocks, threads)))
    np.testing.assert_array_equal(
        got[:, :, 2], np.broadcast_to(t // (block[0] * block[1]), (blocks, threads))
    )
    np.testing.assert_array_equal(got[:, :, 3], np.broadcast_to((b % grid[0])[:, None], (blocks, threads)))
    np.testing.assert_array_equal(
        got[:, :, 5], np.broadcast_to((b // (grid[0] * grid[1]))[:, None], (blocks, threads))
    )
    assert (got[:, :, 6:9] == block).all() and (got[:, :, 9:12] == grid).all()


def test_barrier_and_static_shared_memory_reverse_each_block(runner):
    x = torch.randn(5 * 96, generator=torch.Generator().manual_seed(1))
    y = torch.zeros_like(x)
    runner.launch(CORE, "reverse_static", dims((5, 1, 1), (96, 1, 1)), [x, y])
    assert torch.equal(y, x.view(5, 96).flip(1).reshape(-1))
    assert runner.last.fibers == 96  # a non-cooperative launch runs its blocks one at a time
    assert LAUNCHES[-1] is runner.last and runner.last.switches >= 2 * 96


def test_dynamic_and_static_shared_memory_together(runner):
    x = torch.randn(3 * 64, generator=torch.Generator().manual_seed(2))
    y, sums = torch.zeros_like(x), torch.zeros_like(x)
    runner.launch(CORE, "reverse_dynamic", dims((3, 1, 1), (64, 1, 1), shared=64 * 4), [x, y, sums])
    assert torch.equal(y, x.view(3, 64).flip(1).reshape(-1))
    expected = torch.tensor(
        [float(np.float32(0) + sum(np.float32(v) for v in row)) for row in x.view(3, 64).tolist()]
    )
    assert torch.equal(sums.view(3, 64), expected[:, None].expand(3, 64))  # the same fp32 sums in order


def test_scalars_of_every_kind_arrive_exactly(runner):
    ints = torch.zeros(2, dtype=torch.int32)
    wide = torch.zeros(1, dtype=torch.int64)
    reals = torch.zeros(1)
    runner.launch(
        CORE,
        "scalars",
        dims((1, 1, 1), (32, 1, 1)),
        [ints, wide, reals, -(2**31), 2**32 - 1, -(2**62) - 3, -1.5e-30],
    )
    assert ints.tolist() == [-(2**31), -1]  # u32 0xffffffff read back as int32
    assert wide.item() == -(2**62) - 3
    assert reals.item() == np.float32(-1.5e-30)


def test_atomic_adds_in_global_and_shared_memory(runner):
    g = torch.Generator().manual_seed(3)
    n = 300
    keys = torch.randint(0, 7, (n,), dtype=torch.int32, generator=g)
    vals = torch.randint(-8, 9, (n,), generator=g).float() / 4  # exact in any order
    counts, total = torch.zeros(7, dtype=torch.int32), torch.zeros(1)
    per_block = torch.zeros(3, dtype=torch.uint32)
    runner.launch(CORE, "atomics", dims((3, 1, 1), (128, 1, 1)), [keys, vals, counts, total, per_block, n])
    assert counts.tolist() == torch.bincount(keys.long(), minlength=7).tolist()
    assert total.item() == vals.sum().item()
    assert per_block.tolist() == [128, 128, 44]


def test_grid_sync_across_blocks_of_a_cooperative_launch(runner):
    # a small profile, so that the grid of 6 blocks of 64 threads is exactly what fits
    small = dataclasses.replace(load_profile("a100"), sm_count=3, max_blocks_per_sm=2)
    coop = EmulatorRunner(small, timeout_s=60)
    buf = torch.arange(6 * 64, dtype=torch.float32)
    coop.launch(CORE, "grid_rotate", dims((6, 1, 1), (64, 1, 1)), [buf, 5])
    expected = torch.roll(torch.arange(6 * 64, dtype=torch.float32), -5 * 64) + 5
    assert torch.equal(buf, expected)
    assert coop.last.fibers == 6 * 64  # every block resident
    with pytest.raises(LaunchRefused, match=r"cooperative grid of 7 blocks > 6 that fit co-resident"):
        coop.launch(CORE, "grid_rotate", dims((7, 1, 1), (64, 1, 1)), [torch.zeros(7 * 64), 1])


def test_math_functions(runner):
    x = torch.linspace(-30, 30, 97)
    y = torch.zeros(97 * 8)
    runner.launch(CORE, "math", dims((2, 1, 1), (64, 1, 1)), [x, y, 97])
    got = y.view(97, 8).double()
    xd = x.double()
    ref = [torch.exp(xd), torch.log1p(torch.exp(-xd.abs())), torch.tanh(xd), torch.log(xd.abs() + 1)]
    ref += [xd.abs().sqrt(), xd.clamp(min=0.5), xd.clamp(max=-0.5), torch.exp(xd.clamp(max=10))]
    ref = torch.stack(ref, dim=1)
    assert ((got - ref).abs() <= 2e-6 * ref.abs()).all()  # glibc's float functions: within an ulp or two


# ---- limits ----------------------------------------------------------------------------------


def test_launch_over_the_threads_per_block_limit_is_refused(runner):
    with pytest.raises(LaunchRefused, match=r"2048 threads per block > 1024"):
        runner.launch(
            CORE, "indices", dims((1, 1, 1), (64, 32, 1)), [torch.zeros(2048 * 12, dtype=torch.int32)]
        )
    with pytest.raises(LaunchRefused, match=r"block dimension z = 65 > 64"):
        runner.launch(CORE, "indices", dims((1, 1, 1), (1, 1, 65)), [torch.zeros(65 * 12, dtype=torch.int32)])


def test_launch_over_the_shared_memory_limit_is_refused(runner):
    x = torch.zeros(64)
    # reverse_dynamic declares 16 B of static shared memory (the `total` array)
    limit = runner.profile.shared_memory_per_block_optin
    with pytest.raises(
        LaunchRefused, match=rf"16 B static \+ {limit - 15} B dynamic = {limit + 1} B .* > {limit} B"
    ):
        runner.launch(
            CORE, "reverse_dynamic", dims((1, 1, 1), (64, 1, 1), shared=limit - 15), [x, x.clone(), x.clone()]
        )


def test_cooperative_limit_counts_shared_memory_warps_and_blocks():
    p = dataclasses.replace(load_profile("a100"), sm_count=2)
    assert co_resident_blocks(p, 1024, 0) == 2 * 2  # 2048 threads per SM
    assert co_resident_blocks(p, 32, 0) == 2 * 32  # 32 resident blocks per SM
    # 60 KiB + 1 KiB reserved a block: two fit the SM's 164 KiB
    assert co_resident_blocks(p, 128, 60 * 1024) == 2 * 2


# ---- arguments -------------------------------------------------------------------------------


def test_bad_arguments_are_named(runner):
    y = torch.zeros(64)
    with pytest.raises(TypeError, match=r"got 1 arguments, expected 2 \(x, y\)"):
        runner.launch(CORE, "reverse_static", dims((1, 1, 1), (64, 1, 1)), [y])
    with pytest.raises(ValueError, match=r"parameter 'x' \(ptr\): a non-contiguous tensor"):
        runner.launch(CORE, "reverse_static", dims((1, 1, 1), (64, 1, 1)), [torch.zeros(64, 2)[:, 0], y])
    with pytest.raises(
        TypeError, match=r"parameter 'x' \(ptr\): a float64 tensor, but the kernel takes tk::ptr<float>"
    ):
        runner.launch(CORE, "reverse_static", dims((1, 1, 1), (64, 1, 1)), [y.double(), y])
    args = [torch.zeros(2, dtype=torch.int32), torch.zeros(1, dtype=torch.int64), torch.zeros(1)]
    with pytest.raises(ValueError, match=r"parameter 'a' \(i32\): 2147483648 is outside"):
        runner.launch(CORE, "scalars", dims((1, 1, 1), (32, 1, 1)), [*args, 2**31, 0, 0, 0.0])
    with pytest.raises(ValueError, match=r"parameter 'b' \(u32\): -1 is outside"):
        runner.launch(CORE, "scalars", dims((1, 1, 1), (32, 1, 1)), [*args, 0, -1, 0, 0.0])
    with pytest.raises(TypeError, match=r"parameter 'd' \(f32\): got str"):
        runner.launch(CORE, "scalars", dims((1, 1, 1), (32, 1, 1)), [*args, 0, 0, 0, "1"])
    with pytest.raises(ValueError, match=r"parameter 'd' \(f32\): 1e\+39 is outside float32's range"):
        runner.launch(CORE, "scalars", dims((1, 1, 1), (32, 1, 1)), [*args, 0, 0, 0, 1e39])


def test_aliased_tensors_share_one_copy(runner):
    # x and y are the same memory: each block reverses its slice in place (read, barrier, write)
    x = torch.arange(128, dtype=torch.float32)
    runner.launch(CORE, "reverse_static", dims((2, 1, 1), (64, 1, 1)), [x, x])
    assert torch.equal(x, torch.arange(128, dtype=torch.float32).view(2, 64).flip(1).reshape(-1))


def test_kernel_parameters_must_match_the_entry_kinds():
    wrong = CudaProgram(
        "test-emu-core-wrong-kinds",
        CORE.source,
        (KernelEntry("reverse_static", (("x", "ptr"), ("y", "i32"))),),
    )
    with pytest.raises(EmulatorBuildError, match=r"reverse_static parameter 1 'y': the KernelEntry says i32"):
        EmulatorRunner().load(wrong)


# ---- the same source on the GPU compiler -----------------------------------------------------


def _nvcc(nvcc: str, source: Path, out: Path, archs: tuple[int, ...]) -> subprocess.CompletedProcess:
    gencode = [a for arch in archs for a in ("-gencode", f"arch=compute_{arch},code=sm_{arch}")]
    cmd = [nvcc, *gencode, "-std=c++17", "-fatbin", "-I", str(TEMPLATES), str(source), "-o", str(out)]
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


def test_the_same_sources_compile_with_nvcc(nvcc, tmp_path):
    # every test kernel in one translation unit: one nvcc run (~3.5 s of CPU here)
    stems = sorted(p.stem for p in CUDA_DIR.glob("*.cu") if p.stem != "emu_static_limit")
    unit = tmp_path / "all.cu"
    unit.write_text("".join(f'#include "{CUDA_DIR / stem}.cu"\n' for stem in stems))
    assert len(stems) >= 3
    proc = _nvcc(nvcc, unit, tmp_path / "all.fatbin", (80,))
    assert proc.returncode == 0, proc.stderr


def test_ptxas_refuses_the_static_shared_memory_the_emulator_refuses(nvcc, tmp_path):
    proc = _nvcc(nvcc, CUDA_DIR / "emu_static_limit.cu", tmp_path / "k.fatbin", (80,))
    assert proc.returncode != 0
    assert "'too_much_static_shared' uses too much shared data (0xcb20 bytes, 0xc000 max)" in proc.stderr


# ---- a persistent step loop: mma, grid sync and a cooperative grid together -------------------

STEPS = CudaProgram(
    "test-emu-steploop",
    (CUDA_DIR / "emu_steploop.cu").read_text(),
    (
        KernelEntry(
            "lstm_steps",
            (("r", "ptr"), ("bias", "ptr"), ("y", "ptr"), ("c", "ptr"), ("gates", "ptr"), ("out", "ptr"),
             ("steps", "i32")),
            cooperative=True,
        ),
    ),
)  # fmt: skip


def test_persistent_lstm_step_loop_matches_numpy(runner):
    D, B, T = 32, 16, 8
    g = torch.Generator().manual_seed(11)
    r = (torch.randn(4 * D, D, generator=g) / D**0.5).to(torch.bfloat16)
    bias = torch.randn(4 * D, generator=g) * 0.1
    y0 = torch.randn(B, D, generator=g).to(torch.bfloat16)
    c0 = torch.randn(B, D, generator=g)
    y, c, gates, out = y0.clone(), c0.clone(), torch.zeros(4 * D, B), torch.zeros(T, B, D)
    runner.launch(STEPS, "lstm_steps", dims((4, 1, 1), (128, 1, 1)), [r, bias, y, c, gates, out, T])
    # reference: float64 math, y rounded to bf16 where the kernel stores it
    rd, yd, cd = r.double().numpy(), y0.double().numpy(), c0.double().numpy()
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    for t in range(T):
        pre = (rd @ yd.T + bias.double().numpy()[:, None]).reshape(D, 4, B)  # [unit, gate, batch]
        i, f, z, o = sig(pre[:, 0]).T, sig(pre[:, 1]).T, np.tanh(pre[:, 2]).T, sig(pre[:, 3]).T
        cd = f * cd + i * z
        y_new = o * np.tanh(cd)
        np.testing.assert_allclose(out[t].numpy(), y_new, rtol=1e-4, atol=1e-5)
        yd = torch.from_numpy(y_new).to(torch.bfloat16).double().numpy()
    np.testing.assert_allclose(c.numpy(), cd, rtol=1e-4, atol=1e-5)
    assert runner.last.fibers == 4 * 128  # every block resident


# ---- the build cache -------------------------------------------------------------------------


def test_a_damaged_cached_program_is_rebuilt_not_loaded():
    source = '#include "tk_cuda.cuh"\nTK_KERNEL void twice(tk::ptr<float> y) { y[threadIdx.x] *= 2.0f; }\n'
    program = CudaProgram("test-emu-cache-damage", source, (KernelEntry("twice", (("y", "ptr"),)),))
    library = build_program(program).library
    assert library.stat().st_mode & 0o777 == 0o700 and cache_dir().stat().st_mode & 0o777 == 0o700
    assert build_program(program).cached
    library.write_bytes(library.read_bytes()[:1000])  # truncated behind our back
    again = build_program(program)
    assert not again.cached and again.library == library
    assert build_program(program).cached
    y = torch.arange(32, dtype=torch.float32)
    EmulatorRunner().launch(program, "twice", dims((1, 1, 1), (32, 1, 1)), [y])
    assert torch.equal(y, 2 * torch.arange(32, dtype=torch.float32))


def test_the_portable_ucontext_switch_runs_the_same_kernels():
    portable = EmulatorRunner(timeout_s=60, switch="ucontext")
    assert not portable.load(CORE)[0].asm_switch and EmulatorRunner().load(CORE)[0].asm_switch
    x = torch.randn(2 * 96, generator=torch.Generator().manual_seed(12))
    y = torch.zeros_like(x)
    portable.launch(CORE, "reverse_static", dims((2, 1, 1), (96, 1, 1)), [x, y])
    assert torch.equal(y, x.view(2, 96).flip(1).reshape(-1))
    buf = torch.arange(4 * 64, dtype=torch.float32)
    portable.launch(CORE, "grid_rotate", dims((4, 1, 1), (64, 1, 1)), [buf, 3])
    assert torch.equal(buf, torch.roll(torch.arange(4 * 64, dtype=torch.float32), -3 * 64) + 3)


# ---- the printed cell code ---------------------------------------------------------------------


def _cell_programs() -> tuple[CudaProgram, dict]:
    """One kernel per registered cell and direction: thread i reads the program's inputs from x,
    runs the printed CUDA statements (after printers.CUDA_PRELUDE) and writes every target to y."""
    from tunekit.cells import CELLS
    from tunekit.cells.printers import CUDA_PRELUDE, printed_code

    parts, entries, meta = ['#include "tk_cuda.cuh"\n', CUDA_PRELUDE], [], {}
    for name, cell in CELLS.items():
        for direction in ("forward", "backward"):
            code = printed_code(cell, direction, "cuda")
            torch_code = printed_code(cell, direction, "torch")
            targets = [t for t, _ in code]
            names = {s for _, e in torch_code for s in re.findall(r"\b[A-Za-z_]\w*\b", e)}
            inputs = sorted(n for n in names - set(targets) if re.fullmatch(r"(wx|ry|b|s|ds)_\w+", n))
            entry = f"cell_{name}_{direction}"
            lines = [f"TK_KERNEL void {entry}(tk::ptr<const float> x, tk::ptr<float> y, int n) {{"]
            lines += ["  const int i = blockIdx.x * blockDim.x + threadIdx.x;", "  if (i >= n) return;"]
            lines += [f"  const float {v} = x[i * {len(inputs)} + {j}];" for j, v in enumerate(inputs)]
            lines += [f"  const float {t} = {e};" for t, e in code]
            lines += [f"  y[i * {len(targets)} + {k}] = {t};" for k, t in enumerate(targets)]
            parts.append("\n".join([*lines, "}\n"]))
            entries.append(KernelEntry(entry, (("x", "ptr"), ("y", "ptr"), ("n", "i32"))))
            meta[entry] = (inputs, targets, torch_code)
    return CudaProgram("test-emu-printed-cells", "\n".join(parts), tuple(entries)), meta


def test_printed_cell_code_of_every_cell_runs_in_the_emulator(runner):
    from tunekit.cells.printers import TORCH_PRELUDE

    program, meta = _cell_programs()
    prelude: dict = {"torch": torch}
    exec(TORCH_PRELUDE, prelude)  # the torch printer's helpers: the reference evaluates the same program
    g = torch.Generator().manual_seed(13)
    n = 70
    for entry, (inputs, targets, torch_code) in meta.items():
        x = torch.rand(n, len(inputs), generator=g) * 3 - 1.5
        y = torch.zeros(n, len(targets))
        runner.launch(program, entry, dims((2, 1, 1), (64, 1, 1)), [x, y, n])
        env = dict(prelude, **{v: x[:, j].double() for j, v in enumerate(inputs)})
        for t, e in torch_code:
            env[t] = torch.as_tensor(eval(e, env), dtype=torch.float64).expand(n)
        want = torch.stack([env[t] for t in targets], dim=1)
        scale = want.abs().amax(dim=0, keepdim=True).clamp(min=1.0)
        assert ((y.double() - want).abs() <= 1e-5 * scale).all(), entry


def test_the_cached_server_is_executable_even_after_losing_its_x_bit():
    build_server.cache_clear()  # another test may have built it under another cache directory
    server = build_server()
    assert os.access(server, os.X_OK)
    os.chmod(server, 0o600)  # as a cache entry is written
    build_server.cache_clear()  # a new process: the entry is verified again
    assert build_server() == server and os.access(server, os.X_OK)
