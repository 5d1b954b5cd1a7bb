"""The NVRTC runner on a real GPU: a tiny kernel, a cooperative grid sync, > 48 KB of dynamic shared
memory, launches on torch's current stream, and the launches it must refuse before running.

The GPU tests are marked ``gpu`` and skipped without CUDA: CI has no GPU; whoever has one runs
them. Their kernels are compiled for every arch here too, so CI catches a kernel that does not build.
"""

from __future__ import annotations

import pytest
import torch

from tunekit.compilers.nvrtc import compile_cubin
from tunekit.cuda import CudaProgram, KernelEntry, LaunchDims, LaunchRefused

AXPY = CudaProgram(
    "gpu-test-axpy",
    """#include "tk_cuda.cuh"
TK_KERNEL void axpy(tk::ptr<float> y, tk::ptr<const float> x, float a, int n, long long offset) {
  long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x + offset;
  if (i < n) y[i] += a * x[i];
}
""",
    (KernelEntry("axpy", (("y", "ptr"), ("x", "ptr"), ("a", "f32"), ("n", "i32"), ("offset", "i64"))),),
)

# Every block writes its slot, the grid syncs, then every block reads its neighbour's slot: without
# a real grid-wide barrier some block reads a slot not yet written (still -1).
GRID_SYNC = CudaProgram(
    "gpu-test-grid-sync",
    """#include "tk_cuda.cuh"
TK_KERNEL void TK_LAUNCH_BOUNDS(256, 1) rotate(tk::ptr<int> out, tk::ptr<int> seen, int blocks) {
  for (int spin = 0; spin < 1000 * (blockIdx.x % 7); ++spin) __syncthreads();  // uneven arrival
  if (threadIdx.x == 0) out[blockIdx.x] = blockIdx.x + 1;
  tk::grid_sync();
  if (threadIdx.x == 0) seen[blockIdx.x] = out[(blockIdx.x + 1) % blocks];
}
""",
    (KernelEntry("rotate", (("out", "ptr"), ("seen", "ptr"), ("blocks", "i32")), cooperative=True),),
)

# 64 KB of dynamic shared memory (over the 48 KB default, so the runner must opt in): stage the
# input, sync, write it back reversed.
REVERSE = CudaProgram(
    "gpu-test-reverse-smem",
    """#include "tk_cuda.cuh"
TK_KERNEL void reverse(tk::ptr<float> out, tk::ptr<const float> in, int n) {
  auto stage = tk::dynamic_shared<float>();
  for (int i = threadIdx.x; i < n; i += blockDim.x) stage[i] = in[i];
  __syncthreads();
  for (int i = threadIdx.x; i < n; i += blockDim.x) out[i] = stage[n - 1 - i];
}
""",
    (KernelEntry("reverse", (("out", "ptr"), ("in", "ptr"), ("n", "i32"))),),
)


@pytest.mark.parametrize("arch", [80, 90])  # all four archs: tests/test_nvrtc.py
def test_every_kernel_here_compiles_without_a_gpu(arch, tmp_path):
    from tunekit.compilers import CompileCache

    for program in (AXPY, GRID_SYNC, REVERSE):
        assert compile_cubin(program, arch, cache=CompileCache(tmp_path)).cubin[:4] == b"\x7fELF"


@pytest.fixture(scope="module")
def runner():
    from tunekit.cuda import runner_for

    return runner_for("cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_one_runner_per_device_keeps_its_kernels_loaded(runner):
    from tunekit.cuda import runner_for

    assert runner_for("cuda") is runner and runner.kernel(AXPY, "axpy") is runner.kernel(AXPY, "axpy")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_tiny_kernel_matches_torch(runner):
    n = 1000
    x, y = torch.randn(n, device="cuda"), torch.randn(n, device="cuda")
    expected = y + 2.5 * x
    runner.launch(AXPY, "axpy", LaunchDims((4, 1, 1), (256, 1, 1)), [y, x, 2.5, n, 0])
    torch.testing.assert_close(y, expected)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_launches_are_ordered_on_torchs_current_stream(runner):
    n = 1 << 20
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        x = torch.ones(n, device="cuda")
        y = torch.zeros(n, device="cuda")
        y.add_(1)  # queued on `stream` before the kernel
        runner.launch(AXPY, "axpy", LaunchDims((n // 256, 1, 1), (256, 1, 1)), [y, x, 3.0, n, 0])
        y.mul_(2)  # and after it
    stream.synchronize()
    assert torch.equal(y, torch.full_like(y, 8.0))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_cooperative_grid_of_every_co_resident_block_syncs(runner):
    kernel = runner.kernel(GRID_SYNC, "rotate")
    per_sm = kernel.occupancy.max_active_blocks_per_multiprocessor(256, 0)
    blocks = per_sm * torch.cuda.get_device_properties(0).multi_processor_count
    out = torch.full((blocks,), -1, dtype=torch.int32, device="cuda")
    seen = torch.full_like(out, -1)
    runner.launch(GRID_SYNC, "rotate", LaunchDims((blocks, 1, 1), (256, 1, 1)), [out, seen, blocks])
    torch.cuda.synchronize()
    expected = (torch.arange(blocks, device="cuda", dtype=torch.int32) + 1) % blocks + 1
    assert torch.equal(seen, expected)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_cooperative_grid_larger_than_co_resident_is_refused_with_the_numbers(runner):
    kernel = runner.kernel(GRID_SYNC, "rotate")
    per_sm = kernel.occupancy.max_active_blocks_per_multiprocessor(256, 0)
    blocks = per_sm * torch.cuda.get_device_properties(0).multi_processor_count + 1
    out = torch.zeros(blocks, dtype=torch.int32, device="cuda")
    with pytest.raises(
        LaunchRefused, match=rf"{blocks} blocks cannot be co-resident.*{per_sm} blocks per SM"
    ):
        runner.launch(
            GRID_SYNC, "rotate", LaunchDims((blocks, 1, 1), (256, 1, 1)), [out, out.clone(), blocks]
        )


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_more_than_48kb_of_dynamic_shared_memory_is_opted_into(runner):
    n = 16384  # floats: 64 KB
    x = torch.randn(n, device="cuda")
    out = torch.empty_like(x)
    runner.launch(REVERSE, "reverse", LaunchDims((1, 1, 1), (512, 1, 1), shared_bytes=4 * n), [out, x, n])
    torch.testing.assert_close(out, x.flip(0), rtol=0, atol=0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_shared_memory_over_the_opt_in_limit_and_too_many_threads_are_refused(runner):
    limit = torch.cuda.get_device_properties(0).shared_memory_per_block_optin
    x = torch.zeros(4, device="cuda")
    with pytest.raises(LaunchRefused, match=rf"{limit + 16} B dynamic shared memory > {limit} B opt-in"):
        runner.launch(
            REVERSE, "reverse", LaunchDims((1, 1, 1), (32, 1, 1), shared_bytes=limit + 16), [x, x, 4]
        )
    with pytest.raises(LaunchRefused, match="512 threads per block > 256"):
        runner.launch(GRID_SYNC, "rotate", LaunchDims((1, 1, 1), (512, 1, 1)), [x.int(), x.int(), 1])
