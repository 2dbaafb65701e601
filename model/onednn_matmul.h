// Matmul<float>'s state on oneDNN, for matmul.cpp and onednn_matmul.cpp only: one
// matmul primitive per (product, shape, precision), made once and kept, with its
// scratch memory supplied by us and its arguments passed as a fixed array, so that
// running a prepared product allocates nothing.
//
// In bf16 a product reads bfloat16: activations are rounded into bf16 buffers kept
// here, and each weight tensor gets one bf16 copy. A product's second operand ("weights"
// to oneDNN: the weight tensor, or for the weight gradient the layer's input) is written
// in oneDNN's blocked layout for AVX-512 (BA16a64b2a), which its kernels run 10-20%
// faster than plain rows; where oneDNN wants another layout, the plain one is used. A
// blocked weight copy holds the layout of the product that used it last, the forward one
// (W^T) or the input gradient's (W): training packs each weight twice per pass, as two
// copies would after every optimizer step, in half the memory. In fp32 only the input
// gradient reads a blocked copy of the weight (BA16a64b), 10-40% faster than plain.
#pragma once

#include <dnnl.hpp>

#include <map>
#include <vector>

#include "base/memory.h"
#include "model/matmul.h"

namespace model {

template <> struct Matmul<float>::Impl {
    // A linear layer's products as oneDNN sees them, dst (M,N) = src (M,K) @ weights (K,N):
    //   forward[_bias]  out (N,OC)  = inp (N,C) @ weight^T (weight (OC,C) read as (C,OC))
    //   input_grad      dinp (N,C) += dout (N,OC) @ weight
    //   weight_grad     dw (OC,C)  += dout^T (dout (N,OC) read as (OC,N)) @ inp (N,C)
    enum class Product { forward, forward_bias, input_grad, weight_grad };
    struct Key {
        Product product;
        int N, C, OC;
        bool bf16;             // src and weights in bf16
        bool bf16_dst = false; // dst too (forward products only)
        auto operator<=>(const Key&) const = default;
    };
    struct Prepared {
        dnnl::matmul primitive;
        dnnl::memory src, weights, bias, dst, scratch;
        int n_args = 0;
        dnnl_exec_arg_t args[5];
        bool blocked = false; // weights in BA16a64b2a (bf16) or BA16a64b (f32)
    };
    // A weight tensor's copy: in bf16 plain (OC,C), which serves both products, or
    // blocked (K,N) as `product` reads it; in f32 blocked for the input gradient. Remade
    // at first use after weights_changed(), and when blocked at the first use by the
    // other product, unless `per_product`: then the weight has one copy per product.
    struct WeightCopy {
        const float* source; // with its shape: memory reused for another tensor is another copy
        int OC, C;
        bool blocked, bf16;
        base::LargeVector<char> data;       // bf16 or float elements
        Product product = Product::forward; // forward or input_grad
        bool per_product = false;
        bool fresh = false;
    };

    static Key forward_key(int N, int C, int OC, bool bias, bool bf16 = true,
                           bool bf16_dst = false) {
        return {bias ? Product::forward_bias : Product::forward, N, C, OC, bf16, bf16_dst};
    }
    // Prepares the product on first use, with room to round its src into rounded_a in
    // bf16 unless the caller passes src in bf16 (rounds_src false).
    Prepared& get(const Key& key, bool rounds_src = true);
    // The copy of `weight` for the product `key` (forward or input_grad): copy_of finds or
    // makes its buffer (with `per_product`, one for this product alone, from now on),
    // weight_copy also brings it up to date for that product.
    WeightCopy& copy_of(const float* weight, const Key& key, bool per_product = false);
    const void* weight_copy(const float* weight, const Key& key);
    void run(const Key& key, const void* src, const void* weights, const float* bias, void* dst);
    // Rounds n floats to bf16 into `into` (grown at preparation, not here).
    const bf16* round(base::LargeVector<bf16>& into, const float* x, size_t n);
    // Both backward products in bf16 on inp (N,C) in float or bf16: dout rounded once,
    // inp packed for the weight gradient (or rounded, or read as it is, if plain); in
    // chunks of at most kBackwardRows rows, so that the rounded and packed buffers stay
    // small (at B*T = 4096, GPT-2's 37.7 MB less than whole).
    static constexpr int kBackwardRows = 1024;
    template <class In>
    void backward_bf16(float* dinp, float* dweight, const float* dout, const In* inp,
                       const float* weight, int N, int C, int OC);
    // Its two products, on dout in bf16.
    void input_grad_bf16(float* dinp, const bf16* dout, const float* weight, int N, int C, int OC);
    template <class In>
    void weight_grad_bf16(float* dweight, const bf16* dout, const In* inp, int N, int C, int OC);

    dnnl::engine engine{dnnl::engine::kind::cpu, 0};
    dnnl::stream stream{engine};
    std::map<Key, Prepared> prepared;
    base::LargeVector<char> scratch; // shared by every product, sized for the largest
    std::vector<WeightCopy> copies;  // weight copies, one per weight tensor and precision
    // bf16 activations: src (an input or dout), and inp in backward; rounded_b only for
    // shapes prepared with Bf16Io::rounded_in whose weight gradient reads plain inputs;
    // packed_b for inp in the blocked layout.
    base::LargeVector<bf16> rounded_a, rounded_b, packed_b;
};

} // namespace model
