// Deliberately broken kernels for tests/test_cuda_emulator_faults.py: each has one bug the
// emulator must report (or make visible). They compile with nvcc too: the bugs are run-time bugs.
#include "tk_cuda.cuh"

// No barrier between writing the stage and reading a neighbour's slot: a thread that runs before
// its neighbour reads the poison (NaN).
TK_KERNEL void missing_barrier(tk::ptr<const float> x, tk::ptr<float> y) {
  TK_SHARED(float, stage, 128);
  const int t = threadIdx.x;
  stage[t] = x[t];
  y[t] = stage[(t + 1) % blockDim.x];
}

TK_KERNEL void read_past_the_end(tk::ptr<const float> x, tk::ptr<float> y, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  y[i] = x[i + n];  // the guard `if (i + n < len)` is missing
}

TK_KERNEL void write_before_the_start(tk::ptr<float> y, int offset) { y[static_cast<int>(threadIdx.x) - offset] = 1.0f; }

TK_KERNEL void shared_past_the_end(tk::ptr<float> y) {
  TK_SHARED(float, tile, 32);
  tile[threadIdx.x] = 1.0f;  // launched with 64 threads
  __syncthreads();
  y[threadIdx.x] = tile[threadIdx.x % 32];
}

TK_KERNEL void dynamic_shared_too_small(tk::ptr<float> y) {
  auto tile = tk::dynamic_shared<float>();
  tile[threadIdx.x] = 1.0f;
  __syncthreads();
  y[threadIdx.x] = tile[threadIdx.x];
}

// ldmatrix rows must be 16-byte aligned: a row of 8 bf16 starting at element 4 is not
TK_KERNEL void misaligned_ldmatrix(tk::ptr<tk::u32> out) {
  TK_SHARED(tk::bf16, tile, 16 * 16 + 8);
  for (int i = threadIdx.x; i < 16 * 16 + 8; i += 32) tile[i] = tk::from_float<tk::bf16>(1.0f);
  __syncwarp();
  tk::u32 r[4];
  tk::ldmatrix_x4(r, tile + 4 + (threadIdx.x % 16) * 16);
  out[threadIdx.x] = r[0];
}

TK_KERNEL void misaligned_cp_async(tk::ptr<const float> src, tk::ptr<float> out) {
  TK_SHARED(float, tile, 128);
  tk::cp_async_16(tile + 4 * threadIdx.x, src + 4 * threadIdx.x + 1);  // the source is 4 bytes off
  tk::cp_async_commit();
  tk::cp_async_wait<0>();
  __syncthreads();
  out[threadIdx.x] = tile[threadIdx.x];
}

TK_KERNEL void misaligned_ptr_cast(tk::ptr<const tk::bf16> x, tk::ptr<tk::u32> out) {
  // a pair of bf16 read as one 32-bit word must start at an even element
  out[threadIdx.x] = tk::ptr_cast<const tk::u32>(x + 2 * threadIdx.x + 1)[0];
}

// Half the block skips the barrier (and exits)
TK_KERNEL void barrier_in_a_branch(tk::ptr<float> y) {
  if (threadIdx.x < 48) {
    __syncthreads();
  }
  y[threadIdx.x] = 1.0f;
}

// Two different barriers met by the two halves of the block
TK_KERNEL void two_different_barriers(tk::ptr<float> y) {
  if (threadIdx.x < 32) {
    y[threadIdx.x] = 1.0f;
    __syncthreads();
  } else {
    y[threadIdx.x] = 2.0f;
    __syncthreads();
  }
}

// The lanes of a warp shuffle at different call sites
TK_KERNEL void shuffle_in_branches(tk::ptr<float> y) {
  const float v = threadIdx.x;
  float r;
  if (threadIdx.x % 2 == 0) r = __shfl_xor_sync(0xffffffffu, v, 1);
  else r = __shfl_xor_sync(0xffffffffu, v, 1);
  y[threadIdx.x] = r;
}

// Only half the warp shuffles; the other half leaves
TK_KERNEL void shuffle_by_half_a_warp(tk::ptr<float> y) {
  if (threadIdx.x < 16) y[threadIdx.x] = __shfl_down_sync(0xffffffffu, 1.0f * threadIdx.x, 1);
}

// Half a warp at a block barrier, the other half at a shuffle: nobody can go on
TK_KERNEL void barrier_against_shuffle(tk::ptr<float> y) {
  float v = threadIdx.x;
  if (threadIdx.x % 32 < 16) __syncthreads();
  else v = __shfl_xor_sync(0xffffffffu, v, 1);
  y[threadIdx.x] = v;
}

// A partial mask is outside the contract (docs/cuda.md: full masks only)
TK_KERNEL void partial_mask(tk::ptr<float> y) { y[threadIdx.x] = __shfl_sync(0x0000ffffu, 1.0f, 0); }

// A warp collective in a block of 48 threads: the second warp has 16 lanes
TK_KERNEL void shuffle_in_a_partial_warp(tk::ptr<float> y) {
  y[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.0f * threadIdx.x, 1);
}

// The destination of cp.async is read without waiting for it
TK_KERNEL void missing_cp_async_wait(tk::ptr<const float> src, tk::ptr<float> out) {
  TK_SHARED(float, tile, 128);
  tk::cp_async_16(tile + 4 * threadIdx.x, src + 4 * threadIdx.x);
  tk::cp_async_commit();
  __syncthreads();  // a barrier does not complete cp.async copies; cp_async_wait<0>() is missing
  for (int i = threadIdx.x; i < 128; i += 32) out[i] = tile[i];
}

TK_KERNEL void grid_sync_without_cooperative_launch(tk::ptr<float> y) {
  y[blockIdx.x * blockDim.x + threadIdx.x] = 1.0f;
  tk::grid_sync();
}

// One block leaves early, the others wait at the grid sync
TK_KERNEL void grid_sync_skipped_by_a_block(tk::ptr<float> y) {
  if (blockIdx.x == 1) return;
  tk::grid_sync();
  y[blockIdx.x * blockDim.x + threadIdx.x] = 1.0f;
}

// A raw pointer (outside the contract): writing through it crashes
TK_KERNEL void raw_pointer_write(tk::ptr<float> y, long long address) {
  *reinterpret_cast<volatile float*>(address) = 1.0f;
  y[threadIdx.x] = 1.0f;
}

// Spins forever (a home-made barrier waiting for a flag nobody sets)
TK_KERNEL void spin_forever(tk::ptr<float> y) {
  volatile int waiting = 1;
  while (waiting) {
  }
  y[threadIdx.x] = 1.0f;
}

// Deep recursion with big frames overflows the fiber stack
TK_DEVICE float deep(int depth, float x) {
  volatile float frame[2048];
  frame[depth % 2048] = x;
  return depth == 0 ? frame[0] : deep(depth - 1, x + 1.0f) + frame[depth % 2048];
}
TK_KERNEL void stack_overflow(tk::ptr<float> y, int depth) { y[threadIdx.x] = deep(depth, 1.0f); }

// Shared memory declared in a device function: its size is known only once a block reaches it
TK_DEVICE float helper_with_shared(float v) {
  TK_SHARED(float, scratch, 4096);
  scratch[threadIdx.x] = v;
  __syncthreads();
  return scratch[(threadIdx.x + 1) % blockDim.x];
}
TK_KERNEL void shared_in_a_helper(tk::ptr<const float> x, tk::ptr<float> y) {
  TK_SHARED(float, own, 64);
  own[threadIdx.x] = x[threadIdx.x];
  __syncthreads();
  y[threadIdx.x] = helper_with_shared(own[threadIdx.x]);
}
