// LayerNorm, eps 1e-5. Shapes in layers.h.
#include "model/layers.h"

#include <algorithm>
#include <cmath>

namespace model {

namespace {

// One row's output from its statistics; the one expression of it, so that
// layernorm_recompute gives what layernorm_forward wrote, bit for bit.
template <class T, class Out>
inline void normalize_row(Out* out, const T* x, const T* weight, const T* bias, T m, T s, int C) {
    for (int c = 0; c < C; ++c) out[c] = store_as<Out>((x[c] - m) * s * weight[c] + bias[c]);
}

} // namespace

// out (N,C), mean (N), rstd (N);  inp (N,C), weight (C), bias (C)
template <class T, class Out>
void layernorm_forward(Out* out, T* mean, T* rstd, const T* inp, const T* weight, const T* bias,
                       int N, int C) {
    const T eps = T(1e-5);
#pragma omp parallel for
    for (int n = 0; n < N; ++n) {
        const T* x = inp + size_t(n) * C;
        T m = 0;
        for (int c = 0; c < C; ++c) m += x[c];
        m /= C;
        T v = 0;
        for (int c = 0; c < C; ++c) v += (x[c] - m) * (x[c] - m);
        v /= C;
        const T s = T(1) / std::sqrt(v + eps);
        normalize_row(out + size_t(n) * C, x, weight, bias, m, s, C);
        mean[n] = m;
        rstd[n] = s;
    }
}

// out (N,C) from inp (N,C) and the kept mean (N), rstd (N)
template <class T, class Out>
void layernorm_recompute(Out* out, const T* inp, const T* weight, const T* bias, const T* mean,
                         const T* rstd, int N, int C) {
#pragma omp parallel for
    for (int n = 0; n < N; ++n)
        normalize_row(out + size_t(n) * C, inp + size_t(n) * C, weight, bias, mean[n], rstd[n], C);
}

// With xhat = (x - mean) * rstd and g = dout * weight:
//   dinp = rstd * (g - mean(g) - xhat * mean(g * xhat)),
//   dweight = sum_n dout * xhat,  dbias = sum_n dout.
template <class T>
void layernorm_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight,
                        const T* mean, const T* rstd, int N, int C) {
#pragma omp parallel for
    for (int n = 0; n < N; ++n) {
        const T* d = dout + size_t(n) * C;
        const T* x = inp + size_t(n) * C;
        const T m = mean[n], s = rstd[n];
        T g_mean = 0, gx_mean = 0;
        for (int c = 0; c < C; ++c) {
            const T g = d[c] * weight[c];
            g_mean += g;
            gx_mean += g * (x[c] - m) * s;
        }
        g_mean /= C;
        gx_mean /= C;
        T* di = dinp + size_t(n) * C;
        for (int c = 0; c < C; ++c)
            di[c] += s * (d[c] * weight[c] - g_mean - (x[c] - m) * s * gx_mean);
    }
    // Parameter gradients sum over rows; threads own channel blocks so the order of the
    // sum does not depend on the thread count.
    constexpr int kBlock = 64;
    const int n_blocks = (C + kBlock - 1) / kBlock;
#pragma omp parallel for
    for (int blk = 0; blk < n_blocks; ++blk) {
        const int c0 = blk * kBlock, c1 = std::min(C, c0 + kBlock);
        T dw[kBlock] = {}, db[kBlock] = {};
        for (int n = 0; n < N; ++n) {
            const T* d = dout + size_t(n) * C;
            const T* x = inp + size_t(n) * C;
            const T m = mean[n], s = rstd[n];
            for (int c = c0; c < c1; ++c) {
                dw[c - c0] += d[c] * (x[c] - m) * s;
                db[c - c0] += d[c];
            }
        }
        for (int c = c0; c < c1; ++c) {
            dweight[c] += dw[c - c0];
            dbias[c] += db[c - c0];
        }
    }
}

#define INSTANTIATE_OUT(T, Out)                                                                    \
    template void layernorm_forward<T, Out>(Out*, T*, T*, const T*, const T*, const T*, int, int); \
    template void layernorm_recompute<T, Out>(Out*, const T*, const T*, const T*, const T*,        \
                                              const T*, int, int);
INSTANTIATE_OUT(float, float)
INSTANTIATE_OUT(double, double)
INSTANTIATE_OUT(float, bf16)
template void layernorm_backward<float>(float*, float*, float*, const float*, const float*,
                                        const float*, const float*, const float*, int, int);
template void layernorm_backward<double>(double*, double*, double*, const double*, const double*,
                                         const double*, const double*, const double*, int, int);

} // namespace model
