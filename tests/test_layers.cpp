// Each layer's forward on hand-computed cases, its backward by finite differences.
#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <tuple>
#include <utility>
#include <vector>

#include <doctest/doctest.h>

#include "model/blas.h"
#include "model/fastmath.h"
#include "model/gradcheck.h"
#include "model/layers.h"
#include "model/matmul.h"
#include "model/precision.h"

using doctest::Approx;
using namespace model;

TEST_CASE("exp_fast and tanh_fast follow libm, saturate at the ends and pass NaN on") {
    CHECK(exp_fast(0.0f) == 1.0f);
    double worst_exp = 0, worst_tanh = 0;
    for (float x = -87.0f; x <= 88.0f; x += 0.01234f) {
        const double e = std::exp(double(x));
        worst_exp = std::max(worst_exp, std::abs(exp_fast(x) - e) / e);
        worst_tanh = std::max(worst_tanh, std::abs(tanh_fast(x / 8) - std::tanh(double(x) / 8)));
    }
    CHECK(worst_exp < 2.5e-7); // about 2 ulp
    CHECK(worst_tanh < 1.2e-7);
    CHECK(exp_fast(-88.0f) == 0.0f); // below the smallest normal float
    CHECK(exp_fast(1000.0f) > 1e38f);
    CHECK(std::abs(tanh_fast(-50.0f) + 1.0f) < 1.2e-7f);
    const float nan = std::numeric_limits<float>::quiet_NaN();
    CHECK(std::isnan(exp_fast(nan)));
    CHECK(std::isnan(tanh_fast(nan)));
}

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

namespace {

// The small integer case of "matmul computes inp @ weight^T + bias", exact in float and
// in bf16, through a Matmul in either precision: forward with and without the bias, and
// backward accumulating into ones.
void check_small_integer_case(Matmul<float>& mm) {
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
}

// n values drawn uniformly from [-1, 1).
std::vector<float> uniform(std::mt19937& rng, size_t n) {
    std::uniform_real_distribution<float> u(-1, 1);
    std::vector<float> v(n);
    for (float& e : v) e = u(rng);
    return v;
}

// x rounded to the nearest bfloat16 (ties to even), by comparing the two candidates.
float nearest_bf16(float x) {
    const uint32_t bits = std::bit_cast<uint32_t>(x) & 0xffff0000u;
    const float lo = std::bit_cast<float>(bits), hi = std::bit_cast<float>(bits + 0x10000u);
    const double dlo = std::abs(double(x) - lo), dhi = std::abs(double(hi) - x);
    if (dlo != dhi) return dlo < dhi ? lo : hi;
    return (bits >> 16) % 2 == 0 ? lo : hi;
}

} // namespace

TEST_CASE("the model's float Matmul computes what the layer functions do, in both directions") {
    // The same small integer case as above, exact in float, through the library the build
    // chose (oneDNN or CBLAS); then random shapes against the double reference.
    Matmul<float> mm;
    check_small_integer_case(mm);

    std::mt19937 rng(9);
    std::uniform_real_distribution<float> u(-1, 1);
    // The last spans several of oneDNN's blocks (16 by 64) in each dimension, with remainders.
    for (const auto& entry : {std::tuple{1, 16, 40}, {7, 33, 5}, {64, 48, 96}, {70, 65, 130}}) {
        const auto& N = std::get<0>(entry);
        const auto& C = std::get<1>(entry);
        const auto& OC = std::get<2>(entry);
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

TEST_CASE("bf16 products equal the exact products of bf16-rounded inputs, accumulated in float") {
    if (!matmul_has_bf16() || !cpu_has_bf16()) return; // CBLAS build or no AVX512_BF16
    Matmul<float> mm;
    mm.set_precision(Precision::bf16);
    check_small_integer_case(mm); // small integers are exact in bf16

    std::mt19937 rng(11);
    std::uniform_real_distribution<float> u(-1, 1);
    // {70, 65, 130} spans several of oneDNN's blocks (32 by 64) in each dimension, with
    // remainders; the last has more rows than backward takes at once.
    for (const auto& entry :
         {std::tuple{1, 16, 40}, {7, 33, 5}, {64, 48, 96}, {70, 65, 130}, {1100, 24, 40}}) {
        const auto& N = std::get<0>(entry);
        const auto& C = std::get<1>(entry);
        const auto& OC = std::get<2>(entry);
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

TEST_CASE("to_bf16 rounds to nearest even, as the independent nearest_bf16 does") {
    auto bits = [](float x) { return to_bf16(x).bits; };
    CHECK(bits(1.0f) == 0x3f80);
    CHECK(bits(0x1.01p0f) == 0x3f80);   // a tie: down to the even 0x3f80
    CHECK(bits(0x1.03p0f) == 0x3f82);   // a tie: up to the even 0x3f82
    CHECK(bits(0x1.0101p0f) == 0x3f81); // just past the tie
    CHECK(bits(-2.0f) == 0xc000);
    CHECK(bits(0x1.fffffep127f) == 0x7f80); // rounds up to infinity, as IEEE does
    CHECK(bits(INFINITY) == 0x7f80);
    CHECK(std::isnan(to_float(to_bf16(NAN))));
    CHECK(std::isnan(to_float(to_bf16(std::bit_cast<float>(0x7f800001u))))); // not infinity
    CHECK(to_float(to_bf16(0.15625f)) == 0.15625f);                          // exact in bf16
    std::mt19937 rng(5);
    std::vector<float> x(1000);
    for (float& v : x) v = std::bit_cast<float>(uint32_t(rng())); // every kind of float
    std::vector<bf16> y(x.size());
    to_bf16(y.data(), x.data(), x.size());
    for (size_t i = 0; i < x.size(); ++i) {
        CAPTURE(x[i]);
        if (std::isnan(x[i])) {
            CHECK(std::isnan(to_float(y[i])));
        } else {
            CHECK(to_float(y[i]) == nearest_bf16(x[i]));
        }
    }
}

TEST_CASE("layernorm and gelu with bf16 outputs write their float results, rounded once") {
    const int N = 5, C = 37;
    std::mt19937 rng(6);
    std::uniform_real_distribution<float> u(-2, 2);
    std::vector<float> x(N * C), w(C), b(C);
    for (auto* v : {&x, &w, &b})
        for (float& e : *v) e = u(rng);
    std::vector<float> out(N * C), mean(N), rstd(N), mean_h(N), rstd_h(N);
    std::vector<bf16> out_h(N * C), again_h(N * C);
    layernorm_forward(out.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), N, C);
    layernorm_forward(out_h.data(), mean_h.data(), rstd_h.data(), x.data(), w.data(), b.data(), N,
                      C);
    layernorm_recompute(again_h.data(), x.data(), w.data(), b.data(), mean.data(), rstd.data(), N,
                        C);
    CHECK(mean_h == mean);
    CHECK(rstd_h == rstd);
    for (int i = 0; i < N * C; ++i) {
        CHECK(out_h[i].bits == to_bf16(out[i]).bits);
        CHECK(again_h[i].bits == to_bf16(out[i]).bits);
    }
    std::vector<float> g(N * C);
    std::vector<bf16> g_h(N * C);
    gelu_forward(g.data(), x.data(), g.size());
    gelu_forward(g_h.data(), x.data(), g.size());
    for (int i = 0; i < N * C; ++i) CHECK(g_h[i].bits == to_bf16(g[i]).bits);
}

TEST_CASE("bf16 products on inputs kept in bf16 equal those on float inputs, bit for bit") {
    if (!matmul_has_bf16() || !cpu_has_bf16()) return; // CBLAS build or no AVX512_BF16
    const int N = 19, C = 40, OC = 72;
    std::mt19937 rng(7);
    auto random = [&](size_t n) { return uniform(rng, n); };
    const auto x = random(size_t(N) * C), w = random(size_t(OC) * C), bias = random(OC),
               g = random(size_t(N) * OC);
    std::vector<bf16> xh(x.size());
    to_bf16(xh.data(), x.data(), x.size());
    Matmul<float> mm;
    mm.set_precision(Precision::bf16);
    mm.prepare(N, C, OC, true, true, w.data());
    std::vector<float> y(size_t(N) * OC), yh = y, gx(x.size(), 0.5f), gxh = gx, gw(w.size(), 0.25f),
                                          gwh = gw, gb(OC, 0.0f), gbh = gb;
    mm.forward(y.data(), x.data(), w.data(), bias.data(), N, C, OC);
    mm.forward(yh.data(), xh.data(), w.data(), bias.data(), N, C, OC);
    mm.backward(gx.data(), gw.data(), gb.data(), g.data(), x.data(), w.data(), N, C, OC);
    mm.backward(gxh.data(), gwh.data(), gbh.data(), g.data(), xh.data(), w.data(), N, C, OC);
    CHECK(yh == y);
    CHECK(gxh == gx);
    CHECK(gwh == gw);
    CHECK(gbh == gb);
    Matmul<float> fp32; // inputs in bf16 belong to bf16 precision only
    CHECK_THROWS_AS(fp32.forward(y.data(), xh.data(), w.data(), nullptr, N, C, OC),
                    std::logic_error);
}

TEST_CASE("bf16 weight copies round each weight as to_bf16 does, ties included") {
    if (!matmul_has_bf16() || !cpu_has_bf16()) return; // CBLAS build or no AVX512_BF16
    // One-hot inputs and output gradients pick single weights out of both products: each
    // result is one weight rounded to bf16, exactly (finite weights: 0 * NaN would spread).
    // The shape spans whole blocks.
    const int N = 64, C = 96, OC = 128;
    std::mt19937 rng(13);
    std::vector<float> w(size_t(OC) * C);
    const uint32_t specials[] = {0x3f808000u, 0x3f818000u, 0xbf808000u, 0xbf818000u,
                                 0x00008000u, 0x7f7e8000u, 0x477fffffu, 0x3f80ffffu};
    for (size_t i = 0; i < w.size(); ++i) // random bits with 0x8000 (a tie) in the low half
        w[i] = i % 7 == 0 ? std::bit_cast<float>(specials[i / 7 % 8])
                          : std::bit_cast<float>(uint32_t(rng() & 0x3fff0000u) | 0x3c008000u);
    std::vector<float> x(size_t(N) * C, 0.0f), g(size_t(N) * OC, 0.0f);
    for (int n = 0; n < N; ++n) {
        x[size_t(n) * C + (n * 5) % C] = 1.0f; // row n reads column (5n mod C) of w
        g[size_t(n) * OC + (n * 3) % OC] = 1.0f;
    }
    Matmul<float> mm;
    mm.set_precision(Precision::bf16);
    mm.prepare(N, C, OC, false, true, w.data());
    std::vector<float> y(size_t(N) * OC), gx(x.size(), 0.0f), gw(w.size(), 0.0f);
    mm.forward(y.data(), x.data(), w.data(), nullptr, N, C, OC);
    mm.backward(gx.data(), gw.data(), nullptr, g.data(), x.data(), w.data(), N, C, OC);
    auto same = [](float got, float weight) { return got == to_float(to_bf16(weight)); };
    size_t mismatches = 0;
    for (int n = 0; n < N; ++n) {
        for (int o = 0; o < OC; ++o)
            mismatches += !same(y[size_t(n) * OC + o], w[size_t(o) * C + (n * 5) % C]);
        for (int c = 0; c < C; ++c)
            mismatches += !same(gx[size_t(n) * C + c], w[size_t((n * 3) % OC) * C + c]);
    }
    CHECK(mismatches == 0);
}

TEST_CASE("a bf16 weight with a copy per product gives the products of one alternating copy") {
    if (!matmul_has_bf16() || !cpu_has_bf16()) return; // CBLAS build or no AVX512_BF16
    const int N = 70, C = 65, OC = 130;                // several of oneDNN's blocks
    std::mt19937 rng(12);
    auto random = [&](size_t n) { return uniform(rng, n); };
    const auto x = random(size_t(N) * C), g = random(size_t(N) * OC);
    auto w = random(size_t(OC) * C);
    Matmul<float> alternate, per_product;
    for (Matmul<float>* mm : {&alternate, &per_product}) mm->set_precision(Precision::bf16);
    alternate.prepare(N, C, OC, false, true, w.data());
    per_product.prepare(N, C, OC, false, true, w.data(), Matmul<float>::Bf16Io::rounded_in,
                        Matmul<float>::Copies::per_product);
    for (int round = 0; round < 2; ++round) { // then changed weights: both copies follow
        CAPTURE(round);
        for (int pass = 0; pass < 3; ++pass) { // as the classifier's chunks do
            CAPTURE(pass);
            std::vector<float> y[2], gx[2], gw[2];
            for (int i = 0; i < 2; ++i) {
                Matmul<float>& mm = i ? per_product : alternate;
                y[i].assign(size_t(N) * OC, 0.0f);
                gx[i].assign(x.size(), 0.0f);
                gw[i].assign(w.size(), 0.0f);
                mm.forward(y[i].data(), x.data(), w.data(), nullptr, N, C, OC);
                mm.backward(gx[i].data(), gw[i].data(), nullptr, g.data(), x.data(), w.data(), N, C,
                            OC);
            }
            CHECK(y[1] == y[0]);
            CHECK(gx[1] == gx[0]);
            CHECK(gw[1] == gw[0]);
        }
        for (float& e : w) e *= -0.5f;
        for (Matmul<float>* mm : {&alternate, &per_product}) mm->weights_changed();
    }
}

TEST_CASE("bf16 products written in bf16 round the float result once") {
    if (!matmul_has_bf16() || !cpu_has_bf16()) return; // CBLAS build or no AVX512_BF16
    const int N = 19, C = 40, OC = 72;
    std::mt19937 rng(8);
    std::uniform_real_distribution<float> u(-1, 1);
    std::vector<float> x(size_t(N) * C), w(size_t(OC) * C), bias(OC);
    for (auto* v : {&x, &w, &bias})
        for (float& e : *v) e = u(rng);
    std::vector<bf16> xh(x.size());
    to_bf16(xh.data(), x.data(), x.size());
    Matmul<float> mm;
    mm.set_precision(Precision::bf16);
    mm.prepare(N, C, OC, true, false, w.data(), Matmul<float>::Bf16Io::bf16_in_out);
    std::vector<float> y(size_t(N) * OC);
    std::vector<bf16> yh(y.size());
    for (const float* b :
         {static_cast<const float*>(bias.data()), static_cast<const float*>(nullptr)}) {
        CAPTURE(b != nullptr);
        mm.forward(y.data(), xh.data(), w.data(), b, N, C, OC);
        mm.forward(yh.data(), xh.data(), w.data(), b, N, C, OC);
        size_t mismatches = 0;
        for (size_t i = 0; i < y.size(); ++i) mismatches += yh[i].bits != to_bf16(y[i]).bits;
        CHECK(mismatches == 0);
    }
    Matmul<float> fp32; // outputs in bf16 belong to bf16 precision only
    CHECK_THROWS_AS(fp32.forward(yh.data(), xh.data(), w.data(), nullptr, N, C, OC),
                    std::logic_error);
}

TEST_CASE("GELU on an input kept in bf16 is GELU on its value in float") {
    std::mt19937 rng(9);
    std::normal_distribution<float> nd(0.0f, 3.0f);
    const size_t n = 1000;
    std::vector<bf16> xh(n);
    std::vector<float> x(n), dout(n);
    for (size_t i = 0; i < n; ++i) {
        xh[i] = to_bf16(nd(rng));
        x[i] = to_float(xh[i]);
        dout[i] = nd(rng);
    }
    std::vector<bf16> g_from_float(n), g_from_bf16(n);
    gelu_forward(g_from_float.data(), x.data(), n);
    gelu_forward(g_from_bf16.data(), xh.data(), n);
    std::vector<float> dx(n, 0.5f), dx_h(n, 0.5f);
    gelu_backward(dx.data(), x.data(), dout.data(), n);
    gelu_backward(dx_h.data(), xh.data(), dout.data(), n);
    for (size_t i = 0; i < n; ++i) CHECK(g_from_bf16[i].bits == g_from_float[i].bits);
    CHECK(dx_h == dx);
}

TEST_CASE("attention is causal and mixes values by softmax(q k^T / sqrt(hs))") {
    // B = 1, T = 2, C = 2, one head. Rows of qkv are q | k | v.
    std::vector<double> qkv = {1, 0, 1, 0, 1, 2,  // t = 0
                               0, 1, 0, 2, 3, 4}; // t = 1
    std::vector<double> out(4), lse(2), scratch(attention_scratch_size<double>(2, 2));
    attention_forward(out.data(), lse.data(), scratch.data(), 1, qkv.data(), 1, 2, 2, 1);
    // The probabilities are exp(score - lse), score = q.k / sqrt(2).
    // t = 0 sees only itself: score q0.k0 / sqrt(2) = 1/sqrt(2), probability 1.
    const double s00 = 1 / std::sqrt(2.0);
    CHECK(lse[0] == Approx(s00));
    CHECK(std::exp(s00 - lse[0]) == Approx(1.0));
    CHECK(out[0] == Approx(1.0));
    CHECK(out[1] == Approx(2.0));
    // t = 1: scores (q1.k0, q1.k1) / sqrt(2) = (0, sqrt(2)); p1 = e^sqrt2 / (1 + e^sqrt2).
    const double p1 = std::exp(std::sqrt(2.0)) / (1 + std::exp(std::sqrt(2.0))); // 0.804382
    CHECK(lse[1] == Approx(std::log(1 + std::exp(std::sqrt(2.0)))));
    CHECK(std::exp(0.0 - lse[1]) == Approx(1 - p1));
    CHECK(std::exp(std::sqrt(2.0) - lse[1]) == Approx(p1));
    CHECK(out[2] == Approx((1 - p1) * 1 + p1 * 3)); // 2.608764
    CHECK(out[3] == Approx((1 - p1) * 2 + p1 * 4)); // 3.608764
    // t = 0 gives t = 1 no weight: changing t = 1's q, k and v leaves t = 0's output.
    const std::vector<double> first = {out[0], out[1], lse[0]};
    for (int i = 6; i < 12; ++i) qkv[i] += 10 * i;
    attention_forward(out.data(), lse.data(), scratch.data(), 1, qkv.data(), 1, 2, 2, 1);
    CHECK(std::vector<double>{out[0], out[1], lse[0]} == first);
}

namespace {

// Attention written out in full, O(T^2) per head in double: out (B,T,C), lse (B,NH,T)
// and, from dout (B,T,C), dqkv (B,T,3C) through the (T,T) probabilities.
struct NaiveAttention {
    std::vector<double> out, lse, dqkv;
};
NaiveAttention naive_attention(const std::vector<double>& qkv, const std::vector<double>& dout,
                               int B, int Tn, int C, int NH) {
    const int hs = C / NH;
    const double scale = 1 / std::sqrt(double(hs));
    NaiveAttention r{std::vector<double>(size_t(B) * Tn * C),
                     std::vector<double>(size_t(B) * NH * Tn),
                     std::vector<double>(size_t(B) * Tn * 3 * C, 0.0)};
    std::vector<double> p(size_t(Tn) * Tn), dp(size_t(Tn) * Tn);
    for (int b = 0; b < B; ++b)
        for (int h = 0; h < NH; ++h) {
            auto at = [&](int t, int part, int d) {
                return (size_t(b) * Tn + t) * 3 * C + size_t(part) * C + size_t(h) * hs + d;
            };
            auto at_c = [&](int t, int d) { return (size_t(b) * Tn + t) * C + size_t(h) * hs + d; };
            for (int i = 0; i < Tn; ++i) {
                double mx = -INFINITY;
                for (int j = 0; j <= i; ++j) {
                    double s = 0;
                    for (int d = 0; d < hs; ++d) s += qkv[at(i, 0, d)] * qkv[at(j, 1, d)];
                    p[size_t(i) * Tn + j] = s * scale;
                    mx = std::max(mx, s * scale);
                }
                double sum = 0;
                for (int j = 0; j <= i; ++j) sum += std::exp(p[size_t(i) * Tn + j] - mx);
                r.lse[(size_t(b) * NH + h) * Tn + i] = mx + std::log(sum);
                for (int j = 0; j <= i; ++j)
                    p[size_t(i) * Tn + j] = std::exp(p[size_t(i) * Tn + j] - mx) / sum;
                for (int d = 0; d < hs; ++d) {
                    double o = 0;
                    for (int j = 0; j <= i; ++j) o += p[size_t(i) * Tn + j] * qkv[at(j, 2, d)];
                    r.out[at_c(i, d)] = o;
                }
            }
            for (int i = 0; i < Tn; ++i) {
                double rowsum = 0; // sum_j p dp
                for (int j = 0; j <= i; ++j) {
                    double s = 0;
                    for (int d = 0; d < hs; ++d) s += dout[at_c(i, d)] * qkv[at(j, 2, d)];
                    dp[size_t(i) * Tn + j] = s;
                    rowsum += p[size_t(i) * Tn + j] * s;
                }
                for (int j = 0; j <= i; ++j) {
                    const double pij = p[size_t(i) * Tn + j];
                    const double ds = pij * (dp[size_t(i) * Tn + j] - rowsum);
                    for (int d = 0; d < hs; ++d) {
                        r.dqkv[at(i, 0, d)] += scale * ds * qkv[at(j, 1, d)];
                        r.dqkv[at(j, 1, d)] += scale * ds * qkv[at(i, 0, d)];
                        r.dqkv[at(j, 2, d)] += pij * dout[at_c(i, d)];
                    }
                }
            }
        }
    return r;
}

// max |a - b| over max |b|, as the gradient checks measure.
template <class T> double rel_error(const std::vector<T>& a, const std::vector<double>& b) {
    double diff = 0, scale = 0;
    for (size_t i = 0; i < b.size(); ++i) {
        diff = std::max(diff, std::fabs(double(a[i]) - b[i]));
        scale = std::max(scale, std::fabs(b[i]));
    }
    return diff / scale;
}

std::vector<double> random_normal(std::mt19937& rng, size_t n, double stddev) {
    std::normal_distribution<double> normal(0, stddev);
    std::vector<double> v(n);
    for (double& x : v) x = normal(rng);
    return v;
}

// The blocked attention in T against naive_attention, in both directions; dqkv starts
// from ones, for the backward adds into it.
template <class T> void check_attention_against_naive(double tolerance) {
    std::mt19937 rng(11);
    // Sequence lengths around the blocks (32 positions for double, 64 for float); head
    // sizes of whole registers (64, 16) and not (5).
    for (const int Tn : {1, 7, 32, 33, 64, 65, 130, 257})
        for (const auto& entry : {std::pair{128, 2}, {48, 3}, {15, 3}}) {
            const auto& C = std::get<0>(entry);
            const auto& NH = std::get<1>(entry);
            CAPTURE(Tn);
            CAPTURE(C);
            CAPTURE(NH);
            const int B = 2;
            const auto qkv = random_normal(rng, size_t(B) * Tn * 3 * C, 1.5);
            const auto dout = random_normal(rng, size_t(B) * Tn * C, 1.0);
            const NaiveAttention ref = naive_attention(qkv, dout, B, Tn, C, NH);
            const int slots = 2;
            std::vector<T> scratch(slots * attention_scratch_size<T>(Tn, C / NH));
            const std::vector<T> qkv_t(qkv.begin(), qkv.end()), dout_t(dout.begin(), dout.end());
            std::vector<T> out(ref.out.size()), lse(ref.lse.size()), dqkv(ref.dqkv.size(), T(1));
            attention_forward(out.data(), lse.data(), scratch.data(), slots, qkv_t.data(), B, Tn, C,
                              NH);
            attention_backward(dqkv.data(), scratch.data(), slots, dout_t.data(), qkv_t.data(),
                               out.data(), lse.data(), B, Tn, C, NH);
            for (T& g : dqkv) g -= T(1);
            CHECK(rel_error(out, ref.out) < tolerance);
            CHECK(rel_error(lse, ref.lse) < tolerance);
            CHECK(rel_error(dqkv, ref.dqkv) < tolerance);
        }
}

} // namespace

TEST_CASE("blocked attention matches naive attention, lse and gradients, in double") {
    check_attention_against_naive<double>(1e-12);
}

TEST_CASE("blocked attention matches naive attention, lse and gradients, in float") {
    check_attention_against_naive<float>(2e-5);
}

TEST_CASE("bf16 attention matches the float kernel to bfloat16 precision") {
    if (!cpu_has_bf16()) {
        MESSAGE("skipped: this CPU has no AVX512_BF16");
        return;
    }
    // Rounding q, k, v, the probabilities, dout and dS to 8 significant bits costs
    // about 0.5% of the largest value; 1% is the bound.
    std::mt19937 rng(13);
    for (const int Tn : {1, 7, 64, 65, 130, 257})
        for (const auto& entry : {std::pair{128, 2}, {48, 3}, {15, 3}}) {
            const auto& C = std::get<0>(entry);
            const auto& NH = std::get<1>(entry);
            CAPTURE(Tn);
            CAPTURE(C);
            CAPTURE(NH);
            const int B = 2, slots = 2;
            const auto qkv64 = random_normal(rng, size_t(B) * Tn * 3 * C, 1.0);
            const auto dout64 = random_normal(rng, size_t(B) * Tn * C, 1.0);
            const std::vector<float> qkv(qkv64.begin(), qkv64.end()),
                dout(dout64.begin(), dout64.end());
            std::vector<float> scratch(slots * attention_scratch_size<float>(Tn, C / NH));
            auto run = [&](auto forward, auto backward) {
                std::vector<float> out(size_t(B) * Tn * C), lse(size_t(B) * NH * Tn),
                    dqkv(qkv.size(), 0.0f);
                forward(out.data(), lse.data(), scratch.data(), slots, qkv.data(), B, Tn, C, NH);
                backward(dqkv.data(), scratch.data(), slots, dout.data(), qkv.data(), out.data(),
                         lse.data(), B, Tn, C, NH);
                return std::array{out, lse, dqkv};
            };
            const auto fp32 = run(attention_forward<float>, attention_backward<float>);
            const auto bf16 = run([](auto... x) { attention_forward_bf16(x...); },
                                  [](auto... x) { attention_backward_bf16(x...); });
            for (int i = 0; i < 3; ++i) {
                CAPTURE(i); // out, lse, dqkv
                CHECK(rel_error(bf16[i], std::vector<double>(fp32[i].begin(), fp32[i].end())) <
                      1e-2);
            }
        }
}

TEST_CASE("bf16 attention on q, k, v kept in bf16 equals it on the same values in float") {
    if (!cpu_has_bf16()) return;
    // The float-input kernel rounds q, k, v as it packs them: given values that are bf16
    // already, both read the same bits, so their results agree exactly, the output
    // rounded once where the bf16 kernel writes it.
    std::mt19937 rng(17);
    for (const int Tn : {1, 7, 64, 65, 130, 257}) {
        CAPTURE(Tn);
        const int B = 2, C = 96, NH = 2, slots = 2;
        const auto qkv64 = random_normal(rng, size_t(B) * Tn * 3 * C, 1.0);
        const auto dout64 = random_normal(rng, size_t(B) * Tn * C, 1.0);
        std::vector<bf16> qkv_h(qkv64.size());
        std::vector<float> qkv(qkv64.size()), dout(dout64.begin(), dout64.end());
        for (size_t i = 0; i < qkv.size(); ++i) {
            qkv_h[i] = to_bf16(float(qkv64[i]));
            qkv[i] = to_float(qkv_h[i]);
        }
        std::vector<float> scratch(slots * attention_scratch_size<float>(Tn, C / NH));
        std::vector<float> out(size_t(B) * Tn * C), lse(size_t(B) * NH * Tn), lse_h(lse.size());
        std::vector<bf16> out_h(out.size());
        attention_forward_bf16(out.data(), lse.data(), scratch.data(), slots, qkv.data(), B, Tn, C,
                               NH);
        attention_forward_bf16(out_h.data(), lse_h.data(), scratch.data(), slots, qkv_h.data(), B,
                               Tn, C, NH);
        CHECK(lse_h == lse);
        size_t out_mismatches = 0;
        for (size_t i = 0; i < out.size(); ++i)
            out_mismatches += out_h[i].bits != to_bf16(out[i]).bits;
        CHECK(out_mismatches == 0);
        // Backward reads out as kept: in float the same rounded values.
        std::vector<float> out_rounded(out.size());
        for (size_t i = 0; i < out.size(); ++i) out_rounded[i] = to_float(out_h[i]);
        std::vector<float> dqkv(qkv.size(), 0.5f), dqkv_h(qkv.size(), 0.5f);
        attention_backward_bf16(dqkv.data(), scratch.data(), slots, dout.data(), qkv.data(),
                                out_rounded.data(), lse.data(), B, Tn, C, NH);
        attention_backward_bf16(dqkv_h.data(), scratch.data(), slots, dout.data(), qkv_h.data(),
                                out_h.data(), lse.data(), B, Tn, C, NH);
        CHECK(dqkv_h == dqkv);
    }
}

TEST_CASE("attention's results do not depend on the number of threads") {
    std::mt19937 rng(5);
    const int B = 2, Tn = 200, C = 128, NH = 2;
    const auto qkv64 = random_normal(rng, size_t(B) * Tn * 3 * C, 1.5);
    const auto dout64 = random_normal(rng, size_t(B) * Tn * C, 1.0);
    const std::vector<float> qkv(qkv64.begin(), qkv64.end()), dout(dout64.begin(), dout64.end());
    auto run = [&](int slots) {
        std::vector<float> scratch(slots * attention_scratch_size<float>(Tn, C / NH));
        std::vector<float> out(size_t(B) * Tn * C), lse(size_t(B) * NH * Tn),
            dqkv(qkv.size(), 0.0f);
        attention_forward(out.data(), lse.data(), scratch.data(), slots, qkv.data(), B, Tn, C, NH);
        attention_backward(dqkv.data(), scratch.data(), slots, dout.data(), qkv.data(), out.data(),
                           lse.data(), B, Tn, C, NH);
        return std::tuple{out, lse, dqkv};
    };
    const auto one = run(1);
    CHECK(run(3) == one);
    CHECK(run(4) == one);
}

TEST_CASE("blocked attention's backward matches finite differences in double") {
    // Several blocks of 32 (the last partial), B = 2, heads of 5 (padded to 8).
    std::mt19937 rng(3);
    const int B = 2, Tn = 70, C = 10, NH = 2;
    auto qkv = random_normal(rng, size_t(B) * Tn * 3 * C, 1.5);
    const auto R = random_normal(rng, size_t(B) * Tn * C, 1.0);
    std::vector<double> out(R.size()), lse(size_t(B) * NH * Tn),
        scratch(2 * attention_scratch_size<double>(Tn, C / NH));
    // loss = sum(out * R), so dout = R.
    auto loss = [&] {
        attention_forward(out.data(), lse.data(), scratch.data(), 2, qkv.data(), B, Tn, C, NH);
        double s = 0;
        for (size_t i = 0; i < R.size(); ++i) s += out[i] * R[i];
        return s;
    };
    loss();
    std::vector<double> analytic(qkv.size(), 0.0), numeric(qkv.size());
    attention_backward(analytic.data(), scratch.data(), 2, R.data(), qkv.data(), out.data(),
                       lse.data(), B, Tn, C, NH);
    const double h = 1e-5;
    for (size_t i = 0; i < qkv.size(); ++i) {
        const double x = qkv[i];
        qkv[i] = x + h;
        const double up = loss();
        qkv[i] = x - h;
        const double down = loss();
        qkv[i] = x;
        numeric[i] = (up - down) / (2 * h);
    }
    const GradError e =
        compare_gradients("attention/qkv", analytic.data(), numeric.data(), qkv.size());
    INFO("max abs err ", e.max_abs);
    CHECK(e.rel < 1e-6);
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

TEST_CASE("gelu's backward in place gives what it accumulates into zeroes") {
    std::mt19937 rng(21);
    std::normal_distribution<double> nd(0.0, 3.0);
    const size_t n = 1000;
    std::vector<double> x(n), dout(n);
    for (size_t i = 0; i < n; ++i) {
        x[i] = nd(rng);
        dout[i] = nd(rng);
    }
    // gelu'(x) at hand-computed points: gelu'(0) = 0.5, and gelu'(1) = 1.0829640 for
    // GPT-2's tanh form (its derivative written out, evaluated at x = 1).
    std::vector<double> d = {2.0, 3.0}, at = {0.0, 1.0};
    gelu_backward_in_place(d.data(), at.data(), 2);
    CHECK(d[0] == Approx(1.0));
    CHECK(d[1] == Approx(3 * 1.0829640).epsilon(1e-6));
    auto check = [&](auto zero, const auto& xs, auto in_place) {
        using T = decltype(zero);
        const std::vector<T> g(dout.begin(), dout.end());
        std::vector<T> accumulated(n, T(0)), assigned = g;
        gelu_backward(accumulated.data(), xs.data(), g.data(), n);
        in_place(assigned.data(), xs.data());
        CHECK(assigned == accumulated);
    };
    check(0.0, x, [&](double* g, const double* xs) { gelu_backward_in_place(g, xs, n); });
    const std::vector<float> xf(x.begin(), x.end());
    check(0.0f, xf, [&](float* g, const float* xs) { gelu_backward_in_place(g, xs, n); });
    std::vector<bf16> xh(n);
    to_bf16(xh.data(), xf.data(), n);
    check(0.0f, xh, [&](float* g, const bf16* xs) { gelu_backward_in_place(g, xs, n); });
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
    const model::ThreadLimit one(1); // tiny layers: threads only cost
    for (const auto& e : check_layer_gradients(7)) {
        INFO(e.name, " max abs err ", e.max_abs);
        CHECK(e.rel < 1e-6);
    }
}
