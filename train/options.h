// Everything a training run is told: the model to start from, the data, the optimizer
// and schedule, monitoring, output and data parallelism. Saved as JSON in every
// checkpoint, so a resumed run can check that it continues the same run.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "model/config.h"
#include "model/precision.h"
#include "model/recompute.h"
#include "optim/optim.h"

namespace train {

struct TrainOptions {
    // Model: a preset (random init from seed) or a model file (.bin, .h5, .safetensors,
    // a checkpoint) to fine-tune; n_layer..max_seq reshape a preset (0 = the preset's).
    std::string model = "d6";
    int n_layer = 0, n_head = 0, n_embd = 0, max_seq = 0;
    // The arithmetic of the passes (model/precision.h). Checkpoints hold fp32 weights, so
    // a run may resume in another precision.
    model::Precision precision = model::Precision::fp32;
    // Data: globs of llm.c token shards.
    std::string train_data, val_data;
    int batch = 4, seq = 64, grad_accum = 1;
    int64_t total_batch_tokens = 0; // if set, grad_accum = this / (batch * seq * ranks)
    // Which targets of masked shards (data/shard.h) the loss averages over: completions
    // only, or prompts too. Unmasked shards score every target either way.
    bool score_prompts = false;
    int steps = 0; // or:
    double epochs = 0;
    // Optimizer and schedule.
    double lr = 6e-4;
    optim::Schedule::Kind lr_schedule = optim::Schedule::Kind::cosine;
    int warmup = 0;
    double lr_final_fraction = 0.0, decay_fraction = 0.2;
    double weight_decay = 0.1, beta1 = 0.9, beta2 = 0.95, eps = 1e-8, grad_clip = 1.0;
    uint64_t seed = 1337;
    bool shuffle = true;
    // Monitoring: validation loss, samples, and evaluators (eval/evaluators.h specs,
    // comma-separated; named data sets are looked up under `datasets`).
    int val_every = 0, val_batches = 20;
    int sample_every = 0, sample_tokens = 64, sample_top_k = 40;
    double sample_temperature = 1.0;
    std::string tokenizer;
    int eval_every = 0;
    std::string evals, datasets = "datasets";
    size_t eval_max_tokens = 16384, eval_max_examples = 500;
    // The best checkpoint and early stopping. The metric: "val_loss" (validation) or an
    // evaluator's "NAME:METRIC" ("lambada:acc", "wikitext2:ppl_token"); keep_best writes
    // OUT/best.h5 whenever it improves; early_stop > 0 ends the run after that many
    // measurements in a row without improvement.
    std::string best_metric = "val_loss";
    bool keep_best = false;
    int early_stop = 0;
    // The outlier guard (train/outlier.h): a step whose loss (gradient norm) is more than
    // this many standard deviations above the recent ones is not applied (0 = off).
    double skip_loss_z = 0, skip_grad_z = 0;
    // Output: the run folder (checkpoints, log.jsonl), or a checkpoint to resume from
    // (a file, or a folder's newest checkpoint that verifies). A new run refuses a
    // folder holding checkpoints unless `overwrite`.
    std::string out = "runs/train", log_file, resume;
    int checkpoint_every = 0, keep = 2;
    bool overwrite = false;
    // Data parallelism (under mpirun): ZeRO stage 0 or 1 (-1: auto, see ParallelOptions),
    // and overlapping the gradient reduction with the backward pass (stage 0 only).
    int zero = -1;
    bool overlap = true;
    // Memory: what backward recomputes instead of keeping (model/recompute.h); all by
    // default: a step about as fast (README) without the GELU and LayerNorm outputs.
    model::Recompute recompute = model::Recompute::all;

    // Throws base::SettingError naming the field (as spelled here) that is out of range
    // or disagrees with another.
    void validate() const;
    // What depends on the model too, checked before anything is allocated: seq within
    // its positions, samples (sample_tokens within its positions, GPT-2's vocabulary for
    // the tokenizer) and evaluators (GPT-2's vocabulary). Throws base::SettingError.
    void validate_for(const model::Config& config) const;
};

// The metric that best_metric names, and which way is better.
struct TrackedMetric {
    std::string name;      // as given: "val_loss", "lambada:acc"
    std::string evaluator; // "" for val_loss
    std::string metric;    // the evaluator's metric ("acc"), or "val_loss"
    bool higher_is_better = false;
    // Whether `value` is strictly better than `best`.
    bool improves(double value, double best) const {
        return higher_is_better ? value > best : value < best;
    }
};
// Parses options.best_metric against the evaluators of options.evals; throws
// base::SettingError("best_metric") for a metric the run does not measure.
TrackedMetric tracked_metric(const TrainOptions& options);

std::string to_json(const TrainOptions& options);
TrainOptions train_options_from_json(const std::string& text);

} // namespace train
