// 52000 bytes of static shared memory: more than the 48 KB a block may declare statically. The
// emulator refuses to launch it (tests/test_cuda_emulator_faults.py); ptxas refuses to compile it
// ("uses too much shared data (0xcb20 bytes, 0xc000 max)", tests/test_cuda_emulator.py).
#include "tk_cuda.cuh"

TK_KERNEL void too_much_static_shared(tk::ptr<float> y) {
  TK_SHARED(float, big, 13000);
  big[threadIdx.x] = 1.0f;
  __syncthreads();
  y[threadIdx.x] = big[threadIdx.x];
}
