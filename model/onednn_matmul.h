// Matmul<float>'s state on oneDNN, for matmul.cpp and onednn_matmul.cpp only: one
// matmul primitive per (product, shape, precision), made once and kept, with its
// scratch memory supplied by us and its arguments passed as a fixed array, so that
// running a prepared product allocates nothing.
//
// In bf16 a product reads bfloat16: activations are rounded into bf16 buffers kept
// here, and each weight tensor gets one bf16 copy, remade after weights_changed() at
// first use.
#pragma once

#include <dnnl.hpp>

#include <map>
#include <vector>

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
    };
    // A weight tensor's bf16 copy (OC,C), remade at first use after weights_changed().
    struct WeightCopy {
        const float* source;
        std::vector<bf16> data;
        bool fresh = false;
    };

    static Key forward_key(int N, int C, int OC, bool bias, bool bf16 = true,
                           bool bf16_dst = false) {
        return {bias ? Product::forward_bias : Product::forward, N, C, OC, bf16, bf16_dst};
    }
    Prepared& get(const Key& key); // prepares the product on first use
    // The bf16 copy of `weight` (n elements): copy_of finds or makes its buffer,
    // weight_copy also brings its values up to date.
    WeightCopy& copy_of(const float* weight, size_t n);
    const void* weight_copy(const float* weight, size_t n);
    void run(const Key& key, const void* src, const void* weights, const float* bias, void* dst);
    // Rounds n floats to bf16 into `into` (grown at preparation, not here).
    const bf16* round(std::vector<bf16>& into, const float* x, size_t n);

    dnnl::engine engine{dnnl::engine::kind::cpu, 0};
    dnnl::stream stream{engine};
    std::map<Key, Prepared> prepared;
    std::vector<char> scratch;      // shared by every product, sized for the largest
    std::vector<WeightCopy> copies; // bf16 weight copies, a few per weight tensor
    // bf16 activations: src (an input or dout), and inp in backward; rounded_b only for
    // shapes prepared with Bf16Io::rounded_in.
    std::vector<bf16> rounded_a, rounded_b;
};

} // namespace model
