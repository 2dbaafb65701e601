// What the blocked attention kernels share (attention.cpp in float and double,
// attention_bf16.cpp with bfloat16 products): the block size, the padded head size, the
// online softmax of one block, the causal mask of a product's tiles, each thread's slot
// of scratch. Internal to the model library.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <utility>

#include <omp.h>

#include "model/fastmath.h"

namespace model::attention_blocks {

// Lanes of one 64-byte SIMD register (an AVX-512 register): 16 floats, 8 doubles.
template <class T> constexpr int kLanes = 64 / int(sizeof(T));

// Positions per block: four registers, 64 for float and 32 for double; the width of
// the score tiles.
template <class T> constexpr int kBlock = 4 * kLanes<T>;

// The head size rounded up to whole registers: packed blocks are zero-padded to it.
template <class T> int padded(int hs) {
    return (hs + kLanes<T> - 1) / kLanes<T> * kLanes<T>;
}

// Elements of one thread's scratch for the backward of the float/double kernels: 7
// (kBlock,hsp) tiles, 2 (kBlock,kBlock) tiles, the head's dq (T,hsp) and D (T), and a
// register of slack for alignment. The forwards use less.
template <class T> size_t fp_scratch(int Tn, int hs) {
    const size_t Bk = kBlock<T>, hsp = padded<T>(hs), T_up = (Tn + Bk - 1) / Bk * Bk;
    return 7 * Bk * hsp + 2 * Bk * Bk + T_up * (hsp + 1) + kLanes<T>;
}

// The same in floats for the bf16 kernels: 7 (kBlock,hsp) bf16 tiles and 2 float ones,
// 2 (kBlock,kBlock) float tiles and 3 bf16 ones, dq, D and slack.
inline size_t bf16_scratch(int Tn, int hs) {
    const size_t Bk = kBlock<float>, hsp = padded<float>(hs), T_up = (Tn + Bk - 1) / Bk * Bk;
    const size_t half_tile = Bk * hsp / 2, half_square = Bk * Bk / 2;
    return 7 * half_tile + 2 * Bk * hsp + 2 * Bk * Bk + 3 * half_square + T_up * (hsp + 1) +
           kLanes<float>;
}

// This thread's slot of `size` elements in scratch, aligned to 64 bytes (the sizes above
// have the slack).
template <class T> T* slot(T* scratch, size_t size) {
    T* base = scratch + size_t(omp_get_thread_num()) * size;
    const auto address = reinterpret_cast<uintptr_t>(base);
    return base + (((address + 63) & ~uintptr_t(63)) - address) / sizeof(T);
}

// Which terms of a product O += P @ Y the causal mask zeroes in P, for output row r and
// reduction index k: none (kNone), k > r + off (kAbove) or k < r - off (kBelow). Tiles
// skip them, about half of the products of a diagonal block.
enum class Mask { kNone, kAbove, kBelow };

// The reduction indices [k0, k1) within [0, n) that output rows [r, r + rows) need.
inline std::pair<int, int> unmasked(Mask mask, int r, int rows, int n, int off) {
    int k0 = 0, k1 = n;
    if (mask == Mask::kAbove) k1 = std::clamp(r + rows + off, 0, n);
    if (mask == Mask::kBelow) k0 = std::clamp(r - off, 0, n);
    return {k0, std::max(k0, k1)};
}

// One key block of the online softmax for a query block. st (n keys, kBlock queries)
// holds raw scores q.k; key j is visible to query i if j <= i + off. In place, st
// becomes p = exp(scale st - m) on visible entries and 0 elsewhere, with m the running
// max (updated); l (the running sum of p) is rescaled and extended, and alpha =
// exp(m_old - m) is returned per query for rescaling the output so far.
template <class T> void softmax_block(T* st, int n, int off, T scale, T* m, T* l, T* alpha) {
    constexpr int Bk = kBlock<T>;
    T mx[Bk];
    std::copy(m, m + Bk, mx);
    for (int j = 0; j < n; ++j) {
        T* row = st + size_t(j) * Bk;
#pragma omp simd
        for (int i = 0; i < Bk; ++i) {
            row[i] *= scale;
            mx[i] = j <= i + off && row[i] > mx[i] ? row[i] : mx[i];
        }
    }
#pragma omp simd
    for (int i = 0; i < Bk; ++i) {
        alpha[i] = exp_fast(m[i] - mx[i]); // 0 for the first block (m = -inf)
        l[i] *= alpha[i];
        m[i] = mx[i];
    }
    for (int j = 0; j < n; ++j) {
        T* row = st + size_t(j) * Bk;
#pragma omp simd
        for (int i = 0; i < Bk; ++i) {
            const T p = j <= i + off ? exp_fast(row[i] - m[i]) : T(0);
            row[i] = p;
            l[i] += p;
        }
    }
}

} // namespace model::attention_blocks
