// tk_emu_shim.h -- exports a program's entry points to the emulator's runtime.
//
// tunekit.cuda.emu_build generates one translation unit per program: it #includes the kernel's
// own source file (byte-identical with the GPU build), then this header, then per KernelEntry
// static_asserts that the kernel's C++ parameter types match the entry's kinds and a
// TK_EMU_ENTRY(name) line. The parameter types are deduced from the kernel's function pointer.
#pragma once

#include <utility>

namespace tk_emu {

template <class P>
struct ParamTraits {
  static constexpr char kind = '?';
  static constexpr bool is_const = false;
  static constexpr size_t elem_size = 0;
  static constexpr const char* type = "?";
};
template <class T>
struct ParamTraits<tk::ptr<T>> {
  static constexpr char kind = 'p';
  static constexpr bool is_const = std::is_const_v<T>;
  static constexpr size_t elem_size = size_of<T>();
  static constexpr const char* type = type_name<T>();
};
template <class T, char K>
struct ScalarTraits {
  static constexpr char kind = K;
  static constexpr bool is_const = true;
  static constexpr size_t elem_size = sizeof(T);
  static constexpr const char* type = type_name<T>();
};
template <>
struct ParamTraits<int> : ScalarTraits<int, 'i'> {};
template <>
struct ParamTraits<unsigned> : ScalarTraits<unsigned, 'u'> {};
template <>
struct ParamTraits<long> : ScalarTraits<long, 'l'> {};
template <>
struct ParamTraits<long long> : ScalarTraits<long long, 'l'> {};
template <>
struct ParamTraits<float> : ScalarTraits<float, 'f'> {};

template <class... P>
constexpr unsigned param_count(void (*)(P...)) {
  return sizeof...(P);
}
template <unsigned I, class... P>
constexpr char param_kind(void (*)(P...)) {
  constexpr char kinds[] = {ParamTraits<P>::kind..., '-'};
  return kinds[I < sizeof...(P) ? I : sizeof...(P)];
}

template <class P>
inline P make_arg(const Arg& a) {
  if constexpr (ParamTraits<P>::kind == 'p') {
    using T = std::remove_pointer_t<decltype(P{}.p_)>;
    return P(reinterpret_cast<T*>(a.buf->base), a.buf);
  } else if constexpr (std::is_same_v<P, float>) {
    return bits_f32(static_cast<uint32_t>(a.bits));
  } else {
    return static_cast<P>(a.bits);
  }
}

template <class... P, size_t... I>
inline void call(void (*fn)(P...), const Arg* args, std::index_sequence<I...>) {
  fn(make_arg<P>(args[I])...);
}

template <class... P>
inline const ParamDesc* param_descs(void (*)(P...)) {
  static const ParamDesc d[sizeof...(P) + 1] = {
      ParamDesc{ParamTraits<P>::kind, ParamTraits<P>::is_const, ParamTraits<P>::elem_size, ParamTraits<P>::type}...,
      ParamDesc{'-', false, 0, ""}};
  return d;
}

}  // namespace tk_emu

#define TK_EMU_ENTRY(fn)                                                                                  \
  static const ::tk_emu::EntryDesc tk_emu_entry_desc_##fn = {                                             \
      #fn, ::tk_emu::param_count(&fn), ::tk_emu::param_descs(&fn), [](const ::tk_emu::Arg* args) {        \
        ::tk_emu::call(&fn, args, std::make_index_sequence<::tk_emu::param_count(&fn)>{});               \
      }};                                                                                                 \
  static const int tk_emu_entry_reg_##fn = ::tk_emu::register_entry(&tk_emu_entry_desc_##fn);
