// Causal multi-head self-attention, blocked as in FlashAttention-2. Shapes in layers.h.
//
// Queries and keys go in blocks of kBlock positions. A query block meets only the key
// blocks at or before it (later ones are entirely masked), and its softmax is computed
// online: a running max and sum per query, the output rescaled when the max grows. So
// no (T,T) matrix is stored; the forward keeps each query's log-sum-exp, from which the
// backward recomputes the probabilities block by block. The block products are
// register tiles on GCC vector extensions (AVX-512 registers with -march=native).
// attention_bf16.cpp is the same with bfloat16 products; attention_blocks.h what both
// share.
#include "model/layers.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include <omp.h>

#include "model/attention_blocks.h"
#include "model/fastmath.h"

// Without AVX-512, GCC notes that passing 64-byte vectors changes the ABI: irrelevant for
// functions that never leave this file.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace model {

namespace {

using namespace attention_blocks;

// One 64-byte SIMD register of T (one AVX-512 register, or several narrower ones), with
// loads and stores at any address aligned for T.
template <class T> struct Simd {
    static constexpr int W = kLanes<T>;
    typedef T V __attribute__((vector_size(64)));
    typedef T Unaligned __attribute__((vector_size(64), aligned(sizeof(T))));
};
template <class T> using Vec = typename Simd<T>::V;
template <class T> Vec<T> load(const T* p) {
    return *reinterpret_cast<const typename Simd<T>::Unaligned*>(p);
}
template <class T> void store(T* p, Vec<T> v) {
    *reinterpret_cast<typename Simd<T>::Unaligned*>(p) = v;
}

// Keeps v in a register: without this GCC folds the loads of a tile's shared operands
// into every multiply-add that uses them, so each is loaded once per row. (A register
// holds a Vec only with AVX-512.)
template <class T> void in_register([[maybe_unused]] Vec<T>& v) {
#ifdef __AVX512F__
    asm("" : "+v"(v));
#endif
}

// Rows per register tile: six rows by four registers use 24 of AVX-512's 32 registers.
constexpr int kTileRows = 6;

// S (R,kBlock) = A (R,hsp) @ Bt (hsp,kBlock): R rows of A (row stride lda) against a
// packed block of columns, summed over d in order in registers.
template <class T, int R> void dot_tile(T* S, const T* A, int lda, const T* Bt, int hsp) {
    constexpr int W = Simd<T>::W, Bk = kBlock<T>;
    Vec<T> acc[R][4];
    for (auto& row : acc)
        for (auto& x : row) x = Vec<T>{};
    for (int d = 0; d < hsp; ++d) {
        Vec<T> b[4];
        for (int n = 0; n < 4; ++n) {
            b[n] = load(Bt + size_t(d) * Bk + n * W);
            in_register<T>(b[n]);
        }
        for (int r = 0; r < R; ++r) {
            const T a = A[size_t(r) * lda + d];
            for (int n = 0; n < 4; ++n) acc[r][n] += a * b[n];
        }
    }
    for (int r = 0; r < R; ++r)
        for (int n = 0; n < 4; ++n) store(S + size_t(r) * Bk + n * W, acc[r][n]);
}

// S (rows,kBlock) = A (rows,hsp) @ Bt (hsp,kBlock), in tiles of kTileRows, 4 and 1 rows.
template <class T> void dot_rows(T* S, const T* A, int lda, int rows, const T* Bt, int hsp) {
    constexpr int Bk = kBlock<T>;
    int r = 0;
    for (; r + kTileRows <= rows; r += kTileRows)
        dot_tile<T, kTileRows>(S + size_t(r) * Bk, A + size_t(r) * lda, lda, Bt, hsp);
    for (; r + 4 <= rows; r += 4)
        dot_tile<T, 4>(S + size_t(r) * Bk, A + size_t(r) * lda, lda, Bt, hsp);
    for (; r < rows; ++r) dot_tile<T, 1>(S + size_t(r) * Bk, A + size_t(r) * lda, lda, Bt, hsp);
}

// O (R, NV registers) += sum over k < n of P(r,k) Y[k], where P(r,k) = P[r*pr + k*pk]
// (so P may be read transposed) and Y's rows have stride ldy.
template <class T, int R, int NV>
void mix_tile(T* O, int ldo, const T* P, int pr, int pk, int n, const T* Y, int ldy) {
    constexpr int W = Simd<T>::W;
    Vec<T> acc[R][NV];
    for (int r = 0; r < R; ++r)
        for (int v = 0; v < NV; ++v) acc[r][v] = load(O + size_t(r) * ldo + v * W);
    for (int k = 0; k < n; ++k) {
        Vec<T> y[NV];
        for (int v = 0; v < NV; ++v) {
            y[v] = load(Y + size_t(k) * ldy + v * W);
            in_register<T>(y[v]);
        }
        for (int r = 0; r < R; ++r) {
            const T p = P[size_t(r) * pr + size_t(k) * pk];
            for (int v = 0; v < NV; ++v) acc[r][v] += p * y[v];
        }
    }
    for (int r = 0; r < R; ++r)
        for (int v = 0; v < NV; ++v) store(O + size_t(r) * ldo + v * W, acc[r][v]);
}

// mix_tile on rows [r, r + R) over the k the mask leaves, with nv = NV in 1..4.
template <class T, int R>
void mix_chunk(int nv, T* O, int ldo, const T* P, int pr, int pk, int n, const T* Y, int ldy, int r,
               Mask mask, int off) {
    const auto [k0, k1] = unmasked(mask, r, R, n, off);
    if (k0 == k1) return;
    O += size_t(r) * ldo;
    P += size_t(r) * pr + size_t(k0) * pk;
    Y += size_t(k0) * ldy;
    n = k1 - k0;
    switch (nv) {
    case 1:
        return mix_tile<T, R, 1>(O, ldo, P, pr, pk, n, Y, ldy);
    case 2:
        return mix_tile<T, R, 2>(O, ldo, P, pr, pk, n, Y, ldy);
    case 3:
        return mix_tile<T, R, 3>(O, ldo, P, pr, pk, n, Y, ldy);
    default:
        return mix_tile<T, R, 4>(O, ldo, P, pr, pk, n, Y, ldy);
    }
}

// O (rows,hsp) += P (rows,n) @ Y (n,hsp), P(r,k) = P[r*pr + k*pk] and zero where the
// mask says; in tiles of kTileRows, 4 and 1 rows by up to four registers.
template <class T>
void mix_rows(T* O, int ldo, const T* P, int pr, int pk, int rows, int n, const T* Y, int ldy,
              int hsp, Mask mask, int off) {
    constexpr int W = Simd<T>::W;
    for (int c0 = 0; c0 < hsp; c0 += 4 * W) {
        const int nv = std::min(4, (hsp - c0) / W);
        int r = 0;
        for (; r + kTileRows <= rows; r += kTileRows)
            mix_chunk<T, kTileRows>(nv, O + c0, ldo, P, pr, pk, n, Y + c0, ldy, r, mask, off);
        for (; r + 4 <= rows; r += 4)
            mix_chunk<T, 4>(nv, O + c0, ldo, P, pr, pk, n, Y + c0, ldy, r, mask, off);
        for (; r < rows; ++r)
            mix_chunk<T, 1>(nv, O + c0, ldo, P, pr, pk, n, Y + c0, ldy, r, mask, off);
    }
}

// Bt (hsp,kBlock) = the first n rows of X (row stride ld, hs columns), transposed; zero
// beyond n columns and hs rows.
template <class T> void pack_transposed(T* Bt, const T* X, int ld, int n, int hs, int hsp) {
    constexpr int Bk = kBlock<T>;
    for (int j = 0; j < n; ++j)
        for (int d = 0; d < hs; ++d) Bt[size_t(d) * Bk + j] = X[size_t(j) * ld + d];
    for (int d = 0; d < hsp; ++d)
        std::fill(Bt + size_t(d) * Bk + (d < hs ? n : 0), Bt + size_t(d + 1) * Bk, T(0));
}

// Y (n,hsp) = n rows of X (row stride ld, hs columns), zero-padded: a contiguous copy,
// since rows of qkv lie 3C apart and a block of them crowds a few cache sets.
template <class T> void pack_rows(T* Y, const T* X, int ld, int n, int hs, int hsp) {
    constexpr int W = Simd<T>::W;
    for (int j = 0; j < n; ++j) {
        const T* x = X + size_t(j) * ld;
        T* y = Y + size_t(j) * hsp;
        int d = 0;
        for (; d + W <= hs; d += W) store(y + d, load(x + d));
        for (; d < hs; ++d) y[d] = x[d];
        for (; d < hsp; ++d) y[d] = T(0);
    }
}

} // namespace

// Room for the largest layout: the backward's, in float also the bf16 kernels'.
template <class T> size_t attention_scratch_size(int Tn, int hs) {
    if constexpr (std::is_same_v<T, float>)
        return std::max(fp_scratch<float>(Tn, hs), bf16_scratch(Tn, hs));
    return fp_scratch<T>(Tn, hs);
}

// out (B,T,C), lse (B,NH,T);  qkv (B,T,3C). Threads take (batch, head, query block)
// triples, largest first; each writes only its own rows of out and lse.
template <class T>
void attention_forward(T* out, T* lse, T* scratch, int n_slots, const T* qkv, int B, int Tn, int C,
                       int NH) {
    constexpr int Bk = kBlock<T>;
    const int hs = C / NH, hsp = padded<T>(hs), n_blocks = (Tn + Bk - 1) / Bk;
    const T scale = T(1) / std::sqrt(T(hs));
    const size_t tile = size_t(Bk) * hsp;
#pragma omp parallel num_threads(std::max(1, n_slots))
    {
        T* const qt = slot(scratch, attention_scratch_size<T>(Tn, hs));
        // qt (hsp,Bk): the query block, transposed
        T* const kb = qt + tile;   // (Bk,hsp) a key block
        T* const vb = kb + tile;   // (Bk,hsp) its values
        T* const o = vb + tile;    // (Bk,hsp) unnormalised output
        T* const st = o + tile;    // (Bk,Bk) scores, then probabilities, keys by queries
        T* const m = st + Bk * Bk; // (Bk) running max of the scaled scores
        T* const l = m + Bk;       // (Bk) running sum of exp(score - m)
        T* const alpha = l + Bk;   // (Bk)
#pragma omp for collapse(3) schedule(dynamic)
        for (int b = 0; b < B; ++b)
            for (int h = 0; h < NH; ++h)
                for (int blk = n_blocks - 1; blk >= 0; --blk) {
                    const int i0 = blk * Bk, rows = std::min(Bk, Tn - i0);
                    const T* q = qkv + size_t(b) * Tn * 3 * C + size_t(h) * hs;
                    const T* k = q + C;
                    const T* v = q + 2 * C;
                    pack_transposed(qt, q + size_t(i0) * 3 * C, 3 * C, rows, hs, hsp);
                    std::fill(o, o + tile, T(0));
                    std::fill(m, m + Bk, -std::numeric_limits<T>::infinity());
                    std::fill(l, l + Bk, T(0));
                    // Key blocks j0 <= i0: the last one is the diagonal, partly masked.
                    for (int j0 = 0; j0 <= i0; j0 += Bk) {
                        const int n = std::min(Bk, Tn - j0);
                        pack_rows(kb, k + size_t(j0) * 3 * C, 3 * C, n, hs, hsp);
                        pack_rows(vb, v + size_t(j0) * 3 * C, 3 * C, n, hs, hsp);
                        dot_rows(st, kb, hsp, n, qt, hsp); // st[j][i] = k_j0+j . q_i0+i
                        softmax_block(st, n, i0 - j0, scale, m, l, alpha);
                        for (int i = 0; i < rows; ++i) {
                            T* oi = o + size_t(i) * hsp;
                            const T a = alpha[i];
#pragma omp simd
                            for (int d = 0; d < hsp; ++d) oi[d] *= a;
                        }
                        mix_rows(o, hsp, st, 1, Bk, rows, n, vb, hsp, hsp, Mask::kAbove,
                                 i0 - j0); // o += p v
                    }
                    T* ob = out + (size_t(b) * Tn + i0) * C + size_t(h) * hs;
                    T* lb = lse + (size_t(b) * NH + h) * Tn + i0;
                    for (int i = 0; i < rows; ++i) {
                        const T inv = T(1) / l[i];
                        for (int d = 0; d < hs; ++d) ob[size_t(i) * C + d] = o[i * hsp + d] * inv;
                        lb[i] = m[i] + std::log(l[i]);
                    }
                }
    }
}

// With P = exp(scale q k^T - lse) (the forward's probabilities), D = rowsum(dout * out),
// dP = dout v^T and dS = P * (dP - D) (the softmax backward):
//   dv += P^T dout,  dq += scale dS k,  dk += scale dS^T q,
// over key blocks j0, each against the query blocks i0 >= j0 that can see it. Threads
// take whole (batch, head) pairs, so each gradient has one writer and a fixed order of
// summation whatever the number of threads.
template <class T>
void attention_backward(T* dqkv, T* scratch, int n_slots, const T* dout, const T* qkv, const T* out,
                        const T* lse, int B, int Tn, int C, int NH) {
    constexpr int Bk = kBlock<T>;
    const int hs = C / NH, hsp = padded<T>(hs);
    const T scale = T(1) / std::sqrt(T(hs));
    const size_t tile = size_t(Bk) * hsp;
#pragma omp parallel num_threads(std::max(1, n_slots))
    {
        T* const kt = slot(scratch, attention_scratch_size<T>(Tn, hs));
        // kt (hsp,Bk): the key block, transposed
        T* const vt = kt + tile;             // (hsp,Bk) its values, transposed
        T* const kb = vt + tile;             // (Bk,hsp) the key block
        T* const qb = kb + tile;             // (Bk,hsp) a query block
        T* const dob = qb + tile;            // (Bk,hsp) its output gradient
        T* const dk = dob + tile;            // (Bk,hsp) the key block's gradients, unscaled
        T* const dv = dk + tile;             // (Bk,hsp)
        T* const p = dv + tile;              // (Bk,Bk) probabilities, queries by keys
        T* const ds = p + Bk * Bk;           // (Bk,Bk) dP, then dS
        T* const dq = ds + Bk * Bk;          // (T,hsp) the head's dq, unscaled
        T* const dd = dq + size_t(Tn) * hsp; // (T) the head's D
#pragma omp for collapse(2) schedule(dynamic)
        for (int b = 0; b < B; ++b)
            for (int h = 0; h < NH; ++h) {
                const size_t head = size_t(b) * Tn * 3 * C + size_t(h) * hs;
                const size_t head_c = size_t(b) * Tn * C + size_t(h) * hs;
                const T* q = qkv + head;
                const T* k = q + C;
                const T* v = q + 2 * C;
                const T* lse_h = lse + (size_t(b) * NH + h) * Tn;
                for (int t = 0; t < Tn; ++t) {
                    const T* dot = dout + head_c + size_t(t) * C;
                    const T* ot = out + head_c + size_t(t) * C;
                    T sum = 0;
#pragma omp simd reduction(+ : sum)
                    for (int d = 0; d < hs; ++d) sum += dot[d] * ot[d];
                    dd[t] = sum;
                }
                std::fill(dq, dq + size_t(Tn) * hsp, T(0));
                for (int j0 = 0; j0 < Tn; j0 += Bk) {
                    const int n = std::min(Bk, Tn - j0);
                    pack_transposed(kt, k + size_t(j0) * 3 * C, 3 * C, n, hs, hsp);
                    pack_transposed(vt, v + size_t(j0) * 3 * C, 3 * C, n, hs, hsp);
                    pack_rows(kb, k + size_t(j0) * 3 * C, 3 * C, n, hs, hsp);
                    std::fill(dk, dk + tile, T(0));
                    std::fill(dv, dv + tile, T(0));
                    for (int i0 = j0; i0 < Tn; i0 += Bk) {
                        const int rows = std::min(Bk, Tn - i0), off = i0 - j0;
                        pack_rows(qb, q + size_t(i0) * 3 * C, 3 * C, rows, hs, hsp);
                        pack_rows(dob, dout + head_c + size_t(i0) * C, C, rows, hs, hsp);
                        dot_rows(p, qb, hsp, rows, kt, hsp); // p[i][j] = q_i0+i . k_j0+j
                        for (int i = 0; i < rows; ++i) {
                            T* pi = p + size_t(i) * Bk;
                            const T lse_i = lse_h[i0 + i];
#pragma omp simd
                            for (int j = 0; j < Bk; ++j)
                                pi[j] =
                                    j < n && j <= i + off ? exp_fast(scale * pi[j] - lse_i) : T(0);
                        }
                        mix_rows(dv, hsp, p, 1, Bk, n, rows, dob, hsp, hsp, Mask::kBelow,
                                 off);                         // P^T dout
                        dot_rows(ds, dob, hsp, rows, vt, hsp); // dP = dout v^T
                        for (int i = 0; i < rows; ++i) {
                            const T* pi = p + size_t(i) * Bk;
                            T* dsi = ds + size_t(i) * Bk;
                            const T di = dd[i0 + i];
#pragma omp simd
                            for (int j = 0; j < Bk; ++j) dsi[j] = pi[j] * (dsi[j] - di);
                        }
                        mix_rows(dq + size_t(i0) * hsp, hsp, ds, Bk, 1, rows, n, kb, hsp, hsp,
                                 Mask::kAbove, off); // dS k
                        mix_rows(dk, hsp, ds, 1, Bk, n, rows, qb, hsp, hsp, Mask::kBelow,
                                 off); // dS^T q
                    }
                    T* dk_h = dqkv + head + C + size_t(j0) * 3 * C;
                    T* dv_h = dk_h + C;
                    for (int j = 0; j < n; ++j) {
                        const T* sk = dk + size_t(j) * hsp;
                        const T* sv = dv + size_t(j) * hsp;
#pragma omp simd
                        for (int d = 0; d < hs; ++d) {
                            dk_h[size_t(j) * 3 * C + d] += scale * sk[d];
                            dv_h[size_t(j) * 3 * C + d] += sv[d];
                        }
                    }
                }
                T* dq_h = dqkv + head;
                for (int t = 0; t < Tn; ++t) {
                    const T* src = dq + size_t(t) * hsp;
#pragma omp simd
                    for (int d = 0; d < hs; ++d) dq_h[size_t(t) * 3 * C + d] += scale * src[d];
                }
            }
    }
}

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
    template size_t attention_scratch_size<T>(int, int);                                           \
    template void attention_forward<T>(T*, T*, T*, int, const T*, int, int, int, int);             \
    template void attention_backward<T>(T*, T*, int, const T*, const T*, const T*, const T*, int,  \
                                        int, int, int);                                            \
    template void attention_step<T>(T*, T*, const T*, const T*, int, int, int);
INSTANTIATE(float)
INSTANTIATE(double)

} // namespace model
