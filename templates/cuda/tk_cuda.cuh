// tk_cuda.cuh -- the one header every tunekit CUDA kernel includes (DESIGN §4, docs/cuda.md).
//
// A kernel's source is byte-identical between the GPU build (nvcc, NVRTC) and the CPU emulator's
// build (g++ -std=c++20): only this header's implementation differs. Under __CUDACC__ /
// __CUDACC_RTC__ every primitive below is plain CUDA at zero cost; under a host compiler the
// emulator (tk_emu.h) provides the same names, with checked pointers, fiber barriers and the
// PTX ISA's documented mma.sync lane layouts.
//
// What kernels may use (and nothing else that needs the GPU):
//   * CUDA built-ins: threadIdx, blockIdx, blockDim, gridDim, __syncthreads(), __syncwarp(),
//     __shfl_sync / __shfl_xor_sync / __shfl_up_sync / __shfl_down_sync (full mask 0xffffffff,
//     warp-uniform control flow), __device__, __forceinline__, atomicAdd on float / int;
//   * float math: expf logf log1pf tanhf sqrtf fabsf fminf fmaxf (what the printed cell code calls);
//   * the tk:: primitives defined here: checked pointers (tk::ptr), shared memory (TK_SHARED,
//     tk::dynamic_shared), grid sync, conversions with the hardware's rounding, mma.sync and
//     ldmatrix with their PTX lane layouts, cp.async.
// Rules the emulator enforces: take addresses as `p + i` (not `&p[i]`), keep pointers in tk::ptr<T>
// or `auto`, no inline PTX outside this header, no spin-waits or home-made grid barriers.
#pragma once

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define TK_GPU 1

#include <cooperative_groups.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

// extern "C": entry points keep their names (NVRTC and the emulator look them up by name)
#define TK_KERNEL extern "C" __global__
// __launch_bounds__(threads per block, min resident blocks per SM): ptxas then keeps registers
// per thread <= 64K / (threads * blocks), the budget the constraint model derived
#define TK_LAUNCH_BOUNDS(threads, blocks) __launch_bounds__(threads, blocks)
// __maxnreg__(n) (CUDA C++ Programming Guide, "Maximum Number of Registers per Thread"): ptxas gives
// this kernel at most n registers per thread (it spills rather than exceed them, which the compile
// checks catch): for a bound the constraint model derived rather than one implied by a block size.
// nvcc 13.0 refuses __launch_bounds__ and __maxnreg__ on the same kernel: use one of the two.
#define TK_MAX_REGISTERS(n) __maxnreg__(n)
#define TK_DEVICE __device__ __forceinline__
// A lambda inlined like a TK_DEVICE function: `[&](auto v) TK_INLINE_LAMBDA { ... }`. Without it
// NVVM keeps a large lambda body a real call, and whatever it takes by reference goes to local
// memory (cuda-fused LSTM bf16 D=1024 on sm_80: 54 registers and a 904 B stack frame with the
// call, 244 registers and no stack without it).
#define TK_INLINE_LAMBDA __attribute__((always_inline))
#define TK_RESTRICT __restrict__
// Static shared memory: `TK_SHARED(float, gates, 1024);` declares an array named `gates` of 1024
// floats, 16-byte aligned. Use it as a pointer (gates + i, gates[i]); never take sizeof(gates).
#define TK_SHARED(type, name, count) __shared__ __align__(16) type name[count]
// Fully unrolled loops (the emulator ignores the hint)
#define TK_UNROLL _Pragma("unroll")

namespace tk {

using u32 = unsigned int;
using bf16 = __nv_bfloat16;
using f16 = __half;

// A pointer into global or shared memory. On the GPU a plain pointer; in the emulator a checked one
// that knows its buffer (bounds, alignment, name) and reports a bad access as a kernel fault.
template <class T>
using ptr = T*;

// Reinterpret a pointer as another element type (the emulator checks the alignment of U).
template <class U, class T>
TK_DEVICE ptr<U> ptr_cast(ptr<T> p) {
  return reinterpret_cast<ptr<U>>(p);
}

// The dynamic shared memory of the launch (bytes requested by the launcher), 16-byte aligned.
template <class T>
TK_DEVICE ptr<T> dynamic_shared() {
  extern __shared__ __align__(16) unsigned char tk_dynamic_smem[];
  return reinterpret_cast<T*>(tk_dynamic_smem);
}

// Grid-wide barrier of a cooperative launch: every block of the grid arrives before any leaves,
// and global-memory writes before it are visible to every block after it.
TK_DEVICE void grid_sync() { cooperative_groups::this_grid().sync(); }

// ---- conversions: the hardware's rounding ------------------------------------------------------

TK_DEVICE float to_float(float x) { return x; }
TK_DEVICE float to_float(bf16 x) { return __bfloat162float(x); }
TK_DEVICE float to_float(f16 x) { return __half2float(x); }

// float -> T with round-to-nearest-even (cvt.rn), T in {float, bf16, f16}
template <class T>
TK_DEVICE T from_float(float x);
template <>
TK_DEVICE float from_float<float>(float x) { return x; }
template <>
TK_DEVICE bf16 from_float<bf16>(float x) { return __float2bfloat16_rn(x); }
template <>
TK_DEVICE f16 from_float<f16>(float x) { return __float2half_rn(x); }

// Two floats rounded to nearest even and packed: `lo` in bits 0..15, `hi` in bits 16..31 (the
// order of an mma.sync fragment register: the lower column index in the lower half).
template <class T>
TK_DEVICE u32 pack2(float lo, float hi);
template <>
TK_DEVICE u32 pack2<bf16>(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);  // .x = lo (low half), .y = hi
  return *reinterpret_cast<u32*>(&v);
}
template <>
TK_DEVICE u32 pack2<f16>(float lo, float hi) {
  __half2 v = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<u32*>(&v);
}

// Two 16-bit values already in memory, packed likewise (p[0] low, p[1] high); p 4-byte aligned.
template <class T>
TK_DEVICE u32 load_pair(ptr<const T> p) {
  return *reinterpret_cast<const u32*>(p);
}

// float -> tf32 (the operand format of an fp32 mma): cvt.rna.tf32.f32, round to nearest with ties
// away from zero, kept in a 32-bit register with the low 13 mantissa bits zero
TK_DEVICE u32 to_tf32(float x) {
  u32 r;
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
  return r;
}

// ---- tensor cores: mma.sync with the PTX ISA's fragment layouts ---------------------------------
// Lane l of the warp: group g = l / 4, thread-in-group q = l % 4 (PTX ISA, "Matrix fragments for
// mma.m16n8k16" and "mma.m16n8k8"). acc += A (16 x K, row-major) * B (K x 8, column-major):
//
//   m16n8k16 bf16/f16:  a[0] = A[g][2q..2q+1]      a[1] = A[g+8][2q..2q+1]
//                       a[2] = A[g][2q+8..2q+9]    a[3] = A[g+8][2q+8..2q+9]
//                       b[0] = B[2q..2q+1][g]      b[1] = B[2q+8..2q+9][g]     (pairs packed lo, hi)
//   m16n8k8 tf32:       a[0] = A[g][q]   a[1] = A[g+8][q]   a[2] = A[g][q+4]   a[3] = A[g+8][q+4]
//                       b[0] = B[q][g]   b[1] = B[q+4][g]
//   accumulator (both): acc[0..1] = C[g][2q..2q+1]   acc[2..3] = C[g+8][2q..2q+1]   (fp32)

TK_DEVICE void mma_m16n8k16_bf16(float (&acc)[4], const u32 (&a)[4], const u32 (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};"
      : "+f"(acc[0]), "+f"(acc[1]), "+f"(acc[2]), "+f"(acc[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

TK_DEVICE void mma_m16n8k16_f16(float (&acc)[4], const u32 (&a)[4], const u32 (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};"
      : "+f"(acc[0]), "+f"(acc[1]), "+f"(acc[2]), "+f"(acc[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

TK_DEVICE void mma_m16n8k8_tf32(float (&acc)[4], const u32 (&a)[4], const u32 (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};"
      : "+f"(acc[0]), "+f"(acc[1]), "+f"(acc[2]), "+f"(acc[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// ldmatrix (shared memory -> mma fragments, PTX ISA "ldmatrix"): x4 loads four 8x8 matrices of
// 16-bit elements; lanes 8i..8i+7 give the addresses of matrix i's rows 0..7 (16 bytes each,
// 16-byte aligned), and lane l receives in r[i] the pair (row l/4, columns 2(l%4)..2(l%4)+1) of
// matrix i. .trans delivers the transposed matrices. x2: matrices 0..1 (lanes 0..15 give rows).
// In the emulator these are warp collectives: every lane of the warp must call the same one.
TK_DEVICE void ldmatrix_x4(u32 (&r)[4], ptr<const void> row) {
  unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
TK_DEVICE void ldmatrix_x4_trans(u32 (&r)[4], ptr<const void> row) {
  unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
TK_DEVICE void ldmatrix_x2(u32 (&r)[2], ptr<const void> row) {
  unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(addr));
}
TK_DEVICE void ldmatrix_x2_trans(u32 (&r)[2], ptr<const void> row) {
  unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(addr));
}
// x1: matrix 0 only (lanes 0..7 give its rows; the other lanes' addresses are not read).
TK_DEVICE void ldmatrix_x1(u32 (&r)[1], ptr<const void> row) {
  unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%0}, [%1];" : "=r"(r[0]) : "r"(addr));
}
TK_DEVICE void ldmatrix_x1_trans(u32 (&r)[1], ptr<const void> row) {
  unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x1.trans.shared.b16 {%0}, [%1];" : "=r"(r[0]) : "r"(addr));
}

// ---- cp.async: global -> shared copies that bypass registers (sm_80+) ---------------------------
// 16 bytes from src to dst (both 16-byte aligned); with valid == false dst is zero-filled and src
// is not read. Copies issued since the last commit form a group; wait<N> blocks until at most N
// groups are still in flight. Only after the wait (and a __syncthreads for other threads' copies)
// may the destination be read.
TK_DEVICE void cp_async_16(ptr<void> dst, ptr<const void> src, bool valid = true) {
  unsigned d = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  int bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(d), "l"(src), "r"(bytes));
}
TK_DEVICE void cp_async_commit() { asm volatile("cp.async.commit_group;"); }
template <int N>
TK_DEVICE void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(N));
}

}  // namespace tk

#else  // a host C++20 compiler: the CPU emulator provides every name above
#include "emu/tk_emu.h"
#endif
