// tk_emu.h -- the emulator side of tk_cuda.cuh: every name a kernel may use, on the CPU.
//
// Included by tk_cuda.cuh when a host C++20 compiler (g++ >= 12) builds the kernel's own source.
// Each CUDA thread runs as a fiber (tk_emu_sched.cpp); barriers, warp collectives and grid syncs
// are points where a fiber hands the CPU to the next one. tk::ptr<T> is a checked pointer: every
// dereference is bounds- and alignment-checked against its buffer and a bad one is a kernel fault
// naming the buffer, the element, the block and the thread. docs/cuda.md §2 has the semantics.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <source_location>
#include <type_traits>

#include "tk_emu_types.h"

#define TK_EMU 1

// The C math functions kernels call (CUDA has them in device code), declared as glibc does instead
// of including <math.h>: libstdc++'s <math.h> pulls in <cmath>, ~24k lines, half of what a kernel
// program takes to compile (measured: 0.2 of 0.4 s). A kernel may still include <cmath> itself.
extern "C" {
#define TK_EMU_MATH(name) float name##f(float) noexcept; double name(double) noexcept;
TK_EMU_MATH(exp)
TK_EMU_MATH(exp2)
TK_EMU_MATH(expm1)
TK_EMU_MATH(log)
TK_EMU_MATH(log2)
TK_EMU_MATH(log10)
TK_EMU_MATH(log1p)
TK_EMU_MATH(sqrt)
TK_EMU_MATH(cbrt)
TK_EMU_MATH(fabs)
TK_EMU_MATH(floor)
TK_EMU_MATH(ceil)
TK_EMU_MATH(round)
TK_EMU_MATH(trunc)
TK_EMU_MATH(sin)
TK_EMU_MATH(cos)
TK_EMU_MATH(tan)
TK_EMU_MATH(tanh)
TK_EMU_MATH(sinh)
TK_EMU_MATH(cosh)
TK_EMU_MATH(asin)
TK_EMU_MATH(acos)
TK_EMU_MATH(atan)
TK_EMU_MATH(erf)
TK_EMU_MATH(erfc)
#undef TK_EMU_MATH
float fminf(float, float) noexcept;
float fmaxf(float, float) noexcept;
float powf(float, float) noexcept;
float atan2f(float, float) noexcept;
float fmodf(float, float) noexcept;
float copysignf(float, float) noexcept;
float fmaf(float, float, float) noexcept;
double fmin(double, double) noexcept;
double fmax(double, double) noexcept;
double pow(double, double) noexcept;
double fma(double, double, double) noexcept;
double atan2(double, double) noexcept;
double fmod(double, double) noexcept;
double copysign(double, double) noexcept;
}

// ---- macros of the contract (docs/cuda.md §1) ------------------------------------------------------
#define TK_KERNEL extern "C"
#define TK_LAUNCH_BOUNDS(threads, blocks)
#define TK_MAX_REGISTERS(n)  // the emulator has no registers to cap
#define TK_DEVICE inline
#define TK_INLINE_LAMBDA  // a hint for NVVM's inliner; g++ inlines what it likes
#define TK_RESTRICT
#define TK_UNROLL
// Shared memory declared inside a kernel: a checked pointer to the block's copy of the array. The
// local struct names the declaration; its registration at load time tells the launcher the entry's
// static shared bytes before anything runs (see tk_emu::SharedReg).
#define TK_SHARED(type, name, count)                                                                   \
  struct tk_emu_shared_##name {                                                                        \
    static ::tk_emu::SharedSite site() {                                                               \
      return {#name, sizeof(type) * static_cast<::size_t>(count), alignof(type), __PRETTY_FUNCTION__}; \
    }                                                                                                  \
  };                                                                                                   \
  ::tk::ptr<type> name = ::tk_emu::shared_static<type, tk_emu_shared_##name>()

// CUDA keywords a kernel may write: nothing to do on the CPU
#define __device__
#define __global__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)

// ---- the current thread ------------------------------------------------------------------------
struct uint3 {
  unsigned x, y, z;
};
struct dim3 {
  unsigned x, y, z;
};

namespace tk_emu {

#pragma GCC visibility push(hidden)

// What a kernel reads of the running fiber; the runtime's Fiber starts with these fields.
struct ThreadCtx {
  uint3 thread_idx;
  uint3 block_idx;
};
extern ThreadCtx* g_cur;  // the fiber running now
extern dim3 g_block_dim, g_grid_dim;

// ---- the runtime's entry points (tk_emu_sched.cpp, tk_emu_warp.cpp, tk_emu_launch.cpp) ----
using Loc = std::source_location;

[[noreturn]] void fault_message(const char* message);
void sync_block(Loc loc);
void grid_sync(Loc loc);
// warp collectives: kind from CollKind; returns this lane's result
uint64_t warp_shuffle(int kind, unsigned mask, uint64_t value, int arg, int width, Loc loc);
unsigned warp_vote(int kind, unsigned mask, bool pred, Loc loc);
void warp_sync(unsigned mask, Loc loc);
void warp_mma(int kind, float* acc, const uint32_t* a, const uint32_t* b, Loc loc);
void warp_ldmatrix(int count, bool trans, uint32_t* r, const Buffer* b, const void* row, Loc loc);
void cp_async(const Buffer* db, void* dst, const Buffer* sb, const void* src, bool valid, Loc loc);
void cp_async_commit();
void cp_async_wait(int n, Loc loc);
int register_shared(SharedSite (*site)());
const Buffer* shared_static_buffer(int index);
const Buffer* dynamic_shared_buffer();

#pragma GCC visibility pop

}  // namespace tk_emu

#include "tk_emu_ptr.h"

namespace tk {

using u32 = unsigned int;
using bf16 = tk_emu::Bf16;
using f16 = tk_emu::F16;

template <class T>
inline ptr<T> dynamic_shared() {
  const tk_emu::Buffer* b = tk_emu::dynamic_shared_buffer();
  return ptr<T>(reinterpret_cast<T*>(b->base), b);
}

inline void grid_sync(std::source_location loc = std::source_location::current()) { tk_emu::grid_sync(loc); }

// ---- conversions: the hardware's rounding (tk_emu_types.h) --------------------------------------
inline float to_float(float x) { return x; }
inline float to_float(bf16 x) { return tk_emu::bf16_to_f32(x.bits); }
inline float to_float(f16 x) { return tk_emu::f16_to_f32(x.bits); }

template <class T>
inline T from_float(float x);
template <>
inline float from_float<float>(float x) {
  return x;
}
template <>
inline bf16 from_float<bf16>(float x) {
  return bf16::from_bits(tk_emu::f32_to_bf16_rn(x));
}
template <>
inline f16 from_float<f16>(float x) {
  return f16::from_bits(tk_emu::f32_to_f16_rn(x));
}

template <class T>
inline u32 pack2(float lo, float hi);
template <>
inline u32 pack2<bf16>(float lo, float hi) {
  return u32(tk_emu::f32_to_bf16_rn(lo)) | (u32(tk_emu::f32_to_bf16_rn(hi)) << 16);
}
template <>
inline u32 pack2<f16>(float lo, float hi) {
  return u32(tk_emu::f32_to_f16_rn(lo)) | (u32(tk_emu::f32_to_f16_rn(hi)) << 16);
}

// T may be given (load_pair<bf16>(p)) or deduced from the pointer, as on the GPU
template <class T = void, class Q>
inline u32 load_pair(ptr<Q> p) {
  using E = std::remove_const_t<Q>;
  static_assert(std::is_void_v<T> || std::is_same_v<T, E>, "tk::load_pair<T>: the pointer's element type is not T");
  static_assert(sizeof(E) == 2, "tk::load_pair: 16-bit elements only (bf16, f16)");
  return *ptr_cast<const u32>(ptr<const E>(p));
}

inline u32 to_tf32(float x) { return tk_emu::f32_to_tf32_rna(x); }

// ---- tensor cores and ldmatrix: warp collectives with the PTX lane layouts (tk_cuda.cuh) ---------
inline void mma_m16n8k16_bf16(float (&acc)[4], const u32 (&a)[4], const u32 (&b)[2],
                              std::source_location loc = std::source_location::current()) {
  tk_emu::warp_mma(tk_emu::MMA_BF16, acc, a, b, loc);
}
inline void mma_m16n8k16_f16(float (&acc)[4], const u32 (&a)[4], const u32 (&b)[2],
                             std::source_location loc = std::source_location::current()) {
  tk_emu::warp_mma(tk_emu::MMA_F16, acc, a, b, loc);
}
inline void mma_m16n8k8_tf32(float (&acc)[4], const u32 (&a)[4], const u32 (&b)[2],
                             std::source_location loc = std::source_location::current()) {
  tk_emu::warp_mma(tk_emu::MMA_TF32, acc, a, b, loc);
}

inline void ldmatrix_x4(u32 (&r)[4], ptr<const void> row, std::source_location loc = std::source_location::current()) {
  tk_emu::warp_ldmatrix(4, false, r, row.b_, row.p_, loc);
}
inline void ldmatrix_x4_trans(u32 (&r)[4], ptr<const void> row,
                              std::source_location loc = std::source_location::current()) {
  tk_emu::warp_ldmatrix(4, true, r, row.b_, row.p_, loc);
}
inline void ldmatrix_x2(u32 (&r)[2], ptr<const void> row, std::source_location loc = std::source_location::current()) {
  tk_emu::warp_ldmatrix(2, false, r, row.b_, row.p_, loc);
}
inline void ldmatrix_x2_trans(u32 (&r)[2], ptr<const void> row,
                              std::source_location loc = std::source_location::current()) {
  tk_emu::warp_ldmatrix(2, true, r, row.b_, row.p_, loc);
}
inline void ldmatrix_x1(u32 (&r)[1], ptr<const void> row, std::source_location loc = std::source_location::current()) {
  tk_emu::warp_ldmatrix(1, false, r, row.b_, row.p_, loc);
}
inline void ldmatrix_x1_trans(u32 (&r)[1], ptr<const void> row,
                              std::source_location loc = std::source_location::current()) {
  tk_emu::warp_ldmatrix(1, true, r, row.b_, row.p_, loc);
}

// ---- cp.async: deferred copies (docs/cuda.md §2) -------------------------------------------------
inline void cp_async_16(ptr<void> dst, ptr<const void> src, bool valid = true,
                        std::source_location loc = std::source_location::current()) {
  tk_emu::cp_async(dst.b_, dst.p_, src.b_, src.p_, valid, loc);
}
inline void cp_async_commit() { tk_emu::cp_async_commit(); }
template <int N>
inline void cp_async_wait(std::source_location loc = std::source_location::current()) {
  static_assert(N >= 0, "tk::cp_async_wait<N>: N >= 0");
  tk_emu::cp_async_wait(N, loc);
}

}  // namespace tk

namespace tk_emu {

template <class Site>
struct SharedReg {
  static inline const int index = register_shared(&Site::site);
};

template <class T, class Site>
inline tk::ptr<T> shared_static() {
  const Buffer* b = shared_static_buffer(SharedReg<Site>::index);
  return tk::ptr<T>(reinterpret_cast<T*>(b->base), b);
}

template <class T>
inline uint64_t to_bits64(T v) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= 8, "warp shuffles move values of up to 8 bytes");
  uint64_t r = 0;
  std::memcpy(&r, &v, sizeof(T));
  return r;
}
template <class T>
inline T from_bits64(uint64_t r) {
  T v;
  std::memcpy(&v, &r, sizeof(T));
  return v;
}

}  // namespace tk_emu

// ---- CUDA built-ins ----------------------------------------------------------------------------
#define threadIdx (static_cast<const ::uint3&>(::tk_emu::g_cur->thread_idx))
#define blockIdx (static_cast<const ::uint3&>(::tk_emu::g_cur->block_idx))
#define blockDim (static_cast<const ::dim3&>(::tk_emu::g_block_dim))
#define gridDim (static_cast<const ::dim3&>(::tk_emu::g_grid_dim))
inline constexpr int warpSize = 32;

inline void __syncthreads(std::source_location loc = std::source_location::current()) { tk_emu::sync_block(loc); }
inline void __syncwarp(unsigned mask = 0xffffffffu, std::source_location loc = std::source_location::current()) {
  tk_emu::warp_sync(mask, loc);
}

template <class T>
inline T __shfl_sync(unsigned mask, T var, int src_lane, int width = 32,
                     std::source_location loc = std::source_location::current()) {
  return tk_emu::from_bits64<T>(tk_emu::warp_shuffle(tk_emu::SHFL_IDX, mask, tk_emu::to_bits64(var), src_lane, width, loc));
}
template <class T>
inline T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = 32,
                        std::source_location loc = std::source_location::current()) {
  return tk_emu::from_bits64<T>(
      tk_emu::warp_shuffle(tk_emu::SHFL_UP, mask, tk_emu::to_bits64(var), static_cast<int>(delta), width, loc));
}
template <class T>
inline T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = 32,
                          std::source_location loc = std::source_location::current()) {
  return tk_emu::from_bits64<T>(
      tk_emu::warp_shuffle(tk_emu::SHFL_DOWN, mask, tk_emu::to_bits64(var), static_cast<int>(delta), width, loc));
}
template <class T>
inline T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = 32,
                         std::source_location loc = std::source_location::current()) {
  return tk_emu::from_bits64<T>(tk_emu::warp_shuffle(tk_emu::SHFL_XOR, mask, tk_emu::to_bits64(var), lane_mask, width, loc));
}
inline unsigned __ballot_sync(unsigned mask, int pred, std::source_location loc = std::source_location::current()) {
  return tk_emu::warp_vote(tk_emu::VOTE_BALLOT, mask, pred != 0, loc);
}
inline int __any_sync(unsigned mask, int pred, std::source_location loc = std::source_location::current()) {
  return static_cast<int>(tk_emu::warp_vote(tk_emu::VOTE_ANY, mask, pred != 0, loc));
}
inline int __all_sync(unsigned mask, int pred, std::source_location loc = std::source_location::current()) {
  return static_cast<int>(tk_emu::warp_vote(tk_emu::VOTE_ALL, mask, pred != 0, loc));
}

// One OS thread runs every fiber and a fiber is never preempted: a read-modify-write is atomic.
inline float atomicAdd(tk::ptr<float> p, float v) {
  float& r = *p;
  const float old = r;
  r = old + v;
  return old;
}
inline int atomicAdd(tk::ptr<int> p, int v) {
  int& r = *p;
  const int old = r;
  r = static_cast<int>(static_cast<unsigned>(old) + static_cast<unsigned>(v));  // wraps like the GPU's
  return old;
}
inline unsigned atomicAdd(tk::ptr<unsigned> p, unsigned v) {
  unsigned& r = *p;
  const unsigned old = r;
  r = old + v;
  return old;
}

// __restrict__ is a promise about aliasing; nothing to check. Defined last: the system headers
// above spell their own restrict qualifiers.
#define __restrict__
