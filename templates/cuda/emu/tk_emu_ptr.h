// tk_emu_ptr.h -- tk::ptr<T>, the emulator's checked pointer (included by tk_emu.h).
//
// An address and the buffer it points into (global: a kernel parameter; shared: a TK_SHARED array
// or the dynamic shared memory). Arithmetic is free, as on the GPU (a pointer may point anywhere);
// every dereference checks that the element lies inside the buffer and is aligned for T, and a bad
// one is a kernel fault naming the buffer, the element and its extent (tk_emu_launch.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "tk_emu_types.h"

namespace tk_emu {

#pragma GCC visibility push(hidden)
[[noreturn]] void fault_access(const Buffer* b, const void* addr, size_t size, size_t align, const char* type,
                               bool read_only, const char* what);
#pragma GCC visibility pop

// Element type names for fault messages
template <class T>
constexpr const char* type_name() {
  using U = std::remove_cv_t<T>;
  if constexpr (std::is_same_v<U, float>) return "float";
  else if constexpr (std::is_same_v<U, double>) return "double";
  else if constexpr (std::is_same_v<U, int>) return "int";
  else if constexpr (std::is_same_v<U, unsigned>) return "u32";
  else if constexpr (std::is_same_v<U, long> || std::is_same_v<U, long long>) return "int64";
  else if constexpr (std::is_same_v<U, unsigned long> || std::is_same_v<U, unsigned long long>) return "uint64";
  else if constexpr (std::is_same_v<U, Bf16>) return "bf16";
  else if constexpr (std::is_same_v<U, F16>) return "f16";
  else if constexpr (std::is_same_v<U, short>) return "int16";
  else if constexpr (std::is_same_v<U, unsigned short>) return "uint16";
  else if constexpr (std::is_same_v<U, char> || std::is_same_v<U, signed char>) return "int8";
  else if constexpr (std::is_same_v<U, unsigned char>) return "uint8";
  else if constexpr (std::is_void_v<U>) return "void";
  else return "struct";
}

template <class T>
constexpr size_t size_of() {
  if constexpr (std::is_void_v<T>) return 1;
  else return sizeof(T);
}
template <class T>
constexpr size_t align_of() {
  if constexpr (std::is_void_v<T>) return 1;
  else return alignof(T);
}

// The address q of a T inside buffer b, or a fault.
template <class T>
inline T* checked(T* q, const Buffer* b) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(q);
  if (__builtin_expect(b == nullptr, 0)) fault_access(nullptr, q, sizeof(T), alignof(T), type_name<T>(), false, "access");
  const uintptr_t off = a - reinterpret_cast<uintptr_t>(b->base);
  if (__builtin_expect(off > b->bytes || b->bytes - off < sizeof(T) || (a & (alignof(T) - 1)) != 0, 0))
    fault_access(b, q, sizeof(T), alignof(T), type_name<T>(), std::is_const_v<T>, std::is_const_v<T> ? "read" : "access");
  return q;
}

}  // namespace tk_emu

namespace tk {

template <class T>
class ptr {
 public:
  T* p_ = nullptr;
  const tk_emu::Buffer* b_ = nullptr;

  ptr() = default;
  ptr(std::nullptr_t) {}
  ptr(T* p, const tk_emu::Buffer* b) : p_(p), b_(b) {}
  template <class U>
    requires(std::is_convertible_v<U*, T*> && !std::is_same_v<U, T>)
  ptr(const ptr<U>& o) : p_(o.p_), b_(o.b_) {}

  template <class U = T>
    requires(!std::is_void_v<U>)
  U& operator*() const {
    return *tk_emu::checked(p_, b_);
  }
  template <class U = T>
    requires(!std::is_void_v<U>)
  U* operator->() const {
    return tk_emu::checked(p_, b_);
  }
  template <class U = T>
    requires(!std::is_void_v<U>)
  U& operator[](ptrdiff_t i) const {
    return *tk_emu::checked(p_ + i, b_);
  }

  template <class U = T>
    requires(!std::is_void_v<U>)
  ptr operator+(ptrdiff_t i) const {
    return ptr(p_ + i, b_);
  }
  template <class U = T>
    requires(!std::is_void_v<U>)
  ptr operator-(ptrdiff_t i) const {
    return ptr(p_ - i, b_);
  }
  template <class U = T>
    requires(!std::is_void_v<U>)
  ptrdiff_t operator-(const ptr& o) const {
    return p_ - o.p_;
  }
  template <class U = T>
    requires(!std::is_void_v<U>)
  ptr& operator+=(ptrdiff_t i) {
    p_ += i;
    return *this;
  }
  template <class U = T>
    requires(!std::is_void_v<U>)
  ptr& operator-=(ptrdiff_t i) {
    p_ -= i;
    return *this;
  }
  template <class U = T>
    requires(!std::is_void_v<U>)
  ptr& operator++() {
    ++p_;
    return *this;
  }
  template <class U = T>
    requires(!std::is_void_v<U>)
  ptr& operator--() {
    --p_;
    return *this;
  }
  template <class U = T>
    requires(!std::is_void_v<U>)
  ptr operator++(int) {
    ptr r = *this;
    ++p_;
    return r;
  }
  template <class U = T>
    requires(!std::is_void_v<U>)
  ptr operator--(int) {
    ptr r = *this;
    --p_;
    return r;
  }

  explicit operator bool() const { return p_ != nullptr; }
  friend bool operator==(const ptr& a, const ptr& b) { return a.p_ == b.p_; }
  friend auto operator<=>(const ptr& a, const ptr& b) { return a.p_ <=> b.p_; }
};

template <class T>
ptr<T> operator+(ptrdiff_t i, const ptr<T>& p) {
  return p + i;
}

// Reinterpret a pointer as another element type; the address must be aligned for U.
template <class U, class T>
inline ptr<U> ptr_cast(ptr<T> p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p.p_);
  if (p.b_ != nullptr && (a & (tk_emu::align_of<U>() - 1)) != 0)
    tk_emu::fault_access(p.b_, p.p_, tk_emu::size_of<U>(), tk_emu::align_of<U>(), tk_emu::type_name<U>(), false,
                         "tk::ptr_cast");
  return ptr<U>(reinterpret_cast<U*>(const_cast<std::remove_cv_t<T>*>(p.p_)), p.b_);
}

}  // namespace tk
