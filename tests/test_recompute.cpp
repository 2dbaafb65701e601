// Recompute levels: what backward recomputes instead of keeping changes no result.
#include <algorithm>
#include <memory>
#include <utility>
#include <vector>

#include <doctest/doctest.h>

#include "model/gpt2.h"

using namespace model;

TEST_CASE("recompute gelu and all give bit-identical losses and gradients") {
    const Config config = make_config(2, 2, 32, 64, 16);
    std::vector<int> tokens(2 * 16), targets(2 * 16);
    for (size_t i = 0; i < tokens.size(); ++i) {
        tokens[i] = int((3 + 11 * i) % 64);
        targets[i] = i % 5 == 4 ? -1 : int((5 + 13 * i * i) % 64);
    }
    // Two accumulated micro-batches (the second on half the batch) on float products.
    auto run = [&](Recompute recompute, bool set_after_reserve) {
        auto m = std::make_unique<GPT2<float>>(config);
        m->init_weights(8);
        m->set_classifier_rows(12);
        if (!set_after_reserve) m->set_recompute(recompute);
        m->reserve(2, 16, true);
        if (set_after_reserve) m->set_recompute(recompute);
        m->zero_grad();
        std::vector<double> losses;
        for (int B : {2, 1}) {
            losses.push_back(m->forward(tokens.data(), targets.data(), B, 16, Pass::training));
            m->backward();
        }
        return std::pair{std::move(m), losses};
    };
    const auto [off, off_losses] = run(Recompute::off, false);
    for (Recompute level : {Recompute::gelu, Recompute::all})
        for (bool after : {false, true}) {
            CAPTURE(int(level));
            CAPTURE(after);
            const auto [m, losses] = run(level, after);
            CHECK(m->recompute() == level);
            CHECK(losses == off_losses);
            CHECK(std::equal(off->grads(), off->grads() + off->num_params(), m->grads()));
            // The levels share what they recompute.
            const Activations<float>& a = m->activations();
            CHECK(a.layer(1).fch_gelu == a.layer(0).fch_gelu);
            CHECK((a.layer(1).ln1 == a.layer(0).ln2) == (level == Recompute::all));
        }
}
