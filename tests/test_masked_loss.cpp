// Training on shards with a loss mask: the loss and its gradient average over the scored
// targets of the whole step (every micro-batch; tests/test_mpi.cpp: every rank), a step
// with nothing scored changes nothing, and a mask that scores everything changes nothing.
#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "data/shard.h"
#include "helpers.h"
#include "model/gpt2.h"
#include "train/checkpoint.h"
#include "train/metrics.h"
#include "train/trainer.h"

using namespace testing;

namespace {

// Pseudo-text on a slice of the vocabulary, and classes 0 (never a target), 1 (prompt)
// and 2 (completion) in runs of a few tokens, as prompt/completion examples give.
struct MaskedData {
    std::vector<uint16_t> tokens;
    std::vector<uint8_t> classes;
};

MaskedData masked_data(size_t n, uint32_t seed) {
    MaskedData d{std::vector<uint16_t>(n), std::vector<uint8_t>(n)};
    uint32_t x = seed;
    uint8_t cls = 1;
    for (size_t i = 0; i < n; ++i) {
        x = x * 1103515245u + 12345u;
        d.tokens[i] = uint16_t((x >> 16) % 500);
        if ((x >> 8) % 5 == 0) cls = uint8_t((cls + 1) % 3);
        d.classes[i] = cls;
    }
    return d;
}

const model::Config kConfig = model::make_config(2, 2, 32, 50257, 32);

train::TrainOptions options(const Workdir& w, const std::string& out) {
    train::TrainOptions o;
    o.model = "d6";
    o.n_layer = 2, o.n_head = 2, o.n_embd = 32, o.max_seq = 32;
    o.train_data = w / "train_*.bin";
    o.seq = 16;
    o.shuffle = false;
    o.lr = 3e-3, o.warmup = 0, o.lr_schedule = optim::Schedule::Kind::constant, o.grad_clip = 1;
    o.out = w / out;
    return o;
}

} // namespace

TEST_CASE("with a loss mask, 2 micro-batches of B rows train as one batch of 2B rows") {
    Workdir w;
    const MaskedData d = masked_data(3000, 99);
    data::write_shard(w / "train_000001.bin", d.tokens.data(), d.tokens.size(), d.classes.data(),
                      0);
    train::TrainOptions o = options(w, "accum");
    o.steps = 4, o.checkpoint_every = 4;
    o.batch = 2, o.grad_accum = 2;
    const auto accum = train_in_process(o);
    o.out = w / "one", o.batch = 4, o.grad_accum = 1;
    const auto one = train_in_process(o);
    const auto la = values_of(accum, "loss"), lb = values_of(one, "loss");
    REQUIRE(la.size() == 4);
    REQUIRE(lb.size() == 4);
    for (size_t i = 0; i < 4; ++i) CHECK(la[i] == doctest::Approx(lb[i]).epsilon(1e-5));
    const auto a = train::load_checkpoint(w / "accum/ckpt_00000004.h5");
    const auto b = train::load_checkpoint(w / "one/ckpt_00000004.h5");
    double worst = 0;
    for (size_t i = 0; i < a.params.size(); ++i)
        worst = std::max(worst, double(std::abs(a.params[i] - b.params[i])));
    CHECK(worst < 1e-5);

    // The first loss is the initial model's mean over the scored targets of those 4 rows.
    model::GPT2<float> m(kConfig);
    m.init_weights(o.seed);
    std::vector<int> inputs(4 * 16), targets(4 * 16);
    for (int i = 0; i < 4 * 16; ++i) {
        inputs[i] = d.tokens[i];
        targets[i] = d.classes[i + 1] == 2 ? d.tokens[i + 1] : -1;
    }
    const double expected = m.forward(inputs.data(), targets.data(), 4, 16);
    REQUIRE(m.targets_kept() > 0);
    REQUIRE(m.targets_kept() < 4 * 16);
    CHECK(la[0] == doctest::Approx(expected).epsilon(1e-6));
}

TEST_CASE("a mask that scores every target trains bit for bit as no mask") {
    Workdir w;
    const MaskedData d = masked_data(3000, 7);
    data::write_shard(w / "train_000001.bin", d.tokens.data(), d.tokens.size());
    train::TrainOptions o = options(w, "plain");
    o.steps = 3, o.checkpoint_every = 3, o.batch = 2, o.grad_accum = 2;
    o.val_data = w / "train_*.bin", o.val_every = 3, o.val_batches = 2;
    const auto plain = train_in_process(o);
    const std::vector<uint8_t> all(d.tokens.size(), data::kScoredToken);
    data::write_mask(data::mask_path(w / "train_000001.bin"), all.data(), all.size(), 0);
    o.out = w / "masked";
    const auto masked = train_in_process(o);
    CHECK(values_of(plain, "loss") == values_of(masked, "loss"));
    CHECK(values_of(plain, "val_loss") == values_of(masked, "val_loss"));
    CHECK(train::load_checkpoint(w / "plain/ckpt_00000003.h5").params ==
          train::load_checkpoint(w / "masked/ckpt_00000003.h5").params);
}

TEST_CASE("a step with no scored target updates nothing and says so; validation averages over "
          "scored targets") {
    Workdir w;
    MaskedData d = masked_data(3000, 11);
    // Step 1 reads windows 0 and 1: targets 1..64 of the stream.
    for (int i = 1; i <= 2 * 2 * 16; ++i) d.classes[i] = i % 2; // 0 or 1: prompts, not scored
    data::write_shard(w / "train_000001.bin", d.tokens.data(), d.tokens.size(), d.classes.data(),
                      0);
    train::TrainOptions o = options(w, "run");
    o.steps = 2, o.checkpoint_every = 1, o.keep = 0, o.batch = 2, o.grad_accum = 2;
    o.val_data = w / "train_*.bin", o.val_every = 100, o.val_batches = 3;
    const auto sink = train_in_process(o);
    bool said = false;
    for (const auto& m : sink.messages)
        said |= m.find("step 1: no target of the batch is scored") != std::string::npos;
    CHECK(said);
    const auto c1 = train::load_checkpoint(w / "run/ckpt_00000001.h5");
    CHECK(c1.adam_t == 0);
    for (float v : c1.m) REQUIRE(v == 0.0f);
    model::GPT2<float> init(kConfig);
    init.init_weights(o.seed);
    CHECK(c1.params == std::vector<float>(init.params(), init.params() + init.num_params()));
    CHECK(train::load_checkpoint(w / "run/ckpt_00000002.h5").adam_t == 1);

    // The first validation (before step 1): 3 batches, the mean over all scored targets.
    std::vector<int> inputs(2 * 16), targets(2 * 16);
    double sum = 0;
    int kept = 0;
    for (int b = 0; b < 3; ++b) {
        for (int i = 0; i < 2 * 16; ++i) {
            const int at = b * 2 * 16 + i;
            inputs[i] = d.tokens[at];
            targets[i] = d.classes[at + 1] == 2 ? d.tokens[at + 1] : -1;
        }
        sum += init.forward(inputs.data(), targets.data(), 2, 16) * init.targets_kept();
        kept += init.targets_kept();
    }
    const auto val = values_of(sink, "val_loss");
    REQUIRE(val.size() == 2);
    CHECK(val[0] == doctest::Approx(sum / kept).epsilon(1e-6));
}

TEST_CASE("a masked run of one example per row, shuffled, resumes exactly") {
    Workdir w;
    // Rows of R = T+1 = 17 tokens, as gpt2 tokenize --pack off --seq 16 writes them.
    const size_t R = 17, rows = 180;
    MaskedData d = masked_data(R * rows, 5);
    for (size_t r = 0; r < rows; ++r) d.classes[r * R] = data::kNotTarget;
    data::write_shard(w / "train_000001.bin", d.tokens.data(), R * 100, d.classes.data(), int(R));
    data::write_shard(w / "train_000002.bin", d.tokens.data() + R * 100, R * 80,
                      d.classes.data() + R * 100, int(R));
    train::TrainOptions o = options(w, "full");
    o.shuffle = true, o.batch = 2, o.grad_accum = 2, o.score_prompts = true;
    o.steps = 6, o.checkpoint_every = 3, o.keep = 0;
    const auto full = values_of(train_in_process(o), "loss");
    REQUIRE(full.size() == 6);
    o.out = w / "resumed", o.resume = w / "full/ckpt_00000003.h5", o.checkpoint_every = 0;
    const auto resumed = values_of(train_in_process(o), "loss");
    REQUIRE(resumed.size() == 3);
    for (int i = 0; i < 3; ++i) CHECK(resumed[i] == full[3 + i]);
    check_same_checkpoint(w / "full/ckpt_00000006.h5", w / "resumed/ckpt_00000006.h5");
}
