// Causal multi-head self-attention. Shapes in layers.h.
//
// Each (batch, head) pair is independent: threads take whole pairs and call
// single-threaded GEMMs on strided views of qkv (row stride 3C) and out (row stride C).
#include "model/layers.h"

#include <algorithm>
#include <cmath>

#include <omp.h>

#include "model/blas.h"
#include "model/fastmath.h"

namespace model {

// out (B,T,C), att (B,NH,T,T);  qkv (B,T,3C)
template <class T>
void attention_forward(T* out, T* att, const T* qkv, int B, int Tn, int C, int NH) {
    const int hs = C / NH;
    const T scale = T(1) / std::sqrt(T(hs));
#pragma omp parallel for collapse(2)
    for (int b = 0; b < B; ++b)
        for (int h = 0; h < NH; ++h) {
            const T* q = qkv + size_t(b) * Tn * 3 * C + size_t(h) * hs;
            const T* k = q + C;
            const T* v = q + 2 * C;
            T* a = att + (size_t(b) * NH + h) * Tn * Tn;
            // a (T,T) = scale * q (T,hs) @ k^T; only the causal part is used.
            gemm(false, true, Tn, Tn, hs, scale, q, 3 * C, k, 3 * C, T(0), a, Tn);
            for (int t = 0; t < Tn; ++t) {
                T* row = a + size_t(t) * Tn;
                const T mx = *std::max_element(row, row + t + 1);
                T sum = 0;
#pragma omp simd reduction(+ : sum)
                for (int j = 0; j <= t; ++j) {
                    row[j] = exp_fast(row[j] - mx);
                    sum += row[j];
                }
                const T inv = T(1) / sum;
                for (int j = 0; j <= t; ++j) row[j] *= inv;
                std::fill(row + t + 1, row + Tn, T(0));
            }
            // out_h (T,hs) = a (T,T) @ v (T,hs)
            gemm(false, false, Tn, hs, Tn, T(1), a, Tn, v, 3 * C, T(0),
                 out + size_t(b) * Tn * C + size_t(h) * hs, C);
        }
}

// With P = att, dP = dout_h @ v^T and dS = P * (dP - rowsum(P * dP)) (softmax backward):
//   dv += P^T @ dout_h,  dq += scale * dS @ k,  dk += scale * dS^T @ q.
template <class T>
void attention_backward(T* dqkv, T* scratch, int n_slots, const T* dout, const T* qkv,
                        const T* att, int B, int Tn, int C, int NH) {
    const int hs = C / NH;
    const T scale = T(1) / std::sqrt(T(hs));
#pragma omp parallel num_threads(std::max(1, n_slots))
    {
        T* ds = scratch + size_t(omp_get_thread_num()) * Tn * Tn;
#pragma omp for collapse(2)
        for (int b = 0; b < B; ++b)
            for (int h = 0; h < NH; ++h) {
                const size_t head = size_t(b) * Tn * 3 * C + size_t(h) * hs;
                const T* q = qkv + head;
                const T* k = q + C;
                const T* v = q + 2 * C;
                T* dq = dqkv + head;
                T* dk = dq + C;
                T* dv = dq + 2 * C;
                const T* p = att + (size_t(b) * NH + h) * Tn * Tn;
                const T* dout_h = dout + size_t(b) * Tn * C + size_t(h) * hs;

                gemm(false, true, Tn, Tn, hs, T(1), dout_h, C, v, 3 * C, T(0), ds, Tn);
                gemm(true, false, Tn, hs, Tn, T(1), p, Tn, dout_h, C, T(1), dv, 3 * C);
                for (int t = 0; t < Tn; ++t) {
                    const T* prow = p + size_t(t) * Tn;
                    T* row = ds + size_t(t) * Tn;
                    T dot = 0;
                    for (int j = 0; j <= t; ++j) dot += prow[j] * row[j];
                    for (int j = 0; j <= t; ++j) row[j] = prow[j] * (row[j] - dot);
                    std::fill(row + t + 1, row + Tn, T(0));
                }
                gemm(false, false, Tn, hs, Tn, scale, ds, Tn, k, 3 * C, T(1), dq, 3 * C);
                gemm(true, false, Tn, hs, Tn, scale, ds, Tn, q, 3 * C, T(1), dk, 3 * C);
            }
    }
}

#define INSTANTIATE(T)                                                                            \
    template void attention_forward<T>(T*, T*, const T*, int, int, int, int);                    \
    template void attention_backward<T>(T*, T*, int, const T*, const T*, const T*, int, int, int, \
                                        int);
INSTANTIATE(float)
INSTANTIATE(double)

} // namespace model
