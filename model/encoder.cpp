// Token + position embedding. Shapes in layers.h.
#include "model/layers.h"

#include <algorithm>

namespace model {

// out (B,T,C) = wte[tokens] + wpe[t];  tokens (B,T), wte (Vp,C), wpe (maxT,C)
template <class T>
void encoder_forward(T* out, const int* tokens, const T* wte, const T* wpe, int B, int Tn, int C) {
#pragma omp parallel for collapse(2)
    for (int b = 0; b < B; ++b)
        for (int t = 0; t < Tn; ++t) {
            T* o = out + (size_t(b) * Tn + t) * C;
            const T* te = wte + size_t(tokens[b * Tn + t]) * C;
            const T* pe = wpe + size_t(t) * C;
            for (int c = 0; c < C; ++c) o[c] = te[c] + pe[c];
        }
}

// dwte (Vp,C), dwpe (maxT,C) += from dout (B,T,C)
// Repeated tokens add into the same wte row, so threads split the channels instead of
// the positions; the summation order is then fixed, whatever the thread count.
template <class T>
void encoder_backward(T* dwte, T* dwpe, const T* dout, const int* tokens, int B, int Tn, int C) {
    constexpr int kBlock = 64;
    const int n_blocks = (C + kBlock - 1) / kBlock;
#pragma omp parallel for
    for (int blk = 0; blk < n_blocks; ++blk) {
        const int c0 = blk * kBlock, c1 = std::min(C, c0 + kBlock);
        for (int b = 0; b < B; ++b)
            for (int t = 0; t < Tn; ++t) {
                const T* d = dout + (size_t(b) * Tn + t) * C;
                T* dte = dwte + size_t(tokens[b * Tn + t]) * C;
                T* dpe = dwpe + size_t(t) * C;
                for (int c = c0; c < c1; ++c) {
                    dte[c] += d[c];
                    dpe[c] += d[c];
                }
            }
    }
}

#define INSTANTIATE(T)                                                                             \
    template void encoder_forward<T>(T*, const int*, const T*, const T*, int, int, int);           \
    template void encoder_backward<T>(T*, T*, const T*, const int*, int, int, int);
INSTANTIATE(float)
INSTANTIATE(double)

} // namespace model
