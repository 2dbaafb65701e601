// gpt2 eval loss / eval grads: a model file's loss and gradient on a token shard.
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "data/shard.h"
#include "eval/loss.h"
#include "model/gpt2.h"
#include "model/io.h"
#include "train/commands.h"

namespace train {

namespace {

struct LossOptions {
    std::string model, data;
    int batch = 4, seq = 64, batches = 0;
};

void run_loss(const LossOptions& o) {
    auto gpt_ptr = load_model(o.model);
    model::GPT2<float>& gpt = *gpt_ptr;
    if (o.seq > gpt.config().max_seq)
        throw std::invalid_argument("--seq " + std::to_string(o.seq) + " exceeds the model's " +
                                    std::to_string(gpt.config().max_seq) + " positions");
    const data::Shard shard(o.data);
    const auto r = eval::shard_loss(gpt, shard, o.batch, o.seq, o.batches);
    std::fprintf(stderr, "%d batches of %d x %d, %zu tokens scored\n", r.batches, o.batch, o.seq,
                 r.tokens);
    std::printf("loss %.6f\n", r.mean);
}

struct GradsOptions {
    std::string model, data, out;
    int batch = 4, seq = 64;
};

// Gradient of the mean loss on the shard's first batch, written as a model file.
void run_grads(const GradsOptions& o) {
    auto gpt_ptr = load_model(o.model);
    model::GPT2<float>& gpt = *gpt_ptr;
    const data::Shard shard(o.data);
    const size_t n = size_t(o.batch) * o.seq + 1;
    if (shard.size() < n)
        throw std::runtime_error(shard.path() + ": " + std::to_string(shard.size()) +
                                 " tokens are fewer than one batch of " + std::to_string(n));
    const std::vector<int> tokens(shard.tokens(), shard.tokens() + n);
    gpt.reserve(o.batch, o.seq, true);
    gpt.zero_grad();
    const double loss = gpt.forward(tokens.data(), tokens.data() + 1, o.batch, o.seq);
    gpt.backward();
    model::write_model(o.out, gpt.config(), gpt.grads());
    std::printf("loss %.9f\n", loss);
}

} // namespace

void add_eval(CLI::App& app) {
    auto* cmd = app.add_subcommand("eval", "Evaluate a model");
    cmd->require_subcommand(1);

    auto o = std::make_shared<LossOptions>();
    auto* loss = cmd->add_subcommand(
        "loss", "Mean cross-entropy (nats/token) over consecutive batches of a token shard: "
                "batch i reads the B*T+1 tokens starting at i*B*T");
    loss->add_option("--model", o->model, "Model file (.bin, .h5, .safetensors)")
        ->required()
        ->check(CLI::ExistingFile);
    loss->add_option("--data", o->data, "Token shard (llm.c format)")
        ->required()
        ->check(CLI::ExistingFile);
    loss->add_option("--batch", o->batch, "Batch size B")->capture_default_str()->check(CLI::PositiveNumber);
    loss->add_option("--seq", o->seq, "Sequence length T")->capture_default_str()->check(CLI::PositiveNumber);
    loss->add_option("--batches", o->batches, "Batches K to score (0 = every full batch)")
        ->capture_default_str()
        ->check(CLI::NonNegativeNumber);
    loss->callback([o] { run_loss(*o); });

    auto g = std::make_shared<GradsOptions>();
    auto* grads = cmd->add_subcommand(
        "grads", "Gradient of the mean loss on a shard's first batch (B*T+1 tokens), written "
                 "as a model file (.bin, .h5, .safetensors) of the same layout; prints the loss");
    grads->add_option("--model", g->model, "Model file (.bin, .h5, .safetensors)")
        ->required()
        ->check(CLI::ExistingFile);
    grads->add_option("--data", g->data, "Token shard (llm.c format)")
        ->required()
        ->check(CLI::ExistingFile);
    grads->add_option("--batch", g->batch, "Batch size B")->capture_default_str()->check(CLI::PositiveNumber);
    grads->add_option("--seq", g->seq, "Sequence length T")->capture_default_str()->check(CLI::PositiveNumber);
    grads->add_option("--out", g->out, "Gradient file to write (.bin, .h5, .safetensors)")->required();
    grads->callback([g] { run_grads(*g); });

    add_zeroshot(*cmd);
}

} // namespace train
