// The training loop: pretraining from a preset or fine-tuning from a model file, with
// validation, samples, crash-safe checkpoints and exact resume.
#pragma once

#include <cstdint>
#include <string>

#include "train/communicator.h"

namespace train {

struct TrainOptions {
    // Model: a preset (random init from --seed) or a .bin/.h5 file (fine-tuning); the
    // overrides reshape a preset (e.g. d6 with --n-layer 4 --max-seq 256).
    std::string model = "d6";
    int n_layer = 0, n_head = 0, n_embd = 0, max_seq = 0;
    // Data: globs of llm.c token shards.
    std::string train_data, val_data;
    int batch = 4, seq = 64, grad_accum = 1;
    int64_t total_batch_tokens = 0; // if set, grad_accum = this / (batch * seq * ranks)
    int steps = 0;                  // or:
    double epochs = 0;
    // Optimizer and schedule.
    double lr = 6e-4;
    std::string lr_schedule = "cosine";
    int warmup = 0;
    double lr_final_fraction = 0.0, decay_fraction = 0.2;
    double weight_decay = 0.1, beta1 = 0.9, beta2 = 0.95, eps = 1e-8, grad_clip = 1.0;
    uint64_t seed = 1337;
    bool shuffle = true;
    // Monitoring.
    int val_every = 0, val_batches = 20;
    int sample_every = 0, sample_tokens = 64, sample_top_k = 40;
    double sample_temperature = 1.0;
    std::string tokenizer;
    // Evaluators on the current weights every eval_every steps (and at the end): a
    // comma-separated list of ppl:wikitext2, ppl:ptb, ppl:FILE, lambada, lambada:FILE.
    int eval_every = 0;
    std::string evals;
    size_t eval_max_tokens = 16384, eval_max_examples = 500;
    // Output.
    std::string out = "runs/train", log_file, resume;
    int checkpoint_every = 0, keep = 2;
    // Data parallelism (under mpirun): ZeRO stage 0 or 1, and overlapping the gradient
    // reduction with the backward pass (stage 0 only).
    int zero = 0;
    bool overlap = true;
};

std::string to_json(const TrainOptions& o);

// Runs training to the last step (or to a Ctrl-C, which finishes the step, writes a
// checkpoint and returns normally). Throws on bad input and on a non-finite loss,
// before anything is written over a good checkpoint; with several ranks, a failure on
// any rank becomes a JobError thrown on every rank at the same point.
void train_model(const TrainOptions& options, Communicator& comm);

} // namespace train
