// AdamW against PyTorch's update rule, gradient clipping, and learning-rate schedules.
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <vector>

#include <doctest/doctest.h>

#include "base/error.h"
#include "model/blas.h"
#include "model/layout.h"
#include "optim/optim.h"
#include "train/options.h"

using doctest::Approx;
using namespace optim;

namespace {

const model::ParamLayout& tiny_layout() {
    static const model::ParamLayout layout(model::make_config(1, 1, 4, 8, 4)); // 780 params
    return layout;
}

std::vector<float> filled(size_t n, double phase, double scale) {
    std::vector<float> x(n);
    for (size_t i = 0; i < n; ++i) x[i] = float(scale * std::sin(0.37 * double(i) + phase));
    return x;
}

// Plain double-precision AdamW as torch.optim.AdamW documents it.
struct ReferenceAdamW {
    AdamWConfig c;
    std::vector<double> p, m, v;
    std::vector<bool> decays;
    int t = 0;
    void step(const std::vector<float>& g, double lr) {
        ++t;
        const double bc1 = 1 - std::pow(c.beta1, t), bc2 = 1 - std::pow(c.beta2, t);
        for (size_t i = 0; i < p.size(); ++i) {
            if (decays[i]) p[i] *= 1 - lr * c.weight_decay;
            m[i] = c.beta1 * m[i] + (1 - c.beta1) * g[i];
            v[i] = c.beta2 * v[i] + (1 - c.beta2) * g[i] * g[i];
            p[i] -= lr / bc1 * m[i] / (std::sqrt(v[i]) / std::sqrt(bc2) + c.eps);
        }
    }
};

} // namespace

TEST_CASE("AdamW matches PyTorch's update rule computed in double") {
    const auto& layout = tiny_layout();
    const size_t n = layout.total();
    const AdamWConfig config{.weight_decay = 0.1};
    std::vector<float> params = filled(n, 0.0, 1.0);
    params[0] = 1.0f;

    ReferenceAdamW ref{config,
                       {params.begin(), params.end()},
                       std::vector<double>(n),
                       std::vector<double>(n),
                       std::vector<bool>(n),
                       0};
    for (const auto& t : layout.tensors())
        for (size_t i = t.offset; i < t.offset + t.size; ++i) ref.decays[i] = t.decays();

    AdamW adamw(layout, config);
    const float lr = 0.1f;
    for (int step = 1; step <= 3; ++step) {
        std::vector<float> grads = filled(n, step, 0.3);
        grads[0] = 0.5f;
        adamw.step(params.data(), grads.data(), lr);
        ref.step(grads, lr);
        if (step == 1) {
            // Element 0 (wte, decays), g = 0.5, p = 1:
            //   p = 1 * (1 - 0.1*0.1) = 0.99
            //   m = 0.1*0.5 = 0.05,  v = 0.05*0.25 = 0.0125
            //   bc1 = 0.1, bc2 = 0.05: step size 0.1/0.1 = 1,
            //   denom = sqrt(0.0125)/sqrt(0.05) + 1e-8 = 0.5 + 1e-8
            //   p = 0.99 - 0.05/(0.5 + 1e-8) = 0.89 (+2e-9)
            CHECK(params[0] == Approx(0.89).epsilon(1e-7));
            CHECK(adamw.m()[0] == Approx(0.05).epsilon(1e-7));
            CHECK(adamw.v()[0] == Approx(0.0125).epsilon(1e-7));
        }
    }
    CHECK(adamw.t() == 3);
    for (size_t i = 0; i < n; ++i) {
        INFO("element ", i);
        REQUIRE(params[i] == Approx(ref.p[i]).epsilon(1e-6));
        REQUIRE(adamw.m()[i] == Approx(ref.m[i]).epsilon(1e-6));
        REQUIRE(adamw.v()[i] == Approx(ref.v[i]).epsilon(1e-6));
    }
}

TEST_CASE("AdamW weight decay touches only tensors of two or more dimensions") {
    const auto& layout = tiny_layout();
    const std::vector<float> before = filled(layout.total(), 1.0, 2.0);
    std::vector<float> params = before;
    const std::vector<float> zero(layout.total(), 0.0f);
    AdamW adamw(layout, {.weight_decay = 0.1});
    adamw.step(params.data(), zero.data(), 0.1f);

    // Zero gradients leave m = v = 0, so the update is the decay alone.
    const float shrink = float(1.0 - 0.1 * 0.1);
    int decayed = 0;
    for (const auto& t : layout.tensors()) {
        INFO(t.name);
        decayed += t.decays();
        for (size_t i = t.offset; i < t.offset + t.size; ++i)
            REQUIRE(params[i] == (t.decays() ? before[i] * shrink : before[i]));
    }
    CHECK(decayed == 6); // wte, wpe, qkvw, attprojw, fcw, fcprojw
    // Groups are stacked by layer, so decay runs merge: wte+wpe, then each matrix group.
    CHECK(adamw.decay_runs().size() == 5);
}

TEST_CASE("AdamW over two slices equals one AdamW over the whole buffer, bitwise") {
    const auto& layout = tiny_layout();
    const size_t n = layout.total();
    const AdamWConfig config{.weight_decay = 0.1};
    for (size_t k : {size_t(0), size_t(300), size_t(530), n}) { // inside wte, inside ln1w
        INFO("split at ", k);
        std::vector<float> whole = filled(n, 0.5, 1.0), split = whole;
        AdamW all(layout, config), lo(layout, config, 0, k), hi(layout, config, k);
        CHECK(hi.end() == n);
        for (int step = 1; step <= 3; ++step) {
            const std::vector<float> grads = filled(n, 2.0 * step, 0.2);
            all.step(whole.data(), grads.data(), 0.01f);
            lo.step(split.data(), grads.data(), 0.01f);
            hi.step(split.data(), grads.data(), 0.01f);
        }
        CHECK(std::memcmp(whole.data(), split.data(), n * sizeof(float)) == 0);
        // An empty slice's moments may have no storage: memcmp with null is undefined.
        CHECK((k == 0 || std::memcmp(all.m().data(), lo.m().data(), k * sizeof(float)) == 0));
        CHECK((k == n ||
               std::memcmp(all.v().data() + k, hi.v().data(), (n - k) * sizeof(float)) == 0));
    }
    CHECK_THROWS_AS(AdamW(layout, config, 10, 5), std::invalid_argument);
}

TEST_CASE("grad_norm is the global L2 norm and does not depend on the thread count") {
    const std::vector<float> g = {3, 0, -4};
    CHECK(grad_norm(g.data(), g.size()) == 5.0);
    CHECK(grad_norm(nullptr, 0) == 0.0);

    const std::vector<float> big = filled(1'000'003, 0.1, 1e-2);
    double expected = 0;
    for (float x : big) expected += double(x) * x;
    const auto norm_on = [&](int threads) {
        const model::ThreadLimit limit(threads);
        return grad_norm(big.data(), big.size());
    };
    const double one = norm_on(1);
    const double two = norm_on(2);
    CHECK(one == two);
    CHECK(one == Approx(std::sqrt(expected)).epsilon(1e-12));
}

TEST_CASE("clip_grad_norm scales large gradients to max_norm and leaves small ones alone") {
    std::vector<float> g = {3, 4};
    CHECK(clip_grad_norm(g.data(), g.size(), 1.0) == 5.0); // norm before clipping
    CHECK(grad_norm(g.data(), g.size()) == Approx(1.0).epsilon(1e-6));
    CHECK(g[0] == Approx(0.6).epsilon(1e-6));

    std::vector<float> small = {0.3f, 0.4f};
    CHECK(clip_grad_norm(small.data(), small.size(), 1.0) == Approx(0.5));
    CHECK(small == std::vector<float>{0.3f, 0.4f});
    CHECK(clip_grad_norm(g.data(), g.size(), 0.0) == Approx(1.0).epsilon(1e-6)); // disabled
    CHECK(clip_grad_norm(nullptr, 0, 1.0) == 0.0);
}

TEST_CASE("constant schedule warms up linearly and then holds lr") {
    const Schedule s{Schedule::Kind::constant, 1.0, 10};
    CHECK(s.at(0) == Approx(0.1));
    CHECK(s.at(4) == Approx(0.5));
    CHECK(s.at(9) == Approx(1.0));
    CHECK(s.at(10) == 1.0);
    CHECK(s.at(1'000'000) == 1.0);
    CHECK(Schedule{Schedule::Kind::constant, 0.5}.at(0) == 0.5); // no warmup
}

TEST_CASE("cosine schedule decays from lr to lr * final_fraction") {
    const Schedule s{Schedule::Kind::cosine, 1.0, 10, 110, 0.1};
    CHECK(s.at(0) == Approx(0.1));
    CHECK(s.at(9) == Approx(1.0));
    CHECK(s.at(10) == Approx(1.0));
    CHECK(s.at(60) == Approx(0.55)); // midpoint: (lr + lr_min) / 2
    CHECK(s.at(109) > 0.1);
    CHECK(s.at(110) == Approx(0.1));
    CHECK(s.at(500) == Approx(0.1));
}

TEST_CASE("wsd schedule is stable and then decays linearly over the last steps") {
    Schedule s{Schedule::Kind::wsd, 1.0, 10, 100, 0.0, 0.2}; // decay over steps 80..99
    CHECK(s.at(0) == Approx(0.1));
    CHECK(s.at(10) == 1.0);
    CHECK(s.at(79) == 1.0);
    CHECK(s.at(80) == Approx(0.95));
    CHECK(s.at(89) == Approx(0.5));
    CHECK(s.at(99) == Approx(0.0));
    CHECK(s.at(150) == Approx(0.0));

    s.decay_fraction = 1.0; // decay cannot start before warmup ends
    s.final_fraction = 0.1;
    CHECK(s.at(9) == Approx(1.0));
    CHECK(s.at(10) == Approx(1.0 - 0.9 / 90));
    CHECK(s.at(99) == Approx(0.1));
}

TEST_CASE("linear schedule decays from lr after warmup to lr * final_fraction at the last step") {
    Schedule s{Schedule::Kind::linear, 1.0, 10, 110, 0.1}; // decay over steps 10..109
    CHECK(s.at(0) == Approx(0.1));
    CHECK(s.at(9) == Approx(1.0));
    CHECK(s.at(10) == 1.0);
    CHECK(s.at(11) == Approx(1.0 - 0.9 / 99));
    CHECK(s.at(43) == Approx(0.7)); // 1 - 0.9 * 33/99
    CHECK(s.at(76) == Approx(0.4));
    CHECK(s.at(109) == Approx(0.1));
    CHECK(s.at(500) == Approx(0.1));

    s = {Schedule::Kind::linear, 2.0, 0, 5}; // final fraction 0, as HF's, no warmup
    CHECK(s.at(0) == 2.0);
    CHECK(s.at(1) == Approx(1.5));
    CHECK(s.at(2) == Approx(1.0));
    CHECK(s.at(3) == Approx(0.5));
    CHECK(s.at(4) == 0.0);
    CHECK(Schedule{Schedule::Kind::linear, 1.0, 0, 1, 0.2}.at(0) == Approx(0.2)); // one step
    CHECK(Schedule{Schedule::Kind::linear, 1.0, 4, 3, 0.2}.at(3) == Approx(1.0)); // warmup
    CHECK(Schedule{Schedule::Kind::linear, 1.0, 4, 3, 0.2}.at(4) == Approx(0.2));

    train::TrainOptions o; // checkpoints keep the schedule by name
    o.lr_schedule = Schedule::Kind::linear;
    CHECK(train::to_json(o).find("\"lr_schedule\":\"linear\"") != std::string::npos);
    CHECK(train::train_options_from_json(train::to_json(o)).lr_schedule == Schedule::Kind::linear);
}

TEST_CASE("schedule names parse and bad settings are rejected naming the setting") {
    CHECK(Schedule::parse("constant") == Schedule::Kind::constant);
    CHECK(Schedule::parse("cosine") == Schedule::Kind::cosine);
    CHECK(Schedule::parse("wsd") == Schedule::Kind::wsd);
    CHECK(Schedule::parse("linear") == Schedule::Kind::linear);
    CHECK(Schedule::name(Schedule::Kind::linear) == std::string("linear"));
    CHECK_THROWS_WITH_AS(Schedule::parse("cos"),
                         doctest::Contains("constant, cosine, wsd or linear"),
                         std::invalid_argument);

    const Schedule good{Schedule::Kind::wsd, 6e-4, 700, 19073, 0.1, 0.2};
    CHECK_NOTHROW(good.validate());
    CHECK(good.describe() == "wsd lr 0.0006 warmup 700 steps 19073 final x0.1 decay 0.2");
    CHECK_NOTHROW(Schedule{Schedule::Kind::constant, 1.0}.validate()); // needs no --steps
    // Named by the schedule's own field; the program maps it to its option (test_cli.cpp).
    auto rejects = [](Schedule s, const std::string& setting) {
        try {
            s.validate();
            FAIL("accepted");
        } catch (const base::SettingError& e) {
            CHECK(e.setting() == setting);
        }
    };
    Schedule s = good;
    s.lr = -1;
    rejects(s, "lr");
    s = good, s.warmup = -1;
    rejects(s, "warmup");
    s = good, s.total = 0;
    rejects(s, "total");
    s = good, s.final_fraction = 1.5;
    rejects(s, "final_fraction");
    s = good, s.decay_fraction = 0.0;
    rejects(s, "decay_fraction");
}
