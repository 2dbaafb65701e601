// Mean cross-entropy of a model over consecutive batches of a token shard.
#pragma once

#include "data/shard.h"
#include "model/gpt2.h"

namespace eval {

struct LossResult {
    double mean = 0; // mean over all scored tokens (equal-sized batches: mean of batch means)
    int batches = 0;
    size_t tokens = 0; // scored tokens: batches * B * T
};

// Batch i holds the B*T+1 tokens starting at token i*B*T: inputs are the first B*T,
// targets the same shifted by one. max_batches <= 0 scores every batch that fits.
// Throws std::runtime_error naming the shard if it holds fewer than max_batches batches
// (or not even one), or if a token is outside the model's vocabulary.
LossResult shard_loss(model::GPT2<float>& model, const data::Shard& shard, int B, int Tn,
                      int max_batches);

} // namespace eval
