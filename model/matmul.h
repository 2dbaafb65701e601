// The linear layers' matrix products behind one interface, whatever library runs them:
// oneDNN for float (CBLAS instead when built with -DGPT2_MATMUL=cblas), CBLAS for
// double. A Matmul keeps what it prepared for each shape (oneDNN primitives and their
// scratch memory), so that the products of a prepared shape allocate nothing; each
// model owns one. Shapes as in layers.h's matmul_forward/matmul_backward, which are the
// plain CBLAS versions.
#pragma once

#include <memory>

#include "model/bf16.h"
#include "model/precision.h"

namespace model {

template <class T> class Matmul {
public:
    Matmul();
    ~Matmul();
    Matmul(Matmul&&) noexcept;
    Matmul& operator=(Matmul&&) noexcept;

    // out (N,OC) = inp (N,C) @ weight (OC,C)^T + bias (OC); bias may be null.
    void forward(T* out, const T* inp, const T* weight, const T* bias, int N, int C, int OC);
    // dinp (N,C) += dout (N,OC) @ weight;  dweight (OC,C) += dout^T @ inp;
    // dbias (OC) += the column sums of dout (skipped if null).
    void backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight,
                  int N, int C, int OC);
    // The same two in bf16 precision (float only) with inp already in bf16: rounded once
    // where it was made (layernorm_forward, gelu_forward) and kept for backward, rather
    // than rounded again by every product that reads it.
    void forward(T* out, const bf16* inp, const T* weight, const T* bias, int N, int C, int OC);
    void backward(T* dinp, T* dweight, T* dbias, const T* dout, const bf16* inp, const T* weight,
                  int N, int C, int OC);
    // The bf16 forward product with out rounded to bf16 (nearest even) as it is written,
    // for outputs kept in bf16 (qkv, fch).
    void forward(bf16* out, const bf16* inp, const T* weight, const T* bias, int N, int C, int OC);
    // backward's two products one at a time, on dout already in bf16 (bf16 precision, float
    // only), for a caller that makes dout in bf16 and keeps it: the fused classifier, which
    // adds the weight gradient of two chunks of rows at once. No bias.
    void backward_input(T* dinp, const bf16* dout, const T* weight, int N, int C, int OC);
    void backward_weight(T* dweight, const bf16* dout, const T* inp, int N, int C, int OC);
    // What a shape's products read and write in bf16 precision: inputs in T, rounded by
    // each product into buffers of its own (the default); inputs already in bf16 (the
    // overloads above); those and a forward output in bf16 too; or inputs in T and
    // backward's dout in bf16 (backward_input, backward_weight).
    enum class Bf16Io { rounded_in, bf16_in, bf16_in_out, bf16_grad };
    // How a weight's bf16 copy serves the forward and the input-gradient products, which
    // read it in different layouts: one buffer holding the layout of its last use (a
    // layer's weight: each product runs once per pass), or one buffer per layout (the
    // classifier's, whose row chunks each run both: one buffer would be repacked twice per
    // chunk).
    enum class Copies { alternate, per_product };
    // Prepares a shape's products before their first use: the forward one (with a bias
    // or without), and with `training` the two backward ones too; given the weight tensor,
    // also the room for its derived copies (bf16), and per `io` the room for rounded inputs.
    void prepare(int N, int C, int OC, bool bias, bool training, const T* weight = nullptr,
                 Bf16Io io = Bf16Io::rounded_in, Copies copies = Copies::alternate);
    // Prepares backward_weight alone for a shape (on inputs in T), for weight gradients
    // over more rows than the other products take at once.
    void prepare_weight_grad(int N, int C, int OC);
    // About how many bytes prepare() adds in weight copies for a model of `params`
    // weights, `per_product` of them prepared with Copies::per_product, for memory checks
    // before it runs (block padding aside): bf16 copies in bf16 precision, blocked float
    // copies for training's input gradients on oneDNN in fp32.
    size_t weight_copy_bytes(size_t params, size_t per_product, bool training) const;

    // bf16: products read bfloat16 copies of their inputs and weights and accumulate in
    // float (float only; check_precision_supported first). Default fp32.
    void set_precision(Precision precision);
    Precision precision() const { return precision_; }
    // The weights passed in may have changed since the last product: copies derived from
    // them (bf16, packed layouts) are remade at their next use.
    void weights_changed();

    struct Impl; // the backend's state: matmul.cpp (CBLAS) or onednn_matmul.h

private:
    std::unique_ptr<Impl> impl_;
    Precision precision_ = Precision::fp32;
};

// Which library runs float products, e.g. "oneDNN 2.6.3" or "CBLAS".
const char* matmul_backend();
// Whether this build can run float products in bf16 (the oneDNN build).
bool matmul_has_bf16();

} // namespace model
