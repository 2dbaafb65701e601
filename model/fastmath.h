// exp and tanh written as plain float arithmetic, so that loops over them vectorise
// (std::exp and std::tanh are scalar libm calls: tanh costs ~10 ns an element here,
// this ~0.3 ns). The double overloads are the library's, for gradient checks.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>

namespace model {

// e^x to about 1 ulp (Cephes' polynomial on [-ln2/2, ln2/2]) for x in [-87, 88]. Below
// the smallest normal float it flushes to 0 (x < -87.33), and x in [-87.33, -87) gives
// e^-87 (at most ~40% off values under 1.7e-38, nothing in a softmax); x > 88 gives
// ~1.7e38 instead of inf. NaN gives NaN.
inline float exp_fast(float x) {
    const bool underflow = x < -87.33f;
    x = std::clamp(x, -87.0f, 88.0f);
    // x = k ln2 + r, k rounded to nearest by adding 1.5 * 2^23: the integer k is then the
    // low bits of j, read without a float-to-int conversion (which NaN would make UB).
    const float j = x * 1.44269504088896341f + 12582912.0f;
    const float k = j - 12582912.0f;
    const float r = (x - k * 0.693359375f) + k * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    const int32_t ki = std::bit_cast<int32_t>(j) - 0x4B400000;
    const float e = p * std::bit_cast<float>(uint32_t(ki + 127) << 23); // times 2^k
    return underflow ? 0.0f : e;
}

// tanh(x) = 1 - 2 / (e^{2|x|} + 1) with the sign of x; absolute error < 1.2e-7.
inline float tanh_fast(float x) {
    const float e = exp_fast(2.0f * std::min(std::fabs(x), 9.0f)); // tanh(9) rounds to 1
    return std::copysign(1.0f - 2.0f / (e + 1.0f), x);
}

inline double exp_fast(double x) {
    return std::exp(x);
}
inline double tanh_fast(double x) {
    return std::tanh(x);
}

} // namespace model
