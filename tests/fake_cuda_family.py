"""A small CUDA kernel family that satisfies tunekit.kernels.CudaFamily, for the validator's tests.

The cuda-alternating and cuda-fused modules are written elsewhere; this one proves the validator's
path with a real kernel: ``tile`` includes tk_cuda.cuh, stages a bf16 tile of R in static shared
memory and a tile of y in dynamic shared memory, and multiplies them on tensor cores
(tk::mma_m16n8k16_bf16), so nvcc and NVRTC really compile it and ptxas reports real figures. Its
shared memory is computed here from the configuration exactly as the launcher requests it, so a
correct prediction equals ptxas's static bytes + the dynamic bytes.

Switches the tests flip (monkeypatch): ``SHARED_ERROR`` (bytes added to the predicted shared
memory: a wrong model), ``REGISTER_BOUND`` (the predicted register bound), ``USE_STACK`` (the
kernel keeps a dynamically indexed local array: a stack frame and local memory).
"""

from __future__ import annotations

from typing import Any

from tunekit.cuda import CudaProgram, KernelEntry, LaunchDims

FAMILY = "cuda-fake"
THREADS = 128  # 4 warps, one m16n8 tile each
TILE_ROWS = 64  # rows of R staged in static shared memory (bf16, 64 x 16)
SHARED_ERROR = 0
REGISTER_BOUND = 128
USE_STACK = False

_SOURCE = """\
// fake family kernel for {name}
#include "tk_cuda.cuh"

TK_KERNEL void TK_LAUNCH_BOUNDS({threads}, 1)
tile(tk::ptr<const tk::bf16> TK_RESTRICT r,   // [{rows}, 16] row-major
     tk::ptr<const tk::bf16> TK_RESTRICT y,   // [16, {cols}] column-major
     tk::ptr<float> out,                      // [{rows}, {cols}]
     int n) {{
  TK_SHARED(tk::bf16, r_tile, {rows} * 16);
  auto y_tile = tk::dynamic_shared<tk::bf16>();
  for (int i = threadIdx.x; i < {rows} * 16; i += blockDim.x) r_tile[i] = r[i];
  for (int i = threadIdx.x; i < 16 * {cols}; i += blockDim.x) y_tile[i] = y[i];
  __syncthreads();
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, g = lane / 4, q = lane % 4;
  const int row0 = warp * 16;
  float acc[4] = {{0.f, 0.f, 0.f, 0.f}};
  tk::u32 a[4], b[2];
  a[0] = tk::load_pair<tk::bf16>(r_tile + (row0 + g) * 16 + 2 * q);
  a[1] = tk::load_pair<tk::bf16>(r_tile + (row0 + g + 8) * 16 + 2 * q);
  a[2] = tk::load_pair<tk::bf16>(r_tile + (row0 + g) * 16 + 2 * q + 8);
  a[3] = tk::load_pair<tk::bf16>(r_tile + (row0 + g + 8) * 16 + 2 * q + 8);
  b[0] = tk::load_pair<tk::bf16>(y_tile + g * 16 + 2 * q);
  b[1] = tk::load_pair<tk::bf16>(y_tile + g * 16 + 2 * q + 8);
  tk::mma_m16n8k16_bf16(acc, a, b);
{stack}
  out[(row0 + g) * {cols} + 2 * q] = acc[0];
  out[(row0 + g) * {cols} + 2 * q + 1] = acc[1];
  out[(row0 + g + 8) * {cols} + 2 * q] = acc[2];
  out[(row0 + g + 8) * {cols} + 2 * q + 1] = acc[3];
}}
"""

# A dynamically indexed local array: ptxas must keep it in local memory (a stack frame).
_STACK = """\
  float spill[64];
  for (int i = 0; i < 64; ++i) spill[i] = acc[i % 4] * i;
  acc[0] += spill[(threadIdx.x * 7 + n) % 64];
"""


def _cols(config: Any) -> int:
    return 8  # one n8 tile of y


def programs(config: Any) -> tuple[CudaProgram, ...]:
    """One program per configuration: the ``tile`` kernel, rendered for its canonical name."""
    source = _SOURCE.format(name=config.name, threads=THREADS, rows=TILE_ROWS, cols=_cols(config),
                            stack=_STACK if USE_STACK else "")  # fmt: skip
    params = (("r", "ptr"), ("y", "ptr"), ("out", "ptr"), ("n", "i32"))
    return (CudaProgram(config.name, source, (KernelEntry("tile", params),)),)


def launch_dims(config: Any, entry: str) -> LaunchDims:
    """The launcher's shape: one block, the y tile (16 x cols bf16) as dynamic shared memory."""
    return LaunchDims(grid=(1, 1, 1), block=(THREADS, 1, 1), shared_bytes=16 * _cols(config) * 2)


def predicted(config: Any, entry: str) -> dict[str, int]:
    """Static R tile + dynamic y tile, exactly; the register bound the model would state."""
    static = TILE_ROWS * 16 * 2
    shared = static + launch_dims(config, entry).shared_bytes + SHARED_ERROR
    return {"registers_per_thread": REGISTER_BOUND, "shared_memory_bytes_per_block": shared}
