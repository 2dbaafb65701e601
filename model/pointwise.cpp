// Element-wise layers: GELU and the residual add. Shapes in layers.h.
#include "model/layers.h"

#include <cmath>
#include <numbers>

#include "model/fastmath.h"

namespace model {

namespace {

// GELU's tanh form through the logistic function: with u = sqrt(2/pi) (x + 0.044715 x^3),
// 0.5 (1 + tanh u) = sigma(2u) = 1 / (1 + e^-2u), one exponential and one division (tanh
// would add a sign, an absolute value and a clamp); e^-2u saturates harmlessly both ways.
template <class T> inline T gelu_sigma(T x) {
    const T s2 = 2 * std::sqrt(T(2) / std::numbers::pi_v<T>);
    return T(1) / (T(1) + exp_fast(-s2 * (x + T(0.044715) * x * x * x)));
}

// out (n) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) = x sigma(2u), in T arithmetic
// on an input of T or bf16.
template <class T, class Out, class In> void gelu_forward_in(Out* out, const In* inp, size_t n) {
#pragma omp parallel for simd
    for (size_t i = 0; i < n; ++i) {
        const T x = value_of(inp[i]);
        out[i] = store_as<Out>(x * gelu_sigma(x));
    }
}

// gelu'(x) = 0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) s (1 + 3 * 0.044715 x^2)
//          = sigma + 2 x sigma (1 - sigma) s (1 + 3 * 0.044715 x^2), sigma = sigma(2u)
template <class T> inline T gelu_grad(T x) {
    const T s = std::sqrt(T(2) / std::numbers::pi_v<T>);
    const T sg = gelu_sigma(x);
    return sg + T(2) * x * sg * (T(1) - sg) * s * (T(1) + T(3 * 0.044715) * x * x);
}

template <class T, class In>
void gelu_backward_in(T* dinp, const In* inp, const T* dout, size_t n) {
#pragma omp parallel for simd
    for (size_t i = 0; i < n; ++i) dinp[i] += gelu_grad(T(value_of(inp[i]))) * dout[i];
}

template <class T, class In> void gelu_backward_in_place_in(T* d, const In* inp, size_t n) {
#pragma omp parallel for simd
    for (size_t i = 0; i < n; ++i) d[i] = gelu_grad(T(value_of(inp[i]))) * d[i];
}

} // namespace

template <class T, class Out> void gelu_forward(Out* out, const T* inp, size_t n) {
    gelu_forward_in<T>(out, inp, n);
}

template <class T> void gelu_backward(T* dinp, const T* inp, const T* dout, size_t n) {
    gelu_backward_in(dinp, inp, dout, n);
}

void gelu_forward(bf16* out, const bf16* inp, size_t n) {
    gelu_forward_in<float>(out, inp, n);
}

void gelu_backward(float* dinp, const bf16* inp, const float* dout, size_t n) {
    gelu_backward_in(dinp, inp, dout, n);
}

template <class T> void gelu_backward_in_place(T* d, const T* inp, size_t n) {
    gelu_backward_in_place_in(d, inp, n);
}

void gelu_backward_in_place(float* d, const bf16* inp, size_t n) {
    gelu_backward_in_place_in(d, inp, n);
}

// out (n) = a + b
template <class T> void residual_forward(T* out, const T* a, const T* b, size_t n) {
#pragma omp parallel for simd
    for (size_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

// da, db (n) += dout
template <class T> void residual_backward(T* da, T* db, const T* dout, size_t n) {
#pragma omp parallel for simd
    for (size_t i = 0; i < n; ++i) {
        da[i] += dout[i];
        db[i] += dout[i];
    }
}

#define INSTANTIATE(T)                                                                             \
    template void gelu_forward<T, T>(T*, const T*, size_t);                                        \
    template void gelu_backward<T>(T*, const T*, const T*, size_t);                                \
    template void gelu_backward_in_place<T>(T*, const T*, size_t);                                 \
    template void residual_forward<T>(T*, const T*, const T*, size_t);                             \
    template void residual_backward<T>(T*, T*, const T*, size_t);
INSTANTIATE(float)
INSTANTIATE(double)
template void gelu_forward<float, bf16>(bf16*, const float*, size_t);

void to_bf16(bf16* out, const float* x, size_t n) {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; ++i) out[i] = to_bf16(x[i]);
}

} // namespace model
