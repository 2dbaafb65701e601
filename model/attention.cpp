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

// Rows are taken in blocks of kRows: rows [r0, r1) attend to keys [0, r1) only, so the
// products skip the masked upper triangle (about 45% of the work at T = 1024).
constexpr int kRows = 128;

// Softmax of row t of scores over its causal prefix [0, t], in place; zero beyond.
template <class T> void causal_softmax_row(T* row, int t, int Tn) {
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
            T* o = out + size_t(b) * Tn * C + size_t(h) * hs;
            for (int r0 = 0; r0 < Tn; r0 += kRows) {
                const int r1 = std::min(Tn, r0 + kRows), rows = r1 - r0;
                T* a_rows = a + size_t(r0) * Tn;
                // a[r0:r1, :r1] = scale * q[r0:r1] @ k[:r1]^T, then the causal softmax
                gemm(false, true, rows, r1, hs, scale, q + size_t(r0) * 3 * C, 3 * C, k, 3 * C,
                     T(0), a_rows, Tn);
                for (int t = r0; t < r1; ++t) causal_softmax_row(a + size_t(t) * Tn, t, Tn);
                // out[r0:r1] = a[r0:r1, :r1] @ v[:r1]
                gemm(false, false, rows, hs, r1, T(1), a_rows, Tn, v, 3 * C, T(0),
                     o + size_t(r0) * C, C);
            }
        }
}

// With P = att, dP = dout_h @ v^T and dS = P * (dP - rowsum(P * dP)) (softmax backward):
//   dv += P^T @ dout_h,  dq += scale * dS @ k,  dk += scale * dS^T @ q,
// each row block [r0, r1) touching keys [0, r1) only.
template <class T>
void attention_backward(T* dqkv, T* scratch, int n_slots, const T* dout, const T* qkv, const T* att,
                        int B, int Tn, int C, int NH) {
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
                for (int r0 = 0; r0 < Tn; r0 += kRows) {
                    const int r1 = std::min(Tn, r0 + kRows), rows = r1 - r0;
                    const T* p_rows = p + size_t(r0) * Tn;
                    const T* dout_rows = dout_h + size_t(r0) * C;
                    T* ds_rows = ds + size_t(r0) * Tn;
                    gemm(false, true, rows, r1, hs, T(1), dout_rows, C, v, 3 * C, T(0), ds_rows,
                         Tn);
                    gemm(true, false, r1, hs, rows, T(1), p_rows, Tn, dout_rows, C, T(1), dv,
                         3 * C);
                    for (int t = r0; t < r1; ++t) {
                        const T* prow = p + size_t(t) * Tn;
                        T* row = ds + size_t(t) * Tn;
                        T dot = 0;
                        for (int j = 0; j <= t; ++j) dot += prow[j] * row[j];
                        for (int j = 0; j <= t; ++j) row[j] = prow[j] * (row[j] - dot);
                        std::fill(row + t + 1, row + r1, T(0));
                    }
                    gemm(false, false, rows, hs, r1, scale, ds_rows, Tn, k, 3 * C, T(1),
                         dq + size_t(r0) * 3 * C, 3 * C);
                    gemm(true, false, r1, hs, rows, scale, ds_rows, Tn, q + size_t(r0) * 3 * C,
                         3 * C, T(1), dk, 3 * C);
                }
            }
    }
}

// out (C);  q (C), kv (n, 2C), scores (n)
template <class T>
void attention_step(T* out, T* scores, const T* q, const T* kv, int n, int C, int NH) {
    const int hs = C / NH;
    const T scale = T(1) / std::sqrt(T(hs));
    for (int h = 0; h < NH; ++h) {
        const T* qh = q + size_t(h) * hs;
        for (int j = 0; j < n; ++j) {
            const T* kj = kv + size_t(j) * 2 * C + size_t(h) * hs;
            T dot = 0;
            for (int i = 0; i < hs; ++i) dot += qh[i] * kj[i];
            scores[j] = dot * scale;
        }
        causal_softmax_row(scores, n - 1, n);
        T* oh = out + size_t(h) * hs;
        std::fill(oh, oh + hs, T(0));
        for (int j = 0; j < n; ++j) {
            const T* vj = kv + size_t(j) * 2 * C + C + size_t(h) * hs;
            for (int i = 0; i < hs; ++i) oh[i] += scores[j] * vj[i];
        }
    }
}

#define INSTANTIATE(T)                                                                             \
    template void attention_forward<T>(T*, T*, const T*, int, int, int, int);                      \
    template void attention_step<T>(T*, T*, const T*, const T*, int, int, int);                    \
    template void attention_backward<T>(T*, T*, int, const T*, const T*, const T*, int, int, int,  \
                                        int);
INSTANTIATE(float)
INSTANTIATE(double)

} // namespace model
