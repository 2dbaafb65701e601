// Recompute levels: what backward recomputes instead of keeping changes no result, in
// the model and through gpt2 train.
#include <algorithm>
#include <memory>
#include <utility>
#include <vector>

#include <doctest/doctest.h>

#include "data/shard.h"
#include "helpers.h"
#include "model/gpt2.h"
#include "train/checkpoint.h"
#include "train/options.h"

using namespace model;

namespace {

// Losses and gradients of every recompute level against off's, in fp32 or bf16.
void check_recompute_levels(Precision precision) {
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
        m->set_precision(precision);
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
            if (precision == Precision::fp32) {
                CHECK(a.layer(1).fch_gelu == a.layer(0).fch_gelu);
                CHECK((a.layer(1).ln1 == a.layer(0).ln2) == (level == Recompute::all));
            } else { // the same buffers, kept in bf16
                CHECK(a.layer(0).ln1 == nullptr);
                CHECK(a.layer(1).fch_gelu_bf16 == a.layer(0).fch_gelu_bf16);
                CHECK((a.layer(1).ln1_bf16 == a.layer(0).ln2_bf16) == (level == Recompute::all));
            }
        }
}

} // namespace

TEST_CASE("recompute gelu and all give bit-identical losses and gradients") {
    check_recompute_levels(Precision::fp32);
}

TEST_CASE("in bf16 too, where the kept inputs of the products are bf16") {
    if (!matmul_has_bf16() || !cpu_has_bf16()) return; // CBLAS build or no AVX512_BF16
    check_recompute_levels(Precision::bf16);
}

TEST_CASE("gpt2 train --recompute trains to the same losses; checkpoints record the setting") {
    testing::Workdir w;
    std::vector<uint16_t> tokens(3000);
    uint32_t x = 777;
    for (auto& t : tokens) {
        x = x * 1103515245u + 12345u;
        t = uint16_t((x >> 16) % 500);
    }
    data::write_shard(w / "train_000001.bin", tokens.data(), tokens.size());
    auto train = [&](const std::string& level) {
        const testing::Run r = testing::run_gpt2(
            "train --model d6 --n-layer 2 --n-head 2 --n-embd 32 --max-seq 32 --train-data '" +
            (w / "train_*.bin") + "' --batch 2 --seq 16 --grad-accum 2 --steps 3 --out " +
            (w / level) + " --recompute " + level);
        INFO(r.out);
        REQUIRE(r.status == 0);
        return testing::logged(w / (level + "/log.jsonl"), "loss");
    };
    const auto off = train("off");
    REQUIRE(off.size() == 3);
    CHECK(train("gelu") == off);
    CHECK(train("all") == off);
    const auto c = train::load_checkpoint(w / "all/ckpt_00000003.h5");
    CHECK(train::train_options_from_json(c.args_json).recompute == Recompute::all);
    CHECK(train::load_checkpoint(w / "off/ckpt_00000003.h5").params == c.params);

    const testing::Run bad = testing::run_gpt2("bench --recompute some");
    CHECK(bad.status != 0);
    CHECK(bad.out.find("--recompute") != std::string::npos);
}
