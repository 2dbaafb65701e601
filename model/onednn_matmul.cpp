#include "model/onednn_matmul.h"

#include <oneapi/dnnl/dnnl_version.h>

#include <immintrin.h>

#include <algorithm>
#include <bit>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "model/layers.h"

namespace model {

namespace {

using dnnl::memory;
using tag = memory::format_tag;
using Impl = Matmul<float>::Impl;

void check(dnnl_status_t status, const char* what) {
    if (status != dnnl_success)
        throw std::runtime_error(std::string("oneDNN: ") + what + " failed (status " +
                                 std::to_string(int(status)) + ")");
}

// The memory descriptors of a product (see Impl::Product) in plain layouts, and whether it
// accumulates. bf16: src and weights in bf16, dst (unless bf16_dst), bias and accumulation in
// f32. make() may swap the weights for the blocked layout that pack_blocked writes (oneDNN
// 2.6's own reorders into it run at under 1 GB/s, too slow to run every step): in bf16 for
// every product, in fp32 for the input gradient only (the products that gain most; the
// forward one keeps reading the parameters in place).
struct Shapes {
    memory::desc src, weights, bias, dst;
    bool accumulate = false;
};

Shapes shapes_of(const Impl::Key& k) {
    const memory::dim N = k.N, C = k.C, OC = k.OC;
    const auto f32 = memory::data_type::f32;
    const auto in = k.bf16 ? memory::data_type::bf16 : f32;
    Shapes s;
    switch (k.product) {
    case Impl::Product::forward:
    case Impl::Product::forward_bias:
        s.src = memory::desc({N, C}, in, tag::ab);
        s.weights = memory::desc({C, OC}, in, tag::ba);
        s.dst = memory::desc({N, OC}, k.bf16_dst ? memory::data_type::bf16 : f32, tag::ab);
        if (k.product == Impl::Product::forward_bias) s.bias = memory::desc({1, OC}, f32, tag::ab);
        break;
    case Impl::Product::input_grad:
        s.src = memory::desc({N, OC}, in, tag::ab);
        s.weights = memory::desc({OC, C}, in, tag::ab);
        s.dst = memory::desc({N, C}, f32, tag::ab);
        s.accumulate = true;
        break;
    case Impl::Product::weight_grad: // both operands are activations: plain layouts
        s.src = memory::desc({OC, N}, in, tag::ba);
        s.weights = memory::desc({N, C}, in, tag::ab);
        s.dst = memory::desc({OC, C}, f32, tag::ab);
        s.accumulate = true;
        break;
    }
    return s;
}

// The blocked layout oneDNN's AVX-512 matmul prefers for its second operand (K,N): for bf16
// BA16a64b2a, for float BA16a64b.
memory::desc blocked_desc(const memory::dims& dims, bool bf16) {
    return bf16 ? memory::desc(dims, memory::data_type::bf16, tag::BA16a64b2a)
                : memory::desc(dims, memory::data_type::f32, tag::BA16a64b);
}

#define PACK_TARGET __attribute__((target("avx512f,avx512bw")))

// GCC 12's AVX-512 intrinsics pass an undefined vector as the merge source they ignore,
// which -W(maybe-)uninitialized reports inside target functions (GCC bug 105593).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#ifndef __clang__
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

// 16 floats' bit patterns with the bf16 they round to (nearest even, NaN kept quiet, as
// to_bf16) in the high half of each 32-bit lane.
PACK_TARGET inline __m512i rounded_high(__m512i u) {
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    const __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), lsb));
    const __mmask16 nan = _mm512_cmpgt_epu32_mask(
        _mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)), _mm512_set1_epi32(0x7f800000));
    return _mm512_mask_blend_epi32(nan, r, _mm512_or_si512(u, _mm512_set1_epi32(0x00400000)));
}

// A full bf16 block of pack_blocked from X(k, n) = x[n*ld + k] (W^T: each n a row of W):
// per column n, its 32 values of k rounded into 16 units, then 16 columns at a time
// transposed (16 by 16 units: 4 by 4 within 128-bit lanes, then the lanes) into rows p.
// The next block's columns are prefetched, 64 streams being more than the hardware
// follows; the block (64-byte aligned) is written past the caches, as a weight copy is
// larger than they are: 25% faster than plain stores on wte.
PACK_TARGET void pack_block_transposed(uint32_t* block, const float* x, size_t ld) {
    // Odd 16-bit words of two vectors, in order: the bf16 of 32 consecutive floats.
    alignas(64) static constexpr uint16_t kHigh[32] = {1,  3,  5,  7,  9,  11, 13, 15, 17, 19, 21,
                                                       23, 25, 27, 29, 31, 33, 35, 37, 39, 41, 43,
                                                       45, 47, 49, 51, 53, 55, 57, 59, 61, 63};
    const __m512i high = _mm512_load_si512(kHigh);
    for (int g = 0; g < 4; ++g) { // columns 16g .. 16g+15
        __m512i r[16];
        for (int j = 0; j < 16; ++j) {
            const float* col = x + size_t(16 * g + j) * ld;
            _mm_prefetch(reinterpret_cast<const char*>(col + 32), _MM_HINT_T0);
            _mm_prefetch(reinterpret_cast<const char*>(col + 48), _MM_HINT_T0);
            const __m512i a = rounded_high(_mm512_loadu_si512(col));
            const __m512i b = rounded_high(_mm512_loadu_si512(col + 16));
            r[j] = _mm512_permutex2var_epi16(a, high, b); // units p = 0..15 of column j
        }
        // Within each 128-bit lane L, rows 4q..4q+3: v[q][c] lane L = units 4L+c of them.
        __m512i v[4][4];
        for (int q = 0; q < 4; ++q) {
            const __m512i t0 = _mm512_unpacklo_epi32(r[4 * q], r[4 * q + 1]);
            const __m512i t1 = _mm512_unpackhi_epi32(r[4 * q], r[4 * q + 1]);
            const __m512i t2 = _mm512_unpacklo_epi32(r[4 * q + 2], r[4 * q + 3]);
            const __m512i t3 = _mm512_unpackhi_epi32(r[4 * q + 2], r[4 * q + 3]);
            v[q][0] = _mm512_unpacklo_epi64(t0, t2);
            v[q][1] = _mm512_unpackhi_epi64(t0, t2);
            v[q][2] = _mm512_unpacklo_epi64(t1, t3);
            v[q][3] = _mm512_unpackhi_epi64(t1, t3);
        }
        // Row p = 4L + c of the block: lane L of v[0..3][c].
        for (int c = 0; c < 4; ++c) {
            const __m512i a0 = _mm512_shuffle_i32x4(v[0][c], v[1][c], 0x44);
            const __m512i a1 = _mm512_shuffle_i32x4(v[0][c], v[1][c], 0xEE);
            const __m512i a2 = _mm512_shuffle_i32x4(v[2][c], v[3][c], 0x44);
            const __m512i a3 = _mm512_shuffle_i32x4(v[2][c], v[3][c], 0xEE);
            uint32_t* out = block + 16 * g;
            _mm512_stream_si512(reinterpret_cast<__m512i*>(out + (0 + c) * 64),
                                _mm512_shuffle_i32x4(a0, a2, 0x88));
            _mm512_stream_si512(reinterpret_cast<__m512i*>(out + (4 + c) * 64),
                                _mm512_shuffle_i32x4(a0, a2, 0xDD));
            _mm512_stream_si512(reinterpret_cast<__m512i*>(out + (8 + c) * 64),
                                _mm512_shuffle_i32x4(a1, a3, 0x88));
            _mm512_stream_si512(reinterpret_cast<__m512i*>(out + (12 + c) * 64),
                                _mm512_shuffle_i32x4(a1, a3, 0xDD));
        }
    }
    _mm_sfence(); // the streamed stores are seen before the product reads them
}

// The same from X(k, n) = x[k*ld + n] (W as it is: rows of X contiguous): unit (p, n) pairs
// rows 2p and 2p+1, 64 values of each; streamed as well.
PACK_TARGET void pack_block_rows(uint32_t* block, const float* x, size_t ld) {
    const __m512i high = _mm512_set1_epi32(int(0xffff0000u));
    for (int p = 0; p < 16; ++p) {
        const float* r0 = x + size_t(2 * p) * ld;
        const float* r1 = r0 + ld;
        for (int q = 0; q < 4; ++q) {
            const __m512i a = rounded_high(_mm512_loadu_si512(r0 + 16 * q));
            const __m512i b = rounded_high(_mm512_loadu_si512(r1 + 16 * q));
            _mm512_stream_si512(
                reinterpret_cast<__m512i*>(block + p * 64 + 16 * q),
                _mm512_or_si512(_mm512_srli_epi32(a, 16), _mm512_and_si512(b, high)));
        }
    }
    _mm_sfence();
}

#pragma GCC diagnostic pop

// Writes the (K,N) matrix X, X(k,n) = x[k*sk + n*sn] (x in float or bf16), in blocked_desc's
// layout, as Out (bf16: rounded; float from float only). Blocks of 64 n by kb k (32 for
// bf16, 16 for float), block (nb, b) at (nb*KB + b)*kb*64 elements (KB = K/kb rounded up),
// each 16 rows of 64 32-bit units: for float unit (p, n) is X(p, n), for bf16 the pair
// X(2p, n), X(2p+1, n), the first in the low half. K and N padded with zeros. All threads.
template <class Out, class In>
void pack_blocked(Out* dst, const In* x, int K, int N, size_t sk, size_t sn) {
    constexpr bool pairs = std::is_same_v<Out, bf16>;
    constexpr int kb = pairs ? 32 : 16;
    const int KB = (K + kb - 1) / kb, NB = (N + 63) / 64;
    auto bits = [](In v) {
        if constexpr (pairs)
            return uint32_t(to_bf16(value_of(v)).bits);
        else
            return std::bit_cast<uint32_t>(v);
    };
    // Unit (row k of X, and k + 1 for pairs; column n) of a full block, from &X(k, n).
    auto unit = [&](const In* xk) {
        if constexpr (pairs)
            return bits(xk[0]) | bits(xk[sk]) << 16;
        else
            return bits(xk[0]);
    };
    auto at = [&](int k, int n) { return k < K && n < N ? bits(x[k * sk + n * sn]) : 0u; };
    constexpr bool bf16_from_float = pairs && std::is_same_v<In, float>;
    static const bool avx512 = __builtin_cpu_supports("avx512bw");
    // Blocks in the order that reads x along its rows: for rows of X contiguous (sn == 1)
    // all n of kb rows, else all k of 64 columns.
    const bool along_n = sn == 1;
#pragma omp parallel for schedule(static)
    for (size_t t = 0; t < size_t(NB) * KB; ++t) {
        const int nb = int(along_n ? t % NB : t / KB), b = int(along_n ? t / NB : t % KB);
        uint32_t* block = reinterpret_cast<uint32_t*>(dst) + (size_t(nb) * KB + b) * 1024;
        const int k0 = b * kb, n0 = nb * 64;
        const bool full = k0 + kb <= K && n0 + 64 <= N;
        if constexpr (bf16_from_float)
            if (full && avx512 && reinterpret_cast<uintptr_t>(dst) % 64 == 0) {
                if (sk == 1) {
                    pack_block_transposed(block, x + size_t(n0) * sn + k0, sn);
                    continue;
                }
                if (sn == 1) {
                    pack_block_rows(block, x + size_t(k0) * sk + n0, sk);
                    continue;
                }
            }
        for (int p = 0; p < 16; ++p) {
            uint32_t* units = block + p * 64;
            const int k = k0 + (pairs ? 2 * p : p);
            const In* xk = x + size_t(k) * sk + size_t(n0) * sn;
            if (full && sn == 1) { // rows of X contiguous: W, or a layer's input
#pragma omp simd
                for (int j = 0; j < 64; ++j) units[j] = unit(xk + j);
            } else if (full) { // columns contiguous: W^T for the forward product
                for (int j = 0; j < 64; ++j) units[j] = unit(xk + j * sn);
            } else {
                for (int j = 0; j < 64; ++j)
                    units[j] = pairs ? at(k, n0 + j) | at(k + 1, n0 + j) << 16 : at(k, n0 + j);
            }
        }
    }
}

Impl::Prepared make(const Impl::Key& key, const dnnl::engine& engine,
                    base::LargeVector<char>& scratch) {
    const Shapes s = shapes_of(key);
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    if (s.accumulate) {
        dnnl::post_ops sum;
        sum.append_sum(1.0f);
        attr.set_post_ops(sum);
    }
    auto describe = [&](const memory::desc& weights) {
        return dnnl::matmul::primitive_desc(dnnl::matmul::desc(s.src, weights, s.bias, s.dst), attr,
                                            engine);
    };
    dnnl::matmul::primitive_desc pd = describe(s.weights);
    Impl::Prepared p;
    if (key.bf16 || key.product == Impl::Product::input_grad) {
        // The layout oneDNN picks, if it is the one pack_blocked writes.
        const memory::desc blocked = blocked_desc(s.weights.dims(), key.bf16);
        const auto chosen =
            describe(memory::desc(s.weights.dims(), s.weights.data_type(), tag::any));
        if (chosen.weights_desc() == blocked) {
            pd = chosen;
            p.blocked = true;
        }
    }
    p.primitive = dnnl::matmul(pd);
    auto arg = [&](int name, memory& m, const memory::desc& md) {
        m = memory(md, engine, nullptr);
        p.args[p.n_args++] = {name, m.get()};
    };
    arg(DNNL_ARG_SRC, p.src, s.src);
    arg(DNNL_ARG_WEIGHTS, p.weights, pd.weights_desc());
    arg(DNNL_ARG_DST, p.dst, s.dst);
    arg(DNNL_ARG_SCRATCHPAD, p.scratch, pd.scratchpad_desc());
    if (key.product == Impl::Product::forward_bias) arg(DNNL_ARG_BIAS, p.bias, s.bias);
    if (scratch.size() < pd.scratchpad_desc().get_size())
        scratch.resize(pd.scratchpad_desc().get_size());
    return p;
}

void grow(base::LargeVector<bf16>& v, size_t n) {
    if (v.size() < n) v.resize(n);
}

} // namespace

Impl::Prepared& Impl::get(const Key& key, bool rounds_src) {
    auto it = prepared.find(key);
    if (it == prepared.end()) {
        it = prepared.emplace(key, make(key, engine, scratch)).first;
        if (key.bf16) { // room for the rounded activations, and the packed input
            const size_t N = key.N, C = key.C, OC = key.OC;
            const bool grad_src =
                key.product == Product::input_grad || key.product == Product::weight_grad;
            if (rounds_src) grow(rounded_a, N * (grad_src ? OC : C));
            if (key.product == Product::weight_grad && it->second.blocked)
                grow(packed_b, it->second.weights.get_desc().get_size() / sizeof(bf16));
        }
    }
    return it->second;
}

Impl::WeightCopy& Impl::copy_of(const float* weight, const Key& key, bool per_product) {
    const bool blocked = get(key).blocked;
    const Product product =
        key.product == Product::input_grad ? Product::input_grad : Product::forward;
    per_product = per_product && blocked && key.bf16; // else one layout serves both
    for (WeightCopy& c : copies)
        if (c.source == weight && c.OC == key.OC && c.C == key.C && c.blocked == blocked &&
            c.bf16 == key.bf16) {
            if (per_product && !c.per_product) { // an alternating copy becomes this product's
                c.per_product = true;
                c.product = product;
                c.fresh = false;
            }
            if (!c.per_product || c.product == product) return c;
        }
    // Blocked: room for either product's layout, K padded to 32 (bf16) or 16 and N to 64.
    auto padded = [](size_t n, size_t block) { return (n + block - 1) / block * block; };
    const size_t C = key.C, OC = key.OC, kb = key.bf16 ? 32 : 16;
    const size_t n =
        blocked ? std::max(padded(C, kb) * padded(OC, 64), padded(OC, kb) * padded(C, 64)) : OC * C;
    return copies.emplace_back(WeightCopy{weight, key.OC, key.C, blocked, key.bf16,
                                          base::LargeVector<char>(n * (key.bf16 ? 2 : 4)), product,
                                          per_product});
}

const void* Impl::weight_copy(const float* weight, const Key& key) {
    WeightCopy& c = copy_of(weight, key);
    const Product product =
        key.product == Product::input_grad ? Product::input_grad : Product::forward;
    if (!c.fresh || (c.blocked && c.product != product)) {
        const size_t C = key.C;
        auto* b16 = reinterpret_cast<bf16*>(c.data.data());
        if (!c.blocked)
            to_bf16(b16, weight, size_t(key.OC) * C);
        else if (!c.bf16) // (K,N) = (OC,C), the input gradient's: the weight as it is
            pack_blocked(reinterpret_cast<float*>(c.data.data()), weight, key.OC, key.C, C, 1);
        else if (product == Product::input_grad)
            pack_blocked(b16, weight, key.OC, key.C, C, 1);
        else // (K,N) = (C,OC), the forward product's: its transpose
            pack_blocked(b16, weight, key.C, key.OC, 1, C);
        c.product = product;
        c.fresh = true;
    }
    return c.data.data();
}

const bf16* Impl::round(base::LargeVector<bf16>& into, const float* x, size_t n) {
    if (into.size() < n) throw std::logic_error("Matmul: bf16 product used before prepare");
    to_bf16(into.data(), x, n);
    return into.data();
}

void Impl::run(const Key& key, const void* src, const void* weights, const float* bias, void* dst) {
    Prepared& p = get(key);
    p.src.set_data_handle(const_cast<void*>(src));
    p.weights.set_data_handle(const_cast<void*>(weights));
    p.dst.set_data_handle(dst);
    p.scratch.set_data_handle(scratch.data());
    if (bias) p.bias.set_data_handle(const_cast<float*>(bias));
    check(dnnl_primitive_execute(p.primitive.get(), stream.get(), p.n_args, p.args), "matmul");
    check(dnnl_stream_wait(stream.get()), "stream wait");
}

namespace {

// A layer's input for a product that reads plain bf16 rows: rounded into rounded_b (room
// made at preparation, Bf16Io::rounded_in), or as it is.
const void* plain_rows(Impl& m, const float* inp, size_t n) {
    grow(m.rounded_b, n);
    return m.round(m.rounded_b, inp, n);
}
const void* plain_rows(Impl&, const bf16* inp, size_t) {
    return inp;
}

} // namespace

void Impl::input_grad_bf16(float* dinp, const bf16* dout, const float* weight, int N, int C,
                           int OC) {
    const Key key{Product::input_grad, N, C, OC, true};
    run(key, dout, weight_copy(weight, key), nullptr, dinp);
}

template <class In>
void Impl::weight_grad_bf16(float* dweight, const bf16* dout, const In* inp, int N, int C, int OC) {
    const Key key{Product::weight_grad, N, C, OC, true};
    const void* x = nullptr;
    if (get(key).blocked) {
        pack_blocked(packed_b.data(), inp, N, C, size_t(C), 1);
        x = packed_b.data();
    } else {
        x = plain_rows(*this, inp, size_t(N) * C);
    }
    run(key, dout, x, nullptr, dweight);
}

template <class In>
void Impl::backward_bf16(float* dinp, float* dweight, const float* dout, const In* inp,
                         const float* weight, int N, int C, int OC) {
    for (int r0 = 0; r0 < N; r0 += kBackwardRows) {
        const int rows = std::min(kBackwardRows, N - r0);
        get({Product::input_grad, rows, C, OC, true}); // prepared: room for the rounded dout
        const bf16* d = round(rounded_a, dout + size_t(r0) * OC, size_t(rows) * OC);
        input_grad_bf16(dinp + size_t(r0) * C, d, weight, rows, C, OC);
        weight_grad_bf16(dweight, d, inp + size_t(r0) * C, rows, C, OC);
    }
}

template <>
void Matmul<float>::forward(float* out, const bf16* inp, const float* weight, const float* bias,
                            int N, int C, int OC) {
    if (precision_ != Precision::bf16) throw std::logic_error("Matmul: bf16 input in fp32");
    const Impl::Key key = impl_->forward_key(N, C, OC, bias);
    const void* w = impl_->weight_copy(weight, key);
    impl_->run(key, inp, w, bias, out);
}

template <>
void Matmul<float>::forward(bf16* out, const bf16* inp, const float* weight, const float* bias,
                            int N, int C, int OC) {
    if (precision_ != Precision::bf16) throw std::logic_error("Matmul: bf16 output in fp32");
    const Impl::Key key = impl_->forward_key(N, C, OC, bias, true, true);
    const void* w = impl_->weight_copy(weight, key);
    impl_->run(key, inp, w, bias, out);
}

template <>
void Matmul<float>::backward(float* dinp, float* dweight, float* dbias, const float* dout,
                             const bf16* inp, const float* weight, int N, int C, int OC) {
    if (precision_ != Precision::bf16) throw std::logic_error("Matmul: bf16 input in fp32");
    impl_->backward_bf16(dinp, dweight, dout, inp, weight, N, C, OC);
    if (dbias) bias_backward(dbias, dout, N, OC);
}

template <>
void Matmul<float>::backward_input(float* dinp, const bf16* dout, const float* weight, int N, int C,
                                   int OC) {
    if (precision_ != Precision::bf16) throw std::logic_error("Matmul: bf16 gradient in fp32");
    impl_->input_grad_bf16(dinp, dout, weight, N, C, OC);
}

template <>
void Matmul<float>::backward_weight(float* dweight, const bf16* dout, const float* inp, int N,
                                    int C, int OC) {
    if (precision_ != Precision::bf16) throw std::logic_error("Matmul: bf16 gradient in fp32");
    impl_->weight_grad_bf16(dweight, dout, inp, N, C, OC);
}

template <>
void Matmul<float>::forward(float* out, const float* inp, const float* weight, const float* bias,
                            int N, int C, int OC) {
    if (precision_ == Precision::bf16) {
        impl_->get(impl_->forward_key(N, C, OC, bias)); // prepared: room for the rounded input
        return forward(out, impl_->round(impl_->rounded_a, inp, size_t(N) * C), weight, bias, N, C,
                       OC);
    }
    impl_->run(impl_->forward_key(N, C, OC, bias, false), inp, weight, bias, out);
}

template <>
void Matmul<float>::backward(float* dinp, float* dweight, float* dbias, const float* dout,
                             const float* inp, const float* weight, int N, int C, int OC) {
    if (precision_ == Precision::bf16) {
        impl_->backward_bf16(dinp, dweight, dout, inp, weight, N, C, OC);
        if (dbias) bias_backward(dbias, dout, N, OC);
        return;
    }
    const Impl::Key input_grad{Impl::Product::input_grad, N, C, OC, false};
    const void* w =
        impl_->get(input_grad).blocked ? impl_->weight_copy(weight, input_grad) : weight;
    impl_->run(input_grad, dout, w, nullptr, dinp);
    impl_->run({Impl::Product::weight_grad, N, C, OC, false}, dout, inp, nullptr, dweight);
    if (dbias) bias_backward(dbias, dout, N, OC);
}

template <> void Matmul<float>::prepare_weight_grad(int N, int C, int OC) {
    const bool bf16 = precision_ == Precision::bf16;
    const Impl::Prepared& p = impl_->get({Impl::Product::weight_grad, N, C, OC, bf16}, false);
    if (bf16 && !p.blocked) grow(impl_->rounded_b, size_t(N) * C); // inp, rounded
}

template <>
void Matmul<float>::prepare(int N, int C, int OC, bool bias, bool training, const float* weight,
                            Bf16Io io, Copies copies) {
    const bool bf16 = precision_ == Precision::bf16;
    const Impl::Key forward =
        impl_->forward_key(N, C, OC, bias, bf16, bf16 && io == Bf16Io::bf16_in_out);
    impl_->get(forward);
    const bool per_product = training && copies == Copies::per_product;
    if (bf16 && weight) impl_->copy_of(weight, forward, per_product);
    if (!training) return;
    const bool rounds_dout = io != Bf16Io::bf16_grad;
    auto prepare_backward = [&](int rows) {
        const Impl::Key input_grad{Impl::Product::input_grad, rows, C, OC, bf16};
        const bool blocked = impl_->get(input_grad, rounds_dout).blocked;
        if (weight && (bf16 || blocked)) impl_->copy_of(weight, input_grad, per_product);
        const Impl::Prepared& weight_grad =
            impl_->get({Impl::Product::weight_grad, rows, C, OC, bf16}, rounds_dout);
        if (bf16 && (io == Bf16Io::rounded_in || io == Bf16Io::bf16_grad) && !weight_grad.blocked)
            grow(impl_->rounded_b, size_t(rows) * C);
    };
    const int chunk = Impl::kBackwardRows;
    if (bf16 && rounds_dout && N > chunk) { // as backward_bf16 runs it
        prepare_backward(chunk);
        if (N % chunk) prepare_backward(N % chunk);
    } else {
        prepare_backward(N);
    }
}

template <>
size_t Matmul<float>::weight_copy_bytes(size_t params, size_t per_product, bool training) const {
    if (precision_ == Precision::bf16)
        return (params + (training ? per_product : 0)) * sizeof(bf16);
    return training ? params * sizeof(float) : 0;
}

template <> void Matmul<float>::weights_changed() {
    for (Impl::WeightCopy& c : impl_->copies) c.fresh = false;
}

bool matmul_has_bf16() {
    return true;
}

const char* matmul_backend() {
    static const std::string name = "oneDNN " + std::to_string(DNNL_VERSION_MAJOR) + "." +
                                    std::to_string(DNNL_VERSION_MINOR) + "." +
                                    std::to_string(DNNL_VERSION_PATCH);
    return name.c_str();
}

} // namespace model
