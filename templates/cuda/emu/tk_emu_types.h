// tk_emu_types.h -- what the emulator's kernel-facing header (tk_emu.h) and its runtime share:
// buffers, collective kinds, and the bf16 / fp16 / tf32 conversions with the hardware's rounding.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace tk_emu {

// A region of memory a tk::ptr may point into.
enum Space : uint8_t { GLOBAL = 0, SHARED = 1 };
struct Buffer {
  char* base;
  size_t bytes;
  const char* name;  // the KernelEntry parameter, the TK_SHARED variable, or "dynamic shared"
  Space space;
};

// One TK_SHARED declaration: its variable, size and alignment, and the function it is declared in
// (__PRETTY_FUNCTION__ of a local struct's member: "static ... kernel(args)::tk_emu_shared_x::site()").
struct SharedSite {
  const char* name;
  size_t bytes;
  size_t align;
  const char* function;
};

enum CollKind : int {
  SYNC_BLOCK = 1,
  SYNC_WARP,
  SHFL_IDX,
  SHFL_UP,
  SHFL_DOWN,
  SHFL_XOR,
  VOTE_BALLOT,
  VOTE_ANY,
  VOTE_ALL,
  MMA_BF16,
  MMA_F16,
  MMA_TF32,
  LDMATRIX,
  GRID_SYNC,
};

inline uint32_t f32_bits(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  return x;
}
inline float bits_f32(uint32_t x) {
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}

// float -> bf16, round to nearest even (cvt.rn.bf16.f32): NaN -> 0x7fff (canonical, as cuda_bf16.hpp),
// finite values past the largest bf16 round to inf, subnormals round like any other value.
inline uint16_t f32_to_bf16_rn(float f) {
  const uint32_t x = f32_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return 0x7fffu;
  return static_cast<uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}
inline float bf16_to_f32(uint16_t h) { return bits_f32(static_cast<uint32_t>(h) << 16); }

// float -> fp16, round to nearest even (cvt.rn.f16.f32): NaN -> 0x7fff, |x| >= 65520 -> inf (the tie
// between 65504 and 2^16 rounds to the even 2^16), results below 2^-14 are fp16 subnormals.
inline uint16_t f32_to_f16_rn(float f) {
  const uint32_t x = f32_bits(f);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t u = x & 0x7fffffffu;
  if (u > 0x7f800000u) return 0x7fffu;
  if (u >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // inf, or rounds to it
  if (u >= 0x38800000u) {  // a normal fp16: rebias the exponent (127 -> 15), round off 13 bits
    const uint32_t r = u - 0x38000000u;
    return static_cast<uint16_t>(sign | ((r + 0xfffu + ((r >> 13) & 1u)) >> 13));
  }
  if (u <= 0x33000000u) return static_cast<uint16_t>(sign);  // <= 2^-25: rounds to zero (2^-25 is a tie)
  const uint32_t e = u >> 23;                                // subnormal: units of 2^-24
  const uint32_t m = (u & 0x7fffffu) | 0x800000u;
  const uint32_t shift = 126u - e;  // 14..24
  uint32_t q = m >> shift;
  const uint32_t rem = m & ((1u << shift) - 1u);
  const uint32_t half = 1u << (shift - 1u);
  if (rem > half || (rem == half && (q & 1u))) ++q;  // may carry into the smallest normal: right
  return static_cast<uint16_t>(sign | q);
}
inline float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t e = (h >> 10) & 0x1fu;
  const uint32_t m = h & 0x3ffu;
  if (e == 0x1fu) return bits_f32(sign | 0x7f800000u | (m << 13));
  if (e != 0) return bits_f32(sign | ((e + 112u) << 23) | (m << 13));
  // zero or subnormal: m * 2^-24 is exact in float
  const float v = static_cast<float>(m) * 5.9604644775390625e-08f;
  return sign ? -v : v;
}

// float -> tf32 (cvt.rna.tf32.f32): round to nearest, ties away from zero, the low 13 mantissa bits
// zero; NaN -> 0x7fffffff (canonical); a finite value that rounds past the largest tf32 becomes inf.
inline uint32_t f32_to_tf32_rna(float f) {
  const uint32_t x = f32_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return 0x7fffffffu;
  return (x + 0x1000u) & 0xffffe000u;
}

// The 16-bit float types: storage and the conversions the GPU's __nv_bfloat16 / __half offer
// implicitly (from float with round to nearest even, to float exactly).
struct Bf16 {
  uint16_t bits;
  Bf16() = default;
  Bf16(float f) : bits(f32_to_bf16_rn(f)) {}
  operator float() const { return bf16_to_f32(bits); }
  static Bf16 from_bits(uint16_t b) {
    Bf16 r;
    r.bits = b;
    return r;
  }
};
struct F16 {
  uint16_t bits;
  F16() = default;
  F16(float f) : bits(f32_to_f16_rn(f)) {}
  operator float() const { return f16_to_f32(bits); }
  static F16 from_bits(uint16_t b) {
    F16 r;
    r.bits = b;
    return r;
  }
};

}  // namespace tk_emu

namespace tk_emu {

#pragma GCC visibility push(hidden)

// A kernel parameter as the runtime hands it to every thread: a buffer (ptr) or scalar bits.
struct Arg {
  const Buffer* buf;
  uint64_t bits;
};
// One parameter of an entry as the kernel declares it (deduced by the shim, tk_emu_shim.h).
struct ParamDesc {
  char kind;         // 'p' tk::ptr<T>, 'i' int, 'u' unsigned, 'l' int64, 'f' float, '?' other
  bool is_const;     // ptr<const T>: the launcher need not copy the buffer back
  size_t elem_size;  // sizeof(T) of a ptr<T> (1 for void)
  const char* type;  // T's name (type_name<T>)
};
struct EntryDesc {
  const char* name;
  unsigned nparams;
  const ParamDesc* params;
  void (*invoke)(const Arg* args);  // calls the kernel with the arguments built from args
};
int register_entry(const EntryDesc* entry);

#pragma GCC visibility pop

}  // namespace tk_emu
