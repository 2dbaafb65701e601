// The whole model: sizes, initialisation, loss semantics, gradients.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <doctest/doctest.h>

#include "model/blas.h"
#include "model/gpt2.h"
#include "model/gradcheck.h"
#include "model/precision.h"

using doctest::Approx;
using namespace model;

namespace {

const Config kTiny = make_config(2, 2, 16, 64, 8); // L2 NH2 C16 V64(Vp128) T8

std::vector<int> iota_tokens(size_t n, int vocab, int start = 0) {
    std::vector<int> t(n);
    for (size_t i = 0; i < n; ++i) t[i] = int((start + 7 * i) % vocab);
    return t;
}

} // namespace

TEST_CASE("gpt2 has 124,439,808 parameters, plus the padded vocabulary rows") {
    const ParamLayout layout(preset("gpt2"));
    CHECK(layout.count_unpadded() == 124439808);
    CHECK(layout.padding_elements() == size_t(50304 - 50257) * 768);
    CHECK(layout.total() == 124475904);
    CHECK(layout.tensors().size() == 2 + 12 * 12 + 2);
    CHECK(layout.find("h.11.mlp.c_proj.weight").shape == std::vector<int64_t>{768, 3072});
}

TEST_CASE("presets and configs are validated") {
    CHECK(preset("d6").n_embd == 384);
    CHECK(preset("gpt2-xl").n_head == 25);
    CHECK(pad_vocab(50257) == 50304);
    CHECK(pad_vocab(128) == 128);
    CHECK_THROWS_AS(preset("gpt3"), std::invalid_argument);
    CHECK_THROWS_AS(make_config(2, 3, 16), std::invalid_argument);
    CHECK_THROWS_AS(make_config(0, 2, 16), std::invalid_argument);
}

TEST_CASE("initialisation follows GPT-2 and is reproducible from the seed") {
    GPT2<float> a(kTiny), b(kTiny);
    a.init_weights(42);
    b.init_weights(42);
    CHECK(std::equal(a.params(), a.params() + a.num_params(), b.params()));
    GPT2<double> d(kTiny);
    d.init_weights(42);
    for (size_t i = 0; i < a.num_params(); ++i) REQUIRE(a.params()[i] == float(d.params()[i]));

    const ParamLayout& layout = a.layout();
    auto values = [&](const std::string& name) {
        const TensorInfo& t = layout.find(name);
        return std::vector<float>(a.params() + t.offset, a.params() + t.offset + t.size);
    };
    auto stddev = [](const std::vector<float>& v) {
        double s = 0;
        for (float x : v) s += double(x) * x;
        return std::sqrt(s / v.size());
    };
    for (float x : values("h.0.ln_1.weight")) CHECK(x == 1.0f);
    for (float x : values("h.1.mlp.c_fc.bias")) CHECK(x == 0.0f);
    CHECK(stddev(values("h.0.mlp.c_fc.weight")) == Approx(0.02).epsilon(0.1));
    CHECK(stddev(values("h.0.mlp.c_proj.weight")) == Approx(0.02 / 2).epsilon(0.1)); // 1/sqrt(2L)
    const auto wte = values("wte.weight");
    for (size_t i = size_t(kTiny.vocab) * kTiny.n_embd; i < wte.size(); ++i) CHECK(wte[i] == 0.0f);
}

TEST_CASE("an untrained model predicts close to uniformly") {
    GPT2<float> m(kTiny);
    m.init_weights(1);
    const auto tokens = iota_tokens(16, kTiny.vocab), targets = iota_tokens(16, kTiny.vocab, 3);
    const double loss = m.forward(tokens.data(), targets.data(), 2, 8);
    CHECK(loss == Approx(std::log(64.0)).epsilon(0.02));
}

TEST_CASE("parameters and gradients moved to outside storage are used there and moved back") {
    for (Precision precision : {Precision::fp32, Precision::bf16}) {
        if (precision == Precision::bf16 && (!cpu_has_bf16() || !matmul_has_bf16())) continue;
        const std::string name = precision_name(precision);
        CAPTURE(name);
        GPT2<float> m(kTiny);
        m.set_precision(precision);
        m.init_weights(5);
        m.reserve(1, 8, true);
        const auto tokens = iota_tokens(9, kTiny.vocab);
        const double before = m.forward(tokens.data(), tokens.data() + 1, 1, 8);
        std::vector<float> storage(m.params(), m.params() + m.num_params());
        m.use_params_at(storage.data());
        CHECK(m.params() == storage.data());
        CHECK(m.forward(tokens.data(), tokens.data() + 1, 1, 8) == before);
        // Written from outside (as another rank would), read by the next pass.
        for (float& p : storage) p *= 0.5f;
        (void)m.params(); // tells the model they changed
        const double halved = m.forward(tokens.data(), tokens.data() + 1, 1, 8);
        CHECK(halved != before);
        m.use_params_at(nullptr);
        CHECK(m.params() != storage.data());
        CHECK(std::equal(storage.begin(), storage.end(), std::as_const(m).params()));
        storage.assign(storage.size(), 0.0f); // no longer the model's
        CHECK(m.forward(tokens.data(), tokens.data() + 1, 1, 8) == halved);

        // Gradients: copied out, accumulated there as in the model's own, copied back.
        const auto pass = [&] {
            m.forward(tokens.data(), tokens.data() + 1, 1, 8, Pass::training);
            m.backward();
        };
        m.zero_grad();
        pass();
        const std::vector<float> once(m.grads(), m.grads() + m.num_params());
        pass();
        const std::vector<float> twice(m.grads(), m.grads() + m.num_params());
        m.zero_grad();
        pass();
        std::vector<float> grads(m.num_params(), -1.0f);
        m.use_grads_at(grads.data());
        CHECK(m.grads() == grads.data());
        CHECK(grads == once);
        pass();
        CHECK(grads == twice);
        m.use_grads_at(nullptr);
        CHECK(m.grads() != grads.data());
        CHECK(std::equal(twice.begin(), twice.end(), m.grads()));
    }
}

TEST_CASE("the loss is the mean over targets that are not -1") {
    GPT2<double> m(kTiny);
    m.init_weights(3);
    const auto tokens = iota_tokens(8, kTiny.vocab);
    auto targets = iota_tokens(8, kTiny.vocab, 5);
    m.forward(tokens.data(), targets.data(), 1, 8);
    std::vector<double> losses(8);
    // per-position losses via one-hot masks
    for (int i = 0; i < 8; ++i) {
        std::vector<int> one(8, -1);
        one[i] = targets[i];
        losses[i] = m.forward(tokens.data(), one.data(), 1, 8);
    }
    targets[2] = targets[5] = -1;
    const double masked = m.forward(tokens.data(), targets.data(), 1, 8);
    CHECK(m.targets_kept() == 6);
    const double expected =
        (std::accumulate(losses.begin(), losses.end(), 0.0) - losses[2] - losses[5]) / 6;
    CHECK(masked == Approx(expected).epsilon(1e-12));

    const std::vector<int> none(8, -1);
    m.reserve(1, 8, true);
    m.zero_grad();
    CHECK(m.forward(tokens.data(), none.data(), 1, 8, Pass::training) == 0.0);
    m.backward();
    for (size_t i = 0; i < m.num_params(); ++i) REQUIRE(m.grads()[i] == 0.0);
}

TEST_CASE("attention is causal: later tokens never change earlier predictions") {
    GPT2<double> m(kTiny);
    m.init_weights(5);
    auto tokens = iota_tokens(8, kTiny.vocab);
    m.forward(tokens.data(), nullptr, 1, 8);
    const size_t Vp = kTiny.padded_vocab;
    const std::vector<double> before(m.logits(), m.logits() + 5 * Vp);
    tokens[5] = (tokens[5] + 1) % kTiny.vocab;
    tokens[7] = (tokens[7] + 9) % kTiny.vocab;
    m.forward(tokens.data(), nullptr, 1, 8);
    for (size_t i = 0; i < before.size(); ++i) REQUIRE(m.logits()[i] == before[i]);
}

TEST_CASE("sequences in a batch do not see each other") {
    GPT2<double> m(kTiny);
    m.init_weights(9);
    const auto tokens = iota_tokens(16, kTiny.vocab), targets = iota_tokens(16, kTiny.vocab, 1);
    const double both = m.forward(tokens.data(), targets.data(), 2, 8);
    const double first = m.forward(tokens.data(), targets.data(), 1, 8);
    const double second = m.forward(tokens.data() + 8, targets.data() + 8, 1, 8);
    CHECK(both == Approx((first + second) / 2).epsilon(1e-12));
}

TEST_CASE("backward accumulates gradients until zero_grad") {
    GPT2<double> m(kTiny);
    m.init_weights(11);
    m.reserve(2, 8, true);
    const auto tokens = iota_tokens(16, kTiny.vocab), targets = iota_tokens(16, kTiny.vocab, 2);
    m.zero_grad();
    m.forward(tokens.data(), targets.data(), 2, 8, Pass::training);
    m.backward();
    const std::vector<double> once(m.grads(), m.grads() + m.num_params());
    m.forward(tokens.data(), targets.data(), 2, 8, Pass::training);
    m.backward();
    for (size_t i = 0; i < once.size(); ++i) REQUIRE(m.grads()[i] == Approx(2 * once[i]));
    // No gradient reaches the padded vocabulary rows.
    const size_t pad = size_t(kTiny.vocab) * kTiny.n_embd;
    for (size_t i = pad; i < size_t(kTiny.padded_vocab) * kTiny.n_embd; ++i)
        REQUIRE(m.grads()[i] == 0.0);
}

TEST_CASE("out-of-range tokens and oversized batches are rejected") {
    GPT2<float> m(kTiny);
    m.init_weights(1);
    std::vector<int> tokens(8, 1), targets(8, 1);
    tokens[3] = kTiny.vocab;
    CHECK_THROWS_AS(m.forward(tokens.data(), targets.data(), 1, 8), std::invalid_argument);
    tokens[3] = 1;
    targets[2] = -2;
    CHECK_THROWS_AS(m.forward(tokens.data(), targets.data(), 1, 8), std::invalid_argument);
    m.reserve(1, 4, false);
    CHECK_THROWS_AS(m.forward(tokens.data(), nullptr, 1, 8), std::invalid_argument);
    CHECK_THROWS_AS(m.reserve(1, 9, false), std::invalid_argument);
}

TEST_CASE("the whole model's gradients match finite differences in double") {
    const model::ThreadLimit one(1); // a tiny model: threads only cost
    for (const auto& e : check_model_gradients(kTiny, 2, 8, 1234)) {
        INFO(e.name, " max abs err ", e.max_abs);
        CHECK(e.rel < 1e-6);
    }
}

TEST_CASE("with a loss divisor the gradient is that of the kept losses' sum / divisor") {
    const model::ThreadLimit one(1);
    // Every 5th target is ignored: 13 of 16 kept, divided by all 16 positions, as a trainer
    // does to average masked targets over several passes.
    for (const auto& e : check_model_gradients(kTiny, 2, 8, 77, 1e-5, 16)) {
        INFO(e.name, " max abs err ", e.max_abs);
        CHECK(e.rel < 1e-6);
    }
    // And exactly the mean's gradient times kept / divisor, the same loss returned.
    GPT2<double> m(kTiny);
    m.init_weights(5);
    const auto tokens = iota_tokens(8, kTiny.vocab);
    auto targets = iota_tokens(8, kTiny.vocab, 3);
    targets[0] = targets[4] = targets[5] = -1;
    m.reserve(1, 8, true);
    m.zero_grad();
    const double mean = m.forward(tokens.data(), targets.data(), 1, 8, Pass::training);
    m.backward();
    const std::vector<double> g(m.grads(), m.grads() + m.num_params());
    m.zero_grad();
    CHECK(m.forward(tokens.data(), targets.data(), 1, 8, Pass::training, 10) == mean);
    m.backward();
    for (size_t i = 0; i < g.size(); ++i)
        REQUIRE(m.grads()[i] == Approx(g[i] * 5 / 10).epsilon(1e-12));
}

TEST_CASE("float and double agree on loss and gradients") {
    const auto r = compare_precisions(kTiny, 2, 8, 99);
    CHECK(r.loss_rel < 1e-6);
    for (const auto& e : r.grads) {
        INFO(e.name);
        CHECK(e.rel < 1e-5);
    }
}

TEST_CASE("in bf16 the model's loss and gradients stay close to fp32") {
    if (!cpu_has_bf16() || !matmul_has_bf16()) {
        MESSAGE("skipped: bf16 needs AVX512_BF16 and the oneDNN build");
        return;
    }
    // Two attention blocks of 64 positions, the second partial.
    const Config config = make_config(2, 2, 32, 64, 80);
    GPT2<float> m(config);
    m.init_weights(21);
    const int B = 2, Tn = 80;
    const auto tokens = iota_tokens(size_t(B) * Tn, 64, 3),
               targets = iota_tokens(size_t(B) * Tn, 64, 4);
    m.reserve(B, Tn, true);
    auto run = [&](Precision precision) {
        m.set_precision(precision);
        m.zero_grad();
        const double loss = m.forward(tokens.data(), targets.data(), B, Tn, Pass::training);
        m.backward();
        return std::pair{loss, std::vector<double>(m.grads(), m.grads() + m.num_params())};
    };
    const auto [loss32, grads32] = run(Precision::fp32);
    const auto [loss16, grads16] = run(Precision::bf16);
    CHECK(loss16 == Approx(loss32).epsilon(1e-2));
    CHECK(loss16 != loss32); // the bf16 path ran
    // Direction of the whole gradient: cosine similarity.
    const double dot = std::inner_product(grads32.begin(), grads32.end(), grads16.begin(), 0.0);
    const double n32 = std::inner_product(grads32.begin(), grads32.end(), grads32.begin(), 0.0);
    const double n16 = std::inner_product(grads16.begin(), grads16.end(), grads16.begin(), 0.0);
    MESSAGE("loss fp32 ", loss32, " bf16 ", loss16, ", gradient cosine ",
            dot / std::sqrt(n32 * n16));
    CHECK(dot / std::sqrt(n32 * n16) > 0.999);
}

TEST_CASE("generation with the key/value cache gives the full forward pass's logits") {
    GPT2<float> m(make_config(2, 2, 16, 64, 24));
    m.init_weights(13);
    const auto tokens = iota_tokens(20, 64, 4);
    m.forward(tokens.data(), nullptr, 1, 20);
    const size_t Vp = 128;
    const std::vector<float> full(m.logits(), m.logits() + 20 * Vp);
    m.start_generation(20);
    for (int pos = 0; pos < 20; ++pos) {
        const float* step = m.step(tokens[pos], pos);
        for (size_t v = 0; v < 64; ++v)
            REQUIRE(step[v] == doctest::Approx(full[size_t(pos) * Vp + v]).epsilon(1e-4));
    }
    CHECK_THROWS_AS(m.step(1, 20), std::invalid_argument);
    CHECK_THROWS_AS(m.start_generation(25), std::invalid_argument);
}

TEST_CASE("bf16 and fp32 agree on loss and gradients to bf16's precision, also after an update") {
    if (!matmul_has_bf16() || !cpu_has_bf16()) return; // CBLAS build or no AVX512_BF16
    const Config config = make_config(2, 4, 64, 256, 32);
    GPT2<float> fp32(config), bf16(config);
    fp32.init_weights(21);
    bf16.set_params(fp32.params(), fp32.num_params());
    bf16.set_precision(Precision::bf16);
    CHECK(bf16.precision() == Precision::bf16);
    for (GPT2<float>* m : {&fp32, &bf16}) m->reserve(2, 32, true);
    const auto tokens = iota_tokens(2 * 32 + 1, 256, 3);
    for (int update = 0; update < 2; ++update) {
        CAPTURE(update);
        double loss[2];
        for (int i = 0; i < 2; ++i) {
            GPT2<float>& m = i ? bf16 : fp32;
            m.zero_grad();
            loss[i] = m.forward(tokens.data(), tokens.data() + 1, 2, 32, Pass::training);
            m.backward();
        }
        CHECK(loss[1] == Approx(loss[0]).epsilon(1e-2));
        for (const TensorInfo& t : fp32.layout().tensors()) {
            double diff = 0, norm = 0;
            for (size_t i = t.offset; i < t.offset + t.size; ++i) {
                const double d = double(bf16.grads()[i]) - fp32.grads()[i];
                diff += d * d;
                norm += double(fp32.grads()[i]) * fp32.grads()[i];
            }
            INFO(t.name);
            if (norm > 0) CHECK(std::sqrt(diff / norm) < 5e-2);
        }
        // The same optimizer-like update of both through params(): bf16's weight copies
        // must follow it.
        for (GPT2<float>* m : {&fp32, &bf16}) {
            float* p = m->params();
            for (size_t i = 0; i < m->num_params(); ++i) p[i] -= 0.5f * fp32.grads()[i];
        }
    }
}
