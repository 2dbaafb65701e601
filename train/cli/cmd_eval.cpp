// gpt2 eval loss / eval grads: a model's loss and gradient on a token shard. The other
// eval commands (ppl, lambada, cbt) are in cmd_zeroshot.cpp.
#include <algorithm>
#include <cstdio>
#include <vector>

#include "base/error.h"
#include "data/loader.h"
#include "eval/loss.h"
#include "model/io.h"
#include "train/cli/common.h"

namespace cli {

namespace {

// What eval loss and eval grads both read: a model and B x T batches of a shard.
struct ShardBatches {
    std::string model, data;
    int batch = 4, seq = 64;
    bool score_prompts = false;
    model::Precision precision = model::Precision::fp32;

    // The inputs exist and are regular files, before anything is read.
    void check() const {
        for (const auto& file : model_inputs(model)) require_file(file);
        require_file(data);
    }

    // The shard's batches in order, for one process, with its loss mask if it has one.
    data::Loader loader(int vocab) const {
        data::LoaderOptions o;
        o.batch = batch, o.seq = seq, o.vocab = vocab, o.score_prompts = score_prompts;
        o.partial_last = true; // every token of the shard, the last batch padded
        return data::Loader(data, o);
    }

    void add_to(CLI::App& cmd) {
        add_model_option(cmd, model);
        cmd.add_option("--data", data,
                       "Token shard (llm.c format; a loss mask beside it, SHARD.mask, is used)")
            ->required();
        cmd.add_option("--batch", batch, "Batch size B")->check(above(0))->capture_default_str();
        cmd.add_option("--seq", seq, "Sequence length T (at most the model's positions)")
            ->check(at_least(1))
            ->capture_default_str();
        add_choice(cmd, "--loss-on", score_prompts, {{"completion", false}, {"all", true}},
                   "Targets scored in a shard with a loss mask: completions only, or prompts too");
        add_precision_option(cmd, precision);
    }
};

struct EvalLossOptions {
    ShardBatches in;
    int batches = 0;

    void validate() const { // batch and seq: GPT2::reserve checks them
        if (batches < 0) throw base::SettingError("batches", "must be >= 0");
    }
};

void run_loss(const EvalLossOptions& o) {
    o.validate();
    o.in.check();
    auto gpt = load_model_as(o.in.model, o.in.precision);
    gpt->reserve(o.in.batch, o.in.seq, false); // the shape's errors before the data's
    data::Loader loader = o.in.loader(gpt->config().vocab);
    const auto r = eval::loss_over_batches(*gpt, loader, o.batches);
    std::fprintf(stderr, "%d batches of %d x %d, %zu tokens scored\n", r.batches, o.in.batch,
                 o.in.seq, r.tokens);
    std::printf("loss %.6f\n", r.mean);
}

struct EvalGradsOptions {
    ShardBatches in;
    std::string out;
};

// Gradient of the mean loss on the shard's first batch, written as a model file.
void run_grads(const EvalGradsOptions& o) {
    o.in.check();
    auto inputs = model_inputs(o.in.model);
    inputs.push_back(o.in.data);
    require_not_input(o.out, "out", inputs);
    auto gpt = load_model_as(o.in.model, o.in.precision);
    const int B = o.in.batch, T = o.in.seq;
    gpt->reserve(B, T, true);
    data::Loader loader = o.in.loader(gpt->config().vocab);
    std::vector<int> tokens(size_t(B) * T), targets(tokens.size());
    loader.next(tokens.data(), targets.data());
    if (std::find_if(targets.begin(), targets.end(), [](int t) { return t >= 0; }) == targets.end())
        throw base::FileError(o.in.data, "no target of the first batch is scored by its loss mask");
    gpt->zero_grad();
    const double loss = gpt->forward(tokens.data(), targets.data(), B, T, model::Pass::training);
    gpt->backward();
    model::write_model(o.out, gpt->config(), gpt->grads());
    std::printf("loss %.9f\n", loss);
}

void add_loss(CLI::App& eval) {
    auto o = std::make_shared<EvalLossOptions>();
    auto* cmd = eval.add_subcommand(
        "loss", "Mean cross-entropy (nats/token) over consecutive batches of a token shard: "
                "batch i reads the B*T+1 tokens starting at i*B*T; with a loss mask, the mean "
                "over the targets it scores");
    o->in.add_to(*cmd);
    cmd->add_option("--batches", o->batches,
                    "Batches K to score (0 = all: every target once, the last batch padded)")
        ->check(at_least(0))
        ->capture_default_str();
    cmd->callback([o] { run_loss(*o); });
}

void add_grads(CLI::App& eval) {
    auto o = std::make_shared<EvalGradsOptions>();
    auto* cmd = eval.add_subcommand(
        "grads", "Gradient of the mean loss on a shard's first batch (B*T+1 tokens; the mean "
                 "over scored targets with a loss mask), written "
                 "as a model file (.bin, .h5, .safetensors) of the same layout; prints the loss");
    o->in.add_to(*cmd);
    cmd->add_option("--out", o->out, "Gradient file to write (.bin, .h5, .safetensors)")
        ->required();
    cmd->callback([o] { run_grads(*o); });
}

} // namespace

void add_eval(CLI::App& app) {
    auto* eval = app.add_subcommand("eval", "Evaluate a model");
    eval->require_subcommand(1);
    add_loss(*eval);
    add_grads(*eval);
    add_zeroshot(*eval);
}

} // namespace cli
