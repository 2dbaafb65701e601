// Each layer's forward on hand-computed cases, its backward by finite differences.
#include <bit>
#include <cmath>
#include <cstdint>
#include <random>
#include <tuple>
#include <vector>

#include <doctest/doctest.h>

#include "model/gradcheck.h"
#include "model/layers.h"
#include "model/matmul.h"
#include "model/precision.h"

using doctest::Approx;
using namespace model;

TEST_CASE("encoder adds the token's and the position's embedding") {
    // Vp = 3 tokens, C = 2, B = 1, T = 2
    const std::vector<double> wte = {1, 2, 10, 20, 100, 200}, wpe = {0.5, -0.5, 3, 4};
    const std::vector<int> tokens = {2, 0};
    std::vector<double> out(4);
    encoder_forward(out.data(), tokens.data(), wte.data(), wpe.data(), 1, 2, 2);
    CHECK(out == std::vector<double>{100.5, 199.5, 4, 6});

    // A token seen twice collects both gradients in its row.
    const std::vector<int> twice = {1, 1};
    std::vector<double> dwte(6, 0), dwpe(4, 0);
    const std::vector<double> dout = {1, 2, 3, 4};
    encoder_backward(dwte.data(), dwpe.data(), dout.data(), twice.data(), 1, 2, 2);
    CHECK(dwte == std::vector<double>{0, 0, 4, 6, 0, 0});
    CHECK(dwpe == std::vector<double>{1, 2, 3, 4});
}

TEST_CASE("layernorm normalises each row and applies weight and bias") {
    // x = (1, 2, 3, 4): mean 2.5, biased variance 1.25, rstd = 1/sqrt(1.25 + 1e-5).
    const std::vector<float> x = {1, 2, 3, 4}, w = {1, 1, 2, 1}, b = {0, 0, 0, 10};
    std::vector<float> out(4), mean(1), rstd(1);
    layernorm_forward(out.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), 1, 4);
    const double r = 1 / std::sqrt(1.25 + 1e-5); // 0.8944236
    CHECK(mean[0] == Approx(2.5));
    CHECK(rstd[0] == Approx(r).epsilon(1e-6));
    CHECK(out[0] == Approx(-1.5 * r).epsilon(1e-6)); // -1.3416355
    CHECK(out[1] == Approx(-0.5 * r).epsilon(1e-6));
    CHECK(out[2] == Approx(2 * 0.5 * r).epsilon(1e-6));
    CHECK(out[3] == Approx(1.5 * r + 10).epsilon(1e-6));
}

TEST_CASE("matmul computes inp @ weight^T + bias") {
    // inp (2,2), weight (3,2), bias (3)
    const std::vector<double> inp = {1, 2, 3, 4}, w = {1, 0, 0, 1, 1, 1}, b = {0.5, -1, 0};
    std::vector<double> out(6);
    matmul_forward(out.data(), inp.data(), w.data(), b.data(), 2, 2, 3);
    CHECK(out == std::vector<double>{1.5, 1, 3, 3.5, 3, 7});
    matmul_forward(out.data(), inp.data(), w.data(), static_cast<const double*>(nullptr), 2, 2, 3);
    CHECK(out == std::vector<double>{1, 2, 3, 3, 4, 7});

    // dinp = dout @ w, dweight = dout^T @ inp, dbias = column sums of dout; all accumulate.
    const std::vector<double> dout = {1, 0, 2, 0, 1, -1};
    std::vector<double> dinp(4, 1), dw(6, 0), db(3, 0);
    matmul_backward(dinp.data(), dw.data(), db.data(), dout.data(), inp.data(), w.data(), 2, 2, 3);
    CHECK(dinp == std::vector<double>{1 + 3, 1 + 2, 1 - 1, 1 + 0});
    CHECK(dw == std::vector<double>{1, 2, 3, 4, 2 - 3, 4 - 4});
    CHECK(db == std::vector<double>{1, 1, 1});
}

TEST_CASE("the model's float Matmul computes what the layer functions do, in both directions") {
    // The same small integer case as above, exact in float, through the library the build
    // chose (oneDNN or CBLAS); then random shapes against the double reference.
    Matmul<float> mm;
    const std::vector<float> inp = {1, 2, 3, 4}, w = {1, 0, 0, 1, 1, 1}, b = {0.5, -1, 0};
    std::vector<float> out(6);
    mm.forward(out.data(), inp.data(), w.data(), b.data(), 2, 2, 3);
    CHECK(out == std::vector<float>{1.5, 1, 3, 3.5, 3, 7});
    mm.forward(out.data(), inp.data(), w.data(), nullptr, 2, 2, 3);
    CHECK(out == std::vector<float>{1, 2, 3, 3, 4, 7});
    const std::vector<float> dout = {1, 0, 2, 0, 1, -1};
    std::vector<float> dinp(4, 1), dw(6, 1), db(3, 1);
    mm.backward(dinp.data(), dw.data(), db.data(), dout.data(), inp.data(), w.data(), 2, 2, 3);
    CHECK(dinp == std::vector<float>{1 + 3, 1 + 2, 1 - 1, 1 + 0});
    CHECK(dw == std::vector<float>{1 + 1, 1 + 2, 1 + 3, 1 + 4, 1 + 2 - 3, 1 + 4 - 4});
    CHECK(db == std::vector<float>{2, 2, 2});

    std::mt19937 rng(9);
    std::uniform_real_distribution<float> u(-1, 1);
    for (const auto& [N, C, OC] : {std::tuple{1, 16, 40}, {7, 33, 5}, {64, 48, 96}}) {
        CAPTURE(N);
        CAPTURE(C);
        CAPTURE(OC);
        auto random = [&](size_t n) {
            std::vector<float> v(n);
            for (float& x : v) x = u(rng);
            return v;
        };
        const auto x = random(size_t(N) * C), wt = random(size_t(OC) * C), bias = random(OC),
                   g = random(size_t(N) * OC), acc_in = random(size_t(N) * C),
                   acc_w = random(size_t(OC) * C);
        auto as_double = [](const std::vector<float>& v) {
            return std::vector<double>(v.begin(), v.end());
        };
        std::vector<float> y(size_t(N) * OC), gx = acc_in, gw = acc_w;
        std::vector<double> yr(y.size()), gxr = as_double(acc_in), gwr = as_double(acc_w);
        mm.prepare(N, C, OC, true, true);
        mm.forward(y.data(), x.data(), wt.data(), bias.data(), N, C, OC);
        mm.backward(gx.data(), gw.data(), nullptr, g.data(), x.data(), wt.data(), N, C, OC);
        const auto xd = as_double(x), wd = as_double(wt), bd = as_double(bias), gd = as_double(g);
        matmul_forward(yr.data(), xd.data(), wd.data(), bd.data(), N, C, OC);
        matmul_backward(gxr.data(), gwr.data(), static_cast<double*>(nullptr), gd.data(), xd.data(),
                        wd.data(), N, C, OC);
        for (size_t i = 0; i < y.size(); ++i) CHECK(y[i] == Approx(yr[i]).epsilon(1e-5));
        for (size_t i = 0; i < gx.size(); ++i) CHECK(gx[i] == Approx(gxr[i]).epsilon(1e-5));
        for (size_t i = 0; i < gw.size(); ++i) CHECK(gw[i] == Approx(gwr[i]).epsilon(1e-5));
    }
}

namespace {

// x rounded to the nearest bfloat16 (ties to even), by comparing the two candidates.
float nearest_bf16(float x) {
    const uint32_t bits = std::bit_cast<uint32_t>(x) & 0xffff0000u;
    const float lo = std::bit_cast<float>(bits), hi = std::bit_cast<float>(bits + 0x10000u);
    const double dlo = std::abs(double(x) - lo), dhi = std::abs(double(hi) - x);
    if (dlo != dhi) return dlo < dhi ? lo : hi;
    return (bits >> 16) % 2 == 0 ? lo : hi;
}

} // namespace

TEST_CASE("bf16 products equal the exact products of bf16-rounded inputs, accumulated in float") {
    if (!matmul_has_bf16() || !cpu_has_bf16()) return; // CBLAS build or no AVX512_BF16
    Matmul<float> mm;
    mm.set_precision(Precision::bf16);
    // Small integers are exact in bf16: the same hand-computed case as for fp32.
    const std::vector<float> inp = {1, 2, 3, 4}, w = {1, 0, 0, 1, 1, 1}, b = {0.5, -1, 0};
    std::vector<float> out(6);
    mm.forward(out.data(), inp.data(), w.data(), b.data(), 2, 2, 3);
    CHECK(out == std::vector<float>{1.5, 1, 3, 3.5, 3, 7});
    const std::vector<float> dout = {1, 0, 2, 0, 1, -1};
    std::vector<float> dinp(4, 1), dw(6, 1), db(3, 1);
    mm.backward(dinp.data(), dw.data(), db.data(), dout.data(), inp.data(), w.data(), 2, 2, 3);
    CHECK(dinp == std::vector<float>{1 + 3, 1 + 2, 1 - 1, 1 + 0});
    CHECK(dw == std::vector<float>{1 + 1, 1 + 2, 1 + 3, 1 + 4, 1 + 2 - 3, 1 + 4 - 4});
    CHECK(db == std::vector<float>{2, 2, 2});

    std::mt19937 rng(11);
    std::uniform_real_distribution<float> u(-1, 1);
    for (const auto& [N, C, OC] : {std::tuple{1, 16, 40}, {7, 33, 5}, {64, 48, 96}}) {
        CAPTURE(N);
        CAPTURE(C);
        CAPTURE(OC);
        auto random = [&](size_t n) {
            std::vector<float> v(n);
            for (float& x : v) x = u(rng);
            return v;
        };
        auto rounded = [](const std::vector<float>& v) {
            std::vector<double> r(v.size());
            for (size_t i = 0; i < v.size(); ++i) r[i] = nearest_bf16(v[i]);
            return r;
        };
        std::vector<float> x = random(size_t(N) * C), wt = random(size_t(OC) * C);
        const auto bias = random(OC), g = random(size_t(N) * OC), acc_in = random(size_t(N) * C),
                   acc_w = random(size_t(OC) * C);
        mm.prepare(N, C, OC, true, true, wt.data());
        for (int round = 0; round < 2; ++round) { // then new weights: the copies follow
            CAPTURE(round);
            std::vector<float> y(size_t(N) * OC), gx = acc_in, gw = acc_w, yf = y, gxf = gx,
                                                  gwf = gw;
            mm.forward(y.data(), x.data(), wt.data(), bias.data(), N, C, OC);
            mm.backward(gx.data(), gw.data(), nullptr, g.data(), x.data(), wt.data(), N, C, OC);
            // Reference: double products of the rounded operands; bias and sums exact.
            std::vector<double> yr(y.size()), gxr(acc_in.begin(), acc_in.end()),
                gwr(acc_w.begin(), acc_w.end());
            const auto xd = rounded(x), wd = rounded(wt), gd = rounded(g);
            const std::vector<double> bd(bias.begin(), bias.end());
            matmul_forward(yr.data(), xd.data(), wd.data(), bd.data(), N, C, OC);
            matmul_backward(gxr.data(), gwr.data(), static_cast<double*>(nullptr), gd.data(),
                            xd.data(), wd.data(), N, C, OC);
            for (size_t i = 0; i < y.size(); ++i) CHECK(y[i] == Approx(yr[i]).epsilon(1e-5));
            for (size_t i = 0; i < gx.size(); ++i) CHECK(gx[i] == Approx(gxr[i]).epsilon(1e-5));
            for (size_t i = 0; i < gw.size(); ++i) CHECK(gw[i] == Approx(gwr[i]).epsilon(1e-5));
            // And within bf16's rounding of the fp32 products: bf16 keeps 8 significant
            // bits, so each operand is off by at most 2^-8 of itself, a term a*b by about
            // 2^-7 |a b|, and a sum by 2^-7 sum |a b| (the bound, by the same products on
            // absolute values), plus float accumulation.
            Matmul<float> fp32;
            fp32.forward(yf.data(), x.data(), wt.data(), bias.data(), N, C, OC);
            fp32.backward(gxf.data(), gwf.data(), nullptr, g.data(), x.data(), wt.data(), N, C, OC);
            auto absolute = [](const std::vector<float>& v) {
                std::vector<double> a(v.size());
                for (size_t i = 0; i < v.size(); ++i) a[i] = std::abs(double(v[i]));
                return a;
            };
            const auto xa = absolute(x), wa = absolute(wt), ga = absolute(g);
            std::vector<double> yb(y.size()), gxb(gx.size(), 0.0), gwb(gw.size(), 0.0);
            matmul_forward(yb.data(), xa.data(), wa.data(), static_cast<double*>(nullptr), N, C,
                           OC);
            matmul_backward(gxb.data(), gwb.data(), static_cast<double*>(nullptr), ga.data(),
                            xa.data(), wa.data(), N, C, OC);
            auto within = [](const std::vector<float>& a, const std::vector<float>& b,
                             const std::vector<double>& bound) {
                for (size_t i = 0; i < a.size(); ++i)
                    if (std::abs(double(a[i]) - b[i]) > 0x1.01p-7 * bound[i] + 1e-5) return false;
                return true;
            };
            CHECK(within(y, yf, yb));
            CHECK(within(gx, gxf, gxb));
            CHECK(within(gw, gwf, gwb));
            for (float& v : wt) v = u(rng);
            mm.weights_changed();
        }
    }
}

TEST_CASE("attention is causal and mixes values by softmax(q k^T / sqrt(hs))") {
    // B = 1, T = 2, C = 2, one head. Rows of qkv are q | k | v.
    const std::vector<double> qkv = {1, 0, 1, 0, 1, 2,  // t = 0
                                     0, 1, 0, 2, 3, 4}; // t = 1
    std::vector<double> out(4), att(4);
    attention_forward(out.data(), att.data(), qkv.data(), 1, 2, 2, 1);
    // t = 0 sees only itself.
    CHECK(att[0] == Approx(1.0));
    CHECK(att[1] == 0.0);
    CHECK(out[0] == Approx(1.0));
    CHECK(out[1] == Approx(2.0));
    // t = 1: scores (q1.k0, q1.k1) / sqrt(2) = (0, sqrt(2)); p1 = e^sqrt2 / (1 + e^sqrt2).
    const double p1 = std::exp(std::sqrt(2.0)) / (1 + std::exp(std::sqrt(2.0))); // 0.804382
    CHECK(att[2] == Approx(1 - p1));
    CHECK(att[3] == Approx(p1));
    CHECK(out[2] == Approx((1 - p1) * 1 + p1 * 3)); // 2.608764
    CHECK(out[3] == Approx((1 - p1) * 2 + p1 * 4)); // 3.608764
}

TEST_CASE("gelu uses GPT-2's tanh approximation") {
    const std::vector<double> x = {0, 1, -1, 2};
    std::vector<double> y(4);
    gelu_forward(y.data(), x.data(), 4);
    CHECK(y[0] == 0.0);
    CHECK(y[1] == Approx(0.8411920).epsilon(1e-6));
    CHECK(y[2] == Approx(-0.1588080).epsilon(1e-6));
    CHECK(y[3] == Approx(1.9545977).epsilon(1e-6));
}

TEST_CASE("residual add and its backward") {
    const std::vector<float> a = {1, 2}, b = {10, 20};
    std::vector<float> out(2), da = {1, 1}, db = {0, 0};
    residual_forward(out.data(), a.data(), b.data(), 2);
    CHECK(out == std::vector<float>{11, 22});
    const std::vector<float> dout = {3, 4};
    residual_backward(da.data(), db.data(), dout.data(), 2);
    CHECK(da == std::vector<float>{4, 5});
    CHECK(db == std::vector<float>{3, 4});
}

TEST_CASE("cross-entropy ignores target -1 and never predicts padded vocabulary") {
    // V = 3, Vp = 4. Row 0 logits (0, ln 2, ln 3) give probs (1/6, 2/6, 3/6).
    const std::vector<double> logits = {0, std::log(2.0), std::log(3.0), 50, 1, 2, 3, 50};
    const std::vector<int> targets = {2, -1};
    std::vector<double> probs(8), losses(2);
    const int kept = softmax_crossentropy_forward(probs.data(), losses.data(), logits.data(),
                                                  targets.data(), 2, 3, 4);
    CHECK(kept == 1);
    CHECK(probs[0] == Approx(1.0 / 6));
    CHECK(probs[2] == Approx(0.5));
    CHECK(probs[3] == 0.0);
    CHECK(losses[0] == Approx(std::log(2.0)));
    CHECK(losses[1] == 0.0);

    std::vector<double> dlogits(8, 99);
    softmax_crossentropy_backward(dlogits.data(), probs.data(), targets.data(), 0.5, 2, 3, 4);
    CHECK(dlogits[0] == Approx(0.5 / 6));
    CHECK(dlogits[2] == Approx(0.5 * (0.5 - 1)));
    CHECK(dlogits[3] == 0.0);
    for (int v = 4; v < 8; ++v) CHECK(dlogits[v] == 0.0);
}

TEST_CASE("cross-entropy stays finite where a probability underflows") {
    const std::vector<float> logits = {0, 200};
    const std::vector<int> targets = {0};
    std::vector<float> probs(2), losses(1);
    softmax_crossentropy_forward(probs.data(), losses.data(), logits.data(), targets.data(), 1, 2,
                                 2);
    CHECK(probs[0] == 0.0f);
    CHECK(losses[0] == Approx(200.0));
}

TEST_CASE("every layer's backward matches finite differences in double") {
    for (const auto& e : check_layer_gradients(7)) {
        INFO(e.name, " max abs err ", e.max_abs);
        CHECK(e.rel < 1e-6);
    }
}
