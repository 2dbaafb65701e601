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
struct Shapes {
    memory::desc src, weights, bias, dst;
    bool accumulate = false;
};

Shapes shapes_of(const Impl::Key& k) {
    const memory::dim N = k.N, C = k.C, OC = k.OC;
    const auto f32 = memory::data_type::f32;
    Shapes s;
    switch (k.product) {
    case Impl::Product::forward:
    case Impl::Product::forward_bias:
        s.src = memory::desc({N, C}, f32, tag::ab);
        s.weights = memory::desc({C, OC}, f32, tag::ba);
        s.dst = memory::desc({N, OC}, f32, tag::ab);
        if (k.product == Impl::Product::forward_bias) s.bias = memory::desc({1, OC}, f32, tag::ab);
        break;
    case Impl::Product::input_grad:
        s.src = memory::desc({N, OC}, f32, tag::ab);
        s.weights = memory::desc({OC, C}, f32, tag::ab);
        s.dst = memory::desc({N, C}, f32, tag::ab);
        s.accumulate = true;
        break;
    case Impl::Product::weight_grad:
        s.src = memory::desc({OC, N}, f32, tag::ba);
        s.weights = memory::desc({N, C}, f32, tag::ab);
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

} // namespace

Impl::Prepared& Impl::get(const Key& key) {
    auto it = prepared.find(key);
    if (it == prepared.end()) it = prepared.emplace(key, make(key, engine, scratch)).first;
    return it->second;
}

void Impl::run(const Key& key, const float* src, const float* weights, const float* bias,
               float* dst) {
    Prepared& p = get(key);
    p.src.set_data_handle(const_cast<float*>(src));
    p.weights.set_data_handle(const_cast<float*>(weights));
    p.dst.set_data_handle(dst);
    p.scratch.set_data_handle(scratch.data());
    if (bias) p.bias.set_data_handle(const_cast<float*>(bias));
    check(dnnl_primitive_execute(p.primitive.get(), stream.get(), p.n_args, p.args), "matmul");
    check(dnnl_stream_wait(stream.get()), "stream wait");
}

template <>
void Matmul<float>::forward(float* out, const float* inp, const float* weight, const float* bias,
                            int N, int C, int OC) {
    const Impl::Product kind = bias ? Impl::Product::forward_bias : Impl::Product::forward;
    impl_->run({kind, N, C, OC}, inp, weight, bias, out);
}

template <>
void Matmul<float>::backward(float* dinp, float* dweight, float* dbias, const float* dout,
                             const float* inp, const float* weight, int N, int C, int OC) {
    impl_->run({Impl::Product::input_grad, N, C, OC}, dout, weight, nullptr, dinp);
    impl_->run({Impl::Product::weight_grad, N, C, OC}, dout, inp, nullptr, dweight);
    if (dbias) bias_backward(dbias, dout, N, OC);
}

template <> void Matmul<float>::prepare(int N, int C, int OC, bool bias, bool training) {
    impl_->get({bias ? Impl::Product::forward_bias : Impl::Product::forward, N, C, OC});
    if (!training) return;
    for (auto product : {Impl::Product::input_grad, Impl::Product::weight_grad})
        impl_->get({product, N, C, OC});
}

template <> void Matmul<float>::weights_changed() {}

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
