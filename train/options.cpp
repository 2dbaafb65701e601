#include "train/options.h"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "eval/evaluators.h"
#include "model/config.h"

namespace optim {

// As the --lr-schedule names, in checkpoints.
NLOHMANN_JSON_SERIALIZE_ENUM(Schedule::Kind, {{Schedule::Kind::constant, "constant"},
                                              {Schedule::Kind::cosine, "cosine"},
                                              {Schedule::Kind::wsd, "wsd"},
                                              {Schedule::Kind::linear, "linear"}})

} // namespace optim

namespace model {

// As --precision names them, in checkpoints (absent from older ones: fp32).
NLOHMANN_JSON_SERIALIZE_ENUM(Precision, {{Precision::fp32, "fp32"}, {Precision::bf16, "bf16"}})
NLOHMANN_JSON_SERIALIZE_ENUM(Recompute, {{Recompute::off, "off"},
                                         {Recompute::gelu, "gelu"},
                                         {Recompute::all, "all"}})

} // namespace model

namespace train {

using json = nlohmann::json;

NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(
    TrainOptions, model, n_layer, n_head, n_embd, max_seq, train_data, val_data, batch, seq,
    grad_accum, total_batch_tokens, score_prompts, steps, epochs, lr, lr_schedule, warmup,
    lr_final_fraction, decay_fraction, weight_decay, beta1, beta2, eps, grad_clip, seed, shuffle,
    val_every, val_batches, sample_every, sample_tokens, sample_top_k, sample_temperature,
    tokenizer, eval_every, evals, datasets, eval_max_tokens, eval_max_examples, out, log_file,
    resume, checkpoint_every, keep, overwrite, zero, overlap, precision, recompute, best_metric,
    keep_best, early_stop, skip_loss_z, skip_grad_z)

std::string to_json(const TrainOptions& o) {
    return json(o).dump();
}

TrainOptions train_options_from_json(const std::string& text) {
    return json::parse(text).get<TrainOptions>();
}

namespace {

std::string text(double v) {
    std::ostringstream out;
    out << v;
    return out.str();
}

void require(bool ok, const char* setting, const std::string& what) {
    if (!ok) throw base::SettingError(setting, what);
}

void at_least(double value, double low, const char* setting) {
    require(std::isfinite(value) && value >= low, setting,
            "must be at least " + text(low) + ", got " + text(value));
}

// [low, high)
void below(double value, double low, double high, const char* setting) {
    require(value >= low && value < high, setting,
            "must be in [" + text(low) + ", " + text(high) + "), got " + text(value));
}

using Kind = eval::EvaluatorSpec::Kind;

// Which way each metric is better, and the metrics each kind of evaluator reports
// (eval/evaluators.cpp).
struct MetricDirection {
    const char* metric;
    bool higher_is_better;
};
constexpr MetricDirection kDirections[] = {
    {"val_loss", false}, {"loss", false}, {"ppl", false}, {"ppl_token", false},
    {"ppl_word", false}, {"bpb", false},  {"acc", true},  {"acc_norm", true},
};
const std::vector<std::string>& metrics_of(Kind kind) {
    static const std::vector<std::string> ppl{"ppl_token", "ppl_word"}, lambada{"acc", "ppl"},
        hellaswag{"acc", "acc_norm"};
    return kind == Kind::perplexity ? ppl : kind == Kind::lambada ? lambada : hellaswag;
}

std::string joined(const std::vector<std::string>& words) {
    std::string all;
    for (const auto& w : words) all += (all.empty() ? "" : ", ") + w;
    return all;
}

} // namespace

TrackedMetric tracked_metric(const TrainOptions& o) {
    TrackedMetric m{o.best_metric, "", o.best_metric, false};
    if (o.best_metric != "val_loss") {
        std::vector<std::string> names;
        for (const auto& spec : eval::parse_evaluator_specs(o.evals, o.datasets)) {
            for (const auto& metric : metrics_of(spec.kind)) {
                names.push_back(spec.name + ":" + metric);
                if (o.best_metric == names.back()) m.evaluator = spec.name, m.metric = metric;
            }
            // NAME:ppl for a perplexity evaluator: per token, as lambada:ppl is.
            if (spec.kind == Kind::perplexity && o.best_metric == spec.name + ":ppl")
                m.evaluator = spec.name, m.metric = "ppl_token";
        }
        require(!m.evaluator.empty(), "best_metric",
                "'" + o.best_metric + "' is not measured by this run; it is val_loss or one of " +
                    "the evaluators' metrics" +
                    (names.empty() ? " (none configured)" : ": " + joined(names)));
    }
    for (const MetricDirection& d : kDirections)
        if (m.metric == d.metric) m.higher_is_better = d.higher_is_better;
    return m;
}

void TrainOptions::validate() const {
    require(!model.empty(), "model", "a preset or a model file is needed");
    model::check_precision_supported(precision);
    const bool reshapes = n_layer || n_head || n_embd || max_seq;
    require(!reshapes || model::is_preset(model) || !resume.empty(), "n_layer",
            "n_layer, n_head, n_embd and max_seq reshape a preset, not a model file");
    for (auto [value, name] : {std::pair{n_layer, "n_layer"},
                               {n_head, "n_head"},
                               {n_embd, "n_embd"},
                               {max_seq, "max_seq"}})
        at_least(value, 0, name);
    require(!train_data.empty(), "train_data", "is required");
    at_least(batch, 1, "batch");
    at_least(seq, 1, "seq");
    at_least(grad_accum, 1, "grad_accum");
    at_least(double(total_batch_tokens), 0, "total_batch_tokens");
    at_least(steps, 0, "steps");
    at_least(epochs, 0, "epochs");
    require(steps > 0 || epochs > 0, "steps", "give the number of steps or epochs");
    // The schedule checks its own settings (the number of steps comes from the data
    // with epochs, so any positive one stands in for it here).
    optim::Schedule{lr_schedule, lr, warmup, std::max(steps, 1), lr_final_fraction, decay_fraction}
        .validate();
    at_least(weight_decay, 0, "weight_decay");
    below(beta1, 0, 1, "beta1");
    below(beta2, 0, 1, "beta2");
    require(std::isfinite(eps) && eps > 0, "eps", "must be positive, got " + text(eps));
    at_least(grad_clip, 0, "grad_clip");
    at_least(val_every, 0, "val_every");
    at_least(val_batches, 0, "val_batches");
    at_least(sample_every, 0, "sample_every");
    at_least(sample_tokens, 1, "sample_tokens");
    at_least(sample_top_k, 0, "sample_top_k");
    at_least(sample_temperature, 0, "sample_temperature");
    at_least(eval_every, 0, "eval_every");
    const bool evaluates = !eval::parse_evaluator_specs(evals, datasets).empty(); // or throws
    require(!out.empty(), "out", "a run folder is needed");
    at_least(checkpoint_every, 0, "checkpoint_every");
    at_least(keep, 0, "keep");
    at_least(early_stop, 0, "early_stop");
    at_least(skip_loss_z, 0, "skip_loss_z");
    at_least(skip_grad_z, 0, "skip_grad_z");
    // The tracked metric must be measured, and more than once a run to stop early.
    const TrackedMetric tracked = tracked_metric(*this);
    if (keep_best || early_stop > 0) {
        const char* setting = keep_best ? "keep_best" : "early_stop";
        if (tracked.evaluator.empty())
            require(!val_data.empty() && val_every > 0, setting,
                    "follows val_loss, which needs validation data and validation every N steps");
        else
            require(eval_every > 0, setting,
                    "follows " + tracked.name + ", which needs the evaluators run every N steps");
    }
    // Settings that would do nothing, or be overruled, without a word.
    require(eval_every == 0 || evaluates, "eval_every", "runs the {evals} evaluators: none given");
    require(total_batch_tokens == 0 || grad_accum == 1, "grad_accum",
            "is set by {total_batch_tokens}: give one of the two");
    require(zero >= -1 && zero <= 1, "zero", "must be auto, 0 or 1, got " + std::to_string(zero));
}

void TrainOptions::validate_for(const model::Config& config) const {
    require(seq <= config.max_seq, "seq",
            "must be at most the model's " + std::to_string(config.max_seq) + " positions, got " +
                std::to_string(seq));
    constexpr int kGpt2Vocab = 50257; // the tokenizer's
    require(sample_every == 0 || config.vocab == kGpt2Vocab, "sample_every",
            "samples are text of GPT-2's " + std::to_string(kGpt2Vocab) +
                " tokens, but the model's vocabulary has " + std::to_string(config.vocab));
    require(evals.empty() || config.vocab == kGpt2Vocab, "evals",
            "evaluators read text as GPT-2's " + std::to_string(kGpt2Vocab) +
                " tokens, but the model's vocabulary has " + std::to_string(config.vocab));
    // Samples start from <|endoftext|> alone, so max_seq tokens fit after it.
    require(sample_every == 0 || sample_tokens <= config.max_seq, "sample_tokens",
            "must be at most the model's " + std::to_string(config.max_seq) +
                " positions (a sample starts after <|endoftext|>), got " +
                std::to_string(sample_tokens));
}

} // namespace train
