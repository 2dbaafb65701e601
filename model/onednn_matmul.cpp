#include "model/onednn_matmul.h"

#include <oneapi/dnnl/dnnl_version.h>

#include <stdexcept>
#include <string>

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

// The memory descriptors of a product (see Impl::Product) and whether it accumulates.
// bf16: src and weights in bf16, dst (unless bf16_dst), bias and accumulation in f32. Weights stay
// in their plain (OC,C) layout, so that one bf16 copy serves the forward product and the input
// gradient: oneDNN 2.6's reorders into its blocked layouts run at under 1 GB/s, which would cost
// more per step than the blocked layout gains.
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

Impl::Prepared make(const Impl::Key& key, const dnnl::engine& engine, std::vector<char>& scratch) {
    const Shapes s = shapes_of(key);
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    if (s.accumulate) {
        dnnl::post_ops sum;
        sum.append_sum(1.0f);
        attr.set_post_ops(sum);
    }
    const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(s.src, s.weights, s.bias, s.dst), attr,
                                          engine);
    Impl::Prepared p;
    p.primitive = dnnl::matmul(pd);
    auto arg = [&](int name, memory& m, const memory::desc& md) {
        m = memory(md, engine, nullptr);
        p.args[p.n_args++] = {name, m.get()};
    };
    arg(DNNL_ARG_SRC, p.src, s.src);
    arg(DNNL_ARG_WEIGHTS, p.weights, s.weights);
    arg(DNNL_ARG_DST, p.dst, s.dst);
    arg(DNNL_ARG_SCRATCHPAD, p.scratch, pd.scratchpad_desc());
    if (key.product == Impl::Product::forward_bias) arg(DNNL_ARG_BIAS, p.bias, s.bias);
    if (scratch.size() < pd.scratchpad_desc().get_size())
        scratch.resize(pd.scratchpad_desc().get_size());
    return p;
}

void grow(std::vector<bf16>& v, size_t n) {
    if (v.size() < n) v.resize(n);
}

} // namespace

Impl::Prepared& Impl::get(const Key& key) {
    auto it = prepared.find(key);
    if (it == prepared.end()) {
        it = prepared.emplace(key, make(key, engine, scratch)).first;
        if (key.bf16) { // room for the rounded activations
            const size_t N = key.N, C = key.C, OC = key.OC;
            const bool grad_src =
                key.product == Product::input_grad || key.product == Product::weight_grad;
            grow(rounded_a, N * (grad_src ? OC : C));
        }
    }
    return it->second;
}

Impl::WeightCopy& Impl::copy_of(const float* weight, size_t n) {
    for (WeightCopy& c : copies)
        if (c.source == weight) return c;
    return copies.emplace_back(WeightCopy{weight, std::vector<bf16>(n), false});
}

const void* Impl::weight_copy(const float* weight, size_t n) {
    WeightCopy& c = copy_of(weight, n);
    if (!c.fresh) to_bf16(c.data.data(), weight, n);
    c.fresh = true;
    return c.data.data();
}

const bf16* Impl::round(std::vector<bf16>& into, const float* x, size_t n) {
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

template <>
void Matmul<float>::forward(float* out, const bf16* inp, const float* weight, const float* bias,
                            int N, int C, int OC) {
    if (precision_ != Precision::bf16) throw std::logic_error("Matmul: bf16 input in fp32");
    const Impl::Key key = impl_->forward_key(N, C, OC, bias);
    const void* w = impl_->weight_copy(weight, size_t(OC) * C);
    impl_->run(key, inp, w, bias, out);
}

template <>
void Matmul<float>::forward(bf16* out, const bf16* inp, const float* weight, const float* bias,
                            int N, int C, int OC) {
    if (precision_ != Precision::bf16) throw std::logic_error("Matmul: bf16 output in fp32");
    const Impl::Key key = impl_->forward_key(N, C, OC, bias, true, true);
    const void* w = impl_->weight_copy(weight, size_t(OC) * C);
    impl_->run(key, inp, w, bias, out);
}

template <>
void Matmul<float>::backward(float* dinp, float* dweight, float* dbias, const float* dout,
                             const bf16* inp, const float* weight, int N, int C, int OC) {
    if (precision_ != Precision::bf16) throw std::logic_error("Matmul: bf16 input in fp32");
    const Impl::Key input_grad{Impl::Product::input_grad, N, C, OC, true};
    const Impl::Key weight_grad{Impl::Product::weight_grad, N, C, OC, true};
    impl_->get(weight_grad); // prepared: room for the rounded dout
    const void* w = impl_->weight_copy(weight, size_t(OC) * C);
    const bf16* d = impl_->round(impl_->rounded_a, dout, size_t(N) * OC);
    impl_->run(input_grad, d, w, nullptr, dinp);
    impl_->run(weight_grad, d, inp, nullptr, dweight);
    if (dbias) bias_backward(dbias, dout, N, OC);
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
        impl_->get({Impl::Product::weight_grad, N, C, OC, true});
        grow(impl_->rounded_b, size_t(N) * C); // prepared (Bf16Io::rounded_in): room for inp
        return backward(dinp, dweight, dbias, dout,
                        impl_->round(impl_->rounded_b, inp, size_t(N) * C), weight, N, C, OC);
    }
    impl_->run({Impl::Product::input_grad, N, C, OC, false}, dout, weight, nullptr, dinp);
    impl_->run({Impl::Product::weight_grad, N, C, OC, false}, dout, inp, nullptr, dweight);
    if (dbias) bias_backward(dbias, dout, N, OC);
}

template <>
void Matmul<float>::prepare(int N, int C, int OC, bool bias, bool training, const float* weight,
                            Bf16Io io) {
    const bool bf16 = precision_ == Precision::bf16;
    impl_->get(impl_->forward_key(N, C, OC, bias, bf16, bf16 && io == Bf16Io::bf16_in_out));
    if (bf16 && weight) impl_->copy_of(weight, size_t(OC) * C);
    if (!training) return;
    impl_->get({Impl::Product::input_grad, N, C, OC, bf16});
    impl_->get({Impl::Product::weight_grad, N, C, OC, bf16});
    if (bf16 && io == Bf16Io::rounded_in) grow(impl_->rounded_b, size_t(N) * C);
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
