// The fused classifier (the LM head and the loss in chunks of rows, its backward inside a
// training forward) against a naive reference.
#include <algorithm>
#include <cmath>
#include <random>
#include <stdexcept>
#include <vector>

#include <doctest/doctest.h>

#include "model/gpt2.h"
#include "model/gradcheck.h"
#include "model/layers.h"

using namespace model;

namespace {

const Config kTiny = make_config(2, 2, 16, 64, 8); // L2 NH2 C16 V64(Vp128) T8

// Tokens and targets for (B,T): targets of the first `ignore_first` positions and of every
// 5th are -1.
struct Batch {
    std::vector<int> tokens, targets;
};
Batch make_batch(size_t n, int vocab, size_t ignore_first = 0) {
    Batch b{std::vector<int>(n), std::vector<int>(n)};
    for (size_t i = 0; i < n; ++i) {
        b.tokens[i] = int((3 + 11 * i) % vocab);
        b.targets[i] = i < ignore_first || i % 5 == 4 ? -1 : int((5 + 13 * i * i) % vocab);
    }
    return b;
}

// The unfused classifier, written out in double: logits (N,V) = lnf (N,C) @ wte^T, each
// row's softmax, cross-entropy and argmax, the mean loss over kept targets, and its
// gradients dlnf (N,C) and dwte (Vp,C).
struct Reference {
    double loss = 0;
    std::vector<double> losses, dlnf, dwte;
    std::vector<int> predictions;
};
template <class T>
Reference reference_classifier(const T* lnf, const T* wte, const std::vector<int>& targets, int C,
                               int V, int Vp) {
    const int N = int(targets.size());
    const int kept =
        int(std::count_if(targets.begin(), targets.end(), [](int t) { return t >= 0; }));
    Reference r;
    r.losses.assign(size_t(N), 0.0);
    r.dlnf.assign(size_t(N) * C, 0.0);
    r.dwte.assign(size_t(Vp) * C, 0.0);
    r.predictions.assign(size_t(N), 0);
    std::vector<double> logits(static_cast<size_t>(V));
    for (int n = 0; n < N; ++n) {
        for (int v = 0; v < V; ++v) {
            double s = 0;
            for (int c = 0; c < C; ++c)
                s += double(lnf[size_t(n) * C + c]) * wte[size_t(v) * C + c];
            logits[size_t(v)] = s;
        }
        const auto best = std::max_element(logits.begin(), logits.end());
        r.predictions[size_t(n)] = int(best - logits.begin());
        const double mx = *best;
        double sum = 0;
        for (double x : logits) sum += std::exp(x - mx);
        const int t = targets[size_t(n)];
        if (t < 0) continue;
        r.losses[size_t(n)] = std::log(sum) - (logits[size_t(t)] - mx);
        r.loss += r.losses[size_t(n)] / kept;
        for (int v = 0; v < V; ++v) {
            const double d = (std::exp(logits[size_t(v)] - mx) / sum - (v == t)) / kept;
            for (int c = 0; c < C; ++c) {
                r.dlnf[size_t(n) * C + c] += d * wte[size_t(v) * C + c];
                r.dwte[size_t(v) * C + c] += d * lnf[size_t(n) * C + c];
            }
        }
    }
    return r;
}

template <class T> std::vector<double> as_double(const T* x, size_t n) {
    return std::vector<double>(x, x + n);
}

// The largest difference relative to the largest entry (gradcheck.h's measure).
template <class T> double rel_error(const std::vector<double>& expected, const T* got) {
    const auto g = as_double(got, expected.size());
    return compare_gradients("", g.data(), expected.data(), expected.size()).rel;
}

// A training forward of the batch on a fresh gradient: the loss, and the model's
// classifier results against the reference built from its own lnf and wte.
template <class T>
void check_against_reference(GPT2<T>& m, const Batch& b, int B, int Tn, double tol) {
    const Config& c = m.config();
    m.zero_grad();
    const double loss = m.forward(b.tokens.data(), b.targets.data(), B, Tn, Pass::training);
    const TensorInfo& wte = m.layout().find("wte.weight");
    const Reference r = reference_classifier(m.activations().lnf, m.params() + wte.offset,
                                             b.targets, c.n_embd, c.vocab, c.padded_vocab);
    CHECK(loss == doctest::Approx(r.loss).epsilon(tol));
    CHECK(rel_error(r.losses, m.losses()) < tol);
    CHECK(std::equal(r.predictions.begin(), r.predictions.end(), m.predictions()));
    // The classifier's gradients: d loss/d lnf, kept for backward, and its part of dwte,
    // all of wte's gradient until backward adds the token embedding's.
    CHECK(rel_error(r.dlnf, m.activations().backward.dbt_c) < tol);
    CHECK(rel_error(r.dwte, m.grads() + wte.offset) < tol);
    for (size_t i = 0; i < m.num_params(); ++i)
        if (i < wte.offset || i >= wte.offset + wte.size) REQUIRE(m.grads()[i] == T(0));
}

} // namespace

TEST_CASE("the fused classifier's loss, predictions and gradients match the unfused reference, "
          "whatever the chunk size") {
    const int B = 3, Tn = 7; // N = 21 rows
    const Batch b = make_batch(size_t(B) * Tn, kTiny.vocab, 8);
    SUBCASE("double") {
        GPT2<double> m(kTiny);
        m.init_weights(7);
        m.reserve(B, Tn, true);
        std::vector<double> first;
        // Chunks of 1, 4 (not dividing 21; the first two chunks only hold ignored
        // targets), 21 and 64 (more than N) rows.
        for (int rows : {1, 4, 21, 64}) {
            CAPTURE(rows);
            m.set_classifier_rows(rows);
            check_against_reference(m, b, B, Tn, 1e-10);
            m.backward();
            const auto grads = as_double(m.grads(), m.num_params());
            if (first.empty()) first = grads;
            CHECK(rel_error(first, grads.data()) < 1e-12);
        }
    }
    SUBCASE("bf16: chunks give one chunk's loss and gradients, also after the weights change") {
        if (!matmul_has_bf16() || !cpu_has_bf16()) return; // CBLAS build or no AVX512_BF16
        // C and V large enough for oneDNN's blocked layouts: with several chunks, wte keeps
        // a copy per product.
        const Config config = make_config(1, 2, 64, 200, 8);
        const Batch wide = make_batch(size_t(B) * Tn, config.vocab, 2);
        GPT2<float> one(config), chunked(config);
        one.init_weights(9);
        chunked.set_params(one.params(), one.num_params());
        chunked.set_classifier_rows(4);
        for (GPT2<float>* m : {&one, &chunked}) {
            m->set_precision(Precision::bf16);
            m->reserve(B, Tn, true);
        }
        for (int update = 0; update < 2; ++update) {
            CAPTURE(update);
            double loss[2];
            for (int i = 0; i < 2; ++i) {
                GPT2<float>& m = i ? chunked : one;
                m.zero_grad();
                loss[i] = m.forward(wide.tokens.data(), wide.targets.data(), B, Tn, Pass::training);
                m.backward();
            }
            CHECK(loss[1] == doctest::Approx(loss[0]).epsilon(1e-6));
            CHECK(rel_error(as_double(one.grads(), one.num_params()), chunked.grads()) < 1e-5);
            for (GPT2<float>* m : {&one, &chunked}) { // a step of plain gradient descent
                float* p = m->params();
                for (size_t j = 0; j < m->num_params(); ++j) p[j] -= 0.5f * m->grads()[j];
            }
        }
    }
    SUBCASE("float, on the float products") {
        GPT2<float> m(kTiny);
        m.init_weights(7);
        for (int rows : {8, 64}) {
            CAPTURE(rows);
            m.set_classifier_rows(rows);
            m.reserve(B, Tn, true);
            check_against_reference(m, b, B, Tn, 1e-5);
            m.backward();
        }
    }
}

TEST_CASE("the fused classifier gives the whole model the gradients of finite differences, in "
          "chunks that do not divide the rows") {
    // gradcheck.h's check uses the default chunk, more rows than this batch has: the
    // gradients with chunks of 3 rows must be the same.
    const Config config = make_config(1, 2, 8, 16, 8);
    for (const auto& e : check_model_gradients(config, 2, 5, 77)) {
        INFO(e.name);
        CHECK(e.rel < 1e-6);
    }
    GPT2<double> one(config), chunked(config);
    one.init_weights(5);
    chunked.init_weights(5);
    chunked.set_classifier_rows(3);
    const Batch b = make_batch(10, config.vocab);
    for (GPT2<double>* m : {&one, &chunked}) {
        m->reserve(2, 5, true);
        m->zero_grad();
        m->forward(b.tokens.data(), b.targets.data(), 2, 5, Pass::training);
        m->backward();
    }
    const auto expected = as_double(one.grads(), one.num_params());
    CHECK(rel_error(expected, chunked.grads()) < 1e-12);
}

TEST_CASE("all targets ignored: loss 0, no division by zero, zero gradients") {
    const Batch b = make_batch(21, kTiny.vocab, 21);
    GPT2<float> m(kTiny);
    m.init_weights(2);
    m.set_classifier_rows(4);
    m.reserve(3, 7, true);
    m.zero_grad();
    CHECK(m.forward(b.tokens.data(), b.targets.data(), 3, 7, Pass::training) == 0.0);
    CHECK(m.targets_kept() == 0);
    m.backward();
    for (size_t i = 0; i < m.num_params(); ++i) REQUIRE(m.grads()[i] == 0.0f);
    for (int i = 0; i < 21; ++i) CHECK(m.losses()[i] == 0.0f);
}

TEST_CASE("a model reserved for inference keeps logits and probabilities; one reserved for "
          "training keeps neither") {
    const Batch b = make_batch(16, kTiny.vocab);
    const size_t Vp = kTiny.padded_vocab, V = kTiny.vocab;
    GPT2<double> inference(kTiny);
    inference.init_weights(4);
    inference.reserve(2, 8, false);
    CHECK_THROWS_AS(inference.logits(), std::logic_error);
    inference.forward(b.tokens.data(), nullptr, 2, 8);
    CHECK_THROWS_AS(inference.predictions(), std::logic_error);
    const std::vector<double> logits(inference.logits(), inference.logits() + 16 * Vp);
    const double loss = inference.forward(b.tokens.data(), b.targets.data(), 2, 8);
    for (size_t n = 0; n < 16; ++n) {
        const double* x = logits.data() + n * Vp;
        const double mx = *std::max_element(x, x + V);
        double sum = 0;
        for (size_t v = 0; v < V; ++v) sum += std::exp(x[v] - mx);
        for (size_t v = 0; v < V; ++v)
            REQUIRE(inference.logits()[n * Vp + v] ==
                    doctest::Approx(std::exp(x[v] - mx) / sum).epsilon(1e-12));
        CHECK(inference.predictions()[n] == int(std::max_element(x, x + V) - x));
    }

    GPT2<double> training(kTiny);
    training.init_weights(4);
    training.set_classifier_rows(5);
    training.reserve(2, 8, true);
    training.forward(b.tokens.data(), nullptr, 2, 8);
    CHECK_THROWS_AS(training.logits(), std::logic_error);
    CHECK(training.forward(b.tokens.data(), b.targets.data(), 2, 8) ==
          doctest::Approx(loss).epsilon(1e-12));
    CHECK_THROWS_AS(training.logits(), std::logic_error);
    CHECK(std::equal(training.predictions(), training.predictions() + 16, inference.predictions()));
    for (size_t n = 0; n < 16; ++n)
        CHECK(training.losses()[n] == doctest::Approx(inference.losses()[n]).epsilon(1e-12));
}

TEST_CASE("only a training forward leads to backward, and evaluation never touches gradients") {
    const Batch b = make_batch(16, kTiny.vocab);
    const int* x = b.tokens.data();
    const int* y = b.targets.data();
    GPT2<float> m(kTiny);
    m.init_weights(6);
    m.reserve(2, 8, false);
    CHECK_THROWS_AS(m.forward(x, y, 2, 8, Pass::training), std::logic_error);
    m.reserve(2, 8, true);
    CHECK_THROWS_AS(m.forward(x, nullptr, 2, 8, Pass::training), std::invalid_argument);
    m.zero_grad();
    m.forward(x, y, 2, 8); // inference, on a model reserved for training
    for (size_t i = 0; i < m.num_params(); ++i) REQUIRE(m.grads()[i] == 0.0f);
    CHECK_THROWS_AS(m.backward(), std::logic_error);

    m.forward(x, y, 2, 8, Pass::training);
    // The pass has added wte's classifier gradient: any forward or reserve before its
    // backward would lose track of it.
    CHECK_THROWS_AS(m.forward(x, y, 2, 8), std::logic_error);
    CHECK_THROWS_AS(m.reserve(2, 8, true), std::logic_error);
    m.backward();
    CHECK_THROWS_AS(m.backward(), std::logic_error);
    const std::vector<float> once(m.grads(), m.grads() + m.num_params());

    // zero_grad() discards a training forward.
    m.forward(x, y, 2, 8, Pass::training);
    m.zero_grad();
    CHECK_THROWS_AS(m.backward(), std::logic_error);
    m.forward(x, y, 2, 8, Pass::training);
    m.backward();
    CHECK(std::equal(once.begin(), once.end(), m.grads()));
    CHECK_THROWS_AS(m.set_classifier_rows(0), std::invalid_argument);
}

TEST_CASE("the loss's predictions are the first of the largest logits, wherever they lie") {
    // V = 100: sixteen lanes of 16 and a tail of 4. Each row: random logits, with the
    // largest value placed at one or two positions (the first must win).
    const int V = 100, Vp = 112;
    const std::vector<std::vector<int>> tops = {{0},    {15},     {16},     {17},     {31},
                                                {95},   {99},     {3, 40},  {20, 97}, {5, 21},
                                                {1, 2}, {98, 99}, {50, 66}, {0, 99}};
    const int N = int(tops.size()) + 1; // and a row of equal logits
    std::mt19937 rng(4);
    std::uniform_real_distribution<float> u(-2, 2);
    std::vector<float> logits(size_t(N) * Vp, 0.0f);
    for (int n = 0; n < N; ++n)
        for (int v = 0; v < V; ++v) logits[size_t(n) * Vp + v] = n + 1 < N ? u(rng) : 0.5f;
    for (size_t n = 0; n < tops.size(); ++n)
        for (int at : tops[n]) logits[n * Vp + at] = 3.0f;
    std::vector<int> expected(N), targets(N, 7), predictions(N);
    for (int n = 0; n < N; ++n) {
        const float* row = logits.data() + size_t(n) * Vp;
        expected[size_t(n)] = int(std::max_element(row, row + V) - row);
    }
    CHECK(expected[0] == 0);
    CHECK(expected[7] == 3);
    CHECK(expected[size_t(N) - 1] == 0);
    std::vector<float> losses(N);
    for (bool grad : {false, true}) {
        std::vector<float> work = logits;
        crossentropy_fused(work.data(), losses.data(), predictions.data(), targets.data(), grad,
                           1.0f, N, V, Vp);
        CHECK(predictions == expected);
    }
    std::vector<float> work = logits;
    std::vector<bf16> dlogits(logits.size());
    crossentropy_fused(work.data(), dlogits.data(), losses.data(), predictions.data(),
                       targets.data(), 1.0f, N, V, Vp);
    CHECK(predictions == expected);
}
