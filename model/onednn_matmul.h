// Matmul<float>'s state on oneDNN, for matmul.cpp and onednn_matmul.cpp only: one
// matmul primitive per (product, shape), made once and kept, with its scratch memory
// supplied by us and its arguments passed as a fixed array, so that running a prepared
// product allocates nothing.
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
        auto operator<=>(const Key&) const = default;
    };
    struct Prepared {
        dnnl::matmul primitive;
        dnnl::memory src, weights, bias, dst, scratch;
        int n_args = 0;
        dnnl_exec_arg_t args[5];
    };

    Prepared& get(const Key& key); // prepares the product on first use
    void run(const Key& key, const float* src, const float* weights, const float* bias, float* dst);

    dnnl::engine engine{dnnl::engine::kind::cpu, 0};
    dnnl::stream stream{engine};
    std::map<Key, Prepared> prepared;
    std::vector<char> scratch; // shared by every product, sized for the largest
};

} // namespace model
