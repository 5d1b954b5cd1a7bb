// Kernels for tests/test_cuda_emulator.py: indices, barriers, static and dynamic shared memory,
// scalar parameters, atomics and grid sync. Compiled by g++ (emulator) and nvcc (sm_80) alike.
#include "tk_cuda.cuh"

// Every thread writes its 12 indices: threadIdx, blockIdx, blockDim, gridDim (x, y, z each).
TK_KERNEL void indices(tk::ptr<int> out) {
  const int t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  const int b = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  const int threads = blockDim.x * blockDim.y * blockDim.z;
  auto o = out + (b * threads + t) * 12;
  o[0] = threadIdx.x, o[1] = threadIdx.y, o[2] = threadIdx.z;
  o[3] = blockIdx.x, o[4] = blockIdx.y, o[5] = blockIdx.z;
  o[6] = blockDim.x, o[7] = blockDim.y, o[8] = blockDim.z;
  o[9] = gridDim.x, o[10] = gridDim.y, o[11] = gridDim.z;
}

// y = each block's slice of x reversed, through static shared memory (needs the barrier).
TK_KERNEL void reverse_static(tk::ptr<const float> x, tk::ptr<float> y) {
  TK_SHARED(float, stage, 256);
  const int t = threadIdx.x, base = blockIdx.x * blockDim.x;
  stage[t] = x[base + t];
  __syncthreads();
  y[base + t] = stage[blockDim.x - 1 - t];
}

// The same through the launch's dynamic shared memory; a second, static array after a second
// barrier holds the block's sum (thread 0 adds, all read).
TK_KERNEL void reverse_dynamic(tk::ptr<const float> x, tk::ptr<float> y, tk::ptr<float> sums) {
  auto stage = tk::dynamic_shared<float>();
  TK_SHARED(float, total, 4);
  const int t = threadIdx.x, base = blockIdx.x * blockDim.x;
  stage[t] = x[base + t];
  __syncthreads();
  if (t == 0) {
    float s = 0.0f;
    for (int i = 0; i < static_cast<int>(blockDim.x); ++i) s += stage[i];
    total[0] = s;
  }
  __syncthreads();
  y[base + t] = stage[blockDim.x - 1 - t];
  sums[base + t] = total[0];
}

// Scalars of every parameter kind, written back by thread 0 of block 0.
TK_KERNEL void scalars(tk::ptr<int> ints, tk::ptr<long long> wide, tk::ptr<float> reals, int a, unsigned b,
                       long long c, float d) {
  if (threadIdx.x == 0 && blockIdx.x == 0) {
    ints[0] = a;
    ints[1] = static_cast<int>(b);
    wide[0] = c;
    reals[0] = d;
  }
}

// A histogram and a float sum with atomicAdd (global), and a block-local count (shared).
TK_KERNEL void atomics(tk::ptr<const int> keys, tk::ptr<const float> vals, tk::ptr<int> counts, tk::ptr<float> sum,
                       tk::ptr<unsigned> per_block, int n) {
  TK_SHARED(unsigned, local, 1);
  if (threadIdx.x == 0) local[0] = 0u;
  __syncthreads();
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) {
    atomicAdd(counts + keys[i], 1);
    atomicAdd(sum, vals[i]);
    atomicAdd(local + 0, 1u);
  }
  __syncthreads();
  if (threadIdx.x == 0) per_block[blockIdx.x] = local[0];
}

// steps times: every thread reads the element one block ahead, the grid syncs, every thread
// writes what it read plus one, the grid syncs. Correct only if every block is resident.
TK_KERNEL void grid_rotate(tk::ptr<float> buf, int steps) {
  const int total = gridDim.x * blockDim.x;
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  for (int s = 0; s < steps; ++s) {
    const float v = buf[(i + blockDim.x) % total];
    tk::grid_sync();
    buf[i] = v + 1.0f;
    tk::grid_sync();
  }
}

// The math functions the printed cell code calls (tunekit.cells.printers; its CUDA_PRELUDE is
// compiled and run by test_printed_cell_code_of_every_cell_runs_in_the_emulator).
TK_KERNEL void math(tk::ptr<const float> x, tk::ptr<float> y, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float v = x[i];
  auto o = y + i * 8;
  o[0] = expf(v);
  o[1] = log1pf(expf(-fabsf(v)));
  o[2] = tanhf(v);
  o[3] = logf(fabsf(v) + 1.0f);
  o[4] = sqrtf(fabsf(v));
  o[5] = fmaxf(v, 0.5f);
  o[6] = fminf(v, -0.5f);
  o[7] = expf(fminf(v, 10.0f));
}
