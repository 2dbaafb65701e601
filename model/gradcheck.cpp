#include "model/gradcheck.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>

#include "model/gpt2.h"
#include "model/layers.h"

namespace model {

GradError compare_gradients(const std::string& name, const double* analytic, const double* numeric,
                            size_t count) {
    GradError e;
    e.name = name;
    e.count = count;
    double scale = 0;
    for (size_t i = 0; i < count; ++i) {
        e.max_abs = std::max(e.max_abs, std::abs(analytic[i] - numeric[i]));
        scale = std::max({scale, std::abs(analytic[i]), std::abs(numeric[i])});
    }
    e.rel = scale > 0 ? e.max_abs / scale : 0;
    return e;
}

namespace {

using Loss = std::function<double()>;

// d loss / d x by central differences, perturbing x in place (and restoring it).
std::vector<double> numeric_gradient(double* x, size_t n, const Loss& loss, double h) {
    std::vector<double> g(n);
    for (size_t i = 0; i < n; ++i) {
        const double saved = x[i];
        x[i] = saved + h;
        const double plus = loss();
        x[i] = saved - h;
        const double minus = loss();
        x[i] = saved;
        g[i] = (plus - minus) / (2 * h);
    }
    return g;
}

std::vector<double> normal_vector(std::mt19937_64& gen, size_t n, double mean = 0, double std = 1) {
    std::normal_distribution<double> dist(mean, std);
    std::vector<double> v(n);
    for (double& x : v) x = dist(gen);
    return v;
}

// Random tokens in [0, V); targets likewise, with every 5th ignored.
void random_batch(std::mt19937_64& gen, int V, size_t n, std::vector<int>& tokens,
                  std::vector<int>& targets) {
    tokens.resize(n);
    targets.resize(n);
    for (size_t i = 0; i < n; ++i) {
        tokens[i] = int(gen() % V);
        targets[i] = i % 5 == 4 ? -1 : int(gen() % V);
    }
}

// GPT-2 init with matrices scaled up 5x (std 0.1: GPT-2's 0.02 makes gradients so small
// that finite differences lose digits), plus noise on the biases and LayerNorm weights,
// which init sets to 0 and 1.
std::vector<double> random_weights(const ParamLayout& layout, uint64_t seed) {
    GPT2<double> m(layout.config());
    m.init_weights(seed);
    std::vector<double> w(m.params(), m.params() + m.num_params());
    std::mt19937_64 gen(seed + 1);
    std::normal_distribution<double> noise(0, 0.1);
    for (const TensorInfo& t : layout.tensors())
        for (size_t i = 0; i < t.size; ++i) {
            double& x = w[t.offset + i];
            x = t.shape.size() == 1 ? x + noise(gen) : 5 * x;
        }
    return w;
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
    double s = 0;
    for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
    return s;
}

} // namespace

std::vector<GradError> check_model_gradients(const Config& config, int B, int Tn, uint64_t seed,
                                             double h, int loss_divisor) {
    GPT2<double> model(config);
    const auto w = random_weights(model.layout(), seed);
    model.set_params(w.data(), w.size());
    std::mt19937_64 gen(seed + 2);
    std::vector<int> tokens, targets;
    random_batch(gen, config.vocab, size_t(B) * Tn, tokens, targets);

    model.reserve(B, Tn, true);
    model.zero_grad();
    model.forward(tokens.data(), targets.data(), B, Tn, Pass::training, loss_divisor);
    model.backward();
    // The function differentiated: the mean over kept targets, or their sum / divisor.
    const double scale = loss_divisor > 0 ? double(model.targets_kept()) / loss_divisor : 1.0;
    const Loss loss = [&] { return model.forward(tokens.data(), targets.data(), B, Tn) * scale; };
    const auto numeric = numeric_gradient(model.params(), model.num_params(), loss, h);

    std::vector<GradError> errors;
    for (const TensorInfo& t : model.layout().tensors())
        errors.push_back(
            compare_gradients(t.name, model.grads() + t.offset, numeric.data() + t.offset, t.size));
    return errors;
}

std::vector<GradError> check_layer_gradients(uint64_t seed, double h) {
    std::mt19937_64 gen(seed);
    std::vector<GradError> errors;
    const int B = 2, Tn = 5, C = 8, NH = 2, V = 11, Vp = 16, N = B * Tn;

    // Checks loss = sum(out * R) for out = f(inputs): backward(dout = R) must match
    // finite differences for each named input.
    auto check = [&](const std::string& layer, size_t out_size,
                     std::vector<std::pair<std::string, std::vector<double>*>> inputs,
                     const std::function<void(std::vector<double>&)>& forward,
                     const std::function<void(const std::vector<double>&,
                                              std::vector<std::vector<double>>&)>& backward) {
        const auto R = normal_vector(gen, out_size);
        std::vector<double> out(out_size);
        std::vector<std::vector<double>> grads;
        for (auto& in : inputs) grads.emplace_back(in.second->size(), 0.0);
        forward(out);
        backward(R, grads);
        const Loss loss = [&] {
            forward(out);
            return dot(out, R);
        };
        for (size_t i = 0; i < inputs.size(); ++i) {
            auto& x = *inputs[i].second;
            const auto numeric = numeric_gradient(x.data(), x.size(), loss, h);
            errors.push_back(compare_gradients(layer + "/" + inputs[i].first, grads[i].data(),
                                               numeric.data(), x.size()));
        }
    };

    {
        std::vector<int> tokens, unused;
        random_batch(gen, V, N, tokens, unused);
        auto wte = normal_vector(gen, size_t(Vp) * C), wpe = normal_vector(gen, size_t(Tn) * C);
        check(
            "encoder", size_t(N) * C, {{"wte", &wte}, {"wpe", &wpe}},
            [&](auto& out) {
                encoder_forward(out.data(), tokens.data(), wte.data(), wpe.data(), B, Tn, C);
            },
            [&](const auto& dout, auto& g) {
                encoder_backward(g[0].data(), g[1].data(), dout.data(), tokens.data(), B, Tn, C);
            });
    }
    {
        auto inp = normal_vector(gen, size_t(N) * C, 0.5, 2.0);
        auto w = normal_vector(gen, C, 1.0, 0.3), b = normal_vector(gen, C);
        std::vector<double> mean(N), rstd(N);
        check(
            "layernorm", size_t(N) * C, {{"inp", &inp}, {"weight", &w}, {"bias", &b}},
            [&](auto& out) {
                layernorm_forward(out.data(), mean.data(), rstd.data(), inp.data(), w.data(),
                                  b.data(), N, C);
            },
            [&](const auto& dout, auto& g) {
                layernorm_backward(g[0].data(), g[1].data(), g[2].data(), dout.data(), inp.data(),
                                   w.data(), mean.data(), rstd.data(), N, C);
            });
    }
    {
        const int OC = 3 * C;
        auto inp = normal_vector(gen, size_t(N) * C), w = normal_vector(gen, size_t(OC) * C),
             b = normal_vector(gen, OC);
        check(
            "matmul", size_t(N) * OC, {{"inp", &inp}, {"weight", &w}, {"bias", &b}},
            [&](auto& out) {
                matmul_forward(out.data(), inp.data(), w.data(), b.data(), N, C, OC);
            },
            [&](const auto& dout, auto& g) {
                matmul_backward(g[0].data(), g[1].data(), g[2].data(), dout.data(), inp.data(),
                                w.data(), N, C, OC);
            });
    }
    {
        // The backward reads the forward's output y and lse.
        auto qkv = normal_vector(gen, size_t(N) * 3 * C);
        std::vector<double> y(size_t(N) * C), lse(size_t(B) * NH * Tn),
            scratch(2 * attention_scratch_size<double>(Tn, C / NH));
        check(
            "attention", size_t(N) * C, {{"qkv", &qkv}},
            [&](auto& out) {
                attention_forward(out.data(), lse.data(), scratch.data(), 2, qkv.data(), B, Tn, C,
                                  NH);
                y = out;
            },
            [&](const auto& dout, auto& g) {
                attention_backward(g[0].data(), scratch.data(), 2, dout.data(), qkv.data(),
                                   y.data(), lse.data(), B, Tn, C, NH);
            });
    }
    {
        // Long enough for several of attention's blocks, the last one partial.
        const int Tl = 260, Cl = 4;
        auto qkv = normal_vector(gen, size_t(Tl) * 3 * Cl);
        std::vector<double> y(size_t(Tl) * Cl), lse(size_t(NH) * Tl),
            scratch(attention_scratch_size<double>(Tl, Cl / NH));
        check(
            "attention T=260", size_t(Tl) * Cl, {{"qkv", &qkv}},
            [&](auto& out) {
                attention_forward(out.data(), lse.data(), scratch.data(), 1, qkv.data(), 1, Tl, Cl,
                                  NH);
                y = out;
            },
            [&](const auto& dout, auto& g) {
                attention_backward(g[0].data(), scratch.data(), 1, dout.data(), qkv.data(),
                                   y.data(), lse.data(), 1, Tl, Cl, NH);
            });
    }
    {
        auto inp = normal_vector(gen, size_t(N) * C, 0.0, 2.0);
        check(
            "gelu", inp.size(), {{"inp", &inp}},
            [&](auto& out) { gelu_forward(out.data(), inp.data(), inp.size()); },
            [&](const auto& dout, auto& g) {
                gelu_backward(g[0].data(), inp.data(), dout.data(), inp.size());
            });
    }
    {
        auto a = normal_vector(gen, size_t(N) * C), b = normal_vector(gen, size_t(N) * C);
        check(
            "residual", a.size(), {{"a", &a}, {"b", &b}},
            [&](auto& out) { residual_forward(out.data(), a.data(), b.data(), a.size()); },
            [&](const auto& dout, auto& g) {
                residual_backward(g[0].data(), g[1].data(), dout.data(), a.size());
            });
    }
    {
        // The cross-entropy is checked on its own scalar: the mean loss over kept targets.
        std::vector<int> unused, targets;
        random_batch(gen, V, N, unused, targets);
        auto logits = normal_vector(gen, size_t(N) * Vp, 0.0, 2.0);
        std::vector<double> probs(logits.size()), losses(N);
        const Loss loss = [&] {
            const int kept = softmax_crossentropy_forward(probs.data(), losses.data(),
                                                          logits.data(), targets.data(), N, V, Vp);
            double s = 0;
            for (double l : losses) s += l;
            return s / kept;
        };
        loss();
        int kept = 0;
        for (int t : targets) kept += t >= 0;
        std::vector<double> dlogits(logits.size());
        softmax_crossentropy_backward(dlogits.data(), probs.data(), targets.data(), 1.0 / kept, N,
                                      V, Vp);
        const auto numeric = numeric_gradient(logits.data(), logits.size(), loss, h);
        errors.push_back(compare_gradients("crossentropy/logits", dlogits.data(), numeric.data(),
                                           logits.size()));
    }
    return errors;
}

PrecisionReport compare_precisions(const Config& config, int B, int Tn, uint64_t seed) {
    GPT2<float> f(config);
    {
        const auto w = random_weights(f.layout(), seed);
        f.set_params(w.data(), w.size());
    }
    GPT2<double> d(config);
    d.set_params(f.params(), f.num_params());

    std::mt19937_64 gen(seed + 2);
    std::vector<int> tokens, targets;
    random_batch(gen, config.vocab, size_t(B) * Tn, tokens, targets);
    PrecisionReport r;
    f.reserve(B, Tn, true);
    f.zero_grad();
    r.loss_float = f.forward(tokens.data(), targets.data(), B, Tn, Pass::training);
    f.backward();
    d.reserve(B, Tn, true);
    d.zero_grad();
    r.loss_double = d.forward(tokens.data(), targets.data(), B, Tn, Pass::training);
    d.backward();
    r.loss_rel = std::abs(r.loss_float - r.loss_double) / std::abs(r.loss_double);

    const std::vector<double> gf(f.grads(), f.grads() + f.num_params());
    for (const TensorInfo& t : f.layout().tensors())
        r.grads.push_back(
            compare_gradients(t.name, gf.data() + t.offset, d.grads() + t.offset, t.size));
    return r;
}

} // namespace model
