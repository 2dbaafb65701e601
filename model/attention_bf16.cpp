// Causal self-attention with bfloat16 products, for models in bf16 precision. Shapes in
// layers.h.
//
// The blocked attention of attention.cpp, with q, k, v, the probabilities, dout and dS
// rounded to bfloat16 per block (q, k, v may come in bf16 already) and multiplied by
// AVX512_BF16 dot products (vdpbf16ps), which accumulate in float; softmax, lse, D and
// the gradients stay float, and the output is float or rounded once to bf16.
// vdpbf16ps pairs neighbours along the reduction (lane i: acc += a[2i] b[2i] +
// a[2i+1] b[2i+1]), so blocks are packed as 32-bit units of two bf16 values that are
// neighbours along a product's reduction, the first in the low half. A block X of n rows
// of hs values (padded to hsp) is packed in one of three layouts:
//   rows        (n, hsp/2):       unit (j, u) = X[j][2u], X[j][2u+1]
//   transposed  (hsp/2, kBlock):  unit (u, j) = X[j][2u], X[j][2u+1]
//   pairs       (ceil(n/2), hsp): unit (u, d) = X[2u][d], X[2u+1][d]
// Only the functions that use the instructions are compiled for them (BF16_TARGET);
// callers check cpu_has_bf16() first.
#include "model/layers.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include <immintrin.h>
#include <omp.h>

#include "model/attention_blocks.h"

#define BF16_TARGET __attribute__((target("avx512bf16,avx512bw,avx512vl,avx512f")))

// GCC 12's AVX-512 intrinsics pass an undefined vector as the merge source they ignore,
// which -Wmaybe-uninitialized reports inside target functions (GCC bug 105593).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace model {

namespace {

using namespace attention_blocks;

constexpr int Bk = kBlock<float>; // 64 positions per block
constexpr int kTileRows = 6;      // rows per register tile, as in attention.cpp

using Unit = uint32_t; // two bf16 values

// 16 floats from x, the first `count` of them (any int), rounded to bf16 (nearest even);
// zero beyond count, which is not read.
BF16_TARGET inline __m256i bf16x16(const float* x, int count) {
    const __mmask16 mask =
        count >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << std::max(count, 0)) - 1);
    return (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(mask, x));
}

// The same from values already in bf16.
BF16_TARGET inline __m256i bf16x16(const bf16* x, int count) {
    const __mmask16 mask =
        count >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << std::max(count, 0)) - 1);
    return _mm256_maskz_loadu_epi16(mask, x);
}

// Y in the rows layout from n rows of X (row stride ld, hs values); X in float or bf16,
// as for every pack_* below.
template <class In>
BF16_TARGET void pack_rows(Unit* Y, const In* X, int ld, int n, int hs, int hsp) {
    for (int j = 0; j < n; ++j)
        for (int c0 = 0; c0 < hsp; c0 += 16)
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(Y + size_t(j) * (hsp / 2) + c0 / 2),
                                bf16x16(X + size_t(j) * ld + c0, hs - c0));
}

// Y in the pairs layout from n rows of X; an odd last row pairs with zeros.
template <class In>
BF16_TARGET void pack_pairs(Unit* Y, const In* X, int ld, int n, int hs, int hsp) {
    for (int u = 0; u < (n + 1) / 2; ++u) {
        const In* x0 = X + size_t(2 * u) * ld;
        const In* x1 = x0 + ld;
        const bool second = 2 * u + 1 < n;
        for (int c0 = 0; c0 < hsp; c0 += 16) {
            const __m512i lo = _mm512_cvtepu16_epi32(bf16x16(x0 + c0, hs - c0));
            const __m512i hi = _mm512_cvtepu16_epi32(bf16x16(x1 + c0, second ? hs - c0 : 0));
            _mm512_storeu_si512(Y + size_t(u) * hsp + c0,
                                _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
        }
    }
}

// Y in the pairs layout from R, the same n rows in the rows layout: interleaving rows
// is cheaper than rounding them again.
BF16_TARGET void pairs_from_rows(Unit* Y, const Unit* R, int n, int hsp) {
    // Words of rows a | b (32 each) taken alternately: the first 16 of each, the last 16.
    alignas(64) static constexpr uint16_t kFirst[32] = {0,  32, 1,  33, 2,  34, 3,  35, 4,  36, 5,
                                                        37, 6,  38, 7,  39, 8,  40, 9,  41, 10, 42,
                                                        11, 43, 12, 44, 13, 45, 14, 46, 15, 47};
    const __m512i first = _mm512_load_si512(kFirst);
    const __m512i last = _mm512_add_epi16(first, _mm512_set1_epi16(16));
    const int hp = hsp / 2;
    for (int u = 0; u < (n + 1) / 2; ++u) {
        const Unit* r0 = R + size_t(2 * u) * hp;
        const Unit* r1 = r0 + hp;
        const bool second = 2 * u + 1 < n;
        for (int c0 = 0; c0 < hsp; c0 += 32) {
            const __mmask16 m = hsp - c0 >= 32 ? 0xFFFF : 0x00FF; // units of this chunk
            const __m512i a = _mm512_maskz_loadu_epi32(m, r0 + c0 / 2);
            const __m512i b = _mm512_maskz_loadu_epi32(second ? m : 0, r1 + c0 / 2);
            _mm512_storeu_si512(Y + size_t(u) * hsp + c0, _mm512_permutex2var_epi16(a, first, b));
            if (m == 0xFFFF)
                _mm512_storeu_si512(Y + size_t(u) * hsp + c0 + 16,
                                    _mm512_permutex2var_epi16(a, last, b));
        }
    }
}

// Bt in the transposed layout from n rows of X; zero beyond n columns.
template <class In>
BF16_TARGET void pack_transposed(Unit* Bt, const In* X, int ld, int n, int hs, int hsp) {
    for (int j = 0; j < n; ++j)
        for (int c0 = 0; c0 < hsp; c0 += 16) {
            alignas(32) Unit units[8];
            _mm256_store_si256(reinterpret_cast<__m256i*>(units),
                               bf16x16(X + size_t(j) * ld + c0, hs - c0));
            for (int t = 0; t < 8; ++t) Bt[size_t(c0 / 2 + t) * Bk + j] = units[t];
        }
    for (int u = 0; u < hsp / 2; ++u)
        std::fill(Bt + size_t(u) * Bk + n, Bt + size_t(u + 1) * Bk, 0u);
}

// As in_register in attention.cpp: keeps a tile's shared operand in a register.
BF16_TARGET inline void in_register(__m512i& v) {
    asm("" : "+v"(v));
}

// S (R,Bk) = A (R rows of units, stride lda) @ Bt (hp,Bk units), in float.
template <int R>
BF16_TARGET void dot_tile(float* S, const Unit* A, int lda, const Unit* Bt, int hp) {
    __m512 acc[R][4];
    for (auto& row : acc)
        for (auto& x : row) x = _mm512_setzero_ps();
    for (int u = 0; u < hp; ++u) {
        __m512i b[4];
        for (int n = 0; n < 4; ++n) {
            b[n] = _mm512_loadu_si512(Bt + size_t(u) * Bk + 16 * n);
            in_register(b[n]);
        }
        for (int r = 0; r < R; ++r) {
            const __m512bh a = (__m512bh)_mm512_set1_epi32(int(A[size_t(r) * lda + u]));
            for (int n = 0; n < 4; ++n) acc[r][n] = _mm512_dpbf16_ps(acc[r][n], a, (__m512bh)b[n]);
        }
    }
    for (int r = 0; r < R; ++r)
        for (int n = 0; n < 4; ++n) _mm512_storeu_ps(S + size_t(r) * Bk + 16 * n, acc[r][n]);
}

// S (rows,Bk) = A (rows layout) @ Bt (transposed layout), in tiles of 6, 4 and 1 rows.
BF16_TARGET void dot_rows(float* S, const Unit* A, int lda, int rows, const Unit* Bt, int hp) {
    int r = 0;
    for (; r + kTileRows <= rows; r += kTileRows)
        dot_tile<kTileRows>(S + size_t(r) * Bk, A + size_t(r) * lda, lda, Bt, hp);
    for (; r + 4 <= rows; r += 4) dot_tile<4>(S + size_t(r) * Bk, A + size_t(r) * lda, lda, Bt, hp);
    for (; r < rows; ++r) dot_tile<1>(S + size_t(r) * Bk, A + size_t(r) * lda, lda, Bt, hp);
}

// O (R, NV registers) += sum over unit u < np of P(r,u) Y[u], P(r,u) = P[r*pr + u*pk]
// (two reduction terms each) and Y in the pairs layout (row stride ldy).
template <int R, int NV>
BF16_TARGET void mix_tile(float* O, int ldo, const Unit* P, int pr, int pk, int np, const Unit* Y,
                          int ldy) {
    __m512 acc[R][NV];
    for (int r = 0; r < R; ++r)
        for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_loadu_ps(O + size_t(r) * ldo + 16 * v);
    for (int u = 0; u < np; ++u) {
        __m512i y[NV];
        for (int v = 0; v < NV; ++v) {
            y[v] = _mm512_loadu_si512(Y + size_t(u) * ldy + 16 * v);
            in_register(y[v]);
        }
        for (int r = 0; r < R; ++r) {
            const __m512bh p = (__m512bh)_mm512_set1_epi32(int(P[size_t(r) * pr + size_t(u) * pk]));
            for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], p, (__m512bh)y[v]);
        }
    }
    for (int r = 0; r < R; ++r)
        for (int v = 0; v < NV; ++v) _mm512_storeu_ps(O + size_t(r) * ldo + 16 * v, acc[r][v]);
}

// mix_tile on rows [r, r + R) over the units holding terms the mask leaves, NV = nv.
template <int R>
BF16_TARGET void mix_chunk(int nv, float* O, int ldo, const Unit* P, int pr, int pk, int n,
                           const Unit* Y, int ldy, int r, Mask mask, int off) {
    const auto [k0, k1] = unmasked(mask, r, R, n, off);
    const int u0 = k0 / 2, u1 = (k1 + 1) / 2;
    if (u0 == u1) return;
    O += size_t(r) * ldo;
    P += size_t(r) * pr + size_t(u0) * pk;
    Y += size_t(u0) * ldy;
    switch (nv) {
    case 1:
        return mix_tile<R, 1>(O, ldo, P, pr, pk, u1 - u0, Y, ldy);
    case 2:
        return mix_tile<R, 2>(O, ldo, P, pr, pk, u1 - u0, Y, ldy);
    case 3:
        return mix_tile<R, 3>(O, ldo, P, pr, pk, u1 - u0, Y, ldy);
    default:
        return mix_tile<R, 4>(O, ldo, P, pr, pk, u1 - u0, Y, ldy);
    }
}

// O (rows,hsp) += P (rows,n) @ Y (n,hsp): P's units P(r,u) = P[r*pr + u*pk] pair terms
// 2u, 2u+1 of row r; Y in the pairs layout; terms the mask zeroes are skipped.
BF16_TARGET void mix_rows(float* O, int ldo, const Unit* P, int pr, int pk, int rows, int n,
                          const Unit* Y, int ldy, int hsp, Mask mask, int off) {
    for (int c0 = 0; c0 < hsp; c0 += 64) {
        const int nv = std::min(4, (hsp - c0) / 16);
        int r = 0;
        for (; r + kTileRows <= rows; r += kTileRows)
            mix_chunk<kTileRows>(nv, O + c0, ldo, P, pr, pk, n, Y + c0, ldy, r, mask, off);
        for (; r + 4 <= rows; r += 4)
            mix_chunk<4>(nv, O + c0, ldo, P, pr, pk, n, Y + c0, ldy, r, mask, off);
        for (; r < rows; ++r)
            mix_chunk<1>(nv, O + c0, ldo, P, pr, pk, n, Y + c0, ldy, r, mask, off);
    }
}

// The forward's scratch in one thread's slot.
struct ForwardSlot {
    Unit* qt;     // (hsp/2,Bk) the query block, transposed layout
    Unit* kb;     // (Bk,hsp/2) a key block, rows layout
    Unit* vb;     // (Bk/2,hsp) its values, pairs layout
    Unit* pb;     // (Bk/2,Bk) probabilities, pairs of keys by queries
    float* o;     // (Bk,hsp) unnormalised output
    float* st;    // (Bk,Bk) scores, then probabilities, keys by queries
    float* m;     // (Bk) running max of the scaled scores
    float* l;     // (Bk) running sum of exp(score - m)
    float* alpha; // (Bk)
};

// Query block i0 of head (b, h): out's rows and lse; qkv and out in float or bf16.
template <class In>
BF16_TARGET void forward_block(In* out, float* lse, const ForwardSlot& s, const In* qkv, int b,
                               int h, int i0, int Tn, int C, int NH) {
    const int hs = C / NH, hsp = padded<float>(hs), rows = std::min(Bk, Tn - i0);
    const float scale = 1.0f / std::sqrt(float(hs));
    const In* q = qkv + size_t(b) * Tn * 3 * C + size_t(h) * hs;
    const In* k = q + C;
    const In* v = q + 2 * C;
    pack_transposed(s.qt, q + size_t(i0) * 3 * C, 3 * C, rows, hs, hsp);
    std::fill(s.o, s.o + size_t(Bk) * hsp, 0.0f);
    std::fill(s.m, s.m + Bk, -std::numeric_limits<float>::infinity());
    std::fill(s.l, s.l + Bk, 0.0f);
    for (int j0 = 0; j0 <= i0; j0 += Bk) {
        const int n = std::min(Bk, Tn - j0);
        pack_rows(s.kb, k + size_t(j0) * 3 * C, 3 * C, n, hs, hsp);
        pack_pairs(s.vb, v + size_t(j0) * 3 * C, 3 * C, n, hs, hsp);
        dot_rows(s.st, s.kb, hsp / 2, n, s.qt, hsp / 2); // st[j][i] = k_j0+j . q_i0+i
        softmax_block(s.st, n, i0 - j0, scale, s.m, s.l, s.alpha);
        for (int i = 0; i < rows; ++i) {
            float* oi = s.o + size_t(i) * hsp;
            const float a = s.alpha[i];
#pragma omp simd
            for (int d = 0; d < hsp; ++d) oi[d] *= a;
        }
        pack_pairs(s.pb, s.st, Bk, n, Bk, Bk);
        mix_rows(s.o, hsp, s.pb, 1, Bk, rows, n, s.vb, hsp, hsp, Mask::kAbove, i0 - j0); // o += p v
    }
    In* ob = out + (size_t(b) * Tn + i0) * C + size_t(h) * hs;
    float* lb = lse + (size_t(b) * NH + h) * Tn + i0;
    for (int i = 0; i < rows; ++i) {
        const float inv = 1.0f / s.l[i];
        for (int d = 0; d < hs; ++d) ob[size_t(i) * C + d] = store_as<In>(s.o[i * hsp + d] * inv);
        lb[i] = s.m[i] + std::log(s.l[i]);
    }
}

// The backward's scratch in one thread's slot.
struct BackwardSlot {
    Unit* kt;  // (hsp/2,Bk) the key block, transposed layout
    Unit* vt;  // (hsp/2,Bk) its values, transposed layout
    Unit* kp;  // (Bk/2,hsp) the key block, pairs layout
    Unit* qr;  // (Bk,hsp/2) a query block, rows layout
    Unit* qp;  // (Bk/2,hsp) the query block, pairs layout
    Unit* dor; // (Bk,hsp/2) its output gradient, rows layout
    Unit* dop; // (Bk/2,hsp) its output gradient, pairs layout
    float* dk; // (Bk,hsp) the key block's gradients, unscaled
    float* dv; // (Bk,hsp)
    float* p;  // (Bk,Bk) probabilities, queries by keys
    float* ds; // (Bk,Bk) dP, then dS
    Unit* pp;  // (Bk/2,Bk) probabilities, pairs of queries by keys
    Unit* dsr; // (Bk,Bk/2) dS, rows layout
    Unit* dsp; // (Bk/2,Bk) dS, pairs of queries by keys
    float* dq; // (T,hsp) the head's dq, unscaled
    float* dd; // (T) the head's D
};

// Head (b, h): dqkv += its gradients; qkv and out in float or bf16.
template <class In>
BF16_TARGET void backward_head(float* dqkv, const BackwardSlot& s, const float* dout, const In* qkv,
                               const In* out, const float* lse, int b, int h, int Tn, int C,
                               int NH) {
    const int hs = C / NH, hsp = padded<float>(hs);
    const float scale = 1.0f / std::sqrt(float(hs));
    const size_t head = size_t(b) * Tn * 3 * C + size_t(h) * hs;
    const size_t head_c = size_t(b) * Tn * C + size_t(h) * hs;
    const In* q = qkv + head;
    const In* k = q + C;
    const In* v = q + 2 * C;
    const float* lse_h = lse + (size_t(b) * NH + h) * Tn;
    for (int t = 0; t < Tn; ++t) {
        const float* dot = dout + head_c + size_t(t) * C;
        const In* ot_in = out + head_c + size_t(t) * C;
        const float* ot = nullptr; // out's row in float; the sum below reads floats either way,
        if constexpr (std::is_same_v<In, float>) { // so that it adds in the same order
            ot = ot_in;
        } else {
            for (int d = 0; d < hs; ++d) s.dk[d] = value_of(ot_in[d]); // dk is free until below
            ot = s.dk;
        }
        float sum = 0;
#pragma omp simd reduction(+ : sum)
        for (int d = 0; d < hs; ++d) sum += dot[d] * ot[d];
        s.dd[t] = sum;
    }
    std::fill(s.dq, s.dq + size_t(Tn) * hsp, 0.0f);
    for (int j0 = 0; j0 < Tn; j0 += Bk) {
        const int n = std::min(Bk, Tn - j0);
        pack_transposed(s.kt, k + size_t(j0) * 3 * C, 3 * C, n, hs, hsp);
        pack_transposed(s.vt, v + size_t(j0) * 3 * C, 3 * C, n, hs, hsp);
        pack_pairs(s.kp, k + size_t(j0) * 3 * C, 3 * C, n, hs, hsp);
        std::fill(s.dk, s.dk + size_t(Bk) * hsp, 0.0f);
        std::fill(s.dv, s.dv + size_t(Bk) * hsp, 0.0f);
        for (int i0 = j0; i0 < Tn; i0 += Bk) {
            const int rows = std::min(Bk, Tn - i0), off = i0 - j0;
            const In* qi = q + size_t(i0) * 3 * C;
            const float* dout_i = dout + head_c + size_t(i0) * C;
            pack_rows(s.qr, qi, 3 * C, rows, hs, hsp);
            pairs_from_rows(s.qp, s.qr, rows, hsp);
            pack_rows(s.dor, dout_i, C, rows, hs, hsp);
            pairs_from_rows(s.dop, s.dor, rows, hsp);
            dot_rows(s.p, s.qr, hsp / 2, rows, s.kt, hsp / 2); // p[i][j] = q_i0+i . k_j0+j
            for (int i = 0; i < rows; ++i) {
                float* pi = s.p + size_t(i) * Bk;
                const float lse_i = lse_h[i0 + i];
#pragma omp simd
                for (int j = 0; j < Bk; ++j)
                    pi[j] = j < n && j <= i + off ? exp_fast(scale * pi[j] - lse_i) : 0.0f;
            }
            pack_pairs(s.pp, s.p, Bk, rows, Bk, Bk);
            mix_rows(s.dv, hsp, s.pp, 1, Bk, n, rows, s.dop, hsp, hsp, Mask::kBelow,
                     off);                                       // P^T dout
            dot_rows(s.ds, s.dor, hsp / 2, rows, s.vt, hsp / 2); // dP = dout v^T
            for (int i = 0; i < rows; ++i) {
                const float* pi = s.p + size_t(i) * Bk;
                float* dsi = s.ds + size_t(i) * Bk;
                const float di = s.dd[i0 + i];
#pragma omp simd
                for (int j = 0; j < Bk; ++j) dsi[j] = pi[j] * (dsi[j] - di);
            }
            pack_rows(s.dsr, s.ds, Bk, rows, Bk, Bk);
            pairs_from_rows(s.dsp, s.dsr, rows, Bk);
            mix_rows(s.dq + size_t(i0) * hsp, hsp, s.dsr, Bk / 2, 1, rows, n, s.kp, hsp, hsp,
                     Mask::kAbove, off); // dS k
            mix_rows(s.dk, hsp, s.dsp, 1, Bk, n, rows, s.qp, hsp, hsp, Mask::kBelow,
                     off); // dS^T q
        }
        float* dk_h = dqkv + head + C + size_t(j0) * 3 * C;
        float* dv_h = dk_h + C;
        for (int j = 0; j < n; ++j) {
            const float* sk = s.dk + size_t(j) * hsp;
            const float* sv = s.dv + size_t(j) * hsp;
#pragma omp simd
            for (int d = 0; d < hs; ++d) {
                dk_h[size_t(j) * 3 * C + d] += scale * sk[d];
                dv_h[size_t(j) * 3 * C + d] += sv[d];
            }
        }
    }
    float* dq_h = dqkv + head;
    for (int t = 0; t < Tn; ++t) {
        const float* src = s.dq + size_t(t) * hsp;
#pragma omp simd
        for (int d = 0; d < hs; ++d) dq_h[size_t(t) * 3 * C + d] += scale * src[d];
    }
}

// out (B,T,C), lse (B,NH,T);  qkv (B,T,3C). Threads take (batch, head, query block)
// triples, largest first, as attention_forward.
template <class In>
void forward_all(In* out, float* lse, float* scratch, int n_slots, const In* qkv, int B, int Tn,
                 int C, int NH) {
    const int hs = C / NH, hsp = padded<float>(hs), n_blocks = (Tn + Bk - 1) / Bk;
    const size_t half_tile = size_t(Bk) * hsp / 2;
#pragma omp parallel num_threads(std::max(1, n_slots))
    {
        float* const base = slot(scratch, attention_scratch_size<float>(Tn, hs));
        ForwardSlot s;
        s.qt = reinterpret_cast<Unit*>(base);
        s.kb = s.qt + half_tile;
        s.vb = s.kb + half_tile;
        s.pb = s.vb + half_tile;
        s.o = reinterpret_cast<float*>(s.pb + Bk * Bk / 2);
        s.st = s.o + 2 * half_tile;
        s.m = s.st + Bk * Bk;
        s.l = s.m + Bk;
        s.alpha = s.l + Bk;
#pragma omp for collapse(3) schedule(dynamic)
        for (int b = 0; b < B; ++b)
            for (int h = 0; h < NH; ++h)
                for (int blk = n_blocks - 1; blk >= 0; --blk)
                    forward_block(out, lse, s, qkv, b, h, blk * Bk, Tn, C, NH);
    }
}

// dqkv (B,T,3C) += ...; threads take whole (batch, head) pairs, as attention_backward.
template <class In>
void backward_all(float* dqkv, float* scratch, int n_slots, const float* dout, const In* qkv,
                  const In* out, const float* lse, int B, int Tn, int C, int NH) {
    const int hs = C / NH, hsp = padded<float>(hs);
    const size_t half_tile = size_t(Bk) * hsp / 2, half_square = size_t(Bk) * Bk / 2;
#pragma omp parallel num_threads(std::max(1, n_slots))
    {
        float* const base = slot(scratch, attention_scratch_size<float>(Tn, hs));
        BackwardSlot s;
        s.kt = reinterpret_cast<Unit*>(base);
        s.vt = s.kt + half_tile;
        s.kp = s.vt + half_tile;
        s.qr = s.kp + half_tile;
        s.qp = s.qr + half_tile;
        s.dor = s.qp + half_tile;
        s.dop = s.dor + half_tile;
        s.dk = reinterpret_cast<float*>(s.dop + half_tile);
        s.dv = s.dk + 2 * half_tile;
        s.p = s.dv + 2 * half_tile;
        s.ds = s.p + 2 * half_square;
        s.pp = reinterpret_cast<Unit*>(s.ds + 2 * half_square);
        s.dsr = s.pp + half_square;
        s.dsp = s.dsr + half_square;
        s.dq = reinterpret_cast<float*>(s.dsp + half_square);
        s.dd = s.dq + size_t(Tn) * hsp;
#pragma omp for collapse(2) schedule(dynamic)
        for (int b = 0; b < B; ++b)
            for (int h = 0; h < NH; ++h)
                backward_head(dqkv, s, dout, qkv, out, lse, b, h, Tn, C, NH);
    }
}

} // namespace

void attention_forward_bf16(float* out, float* lse, float* scratch, int n_slots, const float* qkv,
                            int B, int Tn, int C, int NH) {
    forward_all(out, lse, scratch, n_slots, qkv, B, Tn, C, NH);
}

void attention_forward_bf16(bf16* out, float* lse, float* scratch, int n_slots, const bf16* qkv,
                            int B, int Tn, int C, int NH) {
    forward_all(out, lse, scratch, n_slots, qkv, B, Tn, C, NH);
}

void attention_backward_bf16(float* dqkv, float* scratch, int n_slots, const float* dout,
                             const float* qkv, const float* out, const float* lse, int B, int Tn,
                             int C, int NH) {
    backward_all(dqkv, scratch, n_slots, dout, qkv, out, lse, B, Tn, C, NH);
}

void attention_backward_bf16(float* dqkv, float* scratch, int n_slots, const float* dout,
                             const bf16* qkv, const bf16* out, const float* lse, int B, int Tn,
                             int C, int NH) {
    backward_all(dqkv, scratch, n_slots, dout, qkv, out, lse, B, Tn, C, NH);
}

} // namespace model
