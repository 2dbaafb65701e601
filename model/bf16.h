// bfloat16 storage: a float's top 16 bits (8 exponent bits, 7 mantissa bits), for the
// matrix products' inputs in bf16 precision. Arithmetic stays in float.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace model {

struct bf16 {
    uint16_t bits;
};

// Rounds to nearest even, as the hardware's conversions do; NaN stays a (quiet) NaN.
inline bf16 to_bf16(float x) {
    const uint32_t u = std::bit_cast<uint32_t>(x);
    if ((u & 0x7fffffffu) > 0x7f800000u) return {uint16_t((u >> 16) | 0x40u)};
    return {uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16)};
}

inline float to_float(bf16 x) {
    return std::bit_cast<float>(uint32_t(x.bits) << 16);
}
// An element of a buffer of T or of bf16 as a number: bf16 widened to float, any other
// type unchanged; for code that reads either.
template <class T> inline T value_of(T x) {
    return x;
}
inline float value_of(bf16 x) {
    return to_float(x);
}

// v as an element of an Out buffer: rounded for bf16, unchanged for float or double.
template <class Out, class T> inline Out store_as(T v) {
    if constexpr (std::is_same_v<Out, bf16>)
        return to_bf16(v);
    else
        return v;
}

// out (n) = to_bf16(x) (n), on all threads.
void to_bf16(bf16* out, const float* x, size_t n);

} // namespace model
